"""DICOMweb against Orthanc's DICOMweb plugin, one run, ratios to the like-for-like peer.

* QIDO-RS: a 5,000-study search into a typed DataFrame (``dl.find`` on a DICOMweb
  node) vs dicomweb-client's ``search_for_studies(get_remaining=True)`` returning
  the JSON (target: ratio <= 1.2).
* WADO-RS: 300 CT instances of 512x512 (``DICOMLAB_BENCH_WADO_N``) into a LocalPACS
  (``dl.retrieve(..., method="wado")``) vs dicomweb-client ``iter_study`` writing each
  instance to a file (target >= 2x, from concurrency), and vs our C-GET from the same
  Orthanc (target >= 0.8x).
* STOW-RS: 1,000 CT instances of 512x512 (``DICOMLAB_BENCH_STOW_N``) into a fresh
  Orthanc each run (``dl.store`` on a DICOMweb node, batches of 20 over
  ``max_connections``) vs ``dl.store`` over DIMSE into the same fresh Orthanc, and vs
  dicomweb-client ``store_instances`` (the same batches of 20, one at a time).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread, dcmwrite

import dicomlab as dl
from benchmarks.bench_query import _studies
from benchmarks.common import dataset, interleaved
from dicomlab.peers import Orthanc

_AS_STORED = (("application/dicom", "*"),)

PEER = (
    "dicomweb-client (search_for_studies(get_remaining=True), iter_study) against "
    "Orthanc + DICOMweb plugin"
)
"""The peer command line this module's rows compare with, unless a row names its own."""


def _qido(n: int) -> dict[str, Any]:
    files = sorted(_studies(n).rglob("*.dcm"))
    with tempfile.TemporaryDirectory() as tmp, Orthanc(Path(tmp) / "o", dicomweb=True) as o:
        o.upload(files)
        web = dl.Node("bench", dicomweb=dl.DICOMweb(o.dicomweb_url, timeout=120))
        query = dl.Query.studies()

        def ours() -> float:
            t0 = time.perf_counter()
            df = dl.find(web, query)
            s = time.perf_counter() - t0
            assert len(df) == n and df.attrs["complete"], (len(df), df.attrs)
            return s

        def theirs() -> float:
            client = DICOMwebClient(o.dicomweb_url)
            t0 = time.perf_counter()
            found = client.search_for_studies(get_remaining=True)
            s = time.perf_counter() - t0
            assert len(found) == n, len(found)
            return s

        m = interleaved({"ours": ours, "theirs": theirs})
    (mine, mine_runs), (peer, peer_runs) = m["ours"], m["theirs"]
    return {
        "name": f"qido: {n}-study search from Orthanc",
        "unit": "seconds (lower is better; ratio = dicomlab / dicomweb-client "
        "search_for_studies(get_remaining=True), target <= 1.2)",
        "dicomlab": mine,
        "dcmtk": peer,
        "ratio": mine / peer,
        "runs_dicomlab_s": mine_runs,
        "runs_peer_s": peer_runs,
    }


def _wado(n: int) -> list[dict[str, Any]]:
    data = dataset("ct", n, 512)
    files = sorted(data.glob("*.dcm"))
    with (
        tempfile.TemporaryDirectory(dir=data.parent) as tmp,
        Orthanc(Path(tmp) / "o", dicomweb=True) as o,
    ):
        o.upload(files)
        web = dl.Node("bench", dicomweb=dl.DICOMweb(o.dicomweb_url, timeout=120))
        studies = dl.find(web, dl.Query.studies())
        work = Path(tmp)

        def pull(node: dl.Node, method: str) -> float:
            root = work / f"lp-{method}"
            with dl.LocalPACS(root, port=0, fsync=False) as lp:
                t0 = time.perf_counter()
                out = dl.retrieve(node, studies, into=lp, method=method, progress=False)
                s = time.perf_counter() - t0
                assert isinstance(out, pd.DataFrame) and out.complete.all(), out.error.tolist()
            shutil.rmtree(root)
            return s

        def client_files() -> float:
            client = DICOMwebClient(o.dicomweb_url)
            folder = work / "client"
            folder.mkdir()
            t0 = time.perf_counter()
            k = 0
            for uid in studies.StudyInstanceUID:
                for ds in client.iter_study(str(uid), media_types=_AS_STORED):
                    buf = io.BytesIO()
                    dcmwrite(buf, ds, enforce_file_format=True)
                    (folder / f"{k:05d}.dcm").write_bytes(buf.getvalue())
                    k += 1
            s = time.perf_counter() - t0
            assert k == len(files), k
            shutil.rmtree(folder)
            return s

        m = interleaved(
            {
                "wado": lambda: pull(web, "wado"),
                "get": lambda: pull(o.node.replace(timeout=120), "get"),
                "client": client_files,
            }
        )
    (wado, wado_runs), (get, _), (client, client_runs) = m["wado"], m["get"], m["client"]
    return [
        {
            "name": f"wado: {n} CT 512x512 from Orthanc (vs dicomweb-client)",
            "unit": "instances/s (higher is better; ratio = dicomlab / dicomweb-client "
            "iter_study writing files, target >= 2)",
            "dicomlab": n / wado,
            "dcmtk": n / client,
            "ratio": client / wado,
            "runs_dicomlab_s": wado_runs,
            "runs_peer_s": client_runs,
        },
        {
            "name": f"wado: {n} CT 512x512 from Orthanc (vs our C-GET)",
            "unit": "instances/s (higher is better; ratio = WADO-RS / C-GET from the same "
            "Orthanc, target >= 0.8)",
            "dicomlab": n / wado,
            "dcmtk": n / get,
            "ratio": get / wado,
        },
    ]


def _stow(n: int) -> list[dict[str, Any]]:
    data = dataset("ct", n, 512)
    files = sorted(data.glob("*.dcm"))

    def into_fresh_orthanc(send: Callable[[Orthanc], None]) -> float:
        with (
            tempfile.TemporaryDirectory(dir=data.parent) as tmp,
            Orthanc(Path(tmp) / "o", dicomweb=True) as o,
        ):
            t0 = time.perf_counter()
            send(o)
            s = time.perf_counter() - t0
            held = len(o.rest("GET", "/instances"))
            assert held == n, held
        return s

    def stow(o: Orthanc) -> None:
        web = dl.Node("bench", dicomweb=dl.DICOMweb(o.dicomweb_url, timeout=120))
        out = dl.store(web, files, progress=False)
        assert isinstance(out, pd.DataFrame) and (out.status == 0).all()

    def dimse(o: Orthanc) -> None:
        out = dl.store(o.node.replace(timeout=120), files, progress=False)
        assert isinstance(out, pd.DataFrame) and (out.status == 0).all()

    def client(o: Orthanc) -> None:
        api = DICOMwebClient(o.dicomweb_url)
        for i in range(0, n, 20):
            api.store_instances([dcmread(f) for f in files[i : i + 20]])

    m = interleaved(
        {
            "stow": lambda: into_fresh_orthanc(stow),
            "dimse": lambda: into_fresh_orthanc(dimse),
            "client": lambda: into_fresh_orthanc(client),
        }
    )
    (ours, ours_runs), (cstore, cstore_runs), (theirs, theirs_runs) = (
        m["stow"],
        m["dimse"],
        m["client"],
    )
    return [
        {
            "name": f"stow: {n} CT 512x512 into Orthanc (vs our C-STORE)",
            "unit": "instances/s (higher is better; ratio = STOW-RS / dl.store over DIMSE "
            "into the same fresh Orthanc)",
            "dicomlab": n / ours,
            "dcmtk": n / cstore,
            "ratio": cstore / ours,
            "runs_dicomlab_s": ours_runs,
            "runs_peer_s": cstore_runs,
        },
        {
            "name": f"stow: {n} CT 512x512 into Orthanc (vs dicomweb-client)",
            "unit": "instances/s (higher is better; ratio = dicomlab / dicomweb-client "
            "store_instances in batches of 20)",
            "dicomlab": n / ours,
            "dcmtk": n / theirs,
            "ratio": theirs / ours,
            "runs_peer_s": theirs_runs,
        },
    ]


def run() -> list[dict[str, Any]]:
    n_studies = int(os.environ.get("DICOMLAB_BENCH_STUDIES", "5000"))
    n_wado = int(os.environ.get("DICOMLAB_BENCH_WADO_N", "300"))
    n_stow = int(os.environ.get("DICOMLAB_BENCH_STOW_N", "1000"))
    return [_qido(n_studies), *_wado(n_wado), *_stow(n_stow)]
