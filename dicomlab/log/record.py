"""The network log's record of one association, kept on the association while it runs.

:mod:`dicomlab.log.capture` starts it and writes the association row when it ends;
:mod:`dicomlab.log.operations` adds the DIMSE operations to it. Also here: the job a
worker thread is running (its rows carry the job id).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "Record",
    "current_job",
    "current_redaction",
    "job_context",
    "new_row",
    "now",
    "record_of",
    "redacting",
    "text",
]

ATTRIBUTE = "_dicomlab_log"
"""The association attribute holding its :class:`Record`."""

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


Redaction = Callable[[str], str]


def current_redaction() -> Redaction | None:
    """How the calling thread's log rows rewrite UIDs (a de-identifying transfer's new
    UIDs), if they do."""
    return getattr(_LOCAL, "redact", None)


@contextmanager
def redacting(redact: Redaction | None) -> Iterator[None]:
    """Associations opened and requests made by this thread inside the block log the
    UIDs ``redact`` gives (the de-identified ones), never the originals."""
    before = current_redaction()
    _LOCAL.redact = redact
    try:
        yield
    finally:
        _LOCAL.redact = before


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Record:
    """An association's row so far, its operations in progress and its contexts' syntaxes."""

    where: Path
    row: dict[str, Any]
    ops: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    syntaxes: dict[int, str] = field(default_factory=dict)
    done: bool = False
    redact: Redaction | None = None
    """Rewrites the UIDs of this association's operation rows (see :func:`redacting`)."""


def new_row(role: str, tls: bool) -> dict[str, Any]:
    """The fields every association row starts with."""
    return {
        "association_id": uuid.uuid4().hex,
        "role": role,
        "tls": tls,
        "requested_at": now(),
        "bytes_sent": 0,
        "bytes_received": 0,
        "job_id": current_job(),
    }


def record_of(assoc: Any) -> Record | None:
    """The association's record while it is being logged (None: not logged, or ended)."""
    rec: Record | None = getattr(assoc, ATTRIBUTE, None)
    return rec if rec is not None and not rec.done else None


def text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip() or None
