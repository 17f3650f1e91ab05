"""``dl.echo`` on a DICOMweb node: a capability probe with the same plain diagnosis.

One QIDO-RS search for a single study tells whether the service is reachable, whether
TLS and authentication pass, and whether it honours ``limit``; the answer (or the
failure: 401 vs 403 vs 404 on the root vs TLS vs refused vs timeout) is an
:class:`~dicomlab.net.echo.EchoResult`, never an exception.
"""

from __future__ import annotations

import time

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
from dicomlab.web.session import client_for, web_of

__all__ = ["echo"]

_BY_STATUS: dict[int, Cause] = {401: "not-authenticated", 403: "not-allowed", 404: "not-found"}
_NETWORK: tuple[tuple[type[NetworkError], Cause], ...] = (
    (ResolveError, "dns"),
    (ConnectionRefused, "refused"),
    (ConnectTimeout, "connect-timeout"),
    (TLSError, "tls"),
)


def echo(call: Call) -> EchoResult:
    """Probe ``call.node``'s DICOMweb service (QIDO-RS, one study)."""
    node = call.node
    url = web_of(node).url
    web = client_for(node)
    seen = web.seen
    t0 = time.perf_counter()
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
    finally:
        web.close()
    latency = time.perf_counter() - t0
    paging = "limit honoured" if len(found) <= 1 else f"limit=1 ignored ({len(found)} studies)"
    detail = f"QIDO-RS at {url} answers (HTTP {seen.status}); {paging}"
    return EchoResult(True, latency, seen.status, detail, "ok", node)
