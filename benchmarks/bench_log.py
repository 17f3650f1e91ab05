"""The network log at a million operations: ``dl.read_log`` with filters, against DuckDB
reading the same folder into pandas (no dcmtk or Orthanc counterpart: DuckDB is the
reference row).

The log is 600 synthetic days (``dl.log.write_synthetic_log(folder, days=600,
seed=7)``, about 1,000,000 operation rows, made once and cached). Three reads, each
with its join to the associations (peer AE, outcome) as ``dl.read_log`` returns it:

- everything;
- one service over every day (``service="C-STORE"``);
- the last 30 days (``since=...``: only those date partitions are opened).

DuckDB's query for each: ``SELECT o.*, a.peer_ae, a.outcome FROM read_parquet(
'<folder>/operations/**/*.parquet', hive_partitioning=true) o LEFT JOIN
read_parquet('<folder>/associations/**/*.parquet', hive_partitioning=true) a USING
(association_id) WHERE ...``, then ``.df()``. Ratio = dicomlab time / DuckDB time;
target: each read of 1,000,000 rows in <= 2 s.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

import dicomlab as dl
from benchmarks.common import CACHE, interleaved

_END = datetime(2026, 1, 31, tzinfo=UTC)

PEER = "DuckDB read_parquet of the same folder into pandas"
"""The peer command line this module's rows compare with, unless a row names its own."""


def _log(days: int) -> tuple[Path, int]:
    folder = CACHE / f"log-{days}d"
    marker = folder.with_name(folder.name + ".complete")
    if not marker.exists():
        n = dl.log.write_synthetic_log(folder, days=days, seed=7, end=_END)
        marker.write_text(str(n))
    return folder, int(marker.read_text())


def _duckdb(folder: Path, where: str) -> int:
    ops = str(folder / "operations" / "**" / "*.parquet")
    assocs = str(folder / "associations" / "**" / "*.parquet")
    with duckdb.connect() as con:
        df = con.execute(
            "SELECT o.*, a.peer_ae, a.outcome "
            "FROM read_parquet(?, hive_partitioning = true) o "
            "LEFT JOIN (SELECT association_id, peer_ae, outcome "
            "           FROM read_parquet(?, hive_partitioning = true)) a "
            f"USING (association_id) {where}",
            [ops, assocs],
        ).df()
    return len(df)


def run() -> list[dict[str, Any]]:
    days = int(os.environ.get("DICOMLAB_BENCH_LOG_DAYS", "600"))
    folder, n = _log(days)
    since = _END - timedelta(days=30)
    cases = {
        "all": ({}, ""),
        "one service": ({"service": "C-STORE"}, "WHERE o.service = 'C-STORE'"),
        "last 30 days": (
            {"since": since},
            f"WHERE o.date >= '{since:%Y-%m-%d}' AND o.started_at >= '{since.isoformat()}'",
        ),
    }
    out = []
    for label, (filters, where) in cases.items():
        expected: list[int] = []

        def ours(filters: dict[str, Any] = filters, expected: list[int] = expected) -> float:
            t0 = time.perf_counter()
            df = dl.read_log(folder, **filters)
            s = time.perf_counter() - t0
            expected.append(len(df))
            return s

        def theirs(where: str = where, expected: list[int] = expected) -> float:
            t0 = time.perf_counter()
            rows = _duckdb(folder, where)
            s = time.perf_counter() - t0
            expected.append(rows)
            return s

        m = interleaved({"dicomlab": ours, "duckdb": theirs})
        assert len(set(expected)) == 1, (label, expected)  # the same rows both ways
        (mine, mine_runs), (peer, peer_runs) = m["dicomlab"], m["duckdb"]
        out.append(
            {
                "name": f"log read, {label}: {expected[0]:,} of {n:,} rows",
                "unit": "seconds (lower is better; ratio = dl.read_log / DuckDB into pandas; "
                "target <= 2 s)",
                "dicomlab": mine,
                "dcmtk": peer,
                "ratio": mine / peer,
                "runs_dicomlab_s": mine_runs,
                "runs_peer_s": peer_runs,
            }
        )
    return out
