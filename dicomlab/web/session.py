"""One node's DICOMweb client (dicomweb-client over a requests session), and the one
translation of what can go wrong into the error tree.

The session carries the node's authentication (the secret read at each request, so
a refreshed token is used at once), its TLS verification and its timeout. Every
response passes :class:`Seen`, which keeps what the client library does not return:
the HTTP status (a 206 Partial Content says the server cut the answer short) and
its ``Warning`` header.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
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

__all__ = ["Seen", "WebClient", "client_for", "translating", "web_of"]

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


class _Session(requests.Session):
    """A session that leaves DICOM's matching characters unescaped in query strings.

    requests percent-encodes ``*``, ``?``, ``,`` and ``^``; Orthanc 1.10's DICOMweb
    plugin (1.7, Debian bookworm) does not decode them, so ``PatientName=D%2A``
    matched nothing where ``PatientName=D*`` matches. Servers that decode accept them
    raw as well (``*``, ``?``, ``,``, ``/`` and ``:`` are legal in a query, RFC 3986).
    """

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        url = prepared.url or ""
        head, sep, query = url.partition("?")
        if sep:
            for escaped, raw in _KEEP_RAW.items():
                query = query.replace(escaped, raw).replace(escaped.lower(), raw)
            prepared.url = f"{head}?{query}"
        return prepared


def client_for(node: Node) -> WebClient:
    """A client for ``node``'s DICOMweb service (close it, or use it in a ``with``)."""
    web = web_of(node)
    session = _Session()
    session.auth = _Auth(web) if web.auth != "none" else None
    session.verify = web.ca if (web.verify and web.ca) else web.verify
    seen = Seen()
    api = DICOMwebClient(web.url, session=session, callback=seen, timeout=web.timeout)
    # No retries inside the library (it retried a refused connection for 31 s): the
    # transfer queue retries what is transient, as it does for DIMSE.
    api.set_http_retry_params(retry=False)
    return WebClient(node, api, seen, session, WebLog(web.url))


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


def _network_error(exc: Exception, node: Node, what: str) -> NetworkError:
    web = web_of(node)
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError) or isinstance(
        getattr(exc, "__context__", None), ssl.SSLError
    ):
        return TLSError(
            f"TLS with {web.url} failed: {text}",
            node=node,
            hint="check verify= and ca= of the node's DICOMweb settings",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return ConnectTimeout(f"{web.url} did not answer within {web.timeout:g} s", node=node)
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
