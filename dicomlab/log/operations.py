"""The network log's operation rows: one per DIMSE operation, from its request to its
final response, whether pynetdicom or the direct path handled it.

Only command sets are read (pynetdicom has decoded them already), and for C-FIND,
C-GET and C-MOVE the one Study Instance UID the identifier names; nothing
patient-identifying.
"""

from __future__ import annotations

import os
from typing import Any

from dicomlab.core.header import scan_header
from dicomlab.core.logschema import DIMSE_SERVICES
from dicomlab.core.status import status_category
from dicomlab.log import writer as _writer
from dicomlab.log.record import ATTRIBUTE, Record, now, record_of, text

__all__ = ["direct_request", "direct_response", "end_op", "on_dimse"]


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


def _identifier_study(message: Any, rec: Record) -> str | None:
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


def on_dimse(event: Any, sent: bool) -> None:
    """A DIMSE message pynetdicom sent or received: a request starts an operation, a
    response counts or ends it."""
    message = event.message
    name = type(message).__name__  # e.g. C_STORE_RQ
    service = name.rsplit("_", 1)[0].replace("_", "-")
    if service not in DIMSE_SERVICES:
        return
    rec: Record = getattr(event.assoc, ATTRIBUTE)
    cs = message.command_set
    if name.endswith("_RQ"):
        _start_op(
            rec,
            "SCU" if sent else "SCP",
            service,
            int(cs.MessageID),
            text(cs.get("AffectedSOPClassUID") or cs.get("RequestedSOPClassUID")),
            text(cs.get("AffectedSOPInstanceUID")),
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
    comment = text(cs.get("ErrorComment"))
    _response(rec, role, int(cs.MessageIDBeingRespondedTo), int(cs.Status), counts, comment)


_COUNTS = {
    "n_completed": "NumberOfCompletedSuboperations",
    "n_failed": "NumberOfFailedSuboperations",
    "n_warning": "NumberOfWarningSuboperations",
}


def _response(
    rec: Record,
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
    end_op(rec, op, status, category)


def _start_op(
    rec: Record,
    role: str,
    service: str,
    message_id: int,
    sop_class: str | None,
    sop_instance: str | None,
    context_id: int,
    nbytes: int | None,
    study: str | None = None,
) -> None:
    if rec.redact is not None:
        sop_instance = rec.redact(sop_instance) if sop_instance else sop_instance
        study = rec.redact(study) if study else study
    rec.ops[(role, message_id)] = {
        "association_id": rec.row["association_id"],
        "role": role,
        "service": service,
        "message_id": message_id,
        "sop_class_uid": sop_class or None,
        "sop_instance_uid": sop_instance or None,
        "transfer_syntax": rec.syntaxes.get(context_id),
        "started_at": now(),
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
    rec = record_of(assoc)
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
    rec = record_of(assoc)
    if rec is not None:
        _response(rec, role, message_id, status, counts, comment)


def end_op(rec: Record, op: dict[str, Any], status: int | None, category: str | None) -> None:
    ended = now()
    op.update(
        ended_at=ended,
        duration_s=(ended - op["started_at"]).total_seconds(),
        status=status,
        status_category=category,
    )
    _writer.writer().add("operations", op, rec.where)
