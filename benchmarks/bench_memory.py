"""Memory while receiving: is LocalPACS flat as instances arrive?

dcmtk storescu sends 1,000 CT instances of 512x512 16-bit (DICOMLAB_BENCH_N) to a
LocalPACS in this process, then to dcmtk ``storescp +B``, while a thread samples resident
memory (VmRSS) every 20 ms with the number of instances received so far. Reported:
the growth in MB from a quarter of the instances received to the end, for
LocalPACS (this whole Python process) and storescp; the ratio column is LocalPACS's
RSS at the end over its RSS at a quarter (1.00 = flat). One run: memory does not
need a median.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dicomlab as dl
from benchmarks.common import FAST_SCP, large, storescu
from dicomlab.peers import StoreSCP

UNIT = "MB RSS growth from 25% to 100% received (ratio = end / 25% for LocalPACS; 1 = flat)"

PEER = "storescu -> storescp +B (the RSS of the storescp process)"
"""The peer command line this module's rows compare with, unless a row names its own."""


def _rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sampled(
    send: Callable[[], object], pid: int | str, received: Callable[[], int]
) -> list[tuple[int, float]]:
    """Run ``send`` while sampling (instances received, RSS MB)."""
    samples: list[tuple[int, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((received(), _rss_mb(pid)))
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        send()
    finally:
        done.set()
        t.join()
    samples.append((received(), _rss_mb(pid)))
    return samples


def _growth(samples: list[tuple[int, float]], total: int) -> tuple[float, float, float]:
    """(RSS at 25%, RSS at the end, peak RSS) in MB."""
    quarter = next(rss for n, rss in samples if n >= total // 4)
    return quarter, samples[-1][1], max(rss for _, rss in samples)


def run() -> list[dict[str, Any]]:
    with large() as ws:
        data, total, work = ws.data, ws.total, ws.work
        with dl.LocalPACS(work / "local", port=0, allow_unknown="all", fsync=False) as lp:
            ours = _sampled(
                lambda: storescu(lp.port, data, lp.ae_title), "self", lambda: lp.stats["stored"]
            )
            assert lp.stats["stored"] == total
        with StoreSCP(work / "scp", extra=FAST_SCP) as scp:
            assert scp.proc is not None
            pid = scp.proc.pid
            theirs = _sampled(
                lambda: storescu(scp.port, data, scp.ae_title),
                pid,
                lambda: sum(1 for _ in scp.output.iterdir()),
            )
    q, end, peak = _growth(ours, total)
    tq, tend, tpeak = _growth(theirs, total)
    return [
        {
            "name": f"memory: receive {total:,} large into LocalPACS",
            "unit": UNIT,
            "dicomlab": end - q,
            "dcmtk": tend - tq,
            "ratio": end / q,
            "rss_mb": {"at_25": q, "end": end, "peak": peak},
            "storescp_rss_mb": {"at_25": tq, "end": tend, "peak": tpeak},
            "instances": total,
        }
    ]
