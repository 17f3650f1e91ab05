"""Capture: pynetdicom events of one association -> rows of the network log.

:func:`attach` binds a handful of light handlers to an association before it
starts (dicomlab does this for every association it makes or accepts). They keep a
small record on the association and hand finished rows to the background writer;
they never raise into pynetdicom and never decode a data set (only the command
sets pynetdicom has already decoded), so the cost per message is a few dictionary
operations. Nothing patient-identifying is read: UIDs, AE titles, hosts, statuses,
counts, bytes and timings only.
"""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom import evt

from dicomlab.core.status import decode_reject
from dicomlab.log import writer as _writer
from dicomlab.log.operations import direct_request, direct_response, end_op, on_dimse
from dicomlab.log.record import (
    ATTRIBUTE,
    Record,
    current_job,
    current_redaction,
    job_context,
    new_row,
    now,
    record_of,
    text,
)

__all__ = [
    "attach",
    "connect_failed",
    "connections_dropped",
    "count_bytes",
    "current_job",
    "direct_request",
    "direct_response",
    "handshake_failed",
    "job_context",
    "observers",
]

log = logging.getLogger(__name__)


def attach(assoc: Any, role: str, tls: bool = False) -> None:
    """Start logging ``assoc`` (before it starts); a no-op when the log is off."""
    where = _writer.folder()
    if where is None or getattr(assoc, ATTRIBUTE, None) is not None:
        return
    setattr(assoc, ATTRIBUTE, Record(where, new_row(role, tls), redact=current_redaction()))
    for event, handler in _HANDLERS:
        assoc.bind(event, handler)


def connect_failed(assoc: Any, error: OSError) -> None:
    """A requestor's TCP connect failed: its association row (outcome ``failed``)."""
    rec = record_of(assoc)
    if rec is None:
        return
    _fill_peer(assoc, rec)
    rec.row["outcome"] = "failed"
    rec.row["error"] = f"{type(error).__name__}: {error}"
    _finish(rec)


def handshake_failed(local_ae: str, address: Any, error: BaseException) -> None:
    """A client of our TLS port failed its handshake: an SCP row (outcome ``failed``).

    No association exists yet, so the row has no peer AE title, only the address.
    """
    where = _writer.folder()
    if where is None:
        return
    host, port = (address[0], address[1]) if isinstance(address, tuple) else (None, None)
    row = new_row("SCP", tls=True)
    row.update(
        local_ae=local_ae,
        peer_host=str(host) if host else None,
        peer_port=int(port) if port else None,
        ended_at=row["requested_at"],
        outcome="failed",
        error=f"TLS handshake: {type(error).__name__}: {error}",
    )
    _writer.writer().add("associations", row, where)


def connections_dropped(local_ae: str, host: str, n: int, why: str) -> None:
    """``n`` connections from ``host`` dropped before asking for an association (a flood,
    idle or crowded-out connections): one summary SCP row (outcome ``failed``), so that a
    flood of any size costs the log a row per address and minute."""
    where = _writer.folder()
    if where is None:
        return
    row = new_row("SCP", tls=False)
    row.update(
        local_ae=local_ae,
        peer_host=host or None,
        ended_at=row["requested_at"],
        outcome="failed",
        error=f"dropped {n} connection{'s' if n != 1 else ''} before any A-ASSOCIATE-RQ: {why}",
    )
    _writer.writer().add("associations", row, where)


def _safe(handler: Any) -> Any:
    def call(event: Any) -> None:
        try:
            handler(event)
        except Exception:  # the log must never break a transfer
            log.debug("network log: capture failed", exc_info=True)

    call.__name__ = handler.__name__
    return call


def _fill_peer(assoc: Any, rec: Record) -> None:
    row = rec.row
    us, peer = (assoc.requestor, assoc.acceptor)
    if row["role"] == "SCP":
        us, peer = peer, us
    row["local_ae"] = text(getattr(us, "ae_title", None))
    row["peer_ae"] = text(getattr(peer, "ae_title", None))
    info = getattr(peer, "address_info", None)
    if info is not None:
        row["peer_host"] = str(getattr(info, "address", "")) or None
        port = getattr(info, "port", None)
        row["peer_port"] = int(port) if port else None


def _on_accepted(event: Any) -> None:
    assoc = event.assoc
    rec: Record = getattr(assoc, ATTRIBUTE)
    _fill_peer(assoc, rec)
    rec.row["established_at"] = now()
    rec.row["contexts_proposed"] = len(assoc.requestor.requested_contexts)
    rec.row["contexts_accepted"] = len(assoc.accepted_contexts)
    peer = assoc.acceptor if rec.row["role"] == "SCU" else assoc.requestor
    rec.row["max_pdu"] = int(peer.maximum_length or 0)
    rec.syntaxes = {
        int(cx.context_id): str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
    }


def _on_rejected(event: Any) -> None:
    assoc = event.assoc
    rec: Record = getattr(assoc, ATTRIBUTE)
    _fill_peer(assoc, rec)
    rec.row["outcome"] = "rejected"
    rsp: Any = getattr(assoc.acceptor, "primitive", None)
    try:
        reason = decode_reject(int(rsp.result), int(rsp.result_source), int(rsp.diagnostic))
        rec.row["reject_reason"] = reason.text
    except (AttributeError, TypeError, ValueError):
        rec.row["reject_reason"] = "rejected"


def _on_released(event: Any) -> None:
    rec: Record = getattr(event.assoc, ATTRIBUTE)
    rec.row.setdefault("outcome", "released")


def _on_aborted(event: Any) -> None:
    rec: Record = getattr(event.assoc, ATTRIBUTE)
    rec.row.setdefault("outcome", "aborted")


_PDU_OUTCOME = {"A_RELEASE_RP": "released", "A_ABORT_RQ": "aborted"}


def _on_pdu(event: Any) -> None:
    """Release and abort seen at the PDU: before the connection closes (no race with it)."""
    outcome = _PDU_OUTCOME.get(type(event.pdu).__name__)
    if outcome is not None:
        getattr(event.assoc, ATTRIBUTE).row.setdefault("outcome", outcome)


def _on_data_sent(event: Any) -> None:
    getattr(event.assoc, ATTRIBUTE).row["bytes_sent"] += len(event.data)


def _on_data_recv(event: Any) -> None:
    getattr(event.assoc, ATTRIBUTE).row["bytes_received"] += len(event.data)


def count_bytes(assoc: Any, sent: int = 0, received: int = 0) -> None:
    """Bytes moved by the direct path (pynetdicom's data events are not fired there)."""
    rec = record_of(assoc)
    if rec is not None:
        rec.row["bytes_sent"] += sent
        rec.row["bytes_received"] += received


def observers() -> frozenset[Any]:
    """The handlers :func:`attach` binds (the direct path checks nothing else listens)."""
    return _OBSERVERS


def _on_dimse_sent(event: Any) -> None:
    on_dimse(event, sent=True)


def _on_dimse_recv(event: Any) -> None:
    on_dimse(event, sent=False)


def _on_conn_close(event: Any) -> None:
    rec = record_of(event.assoc)
    if rec is None:
        return
    if "outcome" not in rec.row:
        assoc = event.assoc
        if assoc.is_released:
            rec.row["outcome"] = "released"
        elif rec.row.get("established_at") is None:
            rec.row["outcome"] = "failed"
        else:
            rec.row["outcome"] = "aborted"
    if rec.row.get("peer_ae") is None and rec.row.get("local_ae") is None:
        _fill_peer(event.assoc, rec)
    _finish(rec)


def _finish(rec: Record) -> None:
    rec.done = True
    for op in list(rec.ops.values()):
        op["error"] = f"association {rec.row['outcome']} before the final response"
        end_op(rec, op, None, None)
    rec.ops.clear()
    rec.row["ended_at"] = now()
    _writer.writer().add("associations", rec.row, rec.where)


_HANDLERS = [
    (evt.EVT_ACCEPTED, _safe(_on_accepted)),
    (evt.EVT_REJECTED, _safe(_on_rejected)),
    (evt.EVT_RELEASED, _safe(_on_released)),
    (evt.EVT_ABORTED, _safe(_on_aborted)),
    (evt.EVT_PDU_RECV, _safe(_on_pdu)),
    (evt.EVT_PDU_SENT, _safe(_on_pdu)),
    (evt.EVT_DATA_SENT, _safe(_on_data_sent)),
    (evt.EVT_DATA_RECV, _safe(_on_data_recv)),
    (evt.EVT_DIMSE_SENT, _safe(_on_dimse_sent)),
    (evt.EVT_DIMSE_RECV, _safe(_on_dimse_recv)),
    (evt.EVT_CONN_CLOSE, _safe(_on_conn_close)),
]


_OBSERVERS = frozenset(handler for _, handler in _HANDLERS)
