"""Receive: dcmtk storescu -> LocalPACS (fsync on/off; warm, and cold in a fresh
``dicomlab serve`` process) vs -> dcmtk ``storescp +B`` (bit-preserving: written as
received, as LocalPACS does; dcmtk's fastest like-for-like receiver).

Warm: 1,000 CT instances of 512x512 16-bit (``DICOMLAB_BENCH_N``), one association,
a LocalPACS in this process started before the round. References: plain storescp
(parses and re-encodes each data set) and Orthanc. Cold: a process started fresh
for each round and its very first association timed, as a user running
``dicomlab serve`` meets it (default settings: fsync on), on the first 300 of the
instances; storescp +B is started fresh for each round too. Every receiver writes
to disk. Throughput in instances/s; ratio = receiver / storescp +B.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks.common import (
    FAST_SCP,
    STORESCU,
    command_line,
    interleaved,
    large,
    rate_row,
    storescu,
    storescu_into_localpacs,
    storescu_into_storescp,
    subset,
)
from dicomlab.peers import Orthanc, Serve, StoreSCP

COLD_N = 300

PEER = "see each row"
"""The peer command line this module's rows compare with, unless a row names its own."""


def _scp_line(work: Path, extra: tuple[str, ...]) -> str:
    """The command line of the storescp the rows compare with (never started)."""
    return command_line([*StoreSCP(work / "line", extra=extra).command()[:-1], "<port>"])


def _cold_serve(work: Path, data: Path, total: int) -> float:
    """Seconds for storescu -> a ``dicomlab serve`` process started just now (its first
    association), fsync on as by default."""
    with Serve(work / "cold", ae_title="COLD", extra=["--allow", "all"]) as serve:
        s = storescu(serve.port, data, serve.ae_title)
    held = sum(1 for _ in (serve.root / "files").rglob("*.dcm"))
    assert held == total, f"dicomlab serve kept {held} of {total}: {serve.log_text()[-400:]}"
    shutil.rmtree(work / "cold")
    return s


def run() -> list[dict[str, Any]]:
    with large() as ws:
        data, total, work = ws.data, ws.total, ws.work
        cold_data = subset(data, COLD_N)
        scp_line = _scp_line(work, FAST_SCP)

        def into_local(fsync: bool) -> float:
            return storescu_into_localpacs(work, data, total, fsync)

        def into_orthanc() -> float:
            with Orthanc(work / "orthanc") as o:
                s = storescu(o.port, data, o.ae_title)
            shutil.rmtree(work / "orthanc")
            return s

        m = interleaved(
            {
                "storescp +B": lambda: storescu_into_storescp(work, data, FAST_SCP),
                "on": lambda: into_local(True),
                "off": lambda: into_local(False),
                "storescp": lambda: storescu_into_storescp(work, data, ()),
                "orthanc": into_orthanc,
            }
        )
        cold = interleaved(
            {
                "storescp +B": lambda: storescu_into_storescp(work, cold_data, FAST_SCP),
                "serve": lambda: _cold_serve(work, cold_data, COLD_N),
            }
        )
    unit = "instances/s (higher is better; ratio = receiver / storescp +B)"
    peer = f"{STORESCU} -> {scp_line}"
    rows = [
        rate_row(name, unit, total, m[key], m["storescp +B"], peer)
        for key, name in (
            ("on", "receive: storescu -> LocalPACS fsync on"),
            ("off", "receive: storescu -> LocalPACS fsync off"),
            ("storescp", "receive: storescu -> storescp (no +B; reference)"),
            ("orthanc", "receive: storescu -> Orthanc (reference)"),
        )
    ]
    cold_peer = (
        f"{STORESCU} -> a fresh {scp_line}; ours: dicomlab serve --allow all "
        "(fsync on), its first association"
    )
    name = f"receive cold: storescu -> fresh dicomlab serve ({COLD_N})"
    rows.append(rate_row(name, unit, COLD_N, cold["serve"], cold["storescp +B"], cold_peer))
    return rows
