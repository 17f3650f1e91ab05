"""Transcoding on send: JPEG-LS lossless files to a storescp that takes uncompressed
syntaxes only.

200 CT instances of 512x512 16-bit (``DICOMLAB_BENCH_TRANSCODE_N``), compressed with
JPEG-LS lossless, sent on one association to ``storescp --aetitle STORESCP
--output-directory DIR PORT`` (no ``+xa``: uncompressed syntaxes only).

- dicomlab: ``dl.store(scp, folder)``, decompressing each file on the way (pyjpegls).
- dcmtk: Debian's storescu cannot convert JPEG-LS when sending ("unable to convert
  dataset from 'JPEG-LS Lossless'"), so its fastest like-for-like is
  ``dcmdjpls IN OUT`` for every file, then ``storescu -aec STORESCP +sd 127.0.0.1 PORT
  DIR``. Ratio = dicomlab rate / dcmtk rate.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom import dcmread
from pydicom.uid import JPEGLSLossless

import dicomlab as dl
from benchmarks.common import interleaved, storescu, workspace
from dicomlab.peers import StoreSCP, peer_env, require_binary

PEER = "dcmdjpls IN OUT per file, then storescu -aec STORESCP +sd 127.0.0.1 <port> <dir>"
"""The peer command line this module's rows compare with, unless a row names its own."""


def _compressed(data: Path, folder: Path) -> Path:
    """The set in JPEG-LS lossless (made once, cached beside it)."""
    marker = folder.with_name(folder.name + ".complete")
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(data.glob("*.dcm")):
        ds = dcmread(path)
        ds.compress(JPEGLSLossless, generate_instance_uid=False)
        ds.save_as(folder / path.name, enforce_file_format=True)
    marker.write_text("done")
    return folder


def run() -> list[dict[str, Any]]:
    with workspace("ct", 200, 512, "DICOMLAB_BENCH_TRANSCODE_N") as ws:
        jls = _compressed(ws.data, ws.data.with_name(ws.data.name + "-jls"))
        total, work = ws.total, ws.work
        dcmdjpls = require_binary("dcmdjpls")

        def ours() -> float:
            with StoreSCP(work / "scp", accept_all=False) as scp:
                t0 = time.perf_counter()
                out = dl.store(scp.node, jls, max_connections=1, progress=False)
                s = time.perf_counter() - t0
            assert isinstance(out, pd.DataFrame)
            assert (out.status == 0).all() and len(out) == total, out.error.dropna().head()
            shutil.rmtree(work / "scp")
            return s

        def theirs() -> float:
            with StoreSCP(work / "scp", accept_all=False) as scp:
                t0 = time.perf_counter()
                with tempfile.TemporaryDirectory(dir=work) as tmp:
                    for path in sorted(jls.glob("*.dcm")):
                        subprocess.run(
                            [dcmdjpls, str(path), str(Path(tmp) / path.name)],
                            check=True,
                            env=peer_env(),
                            capture_output=True,
                        )
                    storescu(scp.port, Path(tmp), scp.ae_title)
                s = time.perf_counter() - t0
                assert len(list(scp.output.glob("*"))) == total
            shutil.rmtree(work / "scp")
            return s

        m = interleaved({"dicomlab": ours, "dcmtk": theirs})
    (mine, mine_runs), (peer, peer_runs) = m["dicomlab"], m["dcmtk"]
    return [
        {
            "name": f"transcode: {total} JPEG-LS CT 512x512 -> uncompressed-only storescp",
            "unit": "instances/s (higher is better; ratio = dl.store decompressing on the way / "
            "dcmdjpls per file then storescu +sd)",
            "dicomlab": total / mine,
            "dcmtk": total / peer,
            "ratio": peer / mine,
            "runs_dicomlab_s": mine_runs,
            "runs_peer_s": peer_runs,
        }
    ]
