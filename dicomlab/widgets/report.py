"""NetworkReport: the network log as a filterable table, one association's story, plots."""

from __future__ import annotations

import io
import os
from datetime import date, timedelta
from typing import Any

import ipywidgets as w
import pandas as pd
from matplotlib.figure import Figure

import dicomlab as dl
from dicomlab.widgets.base import Panel, explain, plural, style
from dicomlab.widgets.grid import Grid

__all__ = ["NetworkReport"]

_COLUMNS = [
    "started_at",
    "role",
    "service",
    "peer_ae",
    "status_name",
    "duration_s",
    "bytes",
    "n_matches",
    "n_completed",
    "outcome",
]


class NetworkReport(Panel):
    """Every association and operation: filter by time, peer, service and outcome.

    ``result`` is the filtered operations table; selecting an operation shows its
    association's whole story (``story``) and a sequence diagram; the Plots tab draws
    throughput, latency and the association timeline of the filtered rows.
    """

    css = "dl-report"

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.result = pd.DataFrame()
        self.all = pd.DataFrame()  # every operation read by the last refresh
        self.associations = pd.DataFrame()
        self.story: dict[str, Any] | None = None
        self.since = w.DatePicker(description="Since", value=date.today() - timedelta(days=7))
        self.until = w.DatePicker(description="Until")
        self.peer = w.Dropdown(description="Peer", options=["(all)"])
        self.service = w.Dropdown(description="Service", options=["(all)", *dl.log.SERVICES])
        self.outcome = w.Dropdown(
            description="Outcome", options=["(all)", "success", "warning", "failure", "none"]
        )
        self.refresh_button = w.Button(description="Refresh", icon="refresh").add_class(
            "dl-report-refresh"
        )
        self.refresh_button.on_click(lambda _: self.refresh())
        for control in (self.peer, self.service, self.outcome):
            control.observe(lambda _: self._show(), names="value")
        self.table = Grid(
            "dl-report-table", single=True
        )  # click an operation: its association's story
        self.table.on_select(self._on_rows)
        self.details = w.HTML("").add_class("dl-report-details")
        self.operations = Grid("dl-report-operations", selectable=False)
        self.diagram = w.Image(format="png").add_class("dl-report-diagram")
        self.plots = w.Image(format="png").add_class("dl-report-plots")
        self.tabs = w.Tab(
            [
                self.table.ui,
                w.VBox([self.details, self.operations.ui, self.diagram]),
                self.plots,
            ]
        )
        for i, title in enumerate(("Operations", "Details", "Plots")):
            self.tabs.set_title(i, title)
        self.ui = w.VBox(
            [
                w.HBox([self.since, self.until, self.refresh_button]),
                w.HBox([self.peer, self.service, self.outcome]),
                self.message,
                self.tabs,
                style(),
            ]
        ).add_class(self.css)
        self.refresh()  # it opens with the last week's log, not an empty frame

    def refresh(self) -> None:
        """Read the log for the chosen dates (in the background) and show it."""
        since = self.since.value
        until = self.until.value + timedelta(days=1) if self.until.value else None
        folder = self.folder

        def work() -> tuple[pd.DataFrame, pd.DataFrame]:
            ops = dl.read_log(folder=folder, since=since, until=until)
            assocs = dl.log.read_associations(folder=folder, since=since, until=until)
            return ops, assocs

        def done(got: tuple[pd.DataFrame, pd.DataFrame]) -> None:
            self.all, self.associations = got
            peers = sorted(p for p in self.all["peer_ae"].dropna().unique())
            self.peer.options = ["(all)", *peers]
            self._show()
            n, m = len(self.all), len(self.associations)
            if not n and not m:
                self.say(
                    "nothing in the network log for these dates: run an echo, a query or a "
                    "transfer, then Refresh (or pick earlier dates)",
                    "info",
                )
                return
            self.say(
                f"{plural(n, 'operation')}, {plural(m, 'association')}",
                "ok",
            )

        self.run("reading the log", work, done)

    def filtered(self) -> pd.DataFrame:
        df = self.all
        if df.empty:
            return df
        if self.peer.value != "(all)":
            df = df[df["peer_ae"] == self.peer.value]
        if self.service.value != "(all)":
            df = df[df["service"] == self.service.value]
        if self.outcome.value == "none":
            df = df[df["status_category"].isna()]
        elif self.outcome.value != "(all)":
            df = df[df["status_category"] == self.outcome.value]
        return df.sort_values("started_at", ascending=False)

    def _show(self) -> None:
        df = self.filtered()
        self.result = df
        self.table.show(df, [c for c in _COLUMNS if c in df.columns])
        self._plot(df)

    def _on_rows(self, rows: pd.DataFrame) -> None:
        if not rows.empty:  # the row clicked last is the story shown
            self.show_association(str(rows["association_id"].iloc[-1]))

    def show_association(self, association_id: str) -> dict[str, Any] | None:
        """Show one association's story (its row, its operations, a sequence diagram)."""
        try:
            story = dl.log.association(association_id, folder=self.folder)
        except dl.DicomlabError as exc:
            self.say(explain(exc), "error")
            return None
        self.story = story
        a = story["association"]
        facts = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{'' if pd.isna(v) else v}</td></tr>"
            for k, v in a.items()
        )
        self.details.value = f"<table>{facts}</table>"
        self.operations.show(story["operations"])
        self.diagram.value = _png(dl.plot.sequence(story).figure)
        self.tabs.selected_index = 1
        return story

    def _plot(self, df: pd.DataFrame) -> None:
        if df.empty:
            self.plots.value = b""
            return
        fig = Figure(figsize=(12, 3.5), layout="constrained")
        left, mid, right = fig.subplots(1, 3)
        span = df["started_at"].max() - df["started_at"].min()
        freq = (
            "1s"
            if span < pd.Timedelta(minutes=10)
            else "1h"
            if span > pd.Timedelta(days=1)
            else "1min"
        )
        dl.plot.throughput(df, freq=freq, ax=left)
        dl.plot.latency(df, ax=mid)
        ids = set(df["association_id"])
        assocs = self.associations[self.associations["association_id"].isin(ids)]
        if not assocs.empty:
            dl.plot.timeline(assocs, ax=right)
        self.plots.value = _png(fig)


def _png(fig: Any) -> bytes:
    """A figure as PNG bytes for an Image widget (works with or without a frontend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()
