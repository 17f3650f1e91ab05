"""STOW-RS: ``dl.store`` to a node's DICOMweb service, with the C-STORE outcome table.

The instances go as the bytes of their files (:mod:`dicomlab.web.stow`), in batches
(one ``multipart/related`` POST each, :data:`BATCH` at a time) over at most
``max_connections`` HTTP sessions on the transfer queue. Each row's status comes from
the server's answer (PS3.18 10.5.3): an instance in the Referenced SOP Sequence is
stored (0x0000, or 0xB000 when it carries a Warning Reason), one in the Failed SOP
Sequence failed with its Failure Reason, and one in neither was not acknowledged. A
transient HTTP failure (429, 503, ...) is tried again, waiting as long as the server
asked (``Retry-After``).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from dicomlab.core.call import Call
from dicomlab.core.outcomes import STORE
from dicomlab.core.status import decode_status
from dicomlab.errors import DICOMwebError
from dicomlab.transfer.job import Job, run_items
from dicomlab.transfer.store import Source, source_row, sources
from dicomlab.web import stow
from dicomlab.web.session import Clients

__all__ = ["BATCH", "store"]

BATCH = 20
"""Instances per STOW-RS request."""
_TRIES = 3
_NOT_ACKNOWLEDGED = 0xC000


class _Context:
    def __init__(self, call: Call, progress: Callable[[int], None]) -> None:
        self.call, self.progress = call, progress
        self.cancel = threading.Event()
        self.clients = Clients(call.node)


def _bytes(src: Source) -> bytes:
    """What is sent for ``src``: its file's bytes as they are, or a data set encoded."""
    if src.dataset is None:
        return Path(str(src.path)).read_bytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, src.dataset, enforce_file_format=True)
    return buffer.getvalue()


def _acknowledged(response: Dataset) -> dict[str, tuple[int, str | None]]:
    """SOP Instance UID -> (status, why) from a STOW-RS response."""
    out: dict[str, tuple[int, str | None]] = {}
    for item in response.get("ReferencedSOPSequence", []) or []:
        warning = item.get("WarningReason")
        status = 0xB000 if warning is not None else 0x0000
        why = f"stored with warning 0x{int(warning):04X}" if warning is not None else None
        out[str(item.ReferencedSOPInstanceUID)] = (status, why)
    for item in response.get("FailedSOPSequence", []) or []:
        reason = int(item.get("FailureReason") or 0xC000)
        out[str(item.ReferencedSOPInstanceUID)] = (
            reason,
            f"the server refused it: {decode_status(reason)}",
        )
    return out


def _counts(response: Dataset) -> dict[str, int]:
    """A STOW-RS answer's counts for its log row."""
    return {
        "n_completed": len(response.get("ReferencedSOPSequence", []) or []),
        "n_failed": len(response.get("FailedSOPSequence", []) or []),
    }


def _send(ctx: _Context, batch: list[Source]) -> list[dict[str, Any]]:
    call = ctx.call
    rows = [source_row(call.node, s) for s in batch]
    for row in rows:
        row["sent_as"] = row["transfer_syntax"]
    t0 = time.perf_counter()
    error: DICOMwebError | None = None
    for attempt in range(1, _TRIES + 1):
        for row in rows:
            row["attempts"] = attempt
        web = ctx.clients.get()
        try:
            request = partial(stow.post, web, [_bytes(s) for s in batch])
            response = web.request("STOW-RS", request, _counts)
            error = None
            break
        except DICOMwebError as exc:
            error = exc
            if not exc.transient or attempt == _TRIES or ctx.cancel.is_set():
                break
            if ctx.cancel.wait(max(0.5 * attempt, min(exc.retry_after_s or 0.0, 60.0))):
                break
    duration = (time.perf_counter() - t0) / max(1, len(batch))
    answers = _acknowledged(response) if error is None else {}
    for row in rows:
        row["duration_s"] = duration
        if error is not None:
            row["error"] = str(error)
            continue
        status, why = answers.get(
            str(row["SOPInstanceUID"]),
            (_NOT_ACKNOWLEDGED, "the server's answer does not mention this instance"),
        )
        row.update(status=status, status_text=str(decode_status(status)), error=why)
        if status == 0xB000:
            row["error"] = None  # stored: the warning is in status_text
    ctx.progress(len(batch))
    return rows


def store(call: Call, what: Any, max_connections: int | None, wait: bool) -> pd.DataFrame | Job:
    """STOW-RS ``what`` to ``call.node`` (``dl.store`` says what ``what`` may be)."""
    found = sources(what)
    good = [s for s in found if s.error is None]
    bad_rows = []
    for s in found:
        if s.error is not None:
            row = source_row(call.node, s)
            row["error"] = s.error
            bad_rows.append(row)
    batches = [good[i : i + BATCH] for i in range(0, len(good), BATCH)]
    contexts: list[_Context] = []

    def make_context(progress: Callable[[int], None]) -> _Context:
        contexts.append(_Context(call, progress))
        return contexts[-1]

    def finish() -> None:
        for ctx in contexts:
            ctx.clients.close()

    job = run_items(
        batches,
        make_context,
        _send,
        STORE,
        workers=max_connections or call.node.max_connections,
        total=len(good),
        desc=f"STOW-RS to {call.node.name}",
        progress=call.progress,
        on_finish=finish,
        extra_rows=bad_rows,
    )
    return job.result() if wait else job
