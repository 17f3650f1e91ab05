"""De-identification on receive: storescu -> LocalPACS with ``deidentify`` vs without.

1,000 CT instances of 512x512 16-bit (``DICOMLAB_BENCH_N``), one association, fsync on
(LocalPACS's default), the Basic Profile with Retain Longitudinal Temporal Information
(a date shift per patient). Target: de-identifying costs at most 25 % of receive
throughput (ratio = with / without >= 0.75). dcmtk's bit-preserving receiver,
``storescp --aetitle STORESCP --output-directory DIR +xa +B PORT``, is measured in the
same rounds for reference.
"""

from __future__ import annotations

import secrets
from typing import Any

import dicomlab as dl
from benchmarks.common import interleaved, large, storescu_into_localpacs, storescu_into_storescp

PEER = "storescu -> storescp --aetitle STORESCP --output-directory <dir> +xa +B <port> (reference)"
"""The peer command line this module's rows compare with, unless a row names its own."""


def run() -> list[dict[str, Any]]:
    with large() as ws:
        data, total, work = ws.data, ws.total, ws.work

        def deid() -> dl.Deidentifier:
            return dl.Deidentifier(
                secrets.token_urlsafe(24), ["retain_longitudinal"], map_dir=work / "map"
            )

        m = interleaved(
            {
                "plain": lambda: storescu_into_localpacs(work, data, total, True),
                "deid": lambda: storescu_into_localpacs(work, data, total, True, deid()),
                "storescp": lambda: storescu_into_storescp(work, data, ("+B",)),
            }
        )
    (plain, plain_runs), (with_deid, deid_runs) = m["plain"], m["deid"]
    scp = m["storescp"][0]
    return [
        {
            "name": f"deid: storescu -> LocalPACS, {total} CT 512x512, deidentify vs not",
            "unit": "instances/s (higher is better; ratio = with deidentify / without, "
            "target >= 0.75)",
            "dicomlab": total / with_deid,
            "dcmtk": total / plain,
            "ratio": plain / with_deid,
            "runs_dicomlab_s": deid_runs,
            "runs_peer_s": plain_runs,
        },
        {
            "name": f"deid: storescu -> LocalPACS deidentify vs storescp +B ({total} CT)",
            "unit": "instances/s (higher is better; ratio = LocalPACS with deidentify / "
            "storescp --aetitle STORESCP --output-directory DIR +xa +B PORT)",
            "dicomlab": total / with_deid,
            "dcmtk": total / scp,
            "ratio": scp / with_deid,
        },
    ]
