"""Receive: dcmtk storescu -> LocalPACS (fsync on/off) vs -> dcmtk storescp vs -> Orthanc.

1,000 CT instances of 512x512 16-bit (DICOMLAB_BENCH_N to change), one association,
all receivers writing to disk. Throughput in instances/s; ratio = receiver / storescp.
"""

from __future__ import annotations

import shutil
from typing import Any

from benchmarks.common import (
    interleaved,
    large,
    storescu,
    storescu_into_localpacs,
    storescu_into_storescp,
)
from dicomlab.peers import Orthanc


def run() -> list[dict[str, Any]]:
    with large() as ws:
        data, total, work = ws.data, ws.total, ws.work

        def into_local(fsync: bool) -> float:
            return storescu_into_localpacs(work, data, total, fsync)

        def into_orthanc() -> float:
            with Orthanc(work / "orthanc") as o:
                s = storescu(o.port, data, o.ae_title)
            shutil.rmtree(work / "orthanc")
            return s

        m = interleaved(
            {
                "storescp": lambda: storescu_into_storescp(work, data),
                "on": lambda: into_local(True),
                "off": lambda: into_local(False),
                "orthanc": into_orthanc,
            }
        )
        (scp_s, scp_runs), (on_s, on_runs) = m["storescp"], m["on"]
        (off_s, off_runs), (orth_s, orth_runs) = m["off"], m["orthanc"]
    rate = lambda s: total / s  # noqa: E731
    base = rate(scp_s)
    unit = "instances/s (higher is better; ratio = receiver / storescp)"
    rows = []
    for name, s, runs in (
        ("receive: storescu -> LocalPACS fsync on", on_s, on_runs),
        ("receive: storescu -> LocalPACS fsync off", off_s, off_runs),
        ("receive: storescu -> Orthanc", orth_s, orth_runs),
    ):
        rows.append(
            {
                "name": name,
                "unit": unit,
                "dicomlab": rate(s),
                "dcmtk": base,
                "ratio": rate(s) / base,
                "runs_s": runs,
                "storescp_runs_s": scp_runs,
                "instances": total,
            }
        )
    return rows
