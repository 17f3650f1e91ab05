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
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pynetdicom import evt

from dicomlab.core.header import scan_header
from dicomlab.core.logschema import SERVICES
from dicomlab.core.status import decode_reject, status_category
from dicomlab.log import writer as _writer

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

_LOCAL = threading.local()


def current_job() -> str | None:
    """The job id of the calling thread (set by transfer workers), if any."""
    return getattr(_LOCAL, "job_id", None)


@contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Associations opened by this thread inside the block carry ``job_id``."""
    before = current_job()
    _LOCAL.job_id = job_id
    try:
        yield
    finally:
        _LOCAL.job_id = before


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Record:
    where: Path
    row: dict[str, Any]
    ops: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    syntaxes: dict[int, str] = field(default_factory=dict)
    done: bool = False


def _new_row(role: str, tls: bool) -> dict[str, Any]:
    """The fields every association row starts with."""
    return {
        "association_id": uuid.uuid4().hex,
        "role": role,
        "tls": tls,
        "requested_at": _now(),
        "bytes_sent": 0,
        "bytes_received": 0,
        "job_id": current_job(),
    }


def _record(assoc: Any) -> _Record | None:
    rec: _Record | None = getattr(assoc, "_dicomlab_log", None)
    return rec if rec is not None and not rec.done else None


def attach(assoc: Any, role: str, tls: bool = False) -> None:
    """Start logging ``assoc`` (before it starts); a no-op when the log is off."""
    where = _writer.folder()
    if where is None or getattr(assoc, "_dicomlab_log", None) is not None:
        return
    assoc._dicomlab_log = _Record(where, _new_row(role, tls))
    for event, handler in _HANDLERS:
        assoc.bind(event, handler)


def connect_failed(assoc: Any, error: OSError) -> None:
    """A requestor's TCP connect failed: its association row (outcome ``failed``)."""
    rec = _record(assoc)
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
    row = _new_row("SCP", tls=True)
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
    row = _new_row("SCP", tls=False)
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


def _fill_peer(assoc: Any, rec: _Record) -> None:
    row = rec.row
    us, peer = (assoc.requestor, assoc.acceptor)
    if row["role"] == "SCP":
        us, peer = peer, us
    row["local_ae"] = _text(getattr(us, "ae_title", None))
    row["peer_ae"] = _text(getattr(peer, "ae_title", None))
    info = getattr(peer, "address_info", None)
    if info is not None:
        row["peer_host"] = str(getattr(info, "address", "")) or None
        port = getattr(info, "port", None)
        row["peer_port"] = int(port) if port else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip() or None


def _on_accepted(event: Any) -> None:
    assoc = event.assoc
    rec: _Record = assoc._dicomlab_log
    _fill_peer(assoc, rec)
    rec.row["established_at"] = _now()
    rec.row["contexts_proposed"] = len(assoc.requestor.requested_contexts)
    rec.row["contexts_accepted"] = len(assoc.accepted_contexts)
    peer = assoc.acceptor if rec.row["role"] == "SCU" else assoc.requestor
    rec.row["max_pdu"] = int(peer.maximum_length or 0)
    rec.syntaxes = {
        int(cx.context_id): str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
    }


def _on_rejected(event: Any) -> None:
    assoc = event.assoc
    rec: _Record = assoc._dicomlab_log
    _fill_peer(assoc, rec)
    rec.row["outcome"] = "rejected"
    rsp: Any = getattr(assoc.acceptor, "primitive", None)
    try:
        reason = decode_reject(int(rsp.result), int(rsp.result_source), int(rsp.diagnostic))
        rec.row["reject_reason"] = reason.text
    except (AttributeError, TypeError, ValueError):
        rec.row["reject_reason"] = "rejected"


def _on_released(event: Any) -> None:
    rec: _Record = event.assoc._dicomlab_log
    rec.row.setdefault("outcome", "released")


def _on_aborted(event: Any) -> None:
    rec: _Record = event.assoc._dicomlab_log
    rec.row.setdefault("outcome", "aborted")


_PDU_OUTCOME = {"A_RELEASE_RP": "released", "A_ABORT_RQ": "aborted"}


def _on_pdu(event: Any) -> None:
    """Release and abort seen at the PDU: before the connection closes (no race with it)."""
    outcome = _PDU_OUTCOME.get(type(event.pdu).__name__)
    if outcome is not None:
        event.assoc._dicomlab_log.row.setdefault("outcome", outcome)


def _on_data_sent(event: Any) -> None:
    event.assoc._dicomlab_log.row["bytes_sent"] += len(event.data)


def _on_data_recv(event: Any) -> None:
    event.assoc._dicomlab_log.row["bytes_received"] += len(event.data)


def _data_bytes(message: Any) -> int | None:
    data = getattr(message, "data_set", None)
    if data is not None and hasattr(data, "getbuffer"):
        with data.getbuffer() as view:
            return int(view.nbytes) or None
    path = getattr(message, "_data_set_path", None)
    if path:
        try:
            return int(os.stat(path[0]).st_size - path[1])
        except OSError:
            return None
    return None


_QR = ("C-FIND", "C-MOVE", "C-GET")
_STUDY_UID = ["StudyInstanceUID"]


def _identifier_study(message: Any, rec: _Record) -> str | None:
    data = getattr(message, "data_set", None)
    if data is None or not hasattr(data, "getvalue"):
        return None
    return _study_of(data.getvalue(), rec.syntaxes.get(int(message.context_id or 0)))


def _study_of(identifier: bytes, syntax: str | None) -> str | None:
    """The one Study Instance UID a query/retrieve identifier names, if it names one.

    Only this UID is read, by the fast header scan (a few microseconds for the small
    identifier); list and wildcard values are left out.
    """
    if syntax is None:
        return None
    values = scan_header(identifier, syntax, _STUDY_UID)
    uid = (values or {}).get("StudyInstanceUID", "")
    if not uid or "\\" in uid or "*" in uid or "?" in uid:
        return None
    return uid


def _dimse(event: Any, sent: bool) -> None:
    message = event.message
    name = type(message).__name__  # e.g. C_STORE_RQ
    service = name.rsplit("_", 1)[0].replace("_", "-")
    if service not in SERVICES:
        return
    rec: _Record = event.assoc._dicomlab_log
    cs = message.command_set
    if name.endswith("_RQ"):
        _start_op(
            rec,
            "SCU" if sent else "SCP",
            service,
            int(cs.MessageID),
            _text(cs.get("AffectedSOPClassUID")),
            _text(cs.get("AffectedSOPInstanceUID")),
            int(message.context_id or 0),
            _data_bytes(message) if service == "C-STORE" else None,
            _identifier_study(message, rec) if service in _QR else None,
        )
        return
    if "Status" not in cs:
        return
    counts = tuple(
        int(cs[kw].value) if kw in cs and cs[kw].value is not None else None
        for kw in _COUNTS.values()
    )
    role = "SCP" if sent else "SCU"
    comment = _text(cs.get("ErrorComment"))
    _response(rec, role, int(cs.MessageIDBeingRespondedTo), int(cs.Status), counts, comment)


_COUNTS = {
    "n_completed": "NumberOfCompletedSuboperations",
    "n_failed": "NumberOfFailedSuboperations",
    "n_warning": "NumberOfWarningSuboperations",
}


def _response(
    rec: _Record,
    role: str,
    message_id: int,
    status: int,
    counts: tuple[int | None, ...],
    comment: str | None = None,
) -> None:
    """A response to the operation ``(role, message_id)``: pending ones count, a final
    one ends it (its error comment, if any, becomes the row's ``error``)."""
    op = rec.ops.get((role, message_id))
    if op is None:
        return
    if comment:
        op["error"] = comment
    for column, value in zip(_COUNTS, counts, strict=False):
        if value is not None:
            op[column] = value
    category = status_category(status)
    if category == "pending":
        if op["service"] == "C-FIND":
            op["n_matches"] += 1
        return
    del rec.ops[(role, message_id)]
    _end_op(rec, op, status, category)


def _start_op(
    rec: _Record,
    role: str,
    service: str,
    message_id: int,
    sop_class: str | None,
    sop_instance: str | None,
    context_id: int,
    nbytes: int | None,
    study: str | None = None,
) -> None:
    rec.ops[(role, message_id)] = {
        "association_id": rec.row["association_id"],
        "role": role,
        "service": service,
        "message_id": message_id,
        "sop_class_uid": sop_class or None,
        "sop_instance_uid": sop_instance or None,
        "transfer_syntax": rec.syntaxes.get(context_id),
        "started_at": _now(),
        "bytes": nbytes,
        "job_id": rec.row["job_id"],
        "n_matches": 0 if service == "C-FIND" else None,
        "study_instance_uid": study,
    }


def direct_request(
    assoc: Any,
    role: str,
    service: str,
    message_id: int,
    sop_class: str | None,
    sop_instance: str | None,
    context_id: int,
    nbytes: int | None = None,
    identifier: bytes | None = None,
) -> None:
    """A request handled outside pynetdicom's DIMSE layer (the direct path); for C-FIND
    and C-GET ``identifier`` is the encoded query (its study UID is logged)."""
    rec = _record(assoc)
    if rec is None:
        return
    study = _study_of(identifier, rec.syntaxes.get(context_id)) if identifier else None
    _start_op(rec, role, service, message_id, sop_class, sop_instance, context_id, nbytes, study)


def direct_response(
    assoc: Any,
    role: str,
    message_id: int,
    status: int,
    counts: tuple[int | None, ...] = (),
    comment: str | None = None,
) -> None:
    """A response to a request begun with :func:`direct_request` (``counts``: completed,
    failed and warning sub-operations, where the response carries them; ``comment``: its
    Error Comment)."""
    rec = _record(assoc)
    if rec is not None:
        _response(rec, role, message_id, status, counts, comment)


def count_bytes(assoc: Any, sent: int = 0, received: int = 0) -> None:
    """Bytes moved by the direct path (pynetdicom's data events are not fired there)."""
    rec = _record(assoc)
    if rec is not None:
        rec.row["bytes_sent"] += sent
        rec.row["bytes_received"] += received


def observers() -> frozenset[Any]:
    """The handlers :func:`attach` binds (the direct path checks nothing else listens)."""
    return _OBSERVERS


def _end_op(rec: _Record, op: dict[str, Any], status: int | None, category: str | None) -> None:
    ended = _now()
    op.update(
        ended_at=ended,
        duration_s=(ended - op["started_at"]).total_seconds(),
        status=status,
        status_category=category,
    )
    _writer.writer().add("operations", op, rec.where)


def _on_dimse_sent(event: Any) -> None:
    _dimse(event, sent=True)


def _on_dimse_recv(event: Any) -> None:
    _dimse(event, sent=False)


def _on_conn_close(event: Any) -> None:
    rec = _record(event.assoc)
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


def _finish(rec: _Record) -> None:
    rec.done = True
    for op in list(rec.ops.values()):
        op["error"] = f"association {rec.row['outcome']} before the final response"
        _end_op(rec, op, None, None)
    rec.ops.clear()
    rec.row["ended_at"] = _now()
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
