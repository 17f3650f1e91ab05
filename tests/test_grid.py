"""The grid the panels show tables in: readable formats, selection back as a DataFrame."""

from __future__ import annotations

import json

import pandas as pd

from dicomlab.widgets.grid import Grid, display_frame, human_size


def _outcome() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "StudyDate": pd.to_datetime(["2026-11-30", None]),
            "started_at": pd.to_datetime(
                ["2026-11-30 10:00:00.123456+00:00", "2026-11-30 11:00:05+00:00"], format="ISO8601"
            ),
            "status": [0x0000, 0xA801],
            "status_text": ["0x0000 Success", None],
            "error": [None, "DLDEST <unknown> & gone"],
            "complete": [True, False],
            "duration_s": [0.1234, None],
            "bytes": [1_234_567, None],
            "received_instances": pd.array([3, None], dtype="Int64"),
        }
    )


def test_display_frame_formats_what_people_read() -> None:
    shown = display_frame(_outcome())
    first, second = shown.to_dict("records")
    assert first["StudyDate"] == "2026-11-30"  # a date alone: every time is midnight
    assert first["started_at"] == "2026-11-30 10:00:00"  # no microseconds
    assert first["duration (ms)"] == 123
    assert first["complete"] == "yes" and second["complete"] == "no"
    assert first["received"] == 3 and second["received"] == ""  # blank, never <NA>
    assert second["StudyDate"] == "" and second["duration (ms)"] == ""
    assert second["error"] == "DLDEST &lt;unknown&gt; &amp; gone"  # escaped: the grid shows HTML
    assert ">ok<" in first["status"]
    # a short word in the cell, the whole text and the error on hover
    assert ">failed<" in second["status"] and "title='0xA801" in second["status"]
    assert "DLDEST &lt;unknown&gt;" in second["status"]
    assert list(shown.index) == [0, 1]


def test_human_size() -> None:
    assert human_size(999) == "999 B"
    assert human_size(1_234_567) == "1.23 MB"
    assert human_size(45_600_000_000) == "45.6 GB"
    assert human_size(None) == ""


def test_grid_selection_is_rows_of_the_frame_and_a_new_table_clears_it() -> None:
    grid = Grid("t")
    seen: list[pd.DataFrame] = []
    grid.on_select(seen.append)
    df = _outcome()
    grid.show(df, ["StudyDate", "status", "bytes", "error"])
    rows = json.loads(grid.table._dt_args["data_json"])
    assert len(rows) == 2 and len(rows[0]) == 4
    # sizes stay numbers (they sort as numbers); the browser renders them humanised
    assert float(rows[0][2]) == 1_234_567
    assert grid.table._dt_args["select"] == {"style": "multi"}
    grid.table.selected_rows = [1]  # what a click in the browser sends back
    assert seen and list(seen[-1]["status"]) == [0xA801]
    assert list(grid.selection.columns) == list(df.columns)  # all columns, not just shown
    grid.show(df.iloc[:1])
    assert grid.selection.empty
    grid.show(df.iloc[0:0])
    assert grid.ui.children == (grid.empty,)
    grid.close()
