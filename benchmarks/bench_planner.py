"""The query planner: a 100,000-study find against an archive that caps at 1,000.

One LocalPACS archive of 100,000 studies (index rows loaded through ``Index.add_many``;
study dates over 2025, times over the day). Rows:

- ``dl.find(..., plan="auto")`` against it capped (``dl.FindLimit(1000)``: cancelled
  after 1,000 matches, as Orthanc's ``LimitFindResults`` does) vs one uncapped
  ``dl.find`` of the same archive: the price of splitting (ratio = planned / uncapped);
- the uncapped ``dl.find`` vs dcmtk ``findscu -S -X`` (responses written to a tmpfs)
  over the same uncapped archive, the peer's fastest like-for-like setting.

One run each (an uncapped 100,000-match C-FIND takes tens of seconds here).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import dicomlab as dl
from benchmarks.common import findscu, scratch
from dicomlab.testing.indexrows import index_row

PEER = (
    "findscu -S -X -od /dev/shm/<dir> -aet BENCH -aec DICOMLAB -k "
    "QueryRetrieveLevel=STUDY -k <the same keys> 127.0.0.1 <port>"
)
"""The peer command line this module's rows compare with, unless a row names its own."""


def _rows(n: int) -> Any:
    for s in range(n):
        row = index_row(s, per_study=1, per_series=1)
        row["StudyDate"] = f"2025{1 + s % 12:02d}{1 + (s // 12) % 28:02d}"
        row["StudyTime"] = f"{(s * 7) % 24:02d}{(s * 13) % 60:02d}{s % 60:02d}"
        yield row


def run() -> list[dict[str, Any]]:
    n = int(os.environ.get("DICOMLAB_BENCH_PLAN_STUDIES", "100000"))
    cap = 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archive"
        dl.LocalPACS(root, port=0).archive.index.add_many(_rows(n))
        query = dl.Query.studies()
        with dl.LocalPACS(root, port=0, allow_unknown="all") as whole:
            node = whole.node.replace(timeout=600)
            t0 = time.perf_counter()
            df = dl.find(node, query, calling_ae="BENCH")
            uncapped = time.perf_counter() - t0
            assert len(df) == n and df.attrs["complete"]
            where = scratch(Path(tmp))
            keys = [a for k in query.keys for a in ("-k", k)]
            args = ["-S", "-aec", whole.ae_title, "-k", "QueryRetrieveLevel=STUDY", *keys]
            try:
                theirs = findscu(where, [*args, "127.0.0.1", str(whole.port)], n)
            finally:
                if where != Path(tmp):
                    shutil.rmtree(where, ignore_errors=True)
        with dl.LocalPACS(root, port=0, find_limit=dl.FindLimit(cap, "cancel")) as capped:
            node = capped.node.replace(timeout=600)
            t0 = time.perf_counter()
            planned = dl.find(node, query, calling_ae="BENCH", plan="auto", warn=False)
            split_s = time.perf_counter() - t0
            assert len(planned) == n and planned.attrs["complete"], planned.attrs.get("error")
            queries = planned.attrs["queries"]
    command = "findscu -S -X -od /dev/shm/... -aet BENCH -aec DICOMLAB -k QueryRetrieveLevel=STUDY"
    return [
        {
            "name": f"planner: {n}-study find, capped at {cap}",
            "unit": "seconds (lower is better; ratio = planned capped / one uncapped dl.find)",
            "dicomlab": split_s,
            "dcmtk": uncapped,
            "ratio": split_s / uncapped,
            "queries": queries,
            "reference": "dl.find of the same archive uncapped",
        },
        {
            "name": f"planner: {n}-study uncapped find vs findscu",
            "unit": "seconds (lower is better; ratio = dicomlab / findscu)",
            "dicomlab": uncapped,
            "dcmtk": theirs,
            "ratio": uncapped / theirs,
            "reference": command,
        },
    ]
