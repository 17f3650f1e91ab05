"""TransferPanel: the queue of retrieve jobs, each with progress, status, cancel and outcome."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import ipywidgets as w
import pandas as pd

import dicomlab as dl
from dicomlab.widgets.base import Panel, explain, plural, style
from dicomlab.widgets.grid import Grid, human_size

__all__ = ["TransferPanel"]


class _Row:
    def __init__(self, panel: TransferPanel, job: dl.Job, label: str) -> None:
        self.job = job
        self.label = w.HTML(f"<b>{label}</b>")
        self.bar = w.IntProgress(min=0, max=max(1, len(job.items)), value=0).add_class(
            "dl-transfer-bar"
        )
        self.status = w.HTML("queued").add_class("dl-transfer-status")
        self.cancel = w.Button(description="Cancel", icon="stop").add_class("dl-transfer-cancel")
        self.cancel.on_click(lambda _: panel.cancel(job))
        self.box = w.HBox([self.label, self.bar, self.status, self.cancel])

    def update(self) -> bool:
        """Refresh from the job; True when it is finished."""
        progress = self.job.progress
        done = int(progress["state"].isin(["done", "cancelled"]).sum())
        self.bar.value = min(done, self.bar.max)
        counts = progress["state"].value_counts().to_dict()
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        instances = int(_total(progress, "received_instances"))
        size = _total(progress, "bytes")
        seconds = max(time.time() - self.job.started_at, 1e-6)
        eta = self.job.eta_s
        left = f" · about {_duration(eta)} left" if eta is not None else ""
        self.status.value = (
            f"{states} · {plural(instances, 'instance')} · "
            f"{human_size(size)} · {size / 1e6 / seconds:.2f} MB/s{left}"
        )
        finished = self.job.done()
        if finished:
            self.cancel.disabled = True
        return finished


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _total(df: pd.DataFrame, column: str) -> float:
    if column not in df.columns:
        return 0.0
    return float(pd.to_numeric(df[column], errors="coerce").fillna(0).sum())


class TransferPanel(Panel):
    """Retrieve jobs (``wait=False``) shown with a progress bar, status and a cancel button.

    ``submit(node, what, ...)`` queues a retrieve and returns its ``dl.Job``; the
    desktop "synchronous" mode is simply ``dl.retrieve(..., wait=True)`` in a cell.
    ``result`` is the outcome table of the last finished job, ``results`` all of them.
    """

    css = "dl-transfers"

    def __init__(
        self,
        book: dl.NodeBook | None = None,
        into: dl.LocalPACS | None = None,
        poll_s: float = 0.5,
    ) -> None:
        super().__init__()
        self.book = book
        self.into = into  # where retrieves go (None: the notebook's default LocalPACS)
        self.jobs: list[dl.Job] = []
        self.results: list[pd.DataFrame] = []
        self.result: pd.DataFrame | None = None
        self._rows: list[_Row] = []
        self._lock = threading.Lock()
        self.queue = w.VBox([]).add_class("dl-transfer-queue")
        self.outcome = Grid("dl-transfer-outcome", selectable=False)
        self.kept = w.Dropdown(options=[], description="Unfinished").add_class("dl-transfer-kept")
        self.resume_button = w.Button(description="Resume", icon="play").add_class(
            "dl-transfer-resume"
        )
        self.resume_button.on_click(lambda _: self._resume_chosen())
        self.ui = w.VBox(
            [
                w.HTML("<b>Transfers</b>"),
                w.HBox([self.kept, self.resume_button]),
                self.queue,
                self.message,
                self.outcome.ui,
                style(),
            ]
        ).add_class(self.css)
        self._poll_s = poll_s
        self._poller: threading.Thread | None = None
        self.refresh_kept()

    def submit(self, node: dl.Node | str, what: Any, **kwargs: Any) -> dl.Job:
        """Start ``dl.retrieve(node, what, wait=False, **kwargs)`` and show it in the queue."""
        kwargs.setdefault("progress", False)
        if self.into is not None:
            kwargs.setdefault("into", self.into)
        if self.book is not None:
            kwargs.setdefault("book", self.book)
        job = dl.retrieve(node, what, wait=False, **kwargs)
        assert isinstance(job, dl.Job)
        name = node if isinstance(node, str) else node.name
        return self._show(job, f"{plural(len(job.items), 'item')} from {name}")

    def refresh_kept(self) -> None:
        """List the kept jobs that did not finish (a kernel that died, a cancel)."""
        try:
            kept = dl.jobs()
        except dl.DicomlabError as exc:
            self.error = exc
            self.say(f"the kept jobs cannot be read: {explain(exc)}", "error")
            return
        open_ = kept[kept.state.isin(["interrupted", "cancelled"])]
        self.kept.options = [
            (
                f"{str(r['job_id'])[:8]} · {r['node']} · {r['done']}/{r['items']} done · "
                f"{r['state']}",
                str(r["job_id"]),
            )
            for r in open_.to_dict("records")
        ]
        self.kept.value = self.kept.options[0][1] if self.kept.options else None
        self.resume_button.disabled = not self.kept.options

    def resume(self, job_id: str) -> dl.Job:
        """``dl.resume(job_id, wait=False)``, shown in the queue like a new job."""
        job = dl.resume(job_id, into=self.into, book=self.book, wait=False, progress=False)
        assert isinstance(job, dl.Job)
        shown = self._show(job, f"resumed {job_id[:8]}: {plural(len(job.items), 'item')}")
        self.refresh_kept()
        return shown

    def _resume_chosen(self) -> None:
        if self.kept.value is None:
            self.say("no unfinished job to resume")
            return
        try:
            self.resume(str(self.kept.value))
        except dl.DicomlabError as exc:
            self.error = exc
            self.say(f"resume failed: {explain(exc)}", "error")

    def _show(self, job: dl.Job, items: str) -> dl.Job:
        row = _Row(self, job, items)
        with self._lock:
            self.jobs.append(job)
            self._rows.append(row)
            self.queue.children = [r.box for r in self._rows]
        self.say(f"queued {items}")
        self._ensure_poller()
        return job

    def cancel(self, job: dl.Job) -> None:
        job.cancel(wait=False)  # the button returns at once; the poller shows the end
        self.say("cancelling: what was received stays")

    def _ensure_poller(self) -> None:
        if self._poller is not None and self._poller.is_alive():
            return
        ref = weakref.ref(self)
        closed = self._closed
        interval = self._poll_s

        def poll() -> None:
            while not closed.wait(interval):
                panel = ref()
                if panel is None or not panel._tick():
                    return

        self._poller = threading.Thread(target=poll, name="dicomlab-transfer-panel", daemon=True)
        self._poller.start()

    def _tick(self) -> bool:
        """Refresh every row; False when nothing is running any more."""
        running = False
        with self._lock:
            rows = list(self._rows)
        for row in rows:
            was_done = row.cancel.disabled
            if row.update():
                if not was_done:
                    self._finished(row.job)
            else:
                running = True
        return running

    def _finished(self, job: dl.Job) -> None:
        table = job.result(timeout=5)
        self.results.append(table)
        self.result = table
        wanted = (
            "level",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "status",
            "expected_instances",
            "received_instances",
            "complete",
            "bytes",
            "duration_s",
            "error",
        )
        self.outcome.show(table, [c for c in wanted if c in table.columns])
        ok = bool(table["complete"].all()) if "complete" in table else False
        self.say(
            f"finished: {int(table.get('received_instances', pd.Series([0])).sum())} instances, "
            f"{'all complete' if ok else 'some incomplete or failed'}",
            "ok" if ok else "error",
        )

    def wait(self, timeout: float = 120.0) -> None:
        """Wait for every job and the last refresh (for code and tests)."""
        for job in list(self.jobs):
            job.result(timeout=timeout)
        self._tick()
        super().wait(timeout)

    def close(self) -> None:
        for job in list(self.jobs):
            if not job.done():
                job.cancel(wait=False)
        super().close()
        if self._poller is not None:
            self._poller.join(5)
