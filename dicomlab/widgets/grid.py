"""Grid: a table whose headers sort on click and whose rows select on click.

Built on itables' DataTables widget (``itables.widget.ITable``, an anywidget): its
JavaScript ships inside the wheel, so it works offline in JupyterLab, Notebook 7 and
Voila, renders a real HTML table (readable by screen readers and browser tests), and
syncs the selected rows back to Python. ``display_frame`` is the pure conversion from a
result or outcome table to what the grid shows; the selection comes back as rows of the
original frame.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w
import pandas as pd

import dicomlab as dl

__all__ = ["Grid", "display_frame", "human_size"]

_LABELS: Mapping[str, str] = {
    "NumberOfStudyRelatedInstances": "instances",
    "NumberOfSeriesRelatedInstances": "instances",
    "NumberOfStudyRelatedSeries": "series",
    "ModalitiesInStudy": "modalities",
    "expected_instances": "expected",
    "received_instances": "received",
    "duration_s": "duration (ms)",
    "bytes": "size",
    "mb_per_s": "MB/s",
}
_WRAP = frozenset({"error", "detail", "status_text", "StudyDescription", "SeriesDescription"})
_STATUS_WORDS = {
    "success": "ok",
    "warning": "warning",
    "pending": "pending",
    "cancel": "cancelled",
    "failure": "failed",
}

# DataTables "orthogonal data": the number sorts, its humanised text displays
_SIZE_RENDER = """function (data, type) {
  if (type !== 'display' || data === null || data === '') { return data; }
  var units = ['B', 'kB', 'MB', 'GB', 'TB'];
  var n = Number(data), i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
}"""


def human_size(n: float | None) -> str:
    """Bytes in SI units, as the grid shows them: ``human_size(1234567) == '1.23 MB'``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return ""
    units = ["B", "kB", "MB", "GB", "TB"]
    value, i = float(n), 0
    while abs(value) >= 1000 and i < len(units) - 1:
        value /= 1000
        i += 1
    return f"{value:.0f} {units[i]}" if i == 0 else f"{value:.{2 if value < 10 else 1}f} {units[i]}"


def _status_cell(code: Any, text: Any, error: Any) -> str:
    """A short word, the whole status text and error on hover."""
    if code is None or pd.isna(code):
        return ""
    info = dl.decode_status(int(code))
    word = _STATUS_WORDS.get(info.category, info.category)
    if info.category == "failure" and "refused" in f"{info.name} {info.meaning}".lower():
        word = "refused"
    full = "; ".join(str(t) for t in (text or str(info), error) if t is not None and not pd.isna(t))
    return f"<span title='{html.escape(full, quote=True)}'>{html.escape(word)}</span>"


def _blank(values: pd.Series, col: pd.Series) -> pd.Series:
    """``values`` as shown: a blank where ``col`` is missing (never ``<NA>`` or NaN)."""
    return values.astype(object).where(col.notna(), "")


def _dates(col: pd.Series) -> pd.Series:
    values = pd.to_datetime(col, errors="coerce")
    times = values.dropna()
    if times.empty:
        return _blank(col, col)
    tz = getattr(values.dt, "tz", None)
    if tz is not None:
        values = values.dt.tz_convert(None)
    midnight = bool((times.dt.floor("D") == times).all())
    text = values.dt.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M:%S")
    return text.where(values.notna(), "")


def display_frame(df: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """What the grid shows of ``df`` (pure; same rows in the same order).

    Dates without microseconds (a date alone when every time is midnight), durations
    in ms, sizes as numbers (the grid humanises them), a status code as a short word
    with its full text and any error on hover, booleans as yes/no, missing values blank,
    text HTML-escaped, and friendlier headers for the long DICOM keywords.
    """
    shown = [c for c in (columns if columns is not None else list(df.columns)) if c in df]
    out: dict[str, pd.Series] = {}
    for name in shown:
        col = df[name]
        if name == "status" and pd.api.types.is_numeric_dtype(col):
            texts = df["status_text"] if "status_text" in df else pd.Series(None, index=df.index)
            errors = df["error"] if "error" in df else pd.Series(None, index=df.index)
            values = [_status_cell(c, t, e) for c, t, e in zip(col, texts, errors, strict=True)]
            out["status"] = pd.Series(values, index=df.index, dtype=object)
        elif name == "bytes":
            out[_LABELS[name]] = _blank(col.astype("Int64"), col)
        elif name == "duration_s":
            out[_LABELS[name]] = _blank((col * 1000).round().astype("Int64"), col)
        elif pd.api.types.is_bool_dtype(col) or (
            col.dtype == object and col.dropna().map(type).isin([bool]).all() and col.notna().any()
        ):
            out[_LABELS.get(name, name)] = col.map(
                lambda v: "" if v is None or pd.isna(v) else ("yes" if v else "no")
            ).astype(object)
        elif pd.api.types.is_datetime64_any_dtype(col) or name.endswith(("Date", "_time")):
            out[_LABELS.get(name, name)] = _dates(col)
        elif pd.api.types.is_float_dtype(col):
            out[_LABELS.get(name, name)] = _blank(col.round(2), col)
        elif pd.api.types.is_numeric_dtype(col):
            out[_LABELS.get(name, name)] = _blank(col, col)
        else:
            out[_LABELS.get(name, name)] = col.map(
                lambda v: (
                    ""
                    if v is None or (not isinstance(v, str) and pd.isna(v))
                    else html.escape(str(v))
                )
            ).astype(object)
    return pd.DataFrame(out, index=df.index).reset_index(drop=True)


class Grid:
    """A sortable, selectable table of ``frame``; ``selection`` is its selected rows.

    ``show(df, columns)`` replaces the rows (and clears the selection);
    ``on_select(callback)`` calls ``callback(selection)`` when the user's selection
    changes; ``select(positions)`` selects rows from code (as clicks do).
    """

    def __init__(
        self, css: str, *, selectable: bool = True, single: bool = False, page_length: int = 25
    ) -> None:
        from itables.widget import ITable

        self.selectable = selectable
        self.single = single
        self.page_length = page_length
        self.frame = pd.DataFrame()
        self.columns: list[str] = []
        self._callbacks: list[Callable[[pd.DataFrame], None]] = []
        self.table = ITable(pd.DataFrame(), **self._options([]))
        self.table.add_class(css).add_class("dl-grid")
        # wider than the output area (a narrow JupyterLab column): scroll, never cut off
        self.table.layout = w.Layout(overflow="auto", width="100%", max_width="100%")
        self.table.observe(self._changed, names="selected_rows")
        self.empty = w.HTML("<i>no rows</i>").add_class(f"{css}-empty")
        self.ui = w.VBox([self.empty], layout=w.Layout(width="100%"))
        self.ui.add_class(f"{css}-box")

    def _options(self, shown: list[str]) -> dict[str, Any]:
        from itables import JavascriptFunction

        options: dict[str, Any] = {
            "allow_html": True,
            "maxBytes": 0,  # never downsample: every row stays selectable
            "classes": "display nowrap compact cell-border",
            "pageLength": self.page_length,
            "order": [],
            "text_in_header_can_be_selected": False,  # a click anywhere on a header sorts
            "style": "width:100%;margin:0",
        }
        if self.selectable:
            options["select"] = {"style": "single" if self.single else "multi"}
        defs: list[dict[str, Any]] = []
        if "bytes" in shown:
            defs.append(
                {"targets": [shown.index("bytes")], "render": JavascriptFunction(_SIZE_RENDER)}
            )
        wrap = [i for i, c in enumerate(shown) if c in _WRAP]
        if wrap:  # explanations are read whole, not cut at the table's edge
            defs.append({"targets": wrap, "className": "dl-wrap"})
        if defs:
            options["columnDefs"] = defs
        return options

    @property
    def selection(self) -> pd.DataFrame:
        rows = [i for i in self.table.selected_rows if 0 <= i < len(self.frame)]
        return self.frame.iloc[sorted(rows)]

    def show(self, df: pd.DataFrame, columns: list[str] | None = None) -> None:
        self.frame = df.reset_index(drop=True)
        self.columns = [c for c in (columns or list(df.columns)) if c in df]
        if df.empty:
            self.ui.children = [self.empty]
            self.table.selected_rows = []
            return
        shown = display_frame(self.frame, self.columns)
        self.table.update(shown, selected_rows=[], **self._options(self.columns))
        self.ui.children = [self.table]

    def on_select(self, callback: Callable[[pd.DataFrame], None]) -> None:
        self._callbacks.append(callback)

    def select(self, positions: list[int]) -> None:
        self.table.selected_rows = list(positions)

    def _changed(self, change: dict[str, Any]) -> None:
        selection = self.selection
        for callback in list(self._callbacks):
            callback(selection)

    def close(self) -> None:
        self.table.close()
        self.ui.close()
