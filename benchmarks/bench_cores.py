"""Every core: four dcmtk storescu sending at once into a LocalPACS with worker
processes, versus into dcmtk ``storescp --fork +B`` (a process per association,
bit-preserving: dcmtk's fastest like-for-like receiver for many senders).

1,000 CT instances of 512x512 16-bit (``DICOMLAB_BENCH_N``) split four ways, each
storescu sending its own 250 on one association, all started together; the time is
until the last one ends. LocalPACS runs with fsync off (storescp never fsyncs) and
``workers=N`` (``DICOMLAB_BENCH_WORKERS``, default one per core), and once with no
worker (one process, one core) for reference. Ratio = LocalPACS rate / storescp rate.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import dicomlab as dl
from benchmarks.common import (
    command_line,
    interleaved,
    large,
    rate_row,
    split,
    storescu_many,
)
from dicomlab.peers import StoreSCP

UNIT = "instances/s (higher is better; ratio = LocalPACS / storescp --fork +B)"
SENDERS = 4

PEER = "see each row"
"""The peer command line this module's rows compare with, unless a row names its own."""


def run() -> list[dict[str, Any]]:
    workers = int(os.environ.get("DICOMLAB_BENCH_WORKERS", str(os.cpu_count() or 2)))
    with large() as ws:
        data, total, work = ws.data, ws.total, ws.work
        folders = split(data, SENDERS)
        shown: list[str] = []

        def fork() -> float:
            with StoreSCP(work / "scp", extra=("+B", "--fork")) as scp:
                shown[:] = [command_line(scp.command())]
                s = storescu_many(scp.port, folders, scp.ae_title)
                got = sum(1 for _ in scp.output.iterdir())
            shutil.rmtree(work / "scp")
            assert got == total, f"storescp --fork kept {got} of {total}"
            return s

        def local(n: int) -> float:
            root = work / "local"
            with dl.LocalPACS(root, port=0, allow_unknown="all", fsync=False, workers=n) as lp:
                assert lp.wait_for_workers(60), "worker processes did not start"
                s = storescu_many(lp.port, folders, lp.ae_title)
                held = lp.instances()
                assert len(held) == total and held.SOPInstanceUID.is_unique, len(held)
            shutil.rmtree(root)
            return s

        m = interleaved({"fork": fork, "workers": lambda: local(workers), "one": lambda: local(0)})
    peer = f"{SENDERS} x storescu +sd +r -> {shown[0]}"
    name = f"cores: {SENDERS} storescu at once -> LocalPACS"
    rows = [
        rate_row(f"{name} workers={workers}", UNIT, total, m["workers"], m["fork"], peer),
        rate_row(f"{name} workers=0", UNIT, total, m["one"], m["fork"], peer),
    ]
    return rows
