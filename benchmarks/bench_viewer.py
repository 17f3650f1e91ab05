"""The time until the OHIF viewer (``make viewer``) served by a LocalPACS shows the first
image of a 300-image CT series of 512x512, in Debian's chromium (software GL), from a
fresh browser context each round (nothing cached). Reported, with no peer: it is the
viewer's time on our DICOMweb, from ``page.goto(viewer_url)`` to a canvas that is not
blank."""

from __future__ import annotations

import io
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.uid import generate_uid

import dicomlab as dl
from benchmarks.common import dataset
from dicomlab.server.web import viewer

_ARGS = [
    "--no-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
]

PEER = "none: the viewer's own time to the first image"
"""The peer command line this module's rows compare with, unless a row names its own."""


def _one_series(local: dl.LocalPACS, n: int) -> str:
    """``n`` CT images of 512x512 as one series of one study; its Study Instance UID."""
    files = sorted(dataset("ct", n, 512).glob("*.dcm"))
    study, series = generate_uid(), generate_uid()
    for k, path in enumerate(files):
        ds = dcmread(path)
        uid = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceThickness = 1.0
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        assert local.archive.add_file(buf.getvalue(), "bench").status == "stored"
    return study


def _first_image(browser: Any, url: str) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url, timeout=120_000)
        canvas = page.locator("canvas.cornerstone-canvas").first
        canvas.wait_for(timeout=120_000)
        while time.perf_counter() - t0 < 120:
            shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
            if shot.std() > 5:
                return time.perf_counter() - t0
            page.wait_for_timeout(100)
        raise AssertionError("no image within 120 s")
    finally:
        context.close()


def run() -> list[dict[str, Any]]:
    if viewer.dist() is None or shutil.which("chromium") is None:
        raise RuntimeError("the viewer benchmark needs `make viewer` and `make peers` (chromium)")
    from playwright.sync_api import sync_playwright

    n = int(os.environ.get("DICOMLAB_BENCH_VIEWER_N", "300"))
    with (
        tempfile.TemporaryDirectory() as tmp,
        dl.LocalPACS(Path(tmp) / "lp", port=0, web_port=0, fsync=False) as local,
        sync_playwright() as p,
    ):
        study = _one_series(local, n)
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=_ARGS)
        try:
            runs = [_first_image(browser, local.viewer_url(study)) for _ in range(3)]
        finally:
            browser.close()
    return [
        {
            "name": f"viewer: OHIF first image of a {n}-image CT series (512x512)",
            "unit": "seconds from page.goto(viewer_url) to a non-blank canvas, fresh context "
            "(reported; no peer)",
            "dicomlab": statistics.median(runs),
            "dcmtk": float("nan"),
            "ratio": float("nan"),
            "runs_dicomlab_s": runs,
        }
    ]
