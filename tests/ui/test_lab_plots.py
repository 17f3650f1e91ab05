"""In JupyterLab with chromium: the notebooks' plots appear as pictures, the network
report's plots at a one-minute and a one-day span.

Each notebook of notebooks/ with a plot cell (a cell ending in ``.figure``) is opened
in JupyterLab and run with Run All; the test waits for every plot cell's image and
saves a screenshot of each plot under test-artifacts/ (jupyterlab-<notebook>-plot<N>.png).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOKS = Path(__file__).resolve().parent.parent.parent / "notebooks"


def _plot_cells(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum(
        1 for c in nb.cells if c.cell_type == "code" and c.source.strip().endswith(".figure")
    )


WITH_PLOTS = [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if _plot_cells(p)]


def _run_all(page: Any, server: Any, name: str) -> None:
    page.goto(f"{server.url}/lab/tree/{name}?reset&token={server.token}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\(ipykernel\) \| Idle")).wait_for()
    page.locator("li.lm-MenuBar-item", has_text="Run").click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()


def _finished(page: Any) -> None:
    """Every cell ran: no prompt says [*] and the kernel is idle again."""
    from playwright.sync_api import expect

    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-InputPrompt", has_text="[*]")).to_have_count(0, timeout=180_000)
    errors = notebook.locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    )
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks


@pytest.mark.parametrize("path", WITH_PLOTS, ids=[p.stem for p in WITH_PLOTS])
def test_notebook_plots_show_in_jupyterlab(
    page: Any, jupyter_lab: Any, artifacts: Path, path: Path
) -> None:
    from playwright.sync_api import expect

    _run_all(page, jupyter_lab, path.name)
    images = page.locator(".jp-NotebookPanel:visible .jp-RenderedImage img")
    expect(images).to_have_count(_plot_cells(path), timeout=180_000)
    _finished(page)
    for i in range(images.count()):
        image = images.nth(i)
        image.scroll_into_view_if_needed()
        size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert size[0] > 300 and size[1] > 150, size  # a picture, not a broken icon
        image.screenshot(path=str(artifacts / f"jupyterlab-{path.stem}-plot{i + 1}.png"))
    # the text of a Figure object never shows where its picture should be
    texts = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").all_inner_texts()
    assert not [t for t in texts if t.startswith("<Figure size")], texts
    assert not page.js_errors, page.js_errors


def test_network_report_plots_at_a_minute_and_a_day(
    page: Any, jupyter_lab: Any, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    _run_all(page, jupyter_lab, "report_app.ipynb")
    for span in ("minute", "day"):
        report = page.locator(f".dl-report-{span}")
        expect(report.locator(".dl-message")).to_contain_text("operations", timeout=120_000)
        plots = report.locator(".dl-report-plots")
        expect(plots).to_be_visible()
        page.wait_for_function(
            "el => el.naturalWidth > 500", arg=plots.element_handle(), timeout=60_000
        )
        plots.scroll_into_view_if_needed()
        plots.screenshot(path=str(artifacts / f"jupyterlab-report-{span}.png"))
    _finished(page)
    assert not page.js_errors, page.js_errors


def test_node_panel_checks_c_move_in_jupyterlab(
    page: Any, jupyter_lab: Any, artifacts: Path
) -> None:
    """nodes_app.ipynb: select the PACS in the NodePanel, press "Check C-MOVE": the
    status beside the button turns to "C-MOVE works (from 127.0.0.1)" and the panel's
    message says where the instance came from."""
    from playwright.sync_api import expect

    _run_all(page, jupyter_lab, "nodes_app.ipynb")
    _finished(page)
    panel = page.locator(".dl-nodes")
    panel.locator(".dl-node-list select").select_option("pacs")
    expect(panel.locator(".dl-node-ae input")).to_have_value("UIPACS")
    panel.locator(".dl-node-check-move").click()
    status = panel.locator(".dl-move-status")
    expect(status).to_contain_text("C-MOVE works (from 127.0.0.1)", timeout=60_000)
    expect(panel.locator(".dl-message")).to_contain_text("moved an instance to UIMINE")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(artifacts / "jupyterlab-nodes-check-move.png"))
    assert not page.js_errors, page.js_errors


def test_worklist_panel_adds_and_marks_done_in_jupyterlab(
    page: Any, jupyter_lab: Any, artifacts: Path
) -> None:
    """worklist_app.ipynb: a step typed in the WorklistPanel's form is refused with its bad
    time quoted, then added once the time is right; marked done, it leaves the choice."""
    from playwright.sync_api import expect

    _run_all(page, jupyter_lab, "worklist_app.ipynb")
    _finished(page)
    panel = page.locator(".dl-worklist")
    expect(panel.locator(".dl-worklist-table")).to_contain_text("ACC005000002")
    panel.locator(".dl-worklist-patient-name input").fill("BROWSER^TEST")
    panel.locator(".dl-worklist-patient-id input").fill("PUI1")
    panel.locator(".dl-worklist-accession input").fill("ACCUI1")
    panel.locator(".dl-worklist-station input").fill("MR01")
    panel.locator(".dl-worklist-modality select").select_option("MR")
    panel.locator(".dl-worklist-time input").fill("25:99")
    panel.locator(".dl-worklist-add").click()
    expect(panel.locator(".dl-message")).to_contain_text("'25:99'", timeout=30_000)
    panel.locator(".dl-worklist-time input").fill("10:30")
    panel.locator(".dl-worklist-add").click()
    expect(panel.locator(".dl-message")).to_contain_text("added 1 step", timeout=30_000)
    expect(panel.locator(".dl-worklist-table")).to_contain_text("BROWSER^TEST")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(artifacts / "jupyterlab-worklist.png"))
    panel.locator(".dl-worklist-chosen select").select_option("ACCUI1")
    panel.locator(".dl-worklist-done").click()
    expect(panel.locator(".dl-message")).to_contain_text("1 step changed", timeout=30_000)
    expect(panel.locator(".dl-worklist-chosen select option")).to_have_count(3)
    assert not page.js_errors, page.js_errors
