"""Query: a study-level C-FIND returning 5,000 matches from Orthanc.

``dl.find`` to a typed DataFrame versus dcmtk ``findscu`` writing every response
to a file (``-X``), same Orthanc, same query. Ratio = dicomlab time / findscu
time (target: <= 1.0).

findscu writes its files to a tmpfs (``/dev/shm``) when there is one, the nearest
thing to our in-memory DataFrame: on this machine's ext4, creating 5,000 small files
cost findscu anywhere from 0.1 to 2.5 s of system time from one run to the next,
which made the reference, and so the ratio, swing by a factor of five.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import dicomlab as dl
from benchmarks.common import CACHE, findscu, interleaved, scratch
from dicomlab.peers import Orthanc

PEER = "see each row"
"""The peer command line this module's rows compare with, unless a row names its own."""


def _studies(n: int) -> Path:
    folder = CACHE / f"studies-{n}"
    marker = folder.with_name(folder.name + ".complete")
    if not marker.exists():
        dl.synth.write_studies(
            folder,
            n_studies=n,
            seed=5,
            today=date(2026, 1, 1),
            image_size=8,
            max_series=1,
            max_instances=1,
        )
        marker.write_text(str(n))
    return folder


def run() -> dict[str, Any]:
    n = int(os.environ.get("DICOMLAB_BENCH_STUDIES", "5000"))
    folder = _studies(n)
    files = sorted(folder.rglob("*.dcm"))
    with tempfile.TemporaryDirectory() as tmp, Orthanc(Path(tmp) / "o") as orthanc:
        orthanc.upload(files)
        node = orthanc.node.replace(timeout=120)
        query = dl.Query.studies()

        def ours() -> float:
            t0 = time.perf_counter()
            df = dl.find(node, query, calling_ae="BENCH")
            s = time.perf_counter() - t0
            assert len(df) == n and df.attrs["complete"], (len(df), df.attrs)
            return s

        where = scratch(Path(tmp))

        keys = [a for k in query.keys for a in ("-k", k)]
        args = [
            "-S",
            "-aec",
            orthanc.ae_title,
            "-k",
            "QueryRetrieveLevel=STUDY",
            *keys,
            "127.0.0.1",
            str(orthanc.port),
        ]

        def reference() -> float:
            return findscu(where, args, n)

        try:
            m = interleaved({"ours": ours, "findscu": reference})
            (mine, mine_runs), (theirs, their_runs) = m["ours"], m["findscu"]
        finally:
            if where != Path(tmp):
                shutil.rmtree(where, ignore_errors=True)
    return {
        "name": f"query: {n}-match study C-FIND from Orthanc",
        "unit": "seconds (lower is better; ratio = dicomlab / findscu, target <= 1.0)",
        "dicomlab": mine,
        "dcmtk": theirs,
        "ratio": mine / theirs,
        "runs_dicomlab_s": mine_runs,
        "runs_dcmtk_s": their_runs,
        "findscu_writes_to": "tmpfs" if where != Path(tmp) else "disk",
        "peer": "findscu -X -od /dev/shm/<dir> -aet BENCH -S -aec ORTHANC "
        "-k QueryRetrieveLevel=STUDY -k <the same keys> 127.0.0.1 <port>",
    }
