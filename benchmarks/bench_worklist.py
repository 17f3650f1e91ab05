"""Modality worklist: a query answered with every one of 2,000 scheduled steps
(``DICOMLAB_BENCH_WORKLIST_N``), the same items on both servers (``.wl`` files written
by ``local.worklist.write_files``).

Two rows, each changing one side only:

- client: ``dl.find(wlmscpfs, dl.Query.worklist())`` into a typed DataFrame versus
  ``findscu -W -X -od DIR -aec WLMSCPFS 127.0.0.1 PORT`` with the same keys, writing
  each response to a file on a tmpfs, both against dcmtk's ``wlmscpfs -csk
  --data-files-path DIR PORT``. Ratio = dicomlab time / findscu time.
- server: that findscu command against a LocalPACS serving the items versus against
  wlmscpfs. Ratio = LocalPACS time / wlmscpfs time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

import dicomlab as dl
from benchmarks.common import findscu, interleaved, scratch
from dicomlab.core import worklist as wl
from dicomlab.peers import WlmSCPFS

PEER = (
    "findscu -W -X -od <tmpfs> -aec WLMSCPFS 127.0.0.1 <port> against wlmscpfs -csk "
    "--data-files-path <dir> <port>"
)
"""The peer command line this module's rows compare with, unless a row names its own."""


def _items(n: int) -> pd.DataFrame:
    """``n`` complete synthetic steps over a week, five modalities, ten stations."""
    day = date(2026, 1, 5)
    modalities = ("CT", "MR", "CR", "DX", "US")
    return pd.DataFrame(
        [
            {
                "PatientName": f"SYNTH^PATIENT{i % 700:04d}",
                "PatientID": f"SYNW{i % 700:05d}",
                "PatientBirthDate": "19700101",
                "PatientSex": "FM"[i % 2],
                "AccessionNumber": f"ACCW{i:08d}",
                "StudyInstanceUID": dl.synth.uid("worklist-bench", i),
                "RequestedProcedureDescription": f"{modalities[i % 5]} PROCEDURE",
                "Modality": modalities[i % 5],
                "ScheduledStationAETitle": f"{modalities[i % 5]}{i % 2 + 1:02d}",
                "ScheduledProcedureStepStartDate": day + timedelta(days=i % 7),
                "ScheduledProcedureStepStartTime": f"{7 + i % 12:02d}{i % 60:02d}00",
                "ScheduledProcedureStepDescription": f"{modalities[i % 5]} STEP",
            }
            for i in range(n)
        ]
    )


def _findscu_keys() -> list[str]:
    keys: list[str] = []
    for kw in wl.TOP_KEYS:
        keys += ["-k", kw]
    for kw in wl.SPS_KEYS:
        keys += ["-k", f"(0040,0100)[0].{kw}"]
    return keys


def run() -> list[dict[str, Any]]:
    n = int(os.environ.get("DICOMLAB_BENCH_WORKLIST_N", "2000"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        where = scratch(work)
        with (
            dl.LocalPACS(
                work / "lp", ae_title="BENCHRIS", port=0, fsync=False, allow_unknown="find"
            ) as lp,
            WlmSCPFS(work / "wlm") as wlm,
        ):
            lp.worklist.add(_items(n))
            lp.worklist.write_files(wlm.folder)
            query = dl.Query.worklist()

            def ours() -> float:
                t0 = time.perf_counter()
                df = dl.find(wlm.node.replace(timeout=120), query, calling_ae="BENCH")
                s = time.perf_counter() - t0
                assert len(df) == n and df.attrs["complete"], (len(df), df.attrs)
                return s

            def theirs(port: int, called: str) -> float:
                args = ["-W", "-aec", called, *_findscu_keys(), "127.0.0.1", str(port)]
                return findscu(where, args, n)

            try:
                m = interleaved(
                    {
                        "dl.find": ours,
                        "findscu-wlmscpfs": lambda: theirs(wlm.port, wlm.ae_title),
                        "findscu-localpacs": lambda: theirs(lp.port, lp.ae_title),
                    }
                )
            finally:
                if where != work:
                    shutil.rmtree(where, ignore_errors=True)
    client, client_runs = m["dl.find"]
    reference, reference_runs = m["findscu-wlmscpfs"]
    server, server_runs = m["findscu-localpacs"]
    return [
        {
            "name": f"worklist client: {n} steps from wlmscpfs",
            "unit": "seconds (lower is better; ratio = dl.find / findscu -W -X to a tmpfs)",
            "dicomlab": client,
            "dcmtk": reference,
            "ratio": client / reference,
            "runs_dicomlab_s": client_runs,
            "runs_dcmtk_s": reference_runs,
        },
        {
            "name": f"worklist server: {n} steps to findscu -W",
            "unit": "seconds (lower is better; ratio = LocalPACS / wlmscpfs)",
            "dicomlab": server,
            "dcmtk": reference,
            "ratio": server / reference,
            "runs_dicomlab_s": server_runs,
            "runs_dcmtk_s": reference_runs,
        },
    ]
