"""C-ECHO round trip (association + echo + release) against dcmtk storescp.

dicomlab's ``dl.echo`` versus dcmtk ``echoscu``, both against the same storescp,
timed in-process for dicomlab and per call (minus process start-up measured with
``echoscu --version``) for echoscu. Median of ``repeats`` runs of ``n`` echoes.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from typing import Any

import dicomlab as dl
from dicomlab.peers import StoreSCP, peer_env, require_binary

PEER = (
    "echoscu -aet BENCH -aec STORESCP 127.0.0.1 <port>, per call minus the start-up of "
    "echoscu --version, against storescp"
)
"""The peer command line this module's rows compare with, unless a row names its own."""


def _echoscu_seconds(port: int, n: int) -> float:
    exe = require_binary("echoscu")
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(
            [exe, "-aet", "BENCH", "-aec", "STORESCP", "127.0.0.1", str(port)],
            check=True,
            env=peer_env(),
        )
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run([exe, "--version"], check=True, env=peer_env(), capture_output=True)
    startup = time.perf_counter() - t0
    return max(total - startup, 1e-9) / n


def _dicomlab_seconds(node: dl.Node, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        r = dl.echo(node, calling_ae="BENCH")
        if not r.ok:
            raise RuntimeError(r.detail)
    return (time.perf_counter() - t0) / n


def run(n: int = 50, repeats: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, StoreSCP(tmp) as scp:
        ours = [_dicomlab_seconds(scp.node, n) for _ in range(repeats)]
        theirs = [_echoscu_seconds(scp.port, n) for _ in range(repeats)]
    mine, dcmtk = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
    return {
        "name": f"echo round trip ({n} x {repeats})",
        "unit": "ms per echo (lower is better; ratio = dcmtk/dicomlab)",
        "dicomlab": mine,
        "dcmtk": dcmtk,
        "ratio": dcmtk / mine,
        "runs_dicomlab_ms": [x * 1e3 for x in ours],
        "runs_dcmtk_ms": [x * 1e3 for x in theirs],
    }
