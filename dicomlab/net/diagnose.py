"""Turn a failed connection or association into a typed error in plain words (pure)."""

from __future__ import annotations

import errno
import socket
import ssl

from dicomlab.core.nodes import Node
from dicomlab.core.status import decode_reject
from dicomlab.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionRefused,
    ConnectTimeout,
    NetworkError,
    NoAcceptedContext,
    ResolveError,
    TLSError,
)

__all__ = [
    "aborted_error",
    "connect_error",
    "no_context_error",
    "rejected_error",
    "resolve_error",
    "waited_out",
]


def waited_out(node: Node, elapsed: float) -> bool:
    """Whether ``elapsed`` seconds of silence used up the node's timeout (timers fire a
    little early or late: within 5 %), as opposed to the peer ending things sooner."""
    return elapsed >= node.timeout * 0.95


def resolve_error(node: Node, exc: OSError) -> ResolveError:
    """The host name of ``node`` did not resolve."""
    return ResolveError(
        f"cannot resolve host {node.host!r} for node {node.name!r} ({exc})",
        node=node,
        hint="check the spelling of the host name, or use its IP address; is DNS reachable?",
    )


def _tls_error(node: Node, exc: OSError) -> TLSError:
    text = str(exc)
    lowered = text.lower()
    vm = (getattr(exc, "verify_message", "") or "").lower()
    if isinstance(exc, ssl.SSLCertVerificationError) or vm:
        # we checked the peer's certificate and it failed
        if "expired" in vm or "expired" in lowered:
            what, hint = "the peer's certificate has expired", "renew the peer's certificate"
        elif "mismatch" in vm or "doesn't match" in lowered:
            what = f"the peer's certificate does not name host {node.host!r}"
            hint = "connect by the name in the certificate, or set TLS(server_hostname=...)"
        elif "self-signed" in vm or "issuer" in vm or "unknown ca" in vm:
            what = "the peer's certificate is signed by a CA we do not trust"
            hint = "give TLS(ca=...) the CA certificate that signed the peer's certificate"
        else:
            what = f"the peer's certificate failed verification ({vm or text})"
            hint = "check TLS(ca=...) and the peer's certificate"
    elif "alert" in lowered:
        # the peer checked us (or our offer) and sent an alert
        if "certificate required" in lowered:
            what = "the peer requires a client certificate and we sent none"
            hint = "give TLS(cert=..., key=...) a client certificate the peer trusts"
        elif any(w in lowered for w in ("unknown ca", "bad certificate", "certificate unknown")):
            what = "the peer refused our client certificate (not signed by a CA it trusts)"
            hint = "use a client certificate signed by a CA the peer trusts"
        elif "expired" in lowered:
            what, hint = "the peer says our client certificate has expired", "renew it"
        elif "protocol version" in lowered or "handshake failure" in lowered:
            what = "the peer and we share no TLS version or cipher (TLS 1.2 is our minimum)"
            hint = "the peer may offer only old TLS versions: it needs TLS 1.2 or newer"
        else:
            what = f"the peer ended the TLS handshake ({text})"
            hint = "check the peer's TLS settings and our certificate"
    elif "wrong version number" in lowered or "record layer failure" in lowered:
        what = "the peer did not answer in TLS (is this a plain, non-TLS port?)"
        hint = "use the peer's TLS port, or tls=None for its plain port"
    elif isinstance(exc, ConnectionResetError | ssl.SSLEOFError | BrokenPipeError):
        what = "the peer closed the connection during the TLS handshake"
        hint = "the peer may require a client certificate, or not speak TLS on this port"
    else:
        what = f"the TLS handshake failed ({text})"
        hint = "check the CA, certificate and key files and the peer's TLS settings"
    return TLSError(f"TLS with {node.address} failed: {what}", node=node, hint=hint)


def connect_error(node: Node, exc: OSError | None, timeout: float) -> NetworkError:
    """The TCP (or TLS) connection to ``node`` failed with ``exc``."""
    where = f"{node.host}:{node.port}"
    if node.tls is not None and (
        isinstance(
            exc, (ssl.SSLError | ssl.CertificateError, ConnectionResetError | BrokenPipeError)
        )
    ):
        return _tls_error(node, exc)
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused(
            f"connection refused by {where}: nothing listens on port {node.port}",
            node=node,
            hint="is the peer's DICOM service running, and is the port right?",
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return ConnectTimeout(
            f"no TCP connection to {where} within {timeout:g} s",
            node=node,
            hint="the host may be down, or a firewall drops the traffic; check host and port",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return NetworkError(
            f"host {node.host!r} is unreachable ({exc.strerror})",
            node=node,
            hint="check the address and the network route (several interfaces?)",
        )
    detail = f" ({exc})" if exc is not None else ""
    return NetworkError(
        f"could not connect to {where}{detail}",
        node=node,
        hint="check host, port and firewall",
    )


def rejected_error(node: Node, result: int, source: int, reason: int) -> AssociationRejected:
    """The peer sent A-ASSOCIATE-RJ."""
    r = decode_reject(result, source, reason)
    kind = "transient" if r.transient else "permanent"
    return AssociationRejected(
        f"{node.address} rejected the association ({kind}): {r.text}",
        node=node,
        hint=r.hint,
        result=result,
        source=source,
        reason=reason,
    )


def aborted_error(node: Node, *, timed_out: bool, timeout: float) -> AssociationAborted:
    """The association was aborted, or the peer never answered the request."""
    if timed_out:
        return AssociationAborted(
            f"{node.address} accepted the TCP connection but did not answer the association "
            f"request within {timeout:g} s",
            node=node,
            hint="the port may not be a DICOM port, the peer may be overloaded, or expect TLS",
        )
    return AssociationAborted(
        f"{node.address} aborted the association (or closed the connection) without an answer",
        node=node,
        hint="the peer may refuse our AE title or host silently, expect TLS, or not speak DICOM",
    )


_WORKLIST = "1.2.840.10008.5.1.4.31"
"""Modality Worklist Information Model - FIND."""


def no_context_error(node: Node, abstract_syntaxes: list[str]) -> NoAcceptedContext:
    """The peer accepted none of the proposed presentation contexts."""
    from pydicom.uid import UID

    names = ", ".join(sorted({UID(s).name for s in abstract_syntaxes}))
    if set(abstract_syntaxes) == {_WORKLIST}:
        return NoAcceptedContext(
            f"{node.address} does not serve a modality worklist (it refused the Modality "
            "Worklist Information Model)",
            node=node,
            hint="query the worklist on the node that schedules the procedures (the RIS, or "
            "a PACS with a worklist plugin), or check its configuration for our AE title",
        )
    return NoAcceptedContext(
        f"{node.address} accepted none of the proposed presentation contexts ({names})",
        node=node,
        hint="the peer does not offer this service to us, or not with these transfer syntaxes",
    )
