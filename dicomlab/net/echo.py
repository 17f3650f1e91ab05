"""C-ECHO with a diagnosis a human understands."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomlab.core.call import Call
from dicomlab.core.nodes import Node
from dicomlab.core.status import decode_status
from dicomlab.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionRefused,
    ConnectTimeout,
    DimseTimeout,
    NetworkError,
    NoAcceptedContext,
    ResolveError,
    TLSError,
)
from dicomlab.net import dimse
from dicomlab.net.association import open_association

__all__ = ["EchoResult", "echo"]

log = logging.getLogger(__name__)

Cause = Literal[
    "ok",
    "dns",
    "refused",
    "connect-timeout",
    "tls",
    "rejected",
    "aborted",
    "no-context",
    "no-response",
    "failure-status",
    "network",
    "not-authenticated",
    "not-allowed",
    "not-found",
    "http-error",
]

_CAUSES: tuple[tuple[type[NetworkError], Cause], ...] = (
    (ResolveError, "dns"),
    (ConnectionRefused, "refused"),
    (ConnectTimeout, "connect-timeout"),
    (TLSError, "tls"),
    (AssociationRejected, "rejected"),
    (NoAcceptedContext, "no-context"),
    (AssociationAborted, "aborted"),
)


@dataclass(frozen=True, slots=True)
class EchoResult:
    """The outcome of :func:`echo`.

    Attributes
    ----------
    ok
        True when the peer answered C-ECHO with Success.
    latency_s
        Seconds from the association request to the C-ECHO response (or to the failure).
    status
        The DIMSE status as int (over DICOMweb: the HTTP status), or ``None`` when no
        association was made or no answer came.
    detail
        A plain-English diagnosis with what to try next.
    cause
        A short machine-readable cause: ``ok``, ``dns``, ``refused``, ``connect-timeout``,
        ``tls``, ``rejected``, ``aborted``, ``no-context``, ``no-response``,
        ``failure-status`` or ``network``; over DICOMweb also ``not-authenticated`` (401),
        ``not-allowed`` (403), ``not-found`` (404) and ``http-error``.
    node
        The node that was echoed.
    services
        Over DICOMweb, what each service answered: ``(("QIDO-RS", "answers"),
        ("WADO-RS", "answers"), ("STOW-RS", "not offered (HTTP 405)"), ...)``.
    """

    ok: bool
    latency_s: float
    status: int | None
    detail: str
    cause: Cause
    node: Node
    services: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        state = "Online" if self.ok else "Offline"
        where = f"{self.node.name} ({self.node.address})"
        return f"{where}: {state} in {self.latency_s:.3f} s: {self.detail}"

    def __bool__(self) -> bool:
        return self.ok

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """In a notebook, the sentence (``repr`` keeps every field for code)."""
        printer.text(str(self))


def echo(call: Call) -> EchoResult:
    """One C-ECHO to ``call.node`` on its own association: an :class:`EchoResult` whose
    ``detail`` says in plain words why it failed (never raised: ``dl.echo``)."""
    target, ours = call.node, call.ours
    t0 = time.perf_counter()
    try:
        with open_association(target, [Verification], calling_ae=ours) as opened:
            reply = dimse.echo(opened.assoc)
            latency = time.perf_counter() - t0
            if reply.status is None:
                detail = (
                    f"the association was aborted before {target.address} answered C-ECHO"
                    if reply.peer_ended
                    else DimseTimeout.sentence("C-ECHO", target, "timed out")
                )
                opened.assoc.abort()
                return EchoResult(False, latency, None, detail, "no-response", target)
            status = reply.status
    except NetworkError as exc:
        latency = time.perf_counter() - t0
        cause: Cause = next((c for t, c in _CAUSES if isinstance(exc, t)), "network")
        log.debug("echo %s failed: %s", target.address, exc)
        return EchoResult(False, latency, None, str(exc), cause, target)
    info = decode_status(status)
    if info.category == "success":
        detail = f"{target.address} answered C-ECHO: Success"
        return EchoResult(True, latency, status, detail, "ok", target)
    return EchoResult(
        False,
        latency,
        status,
        f"{target.address} answered C-ECHO with {info}",
        "failure-status",
        target,
    )
