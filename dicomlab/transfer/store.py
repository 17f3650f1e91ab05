"""Send files, folders, datasets or a LocalPACS selection to a node (C-STORE)."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext, build_context

from dicomlab.core import commitment
from dicomlab.core import transcode as transcode_
from dicomlab.core.call import Call
from dicomlab.core.indexrow import HeaderError, file_header, prefix_header, prefix_uids
from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import STORE
from dicomlab.core.status import decode_status, status_category
from dicomlab.errors import DicomlabError, ValidationError
from dicomlab.net import commit as commit_scu
from dicomlab.net import dimse
from dicomlab.net.association import open_association
from dicomlab.server.localpacs import ensure_listener
from dicomlab.transfer.job import Job, run_items

__all__ = ["STORE_COLUMNS", "Source", "source_row", "sources", "store"]

log = logging.getLogger(__name__)

STORE_COLUMNS = STORE.names
"""The store outcome table's columns (dtypes: :data:`dicomlab.core.outcomes.STORE`)."""


@dataclass(frozen=True, slots=True)
class Source:
    """One instance to send: a file (its header read) or a data set; ``error`` when it
    cannot be sent (not DICOM, unreadable)."""

    path: str | None
    dataset: Dataset | None
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    size: int
    error: str | None = None

    @property
    def uid(self) -> str:
        return self.sop_instance or (self.path or "")


def sources(what: Any) -> list[Source]:
    """Everything to send, each read once (header only for files)."""
    if isinstance(what, pd.DataFrame):
        if "path" not in what.columns:
            raise ValidationError("a DataFrame to store needs a 'path' column (local.instances())")
        what = list(what["path"])
    if isinstance(what, Dataset | str | os.PathLike):
        what = [what]
    out: list[Source] = []
    for entry in what:
        if isinstance(entry, Dataset):
            ts = str(
                getattr(getattr(entry, "file_meta", None), "TransferSyntaxUID", "")
                or ExplicitVRLittleEndian
            )
            out.append(
                Source(None, entry, str(entry.SOPClassUID), str(entry.SOPInstanceUID), ts, 0)
            )
            continue
        p = Path(entry)
        if not p.exists():
            raise ValidationError(f"{str(p)!r} does not exist")
        for f in [str(p)] if p.is_file() else _files(str(p)):
            out.append(_read_source(f))
    return out


def _files(folder: str) -> list[str]:
    """The files under ``folder``, in path order (symlinked folders not entered, as
    ``Path.rglob``), by ``os.scandir``: no stat per file."""
    found: list[str] = []
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file():
                    found.append(entry.path)
    return sorted(found, key=lambda path: path.split(os.sep))


_START_BYTES = 8 * 1024
"""Bytes read first to find a file's UIDs (enough for most headers)."""
_HEAD_BYTES = 64 * 1024
"""Bytes read to find a file's header when its start was not enough; the whole file
only when the header is longer."""


def _read_source(path: str) -> Source:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(_START_BYTES)
            uids = prefix_uids(head, whole=len(head) >= size)
            if uids is not None:
                return Source(path, None, *uids, size)
            head += fh.read(_HEAD_BYTES - len(head))
            fast = prefix_header(head, whole=len(head) >= size)
            if fast is None:
                head += fh.read()
        row, ts = fast if fast is not None else file_header(head)
        return Source(path, None, row["SOPClassUID"], row["SOPInstanceUID"], ts, size)
    except (InvalidDicomError, HeaderError, OSError, ValueError) as exc:
        reason = "not a DICOM file" if isinstance(exc, InvalidDicomError) else str(exc)
        return Source(path, None, "", "", "", 0, error=reason)


def _contexts(sources: list[Source]) -> list[PresentationContext]:
    """Per SOP class, one context for the files' own syntaxes, one uncompressed and one
    lossless compressed (see :func:`transcode.offered`): the peer can accept each file's
    own syntax (sent as is, no re-encoding) while a conversion stays possible."""
    own: dict[str, list[str]] = {}
    for s in sources:
        syntaxes = own.setdefault(s.sop_class, [])
        if s.transfer_syntax and s.transfer_syntax not in syntaxes:
            syntaxes.append(s.transfer_syntax)
    out = []
    for sop_class, syntaxes in own.items():
        for group in transcode_.offered(syntaxes):
            cx = PresentationContext()
            cx.abstract_syntax = sop_class
            cx.transfer_syntax = group  # type: ignore[assignment]
            out.append(cx)
    return out


class _Context:
    def __init__(
        self,
        node: Node,
        ours: str,
        progress: Callable[[int], None],
        transcode: bool,
        commit: float | None = None,
        book: NodeBook | None = None,
    ) -> None:
        self.node, self.ours, self.progress = node, ours, progress
        self.book = book  # ours, for the LocalPACS a commitment report may reach
        self.transcode = transcode
        self.commit = commit  # seconds to wait for a storage commitment report
        self.cancel = threading.Event()


@dataclass(frozen=True, slots=True)
class _Batch:
    """Sources sent on one association (at most 128 SOP classes)."""

    sources: tuple[Source, ...]

    @property
    def uid(self) -> str:
        return f"{len(self.sources)} instances"


def _payload(src: Source, accepted: dict[str, set[str]], transcode: bool) -> tuple[Any, str] | str:
    """What to send for ``src`` given the accepted contexts, or an error text."""
    syntaxes = accepted.get(src.sop_class)
    if not syntaxes:
        return f"the peer accepted no context for {UID(src.sop_class).name}"
    what = src.path if src.path else src.dataset
    assert what is not None
    return transcode_.payload(what, src.transfer_syntax, syntaxes, transcode, src.sop_class)


def _send_batch(ctx: _Context, batch: _Batch) -> list[dict[str, Any]]:
    contexts = _contexts(list(batch.sources))
    if ctx.commit is not None:
        contexts.append(build_context(commitment.PUSH_MODEL))
    with open_association(ctx.node, contexts, calling_ae=ctx.ours) as op:
        rows = _store_all(ctx, batch, op.assoc)
        if ctx.commit is not None:
            _commit(ctx, op.assoc, rows)
    return rows


def _commit(ctx: _Context, assoc: Any, rows: list[dict[str, Any]]) -> None:
    """Ask for storage commitment of the rows stored, and mark each row with the answer."""
    stored = [r for r in rows if r["status"] is not None and not r["error"]]
    if not stored:
        return
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    if str(commitment.PUSH_MODEL) not in accepted:
        error = f"{ctx.node.address} does not offer storage commitment (Push Model refused)"
    elif not assoc.is_established:
        error = "the association broke before the commitment request"
    else:
        assert ctx.commit is not None
        refs = [(str(r["SOPClassUID"]), str(r["SOPInstanceUID"])) for r in stored]
        ensure_listener(ctx.book)  # where a report on a new association arrives
        got = commit_scu.request(assoc, ctx.node, refs, ctx.commit)
        for r in stored:
            r.update(got.verdict(str(r["SOPInstanceUID"])))
        return
    for r in stored:
        r.update(committed=False, commit_error=error)


def _store_all(ctx: _Context, batch: _Batch, assoc: Any) -> list[dict[str, Any]]:
    """Send ``batch`` on ``assoc``, one outcome row per source.

    Sent one at a time (the peer answers each before the next goes), and while the peer
    works on one, the previous one's outcome is written and the next file is read: that
    work leaves the gap between a response and the next request."""
    rows: list[dict[str, Any]] = []
    sources = batch.sources
    with dimse.Storer(assoc, ctx.node) as storer:
        accepted: dict[str, set[str]] = {}
        context_ids: dict[tuple[str, str], int] = {}
        for cx in assoc.accepted_contexts:
            key = (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            accepted.setdefault(key[0], set()).add(key[1])
            context_ids.setdefault(key, int(cx.context_id or 0))
        ahead: dict[int, tuple[tuple[Any, str] | str, Any]] = {}
        unfinished: list[Callable[[], None]] = []  # the previous instance's outcome

        def prepare(k: int) -> tuple[tuple[Any, str] | str, Any]:
            payload = _payload(sources[k], accepted, ctx.transcode)
            read = None
            if not isinstance(payload, str) and isinstance(payload[0], str):
                read = storer.read(payload[0])
            return payload, read

        def flush() -> None:
            while unfinished:
                unfinished.pop(0)()

        def meanwhile(k: int) -> None:
            flush()
            if k + 1 < len(sources) and not ctx.cancel.is_set():
                ahead[k + 1] = prepare(k + 1)

        def finish(row: dict[str, Any], reply: dimse.Reply, seconds: float) -> None:
            if reply.status is not None:
                info = decode_status(reply.status)
                row.update(status=reply.status, status_text=str(info))
                if info.category not in ("success", "warning"):
                    row["error"] = str(info) + (f" ({reply.comment})" if reply.comment else "")
            else:
                row["error"] = reply.problem(ctx.node)
            row["duration_s"] = seconds
            rows.append(row)
            ctx.progress(1)

        for k, src in enumerate(sources):
            row = source_row(ctx.node, src)
            if ctx.cancel.is_set():
                flush()
                row["error"] = "cancelled"
                rows.append(row)
                continue
            t0 = time.perf_counter()
            prepared = ahead.pop(k, None)
            payload, read = prepared if prepared is not None else prepare(k)
            if isinstance(payload, str):
                flush()
                row.update(error=payload, duration_s=time.perf_counter() - t0)
                rows.append(row)
                ctx.progress(1)
                continue
            data, ts = payload
            row["sent_as"] = ts
            row["attempts"] = 1
            reply = storer.store(
                data,
                src.sop_class,
                src.sop_instance,
                context_ids.get((src.sop_class, ts)),
                read,
                functools.partial(meanwhile, k),
            )
            seconds = time.perf_counter() - t0
            if reply.status is not None and status_category(reply.status) != "failure":
                unfinished.append(functools.partial(finish, row, reply, seconds))
                continue
            finish(row, reply, seconds)
            if row["error"] and storer.broken:
                break  # the association is gone: the rest gets a fresh one below
        flush()
    return rows


def source_row(node: Node, src: Source) -> dict[str, Any]:
    """The outcome row of ``src`` before it is sent (whatever the protocol)."""
    row: dict[str, Any] = dict.fromkeys(STORE_COLUMNS)
    row.update(
        node=node.name,
        path=src.path,
        SOPInstanceUID=src.sop_instance or None,
        SOPClassUID=src.sop_class or None,
        transfer_syntax=src.transfer_syntax or None,
        bytes=src.size,
        attempts=0,
    )
    return row


def _batches(sources: list[Source], n: int) -> list[_Batch]:
    """Split into ``n`` batches of similar size, each under the 128-context limit."""
    n = max(1, min(n, len(sources)))
    parts: list[list[Source]] = [[] for _ in range(n)]
    for i, s in enumerate(sources):
        parts[i % n].append(s)
    out = []
    for part in parts:
        chunk: list[Source] = []
        classes: set[str] = set()
        for s in part:
            if s.sop_class not in classes and len(classes) >= 40:  # 3 contexts each, <= 128
                out.append(_Batch(tuple(chunk)))
                chunk, classes = [], set()
            chunk.append(s)
            classes.add(s.sop_class)
        if chunk:
            out.append(_Batch(tuple(chunk)))
    return out


def store(
    call: Call,
    what: Any,
    max_connections: int | None,
    wait: bool,
    transcode: bool = True,
    commit: float | None = None,
) -> pd.DataFrame | Job:
    """C-STORE ``what`` to ``call.node`` over at most ``max_connections`` associations;
    one outcome row per file (``dl.store`` says what ``what`` may be; ``transcode``:
    see :mod:`dicomlab.core.transcode`; ``commit``: seconds to wait for a storage
    commitment report, asked on each association once its instances are stored)."""
    target, ours, progress = call.node, call.ours, call.progress
    found = sources(what)
    good = [s for s in found if s.error is None]
    bad_rows = []
    for s in found:
        if s.error is not None:
            row = source_row(target, s)
            row["error"] = s.error
            bad_rows.append(row)
    batches = _batches(good, max_connections or target.max_connections)

    def work(ctx: _Context, batch: _Batch) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        remaining = list(batch.sources)
        error: str | None = None
        tries = 0
        while remaining and tries < 3:
            tries += 1
            try:
                sent = _send_batch(ctx, _Batch(tuple(remaining)))
            except DicomlabError as exc:
                error = str(exc)
                if tries == 3 or ctx.cancel.is_set():
                    break
                time.sleep(0.5 * tries)
                continue
            error = None
            rows.extend(sent)
            done = {r["SOPInstanceUID"] for r in sent}
            remaining = [s for s in remaining if s.sop_instance not in done]
            if ctx.cancel.is_set():
                break
        # One row per file, always: files never sent say why (the last error, the
        # association breaking on every attempt, or the job being cancelled).
        if error is None:
            error = (
                "cancelled before it was sent"
                if ctx.cancel.is_set()
                else "not sent: the association broke on each of 3 attempts"
            )
        for s in remaining:
            row = source_row(target, s)
            row.update(error=error, attempts=tries)
            rows.append(row)
        return rows

    job = run_items(
        batches,
        lambda prog: _Context(target, ours, prog, transcode, commit, call.book),
        work,
        STORE,
        workers=len(batches) or 1,
        total=len(good),
        desc=f"store to {target.name}",
        progress=progress,
        extra_rows=bad_rows,
    )
    return job.result() if wait else job
