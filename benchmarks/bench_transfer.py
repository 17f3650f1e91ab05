"""Send and retrieve: dl.store vs storescu, dl.retrieve vs movescu/getscu, every dcmtk
tool at its fastest like-for-like setting (``+B``, bit-preserving: written as received).

Send: 1,000 CT instances of 512x512 16-bit (DICOMLAB_BENCH_N to change) from disk to
dcmtk ``storescp +B`` on one association: ``dl.store`` versus ``storescu``.
Ratio = dicomlab rate / storescu rate (target: >= 1.0).

Retrieve: the same set (10 studies of 100) held by Orthanc, pulled study by study
into a LocalPACS by C-MOVE and by C-GET with ``max_connections`` 1 and 4, versus dcmtk
``movescu`` (Orthanc -> ``storescp +B``) and ``getscu +B`` run once per study, one after
the other. LocalPACS runs with fsync off, like storescp; the rate includes dicomlab's
own planning queries (the image-level count used for resume and completeness).
Orthanc is the source in both: the rows compare the receiving sides.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

import dicomlab as dl
from benchmarks.common import (
    FAST_SCP,
    REPEATS,
    STORESCU,
    interleaved,
    large,
    storescu,
    storescu_into_storescp,
)
from dicomlab.peers import Orthanc, StoreSCP, free_port, peer_env, require_binary

UNIT = "instances/s (higher is better; ratio = dicomlab / dcmtk)"

PEER = "see each row"
"""The peer command line this module's rows compare with, unless a row names its own."""


def _row(name: str, ours: float, theirs: float, total: int, **extra: Any) -> dict[str, Any]:
    """A row; ``extra`` carries the runs and ``peer``, the command line compared with."""
    return {
        "name": name,
        "unit": UNIT,
        "dicomlab": total / ours,
        "dcmtk": total / theirs,
        "ratio": theirs / ours,
        "instances": total,
        **extra,
    }


def _send(data: Path, work: Path, total: int) -> list[dict[str, Any]]:
    def ours() -> float:
        with StoreSCP(work / "scp", extra=FAST_SCP) as scp:
            t0 = time.perf_counter()
            out = dl.store(scp.node, data, max_connections=1, progress=False, calling_ae="BENCH")
            s = time.perf_counter() - t0
        assert isinstance(out, pd.DataFrame)
        assert (out.status == 0).all() and len(out) == total, out.error.dropna().head()
        shutil.rmtree(work / "scp")
        return s

    def without_log() -> float:
        os.environ["DICOMLAB_LOG"] = "0"
        try:
            return ours()
        finally:
            del os.environ["DICOMLAB_LOG"]

    # Interleaved, each run after a sync: every run leaves ~150 MB of dirty pages behind
    # (storescp's files), and a run started without a sync pays for the one before.
    m = interleaved(
        {
            "on": ours,
            "off": without_log,
            "storescu": lambda: storescu_into_storescp(work, data, FAST_SCP),
        },
        max(3, REPEATS),
    )
    (on, on_runs), (off, off_runs), (base, base_runs) = m["on"], m["off"], m["storescu"]
    return [
        _row(
            "send: dl.store -> storescp",
            on,
            base,
            total,
            runs_s=on_runs,
            storescu_runs_s=base_runs,
            peer=f"{STORESCU} -> storescp +B; ours: dl.store(node, folder, max_connections=1)",
        ),
        {
            "name": "logging overhead: dl.store log on / off",
            "unit": "time ratio (1.00 = no overhead; target < 1.03)",
            "dicomlab": on,
            "dcmtk": off,
            "ratio": on / off,
            "on_runs_s": on_runs,
            "peer": "none: the same dl.store with DICOMLAB_LOG=0",
            "off_runs_s": off_runs,
        },
    ]


def _dcmtk_retrieve(tool: str, orthanc: Orthanc, uids: list[str], extra: list[str]) -> float:
    exe = require_binary(tool)
    t0 = time.perf_counter()
    for uid in uids:
        subprocess.run(
            [
                exe,
                "-S",
                "-aet",
                "BENCH",
                "-aec",
                orthanc.ae_title,
                *extra,
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={uid}",
                "127.0.0.1",
                str(orthanc.port),
            ],
            check=True,
            env=peer_env(),
            capture_output=True,
        )
    return time.perf_counter() - t0


def _retrieve(data: Path, work: Path, total: int) -> list[dict[str, Any]]:
    local_port = free_port()
    scp = StoreSCP(work / "scp", ae_title="BENCHSCP", extra=FAST_SCP)
    modalities = {"DLRECV": ("127.0.0.1", local_port), scp.ae_title: ("127.0.0.1", scp.port)}
    with Orthanc(work / "orthanc", modalities=modalities) as orthanc:
        storescu(orthanc.port, data, orthanc.ae_title)
        node = orthanc.node.replace(timeout=120)
        studies = dl.find(node, dl.Query.studies(), calling_ae="DLRECV")
        uids = list(studies.StudyInstanceUID)

        def ours(method: str, connections: int) -> float:
            root = work / "local"
            with dl.LocalPACS(root, ae_title="DLRECV", port=local_port, fsync=False) as lp:
                t0 = time.perf_counter()
                res = dl.retrieve(
                    node,
                    studies,
                    into=lp,
                    method=method,
                    max_connections=connections,
                    progress=False,
                    calling_ae="DLRECV",
                )
                s = time.perf_counter() - t0
                assert res.complete.all() and len(lp.instances()) == total, res.error.dropna()
            shutil.rmtree(root)
            return s

        def movescu() -> float:
            with scp:
                s = _dcmtk_retrieve("movescu", orthanc, uids, ["-aem", scp.ae_title])
                got = sum(1 for _ in scp.output.iterdir())
                assert got == total, got
            shutil.rmtree(scp.output)
            scp.output.mkdir()
            return s

        def getscu() -> float:
            out = work / "get"
            out.mkdir()
            s = _dcmtk_retrieve("getscu", orthanc, uids, ["+B", "-od", str(out)])
            assert sum(1 for _ in out.iterdir()) == total
            shutil.rmtree(out)
            return s

        contenders: dict[str, Callable[[], float]] = {"move": movescu, "get": getscu}
        for method in ("move", "get"):
            for connections in (1, 4):
                contenders[f"{method} x{connections}"] = (
                    lambda m=method, c=connections: ours(m, c)  # type: ignore[misc]
                )
        m = interleaved(contenders)
        rows = []
        tools = {
            "move": "movescu -S -aet BENCH -aec ORTHANC -aem BENCHSCP -k QueryRetrieveLevel=STUDY "
            "-k StudyInstanceUID=<uid> 127.0.0.1 <port> -> storescp +B, once per study",
            "get": "getscu -S -aet BENCH -aec ORTHANC +B -od <dir> -k QueryRetrieveLevel=STUDY "
            "-k StudyInstanceUID=<uid> 127.0.0.1 <port>, once per study",
        }
        for method, tool in (("move", "movescu -> storescp +B"), ("get", "getscu +B")):
            for connections in (1, 4):
                mine, runs = m[f"{method} x{connections}"]
                rows.append(
                    _row(
                        f"retrieve: {method} x{connections} (vs {tool})",
                        mine,
                        m[method][0],
                        total,
                        runs_s=runs,
                        dcmtk_runs_s=m[method][1],
                        peer=tools[method],
                    )
                )
    return rows


def run() -> list[dict[str, Any]]:
    with large() as ws:
        data, total, work = ws.data, ws.total, ws.work
        return [*_send(data, work, total), *_retrieve(data, work, total)]
