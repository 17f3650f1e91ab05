"""What every panel shares: a message line, worker threads that report errors, display."""

from __future__ import annotations

import html
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as w
import pandas as pd

import dicomlab as dl
from dicomlab.widgets.grid import display_frame

__all__ = ["Panel", "frame_html", "plural", "style"]

log = logging.getLogger(__name__)


_CSS = """<style>
.dl-app, .dl-nodes, .dl-query, .dl-transfers, .dl-report, .dl-server {
  max-width: 100%; min-width: 0; box-sizing: border-box; }
.dl-grid { min-width: 0; }
.dl-stale { opacity: 0.45; }
.dl-grid table.dataTable td.dl-wrap { white-space: normal; min-width: 16em; }
.dl-grid table.dataTable tbody tr { cursor: pointer; }
.dl-invalid input, .dl-invalid select { border: 2px solid #b42318 !important; }
.dl-field-error { color: #b42318; font-size: 0.9em; margin-left: 0.5em; }
</style>"""


def plural(n: int, one: str, many: str | None = None) -> str:
    """``n`` with its noun: ``plural(1, "study", "studies") == "1 study"``; the plural
    is ``one + "s"`` unless given."""
    return f"{n} {one if n == 1 else (many if many is not None else one + 's')}"


def style() -> w.HTML:
    """The panels' few CSS rules (stale results dimmed, grid rows clickable)."""
    return w.HTML(_CSS).add_class("dl-style")


def frame_html(df: pd.DataFrame, max_rows: int = 200) -> str:
    """A DataFrame as a compact HTML table (the first ``max_rows`` rows)."""
    if df.empty:
        return "<i>no rows</i>"
    more = f"<div>{len(df) - max_rows} more rows</div>" if len(df) > max_rows else ""
    shown = display_frame(df.head(max_rows))  # escaped and formatted as the grids are
    table = shown.to_html(index=False, border=0, classes="dl-table", escape=False)
    return f"<div style='max-height:24em;overflow:auto'>{table}</div>{more}"


def explain(exc: BaseException) -> str:
    """A readable one-paragraph account of an error (with its hint when dicomlab has one)."""
    text = str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", None)
    if hint and hint not in text:
        text += f" (hint: {hint})"
    if not isinstance(exc, dl.DicomlabError):
        text = f"{type(exc).__name__}: {text}"
    return text


class Panel:
    """Base of the panels: ``ui`` (an ipywidgets box), ``message``, and background work.

    Network work runs in a worker thread so that the kernel and the page stay
    responsive; its result or its error comes back to the panel (an error is shown in
    ``message`` as text, and kept in ``error``). ``wait()`` joins the running work
    (for code and tests). ``close()`` stops what the panel runs.
    """

    css = "dl-panel"

    def __init__(self) -> None:
        self.message = w.HTML("").add_class("dl-message")
        self.error: BaseException | None = None
        self._workers: list[threading.Thread] = []
        self._closed = threading.Event()
        self.ui: w.Box = w.VBox()

    # -- display -------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.ui._repr_mimebundle_(**kwargs)

    def say(self, text: str, kind: str = "info") -> None:
        colour = {"info": "#333", "ok": "#1a7f37", "warn": "#b54708", "error": "#b42318"}[kind]
        self.message.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"

    # -- background work -----------------------------------------------------------
    def run(
        self,
        label: str,
        work: Callable[[], Any],
        done: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> threading.Thread:
        """Run ``work`` in a worker thread; ``done(result)`` after, errors to ``message``
        (and to ``failed(error)``, if given)."""
        self.error = None
        self.say(f"{label}…")
        ref = weakref.ref(self)

        def target() -> None:
            try:
                result = work()
            except BaseException as exc:  # shown, never lost
                log.info("%s failed: %s", label, exc, exc_info=True)
                panel = ref()
                if panel is not None:
                    panel.error = exc
                    panel.say(f"{label} failed: {explain(exc)}", "error")
                    if failed is not None:
                        failed(exc)
                return
            panel = ref()
            if panel is None or panel._closed.is_set():
                return
            try:
                if done is not None:
                    done(result)
            except BaseException as exc:
                panel.error = exc
                panel.say(f"{label}: {explain(exc)}", "error")

        thread = threading.Thread(target=target, name=f"dicomlab-{self.css}", daemon=True)
        self._workers = [t for t in self._workers if t.is_alive()]
        self._workers.append(thread)
        thread.start()
        return thread

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for the panel's running work (for code and tests)."""
        for t in list(self._workers):
            t.join(timeout)

    def close(self) -> None:
        """Stop what the panel runs and close its widgets (idempotent)."""
        self._closed.set()
        self.wait(5)
        self.ui.close()
