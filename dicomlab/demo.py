"""The main job, ``make demo`` / ``dicomlab demo``: what dicomlab does, end to end.

At this stage: synthetic studies on disk, a stand-in SCP in this process,
echoes with their diagnoses, and (when dcmtk is installed) an echo of a real
dcmtk ``storescp``. Steps are reported through ``say``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dicomlab import synth
from dicomlab.core.nodes import Node
from dicomlab.net.echo import echo
from dicomlab.server.lifecycle import VerificationServer

__all__ = ["run_demo"]


def run_demo(out: str | Path, say: Callable[[str], None], n_studies: int = 20) -> int:
    """Run the demo writing into ``out``; returns a process exit code."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say(f"1. writing {n_studies} synthetic studies (seed 0) to {out / 'studies'}")
    manifest = synth.write_studies(out / "studies", n_studies=n_studies, seed=0)
    say(
        f"   {manifest.StudyInstanceUID.nunique()} studies, {len(manifest)} instances, "
        f"modalities {sorted(manifest.Modality.unique())}"
    )
    with VerificationServer(ae_title="DICOMLAB", port=0) as server:
        say(f"2. started a stand-in SCP {server.ae_title} on 127.0.0.1:{server.port}")
        result = echo(server.node, calling_ae="DEMO")
        say(f"3. echo: {result}")
        ok = result.ok
    closed = Node("closed", ae_title="NOBODY", host="127.0.0.1", port=server.port, timeout=3)
    say(f"4. echo a stopped server, to see a diagnosis: {echo(closed, calling_ae='DEMO')}")
    if shutil.which("storescp"):
        from dicomlab.testing.peers import StoreSCP

        with tempfile.TemporaryDirectory() as tmp, StoreSCP(tmp) as scp:
            r = echo(scp.node, calling_ae="DEMO")
            say(f"5. echo dcmtk storescp: {r}")
            ok = ok and r.ok
    else:
        say("5. dcmtk is not installed: skipping the echo of a real storescp (make peers)")
    say("done." if ok else "FAILED: see above")
    return 0 if ok else 1
