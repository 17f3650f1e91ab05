"""``dl.echo`` on a DICOMweb node: a capability probe with the same plain diagnosis.

One QIDO-RS search for a single study tells whether the service is reachable, whether
TLS and authentication pass, and whether it honours ``limit``; the answer (or the
failure: 401 vs 403 vs 404 on the root vs TLS vs refused vs timeout) is an
:class:`~dicomlab.net.echo.EchoResult`, never an exception. Then, cheaply, the other
services: WADO-RS by the metadata of one instance of that study, STOW-RS by a POST
holding no instance (a server with STOW-RS refuses it as empty; one without answers
404, 405 or 501). Nothing is stored.
"""

from __future__ import annotations

import time
from typing import Any

from dicomlab.core.call import Call
from dicomlab.errors import (
    ConnectionRefused,
    ConnectTimeout,
    DICOMwebError,
    NetworkError,
    ResolveError,
    TLSError,
)
from dicomlab.net.echo import Cause, EchoResult
from dicomlab.web import stow
from dicomlab.web.session import WebClient, client_for, web_of

__all__ = ["echo"]

_BY_STATUS: dict[int, Cause] = {401: "not-authenticated", 403: "not-allowed", 404: "not-found"}
_NETWORK: tuple[tuple[type[NetworkError], Cause], ...] = (
    (ResolveError, "dns"),
    (ConnectionRefused, "refused"),
    (ConnectTimeout, "connect-timeout"),
    (TLSError, "tls"),
)


def echo(call: Call) -> EchoResult:
    """Probe ``call.node``'s DICOMweb service (QIDO-RS, then WADO-RS and STOW-RS)."""
    node = call.node
    url = web_of(node).url
    web = client_for(node)
    try:
        return _probe(web, url)
    finally:
        web.close()


def _probe(web: WebClient, url: str) -> EchoResult:
    node, t0 = web.node, time.perf_counter()
    try:
        found = web.request(
            "QIDO-RS",
            lambda: web.api.search_for_studies(limit=1),
            lambda got: {"n_matches": len(got)},
        )
    except DICOMwebError as exc:
        cause = _BY_STATUS.get(exc.http_status or 0, "http-error")
        return EchoResult(False, time.perf_counter() - t0, exc.http_status, str(exc), cause, node)
    except NetworkError as exc:
        cause = next((c for t, c in _NETWORK if isinstance(exc, t)), "network")
        return EchoResult(False, time.perf_counter() - t0, None, str(exc), cause, node)
    latency, status = time.perf_counter() - t0, web.seen.status
    paging = "limit honoured" if len(found) <= 1 else f"limit=1 ignored ({len(found)} studies)"
    services = (("QIDO-RS", f"answers, {paging}"), _wado(web, found), _stow(web))
    said = "; ".join(f"{name} {what}" for name, what in services)
    return EchoResult(True, latency, status, f"{url} (HTTP {status}): {said}", "ok", node, services)


def _answer(status: int | None) -> str:
    if status in (404, 405, 501):
        return f"not offered (HTTP {status})"
    if status in (401, 403):
        return f"not allowed (HTTP {status})"
    return "answers"


def _wado(web: WebClient, found: list[dict[str, Any]]) -> tuple[str, str]:
    """WADO-RS: the metadata of one instance of the study found, if any."""
    study = _value(found[0], "0020000D") if found else None
    if study is None:
        return "WADO-RS", "not checked (no study to read)"
    try:
        one = web.request(
            "QIDO-RS",
            lambda: web.api.search_for_instances(study_instance_uid=study, limit=1),
            lambda got: {"n_matches": len(got)},
        )
        series, sop = (
            (_value(one[0], "0020000E"), _value(one[0], "00080018")) if one else (None, None)
        )
        if series is None or sop is None:
            return "WADO-RS", "not checked (no instance to read)"
        web.request(
            "WADO-RS",
            lambda: web.api.retrieve_instance_metadata(study, series, sop),
            study=study,
        )
    except DICOMwebError as exc:
        return "WADO-RS", _answer(exc.http_status)
    except NetworkError as exc:
        return "WADO-RS", f"failed ({exc})"
    return "WADO-RS", "answers"


def _stow(web: WebClient) -> tuple[str, str]:
    """STOW-RS: a POST holding no instance."""
    try:
        web.request("STOW-RS", lambda: stow.post(web, []))
    except DICOMwebError as exc:
        return "STOW-RS", _answer(exc.http_status)
    except NetworkError as exc:
        return "STOW-RS", f"failed ({exc})"
    return "STOW-RS", "answers"


def _value(item: dict[str, Any], tag: str) -> str | None:
    values = (item.get(tag) or {}).get("Value") or []
    return str(values[0]) if values else None
