"""QueryPanel: date presets and fields -> a study table; selection -> series; retrieve buttons."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
import pandas as pd

import dicomlab as dl
from dicomlab.widgets.base import Panel, explain, plural, style
from dicomlab.widgets.grid import Grid
from dicomlab.widgets.transfers import TransferPanel

__all__ = ["QueryPanel"]

_FIELDS = [
    ("PatientName", "Patient name"),
    ("PatientID", "Patient ID"),
    ("AccessionNumber", "Accession"),
    ("ModalitiesInStudy", "Modality"),
    ("StudyDescription", "Description"),
    ("ReferringPhysicianName", "Referring"),
]
_SHOWN = [
    "StudyDate",
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedInstances",
]


class QueryPanel(Panel):
    """Find studies on a node with presets and filters; select rows; retrieve them.

    ``result`` is the study DataFrame of the last search, ``selection`` the selected
    study rows, ``series`` the series of the selection. Retrieve buttons hand the
    selection to ``transfers`` (a :class:`TransferPanel`).
    """

    css = "dl-query"

    def __init__(
        self, book: dl.NodeBook | None = None, transfers: TransferPanel | None = None
    ) -> None:
        super().__init__()
        self.book = book if book is not None else dl.NodeBook.load()
        self.transfers = transfers if transfers is not None else TransferPanel(self.book)
        self.result = pd.DataFrame()
        self.source: dl.Node | None = None  # the node self.result came from
        self.selection = pd.DataFrame()
        self.series = pd.DataFrame()
        self.node = w.Dropdown(description="Node").add_class("dl-query-node")
        self.refresh_nodes = w.Button(icon="refresh", tooltip="reload the node book").add_class(
            "dl-query-refresh"
        )
        self.fields = {
            kw: w.Text(description=label, placeholder="* and ? allowed").add_class(
                f"dl-query-{kw.lower()}"
            )
            for kw, label in _FIELDS
        }
        self.start = w.DatePicker(description="From")
        self.end = w.DatePicker(description="To")
        presets = [
            ("Today", "today"),
            ("Yesterday", "yesterday"),
            ("Last 7 Days", "last7days"),
            ("Search All", "all"),
        ]
        self.preset_buttons: dict[str, w.Button] = {}
        for label, preset in presets:
            button = w.Button(description=label).add_class(f"dl-query-{preset}")
            button.on_click(lambda _, p=preset: self.search(p))
            self.preset_buttons[preset] = button
        self.dates_button = w.Button(description="Search Dates").add_class("dl-query-dates")
        self.dates_button.on_click(lambda _: self.search((self.start.value, self.end.value)))
        self.grid = Grid("dl-query-table")
        self.grid.on_select(lambda rows: self.select(list(rows["StudyInstanceUID"])))
        self.series_grid = Grid("dl-query-series")
        self.stale_note = w.HTML("").add_class("dl-stale-note")
        self.retrieve_study = w.Button(description="Retrieve Study", icon="download").add_class(
            "dl-query-retrieve-study"
        )
        self.retrieve_series = w.Button(description="Retrieve Series").add_class(
            "dl-query-retrieve-series"
        )
        self.view_button = w.Button(description="View", icon="eye").add_class("dl-query-view")
        self.view_button.on_click(lambda _: self.view())
        self.view_link = w.HTML("").add_class("dl-query-view-link")
        self.retrieve_study.on_click(lambda _: self.retrieve("study"))
        self.retrieve_series.on_click(lambda _: self.retrieve("series"))
        self.refresh_nodes.on_click(lambda _: self.reload_nodes())
        self.ui = w.VBox(
            [
                w.HBox([self.node, self.refresh_nodes]),
                w.GridBox(
                    list(self.fields.values()),
                    layout=w.Layout(grid_template_columns="repeat(auto-fill, minmax(300px, 1fr))"),
                ),
                w.HBox([*self.preset_buttons.values()]),
                w.HBox([self.start, self.end, self.dates_button]),
                self.message,
                self.stale_note,
                self.grid.ui,
                w.HBox([self.retrieve_study, self.retrieve_series, self.view_button]),
                self.view_link,
                self.series_grid.ui,
                self.transfers.ui,
                style(),
            ]
        ).add_class(self.css)
        self.reload_nodes()

    def view(self) -> str | None:
        """A link to the viewer on the selected studies (from the LocalPACS of this
        process that serves a web port and holds them: retrieve them first)."""
        self.view_link.value = ""
        if self.selection.empty:
            self.say("select one or more studies first", "warn")
            return None
        try:
            link = dl.view(self.selection)
        except dl.DicomlabError as exc:
            self.say(explain(exc), "error")
            return None
        self.view_link.value = link._repr_html_()
        self.say(f"viewer link for {len(link.studies)} stud(ies) below", "ok")
        return link.url

    def reload_nodes(self) -> None:
        """Show the book's nodes, plus any saved to its file since (added elsewhere)."""
        if self.book.path.exists():
            try:
                for node in dl.NodeBook.load(self.book.path):
                    if node.name not in self.book:
                        self.book.add(node)
            except dl.NodeBookError as exc:
                self.say(explain(exc), "error")
        names = [n.name for n in self.book]
        self.node.options = names
        if names:
            default = self.book.default
            self.node.value = default if default in names else names[0]

    def _filters(self) -> dict[str, Any]:
        return {kw: t.value.strip() for kw, t in self.fields.items() if t.value.strip()}

    def search(self, preset: Any = "all") -> None:
        """Run a study-level C-FIND with ``preset`` and the filled fields (in the background)."""
        if not self.node.value:
            self.say("no node: add one in the node panel first", "error")
            return
        if isinstance(preset, tuple) and None in preset:
            self.say("pick both dates for Search Dates", "error")
            return
        try:
            query = dl.Query.studies(date=preset, **self._filters())
        except dl.ValidationError as exc:
            self.say(explain(exc), "error")
            return
        node = self.book[self.node.value]
        self._stale(f"searching {node.name}…")

        def done(df: pd.DataFrame) -> None:
            self.result, self.source = df, node
            self.selection = df.iloc[0:0]
            self._show()
            if df.attrs.get("complete", True):
                self.say(f"{plural(len(df), 'study', 'studies')} on {node.name}", "ok")
            else:
                why = df.attrs.get("error") or f"status {df.attrs.get('status')}"
                self.say(f"partial result: {len(df)} studies on {node.name}, then {why}", "warn")

        def failed(exc: BaseException) -> None:
            self._stale(f"the search on {node.name} failed")

        self.run(
            f"searching {node.name}",
            lambda: dl.find(node, query, calling_ae=self.book.local.ae_title, warn=False),
            done,
            failed,
        )

    def _stale(self, why: str) -> None:
        """Keep the previous results on screen, marked as not the answer to this search."""
        if self.source is None:
            self.stale_note.value = f"<i>{html.escape(why)}</i>"
            return
        note = f"{why}: below, the previous results from {self.source.name}"
        self.stale_note.value = f"<i>{html.escape(note)}</i>"
        self.grid.ui.add_class("dl-stale")

    def _show(self) -> None:
        self.stale_note.value = ""
        self.grid.ui.remove_class("dl-stale")
        self.grid.show(self.result, [c for c in _SHOWN if c in self.result.columns])
        self.series = pd.DataFrame()
        self.series_grid.show(self.series)

    def select(self, uids: list[str]) -> None:
        """Select studies by UID (as clicking their rows does) and look their series up."""
        self.selection = self.result[self.result["StudyInstanceUID"].isin(uids)]
        if "StudyInstanceUID" in self.grid.frame:
            rows = self.grid.frame.index[self.grid.frame["StudyInstanceUID"].isin(uids)]
            if sorted(self.grid.table.selected_rows) != list(rows):
                self.grid.select(list(rows))
                return  # the grid's observer comes back here once
        if self.selection.empty or self.source is None:
            self.series = pd.DataFrame()
            self.series_grid.show(self.series)
            if self.source is not None and not self.result.empty:
                self.say(f"{plural(len(self.result), 'study', 'studies')} on {self.source.name}")
            return
        node = self.source  # where these studies are, whatever the dropdown says now
        query = dl.Query.series(StudyInstanceUID=list(self.selection["StudyInstanceUID"]))

        def done(df: pd.DataFrame) -> None:
            self.series = df
            cols = [
                "SeriesNumber",
                "Modality",
                "SeriesDescription",
                "NumberOfSeriesRelatedInstances",
            ]
            self.series_grid.show(df, [c for c in cols if c in df.columns])
            self.say(
                f"{plural(len(self.selection), 'study', 'studies')} selected, "
                f"{plural(len(df), 'series', 'series')}",
                "ok",
            )

        self.run(
            "looking up series",
            lambda: dl.find(node, query, calling_ae=self.book.local.ae_title, warn=False),
            done,
        )

    def retrieve(self, level: str = "study") -> dl.Job | None:
        """Hand the selected studies (or their series) to the transfer queue."""
        if level == "study":
            what = self.selection
        else:  # the series selected in their grid, or all of the selected studies' series
            what = self.series_grid.selection
            what = what if not what.empty else self.series
        if what.empty:
            self.say(
                f"select {'studies' if level == 'study' else 'studies with series'} first", "error"
            )
            return None
        node = self.source
        if node is None:  # pragma: no cover - a selection always comes from a search
            self.say("search first", "error")
            return None
        try:
            job = self.transfers.submit(node, what, calling_ae=self.book.local.ae_title)
        except dl.DicomlabError as exc:
            self.say(explain(exc), "error")
            return None
        noun = ("study", "studies") if level == "study" else ("series", "series")
        self.say(f"retrieving {plural(len(what), *noun)} from {node.name}")
        return job

    def close(self) -> None:
        self.transfers.close()
        super().close()
