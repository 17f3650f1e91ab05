"""In a real browser: Last 7 Days shows the expected rows, select a study, Retrieve finishes.

Debian's chromium driven by Playwright, against the QueryPanel of tests/ui/query_app.ipynb
served by Voila and (once) opened in JupyterLab. A screenshot of each is saved under
test-artifacts/.
"""

from __future__ import annotations

import re
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import dicomlab as dl

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _expected_last7() -> list[str]:
    """The dates of the notebook's synthetic studies (seed 5, today) in the last 7 days."""
    with tempfile.TemporaryDirectory() as tmp:
        made = dl.synth.write_studies(Path(tmp), n_studies=12, seed=5)
    studies = made.drop_duplicates("StudyInstanceUID")
    days = pd.to_datetime(studies.StudyDate)
    first = pd.Timestamp(date.today() - timedelta(days=6))
    return sorted(d.date().isoformat() for d in days[days >= first])


def _query_select_retrieve(page: Any, shot: Path) -> None:
    from playwright.sync_api import expect

    app = page.locator(".dl-query")
    app.wait_for()
    app.locator("button.dl-query-last7days").click()
    days = _expected_last7()
    expected = len(days)
    assert expected > 1 and days[0] != days[-1]
    message = app.locator(".dl-message").first
    expect(message).to_contain_text(f"{expected} studies on pacs")
    rows = app.locator(".dl-query-table table tbody tr")
    expect(rows).to_have_count(expected)
    # a grid wider than its output area scrolls sideways: no column is cut off for good
    grid = app.locator(".dl-query-table").first
    assert grid.evaluate("e => getComputedStyle(e).overflowX") in ("auto", "scroll")
    last_header = app.locator(".dl-query-table table thead th").last
    last_header.scroll_into_view_if_needed()
    edge = page.evaluate(  # the notebook's visible panel in JupyterLab, the page in Voila
        "() => (document.querySelector('.jp-NotebookPanel .jp-Notebook')"
        " || document.documentElement).getBoundingClientRect().right"
    )
    box = last_header.bounding_box()
    assert box is not None and box["x"] + box["width"] <= edge + 1, (box, edge)
    # click a header: the rows sort by it, ascending, then descending on the second click
    header = app.locator(".dl-query-table table thead th", has_text="StudyDate")
    first_date = rows.first.locator("td").first
    header.click()
    expect(first_date).to_have_text(days[0])
    header.click()
    expect(first_date).to_have_text(days[-1])
    shown = [rows.nth(i).locator("td").first.inner_text() for i in range(expected)]
    assert shown == days[::-1], shown
    # click a row: it is selected, its series are looked up
    rows.first.click()
    expect(rows.first).to_have_class(re.compile(r"\bselected\b"))
    expect(message).to_contain_text("1 study selected")
    expect(app.locator(".dl-query-series table tbody tr").first).to_be_visible()
    page.screenshot(path=str(shot.with_name(shot.stem + "-selected.png")), full_page=True)
    app.locator("button.dl-query-retrieve-study").click()
    transfers = page.locator(".dl-transfers")
    expect(transfers.locator(".dl-message")).to_contain_text("all complete")
    expect(transfers.locator(".dl-transfer-outcome table tbody tr")).to_have_count(1)
    expect(transfers.locator(".dl-transfer-outcome table tbody tr td").first).to_have_text("study")
    page.screenshot(path=str(shot), full_page=True)
    assert not page.js_errors, page.js_errors


def test_voila_last_7_days_select_retrieve(page: Any, voila_server: Any, artifacts: Path) -> None:
    page.goto(voila_server.url + "/")
    _query_select_retrieve(page, artifacts / "voila-query.png")


def test_jupyterlab_last_7_days_select_retrieve(
    page: Any, jupyter_lab: Any, artifacts: Path
) -> None:
    page.goto(f"{jupyter_lab.url}/lab/tree/query_app.ipynb?reset&token={jupyter_lab.token}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\(ipykernel\) \| Idle")).wait_for()
    page.locator("li.lm-MenuBar-item", has_text="Run").click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    _query_select_retrieve(page, artifacts / "jupyterlab-query.png")
