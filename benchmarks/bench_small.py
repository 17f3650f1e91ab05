"""Small instances (per-message cost): 2,000 CT instances of 64x64, both ways.

Receive: dcmtk storescu -> LocalPACS (fsync off, as storescp) vs -> ``storescp +B``.
Send: ``dl.store`` -> storescp +B vs storescu -> storescp +B. One association each.
Ratio = dicomlab rate / dcmtk rate (target: >= 1.0 both ways).
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import pandas as pd

import dicomlab as dl
from benchmarks.common import (
    FAST_SCP,
    STORESCU,
    interleaved,
    rate_row,
    storescu_into_localpacs,
    storescu_into_storescp,
    workspace,
)
from dicomlab.peers import StoreSCP

UNIT = "instances/s (higher is better; ratio = dicomlab / dcmtk)"

PEER = "see each row"
"""The peer command line this module's rows compare with, unless a row names its own."""


def run() -> list[dict[str, Any]]:
    with workspace("small", 2000, 64, "DICOMLAB_BENCH_SMALL_N") as ws:
        data, total, work = ws.data, ws.total, ws.work

        def into_local() -> float:
            return storescu_into_localpacs(work, data, total, fsync=False)

        def store() -> float:
            with StoreSCP(work / "scp", extra=FAST_SCP) as scp:
                t0 = time.perf_counter()
                out = dl.store(scp.node, data, progress=False, calling_ae="BENCH")
                s = time.perf_counter() - t0
            assert isinstance(out, pd.DataFrame) and (out.status == 0).all() and len(out) == total
            shutil.rmtree(work / "scp")
            return s

        m = interleaved(
            {
                "base": lambda: storescu_into_storescp(work, data, FAST_SCP),
                "recv": into_local,
                "send": store,
            }
        )
    peer = f"{STORESCU} -> storescp +B"
    rows = [
        rate_row("small: receive storescu -> LocalPACS", UNIT, total, m["recv"], m["base"], peer),
        rate_row("small: send dl.store -> storescp", UNIT, total, m["send"], m["base"], peer),
    ]
    return rows
