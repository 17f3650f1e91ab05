"""LocalPACS's web port against Orthanc's DICOMweb plugin over the same files, one run.

The same client asks both servers (requests, streaming the body and counting its bytes,
so the client costs the same on both sides); ratios are Orthanc's time over ours:

* WADO-RS: ``GET /studies/{uid}``, one study after the other, of 1,000 CT instances of
  512x512 in all
  (``DICOMLAB_BENCH_WEB_N``), multipart/related application/dicom as stored
  (``transfer-syntax=*``). Target: ours >= 1.5x Orthanc's rate.
* QIDO-RS: ``GET /studies`` over 5,000 studies (``DICOMLAB_BENCH_STUDIES``), all
  matches. Target: ours <= 0.5x Orthanc's time.

Peer: ``Orthanc <config.json>`` (Debian's orthanc with libOrthancDicomWeb.so, its
DICOMweb root ``/dicom-web/``, as dicomlab.peers.Orthanc(dicomweb=True) starts it).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

import dicomlab as dl
from benchmarks.bench_query import _studies
from benchmarks.common import dataset, interleaved
from dicomlab.peers import Orthanc

_ACCEPT = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}

PEER = (
    "Orthanc orthanc.json with the DICOMweb plugin: GET /dicom-web/studies/{uid}, GET "
    "/dicom-web/studies, the same client"
)
"""The peer command line this module's rows compare with, unless a row names its own."""


def _pull(url: str, headers: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    size = 0
    with requests.get(url, headers=headers, stream=True, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_content(1024 * 1024):
            size += len(chunk)
    return time.perf_counter() - t0, size


@contextmanager
def _servers(files: list[Path], tmp: Path) -> Iterator[tuple[dl.LocalPACS, Orthanc]]:
    """A LocalPACS with a web port and an Orthanc with its DICOMweb plugin, same files."""
    with (
        dl.LocalPACS(tmp / "lp", port=0, web_port=0, fsync=False) as local,
        Orthanc(tmp / "o", dicomweb=True) as orthanc,
    ):
        for f in files:
            local.archive.add_file(f.read_bytes(), "bench")
        orthanc.upload(files)
        yield local, orthanc


def _owner(local: dl.LocalPACS) -> dict[str, str]:
    web = local.web_node.dicomweb
    assert web is not None
    return {"Authorization": f"Bearer {web.secret()}"}


def _wado(n: int) -> dict[str, Any]:
    data = dataset("ct", n, 512)
    files = sorted(data.glob("*.dcm"))
    with (
        tempfile.TemporaryDirectory(dir=data.parent) as tmp,
        _servers(files, Path(tmp)) as (local, orthanc),
    ):
        studies = [str(u) for u in local.studies().StudyInstanceUID]
        mine = {**_ACCEPT, **_owner(local)}

        def every_study(root: str, headers: dict[str, str]) -> float:
            pulls = [_pull(f"{root}/studies/{uid}", headers) for uid in studies]
            assert sum(size for _, size in pulls) > n * 512 * 512 * 2
            return sum(s for s, _ in pulls)

        def ours() -> float:
            return every_study(local.dicomweb_url, mine)

        def theirs() -> float:
            return every_study(orthanc.dicomweb_url.rstrip("/"), _ACCEPT)

        m = interleaved({"ours": ours, "theirs": theirs})
    (t_ours, runs_ours), (t_peer, runs_peer) = m["ours"], m["theirs"]
    return {
        "name": f"web: WADO-RS studies of {n} CT 512x512 in all, LocalPACS vs Orthanc",
        "unit": "instances/s (higher is better; ratio = ours / Orthanc's DICOMweb plugin "
        "GET /dicom-web/studies/{uid}, target >= 1.5)",
        "dicomlab": n / t_ours,
        "dcmtk": n / t_peer,
        "ratio": t_peer / t_ours,
        "runs_dicomlab_s": runs_ours,
        "runs_peer_s": runs_peer,
    }


def _qido(n: int) -> dict[str, Any]:
    files = sorted(_studies(n).rglob("*.dcm"))
    with tempfile.TemporaryDirectory() as tmp, _servers(files, Path(tmp)) as (local, orthanc):
        mine = _owner(local)

        def search(url: str, headers: dict[str, str]) -> float:
            t0 = time.perf_counter()
            got = requests.get(url, headers=headers, timeout=600).json()
            s = time.perf_counter() - t0
            assert len(got) == n, len(got)
            return s

        m = interleaved(
            {
                "ours": lambda: search(f"{local.dicomweb_url}/studies", mine),
                "theirs": lambda: search(f"{orthanc.dicomweb_url.rstrip('/')}/studies", {}),
            }
        )
    (t_ours, runs_ours), (t_peer, runs_peer) = m["ours"], m["theirs"]
    return {
        "name": f"web: QIDO-RS /studies over {n} studies, LocalPACS vs Orthanc",
        "unit": "seconds (lower is better; ratio = ours / Orthanc's DICOMweb plugin "
        "GET /dicom-web/studies, target <= 0.5)",
        "dicomlab": t_ours,
        "dcmtk": t_peer,
        "ratio": t_ours / t_peer,
        "runs_dicomlab_s": runs_ours,
        "runs_peer_s": runs_peer,
    }


def run() -> list[dict[str, Any]]:
    n = int(os.environ.get("DICOMLAB_BENCH_WEB_N", "1000"))
    studies = int(os.environ.get("DICOMLAB_BENCH_STUDIES", "5000"))
    return [_wado(n), _qido(studies)]
