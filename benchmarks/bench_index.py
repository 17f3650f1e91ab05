"""LocalPACS's index at 100,000 and 1,000,000 instances: bulk ingest through the index's
own API (``Index.add_many``), and study-level C-FIND latency with a 7-day date filter
(the time to the first match and to the last) and with a patient ID.

Rows as a real archive holds them: 20 instances a study, five series of five
modalities, 700 patients, a year of study dates (about 55 studies a day at 1M).
No peer row: the targets are absolute (first response <= 0.2 s at 1M instances);
a study-level ``findscu`` against Orthanc over the same 1M instances would need 1M
files, which is the 100,000-file run's business (``bench_query``).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dicomlab.server.index import Index
from dicomlab.testing.indexrows import index_row

PEER = "none: absolute targets"
"""The peer command line this module's rows compare with, unless a row names its own."""


def _timed_find(ix: Index, filters: dict[str, str]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    matches = ix.find("STUDY", filters)
    first = next(matches, None)
    t_first = time.perf_counter() - t0
    n = (first is not None) + sum(1 for _ in matches)
    return t_first, time.perf_counter() - t0, n


def _one(n: int, work: Path) -> list[dict[str, Any]]:
    ix = Index(work / f"index-{n}.sqlite")
    t0 = time.perf_counter()
    added = ix.add_many(index_row(i) for i in range(n))
    ingest = time.perf_counter() - t0
    assert added == n
    rows = []
    for label, filters in (
        ("7-day StudyDate range", {"StudyDate": "20250301-20250307"}),
        ("one PatientID", {"PatientID": "P00007"}),
    ):
        runs = [_timed_find(ix, filters) for _ in range(5)]
        first = statistics.median(r[0] for r in runs)
        whole = statistics.median(r[1] for r in runs)
        rows.append(
            {
                "name": f"index {n:,}: study C-FIND, {label} ({runs[0][2]} studies), first match",
                "unit": "seconds (target <= 0.2 at 1,000,000; ratio = first / target)",
                "dicomlab": first,
                "dcmtk": 0.2,
                "ratio": first / 0.2,
                "last_match_s": whole,
                "runs_s": [r[0] for r in runs],
            }
        )
    ix.close()
    return [
        {
            "name": f"index {n:,}: bulk ingest",
            "unit": "rows/s (Index.add_many, 10,000 per transaction, then ANALYZE)",
            "dicomlab": n / ingest,
            "dcmtk": float("nan"),
            "ratio": float("nan"),
        },
        *rows,
    ]


def run() -> list[dict[str, Any]]:
    sizes = [int(s) for s in os.environ.get("DICOMLAB_BENCH_INDEX", "100000,1000000").split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        out: list[dict[str, Any]] = []
        for n in sizes:
            out.extend(_one(n, Path(tmp)))
    return out
