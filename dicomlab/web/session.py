"""One node's DICOMweb client (dicomweb-client over a requests session), and the one
translation of what can go wrong into the error tree.

The session carries the node's authentication (the secret read at each request, so
a refreshed token is used at once), its TLS verification and its timeout. Every
response passes :class:`Seen`, which keeps what the client library does not return:
the HTTP status (a 206 Partial Content says the server cut the answer short) and
its ``Warning`` header.
"""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import urllib3
from dicomweb_client.api import DICOMwebClient

from dicomlab.core.dicomweb import DICOMweb
from dicomlab.core.nodes import Node
from dicomlab.errors import (
    ConfigError,
    ConnectionRefused,
    ConnectTimeout,
    DicomlabError,
    DICOMwebError,
    NetworkError,
    ResolveError,
    TLSError,
)
from dicomlab.log.record import now
from dicomlab.log.web import WebLog

__all__ = ["Clients", "Seen", "WebClient", "client_for", "translating", "web_of"]

T = TypeVar("T")


def web_of(node: Node) -> DICOMweb:
    if node.dicomweb is None:
        raise ConfigError(
            f"{node.name} has no DICOMweb service",
            node=node,
            hint="give the node dicomweb=dl.DICOMweb(url), or use protocol='dimse'",
        )
    return node.dicomweb


class _Auth(requests.auth.AuthBase):
    """Adds the node's credentials to each request, reading the secret then."""

    def __init__(self, web: DICOMweb) -> None:
        self.web = web

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        secret = self.web.secret()
        if self.web.auth == "basic":
            return requests.auth.HTTPBasicAuth(self.web.username or "", secret or "")(r)
        if self.web.auth == "bearer":
            r.headers["Authorization"] = f"Bearer {secret}"
        return r


class Seen:
    """What the responses of one client said beyond their bodies (per thread)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.status = response.status_code
        self._local.warning = response.headers.get("Warning")

    @property
    def status(self) -> int | None:
        return getattr(self._local, "status", None)

    @property
    def warning(self) -> str | None:
        return getattr(self._local, "warning", None)


@dataclass(frozen=True, slots=True)
class WebClient:
    """A DICOMweb client of one node: the library's client, its HTTP session, what its
    responses said and its network log (one session, one associations row)."""

    node: Node
    api: DICOMwebClient
    seen: Seen
    session: requests.Session
    log: WebLog

    def request(
        self,
        service: str,
        call: Callable[[], T],
        counts: Callable[[T], dict[str, int]] | None = None,
        study: str | None = None,
    ) -> T:
        """``call()`` (one request), translated into the error tree and logged as one
        ``service`` operation; ``counts`` gives its row's counts from the result."""
        started = now()
        try:
            with translating(self.node, service):
                result = call()
        except DICOMwebError as exc:
            self.log.request(service, exc.http_status, started, study=study, error=str(exc))
            raise
        except DicomlabError as exc:
            self.log.request(service, None, started, study=study, error=str(exc))
            raise
        numbers = counts(result) if counts is not None else None
        self.log.request(service, self.seen.status, started, counts=numbers, study=study)
        return result

    def close(self) -> None:
        self.session.close()
        self.log.close()


_KEEP_RAW = {"%2A": "*", "%3F": "?", "%2C": ",", "%5E": "^", "%2F": "/", "%3A": ":"}
"""Characters DICOM matching uses that a query string may carry as they are."""


def _raw_query(target: str) -> str:
    """``target`` with DICOM's matching characters unescaped in its query (pure)."""
    head, sep, query = target.partition("?")
    if not sep:
        return target
    for escaped, raw in _KEEP_RAW.items():
        query = query.replace(escaped, raw).replace(escaped.lower(), raw)
    return f"{head}?{query}"


class _RawQueryHTTP(urllib3.HTTPConnectionPool):
    """Sends the request target with DICOM's matching characters as they are.

    requests and urllib3 percent-encode ``*``, ``?``, ``,`` and ``^`` (urllib3 does
    it last, just before sending); Orthanc 1.10's DICOMweb plugin (1.7, Debian
    bookworm) does not decode them, so ``PatientName=DOE%5EJ*`` matched nothing where
    ``DOE^J*`` matches. Browsers, and so viewers such as OHIF, send them raw too.
    """

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kw: Any) -> Any:
        return super()._make_request(conn, method, _raw_query(url), *args, **kw)


class _RawQueryHTTPS(urllib3.HTTPSConnectionPool):
    __doc__ = _RawQueryHTTP.__doc__

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kw: Any) -> Any:
        return super()._make_request(conn, method, _raw_query(url), *args, **kw)


class _Adapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _RawQueryHTTP, "https": _RawQueryHTTPS}


class _Session(requests.Session):
    """A session that sends DICOM's matching characters unescaped (:class:`_RawQueryHTTP`)
    and keeps the node's TLS verification whatever the environment says."""

    def __init__(self) -> None:
        super().__init__()
        for prefix in ("http://", "https://"):
            self.mount(prefix, _Adapter())

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """The environment's settings (proxies...), but the node's TLS verification:
        requests lets ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` override a session's
        CA file (requests issue 3829), and conda and many images set them."""
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert
        )
        if self.verify is not True:
            settings["verify"] = self.verify
        return settings


def client_for(node: Node) -> WebClient:
    """A client for ``node``'s DICOMweb service (close it, or use it in a ``with``)."""
    web = web_of(node)
    session = _Session()
    session.auth = _Auth(web) if web.auth != "none" else None
    session.verify = web.ca if (web.verify and web.ca) else web.verify
    session.cert = web.client_cert
    seen = Seen()
    api = DICOMwebClient(web.url, session=session, callback=seen, timeout=web.timeout)
    # No retries inside the library (it retried a refused connection for 31 s): the
    # transfer queue retries what is transient, as it does for DIMSE.
    api.set_http_retry_params(retry=False)
    return WebClient(node, api, seen, session, WebLog(web.url))


class Clients:
    """One :class:`WebClient` per thread for one node (a requests session is not to be
    shared between threads), as the workers of a transfer need them; :meth:`close`
    closes them all."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._local = threading.local()
        self._clients: list[WebClient] = []
        self._lock = threading.Lock()

    def get(self) -> WebClient:
        """This thread's client (made on first use)."""
        web: WebClient | None = getattr(self._local, "web", None)
        if web is None:
            web = self._local.web = client_for(self.node)
            with self._lock:
                self._clients.append(web)
        return web

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for web in clients:
            web.close()


_HINTS = {
    400: "the server did not understand the request (a filter it does not support?)",
    401: "not authenticated: check the node's auth, username and secret_env or token_file",
    403: "authenticated, but not allowed to do this: ask the archive's administrator",
    404: "nothing there: check the DICOMweb root URL (e.g. .../dicom-web) and the UIDs",
    413: "the request was too large for the server: send fewer instances at once",
    429: "the server is busy (too many requests): it will be tried again later",
    500: "the server failed: its own log says why",
    503: "the server is unavailable or busy: it will be tried again later",
}


def _http_error(exc: requests.HTTPError, node: Node, what: str) -> DICOMwebError:
    response = exc.response
    status = response.status_code if response is not None else None
    reason = response.reason if response is not None else ""
    retry_after: float | None = None
    if response is not None:
        try:
            retry_after = float(response.headers.get("Retry-After", ""))
        except ValueError:
            retry_after = None
    return DICOMwebError(
        f"{what} on {node.address} failed: HTTP {status} {reason}".rstrip(),
        node=node,
        http_status=status,
        hint=_HINTS.get(status or 0),
        retry_after_s=retry_after,
    )


_SSL_CODE = re.compile(r"\[SSL: ([A-Z0-9_]+)\] ([^()']+?)\s*(?:\(_ssl|'|\)|$)")
_SSL_TEXT = re.compile(r"SSL\w*Error\(\d+, '([^()']+?)\s*(?:\(_ssl|')")


def _tls_problem(text: str, web: DICOMweb) -> tuple[str, str]:
    """What went wrong in a TLS handshake, in words, and what to change (pure)."""
    found, bare = _SSL_CODE.search(text), _SSL_TEXT.search(text)
    reason = found.group(2) if found else bare.group(1) if bare else text
    if found and found.group(1) == "CERTIFICATE_VERIFY_FAILED":
        if "hostname" in reason or "IP address mismatch" in reason:
            return (
                f"the server's certificate is not for {web.host!r} ({reason})",
                "connect by a name the certificate lists, or have it reissued",
            )
        if "expired" in reason:
            return f"the server's certificate has expired ({reason})", "renew it on the server"
        return (
            f"the server's certificate is not trusted ({reason})",
            "give ca= the CA file that signed it (verify=False only for a test server)",
        )
    if "EOF" in text or "reset" in text.lower() or "CERTIFICATE_REQUIRED" in text:
        return (
            f"the server ended the handshake ({reason})",
            "it may require a client certificate: give cert= and key="
            if web.cert is None
            else "it refused our client certificate (cert=): is it signed by a CA it trusts?",
        )
    return reason, "check verify=, ca=, cert= and key= of the node's DICOMweb settings"


def _network_error(exc: Exception, node: Node, what: str) -> NetworkError | DICOMwebError:
    web = web_of(node)
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError) or isinstance(
        getattr(exc, "__context__", None), ssl.SSLError
    ):
        why, hint = _tls_problem(text, web)
        return TLSError(f"TLS with {web.url} failed: {why}", node=node, hint=hint)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return DICOMwebError(
            f"{what} on {web.url}: no answer within {web.timeout:g} s",
            node=node,
            broken=True,
            hint=f"the server is slow or stuck: raise the node's DICOMweb timeout= (now "
            f"{web.timeout:g} s), or try again later",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return ConnectTimeout(
            f"could not connect to {web.url} within {web.timeout:g} s",
            node=node,
            hint="is the host reachable from here (a firewall, a VPN)? is the URL right?",
        )
    lowered = text.lower()
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return ResolveError(f"the host {web.host!r} of {web.url} does not resolve", node=node)
    if "refused" in lowered:
        return ConnectionRefused(
            f"nothing answers at {web.url} (connection refused)",
            node=node,
            hint="is the server running, and is the port in the URL right?",
        )
    return NetworkError(f"{what} on {web.url} failed: {text}", node=node)


@contextmanager
def translating(node: Node, what: str) -> Iterator[None]:
    """Whatever requests raises in the block turned into the one error tree."""
    try:
        yield
    except DicomlabError:
        raise
    except requests.HTTPError as exc:
        raise _http_error(exc, node, what) from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
        raise DICOMwebError(
            f"{what} on {node.address}: the connection broke during the answer",
            node=node,
            broken=True,
            hint="what arrived whole is kept; it will be tried again",
        ) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _network_error(exc, node, what) from None
