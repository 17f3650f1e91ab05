"""The OHIF viewer (``make viewer``) served by a LocalPACS's web port, in Debian's chromium:
the study list shows the archive's studies, a study renders an image, and no request
leaves 127.0.0.1. A missing viewer fails under CI=true and skips elsewhere."""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import dicomlab as dl
from dicomlab.server.web import viewer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))
_ARGS = [
    "--no-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_GL = ["--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def _need(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the viewer test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dl.LocalPACS, pd.DataFrame]]:
    _need(None if os.access(CHROMIUM, os.X_OK) else f"no chromium at {CHROMIUM} (make peers)")
    _need(None if viewer.dist() is not None else "the OHIF viewer is not installed (make viewer)")
    root = tmp_path_factory.mktemp("viewer")
    dl.synth.write_studies(root / "src", 3, seed=4, image_size=128)
    with dl.LocalPACS(root / "pacs", port=0, web_port=0) as local:
        local.import_files(root / "src")
        yield local, local.studies()


@pytest.fixture(scope="module")
def gl_browser(browser: Any) -> Iterator[Any]:
    """A second chromium with software GL, from the session's Playwright (one Playwright
    per process: a second sync_playwright() inside the first refuses to start)."""
    b = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=_ARGS + _GL)
    yield b
    b.close()


@pytest.fixture
def tab(gl_browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = gl_browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.outside = []  # type: ignore[attr-defined]

    def note(req: Any) -> None:
        url = str(req.url)
        if not url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            page.outside.append(url)  # type: ignore[attr-defined]

    page.on("request", note)
    yield page
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"))
    context.close()


def test_the_study_list_shows_the_archive(served, tab) -> None:
    local, studies = served
    tab.goto(local.viewer_url())
    for accession in studies.AccessionNumber.astype(str):
        tab.get_by_text(accession).first.wait_for(timeout=60_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "ohif-study-list.png"))
    assert tab.outside == [], tab.outside[:5]


def test_a_study_renders_an_image(served, tab) -> None:
    local, studies = served
    study = str(studies.StudyInstanceUID.iloc[0])
    t0 = time.perf_counter()
    tab.goto(local.viewer_url(study))
    canvas = tab.locator("canvas.cornerstone-canvas").first
    canvas.wait_for(timeout=90_000)
    picture = np.zeros((1, 1))
    for _ in range(60):  # until the canvas holds an image, not a blank
        shot = canvas.screenshot()
        picture = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.float64)
        if picture.std() > 5:
            break
        tab.wait_for_timeout(500)
    first_image_s = time.perf_counter() - t0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "ohif-viewer.png"))
    Path(ARTIFACTS / "ohif-first-image.txt").write_text(f"{first_image_s:.2f} s\n")
    assert picture.std() > 5, "the viewport stayed blank"
    assert tab.outside == [], tab.outside[:5]


def test_the_viewer_files_are_public_and_dicomweb_is_not(served) -> None:
    import requests

    local, _ = served
    assert requests.get(local.web_url + "/app-config.js").status_code == 200
    config = requests.get(local.web_url + "/app-config.js").text
    assert "cloudfront" not in config and "window.location.origin" in config
    assert requests.get(local.dicomweb_url + "/studies").status_code == 401
