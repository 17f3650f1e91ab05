"""LocalPACS's web port against Orthanc's DICOMweb plugin over the same files, one run.

The same client asks both servers: one ``curl`` process per round, a fresh connection per
request (``Connection: close``, as Orthanc answers anyway), the body written to
/dev/null. The client runs outside the benchmark's process, as a viewer or another
machine does: a Python client in the process that serves LocalPACS would take the GIL
from the server it measures, a cost Orthanc never pays. Ratios are Orthanc's time over
ours:

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

import json
import os
import subprocess
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
from dicomlab.peers import Orthanc, require_binary

_ACCEPT = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}

CURL = "curl -s -f -H 'Connection: close' -H 'Accept: <type>' -o /dev/null <url> ..."
"""The client of both servers: one process per round, every URL of the round in it."""

PEER = (
    "Orthanc orthanc.json with the DICOMweb plugin: GET /dicom-web/studies/{uid}, GET "
    f"/dicom-web/studies; the client of both: {CURL}"
)
"""The peer command line this module's rows compare with, unless a row names its own."""


def _curl(urls: list[str], headers: dict[str, str], out: Path | None = None) -> float:
    """Seconds for one curl process to GET every URL in turn, each on a new connection,
    the bodies to ``out`` (one after the other) or to /dev/null; a failed request raises."""
    args = [require_binary("curl"), "-s", "-S", "-f", "-H", "Connection: close"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    for url in urls:
        args += ["-o", str(out) if out is not None else os.devnull, url]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - t0


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
        orthanc_root = orthanc.dicomweb_url.rstrip("/")

        def every_study(root: str, headers: dict[str, str]) -> float:
            return _curl([f"{root}/studies/{uid}" for uid in studies], headers)

        for root, headers in ((local.dicomweb_url, mine), (orthanc_root, _ACCEPT)):
            got = requests.get(f"{root}/studies/{studies[0]}", headers=headers, timeout=600)
            expect = int((local.instances().StudyInstanceUID == studies[0]).sum())
            assert got.content.count(b"Content-Type: application/dicom") == expect, root

        def ours() -> float:
            return every_study(local.dicomweb_url, mine)

        def theirs() -> float:
            return every_study(orthanc_root, _ACCEPT)

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
            out = Path(tmp) / "answer.json"
            s = _curl([url], headers, out)
            got = json.loads(out.read_bytes())
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
