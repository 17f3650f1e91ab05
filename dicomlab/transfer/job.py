"""A transfer job: a queue of items served by at most N worker threads, with progress.

The job owns its threads: they end when the queue is empty or the job is
cancelled; :meth:`Job.result` waits for them (Ctrl-C cancels and returns what
finished).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pandas as pd

from dicomlab.core.outcomes import OutcomeSchema, progress_frame
from dicomlab.log import capture
from dicomlab.transfer.journal import Journal
from dicomlab.transfer.pace import Pace

__all__ = ["Durable", "Job", "run_items"]

log = logging.getLogger(__name__)


class _HasCancel(Protocol):
    cancel: threading.Event


@dataclass(frozen=True, slots=True)
class Durable:
    """A job written down as it runs: where, its id, the rows kept from an earlier run."""

    journal: Journal
    job_id: str
    prior: Mapping[int, Any] = field(default_factory=dict)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool, unit: str) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, desc=desc, unit=unit)


class Job:
    """A running transfer. Usable from a widget: poll :attr:`progress`, call :meth:`cancel`."""

    def __init__(
        self,
        items: Sequence[Any],
        schema: OutcomeSchema,
        extra_rows: Sequence[dict[str, Any]] = (),
        job_id: str | None = None,
    ) -> None:
        self.items = list(items)
        self.schema = schema
        self.columns = schema.names
        self._extra_rows = list(extra_rows)
        self.started_at = time.time()
        self.id = job_id or uuid.uuid4().hex  # its job_id in the network log and dl.jobs()
        self._rows: dict[int, Any] = {}  # a row, or a list of rows (one per instance)
        self._state = ["queued"] * len(self.items)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._ctx: _HasCancel | None = None
        self._finished = threading.Event()
        self.pace: Pace | None = None  # its connections, when they adapt to the peer

    def __repr__(self) -> str:
        counts = pd.Series(self._state).value_counts().to_dict() if self._state else {}
        return f"Job({len(self.items)} items, {counts})"

    @property
    def progress(self) -> pd.DataFrame:
        """One row per item: its state (queued, running, done, cancelled) and outcome so far."""
        with self._lock:
            rows = []
            for i, item in enumerate(self.items):
                got = self._rows.get(i, {})
                row = dict(got) if isinstance(got, dict) else {}
                row["item"] = getattr(item, "uid", str(item))
                row["state"] = self._state[i]
                rows.append(row)
        return progress_frame(self.schema, rows)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate items ended so far (None before the first ends, or
        when the job is over)."""
        with self._lock:
            n = len(self._state)
            ended = sum(s in ("done", "cancelled") for s in self._state)
        if not ended or ended >= n or self._finished.is_set():
            return None
        return (time.time() - self.started_at) / ended * (n - ended)

    def cancel(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop: running operations are aborted (what was received stays), queued ones skipped.

        ``wait``: return once every worker has ended and the job's state is written down
        (so :func:`dl.jobs` shows it cancelled and :func:`dl.resume` can take it up at
        once); at most ``timeout`` seconds, past which a warning says it still runs.
        ``wait=False`` only asks (a widget's button).
        """
        if self._ctx is not None:
            self._ctx.cancel.set()
        if wait and self._ctx is not None and not self._finished.wait(timeout):
            log.warning("%r still running %.0f s after cancel", self, timeout)

    def done(self) -> bool:
        return self._finished.is_set()

    def result(
        self, timeout: float | None = None, *, on_interrupt: Literal["cancel", "raise"] = "cancel"
    ) -> pd.DataFrame:
        """The outcome table, once every worker has ended.

        Ctrl-C cancels the job and waits for its workers; then the table of what finished
        is returned (``on_interrupt="cancel"``) or the KeyboardInterrupt propagates
        (``"raise"``, for callers whose result means nothing when partial).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._finished.wait(0.1):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{self!r} still running after {timeout} s")
        except KeyboardInterrupt:
            log.warning("interrupted: cancelling the job; what finished is kept")
            self.cancel(wait=False)
            self._finished.wait()
            if on_interrupt == "raise":
                raise
        rows: list[dict[str, Any]] = []
        with self._lock:
            for i in range(len(self.items)):
                got = self._rows.get(i) or self._cancelled_row(i)
                rows.extend(got if isinstance(got, list) else [got])
        df = self.schema.frame(rows + self._extra_rows)
        if "complete" in df.columns:
            done = df["complete"].astype("boolean").fillna(False)
        else:
            done = df["error"].isna()
        df.attrs["complete"] = bool(done.all())
        df.attrs["job_id"] = self.id
        if self.pace is not None:
            df.attrs["connections"] = {"max": self.pace.maximum, "lowest": self.pace.lowest}
        return df

    def _cancelled_row(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        row: dict[str, Any] = dict.fromkeys(self.columns)
        for key, attr in (
            ("StudyInstanceUID", "study"),
            ("SeriesInstanceUID", "series"),
            ("SOPInstanceUID", "sop"),
            ("level", "level"),
        ):
            if key in row:
                row[key] = getattr(item, attr, None)
        row.update(complete=False, error="cancelled before it started")
        return row


def run_items(
    items: Sequence[Any],
    make_context: Callable[[Callable[[int], None]], Any],
    work: Callable[[Any, Any], Any],
    schema: OutcomeSchema,
    *,
    workers: int,
    total: int,
    desc: str,
    progress: bool,
    unit: str = "inst",
    on_finish: Callable[[], None] | None = None,
    extra_rows: Sequence[dict[str, Any]] = (),
    durable: Durable | None = None,
    pace: Pace | None = None,
) -> Job:
    """Start a :class:`Job` running ``work(ctx, item)`` for each item on ``workers`` threads
    (the progress bar counts ``total`` of ``unit``).

    ``durable``: the job is written down as it runs (:mod:`dicomlab.transfer.journal`):
    its id, and the rows of items that ended in an earlier run of it (not run again).
    """
    job = Job(items, schema, extra_rows, job_id=durable.job_id if durable else None)
    prior = durable.prior if durable is not None else {}
    for i, row in prior.items():
        job._rows[i] = row
        job._state[i] = "done"
    bar = _bar(total, desc, progress, unit)
    bar_lock = threading.Lock()

    def advance(n: int) -> None:
        if n > 0:
            with bar_lock:
                bar.update(n)

    ctx = make_context(advance)
    job._ctx = ctx
    job.pace = pace
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(items)):
        if i not in prior:
            todo.put(i)

    def worker() -> None:
        while not ctx.cancel.is_set():
            if pace is not None and not pace.acquire(ctx.cancel, getattr(ctx, "idle", None)):
                return
            try:
                _one()
            except queue.Empty:
                return
            finally:
                if pace is not None:
                    pace.release()

    def _one() -> None:
        i = todo.get_nowait()
        with job._lock:
            job._state[i] = "running"
        if durable is not None:
            durable.journal.started(job.id, i)
        try:
            with capture.job_context(job.id):
                row = work(ctx, items[i])
        except Exception as exc:  # a bug must not lose the other items' outcomes
            log.exception("transfer of %s failed", items[i])
            row = job._cancelled_row(i)
            row["error"] = f"internal error: {exc!r}"
        row = row if not isinstance(row, list) else list(row)
        with job._lock:
            job._rows[i] = row
            cancelled = isinstance(row, dict) and row.get("error") == "cancelled"
            job._state[i] = "cancelled" if cancelled else "done"
        if durable is not None:
            durable.journal.finished(job.id, i, row, job._state[i])

    def supervise() -> None:
        try:
            for t in job._threads:
                t.start()
            for t in job._threads:
                t.join()
        finally:
            with job._lock:
                job._state = [s if s != "queued" else "cancelled" for s in job._state]
            bar.close()
            if durable is not None:
                durable.journal.end(job.id, "cancelled" if ctx.cancel.is_set() else "done")
                durable.journal.close()
            if on_finish is not None:
                on_finish()
            job._finished.set()

    n = max(1, min(workers, len(items) - len(prior)))
    job._threads = [
        threading.Thread(target=worker, name=f"dicomlab-transfer-{k}", daemon=True)
        for k in range(n)
    ]
    threading.Thread(target=supervise, name="dicomlab-transfer", daemon=True).start()
    return job
