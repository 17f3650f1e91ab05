"""Large and interrupted C-FINDs: 50,000 matches with bounded memory; Ctrl-C aborts cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import dicomlab as dl
from dicomlab.core import results


def _fill(lp: dl.LocalPACS, n: int) -> None:
    """Index ``n`` one-instance studies directly (no files needed for C-FIND)."""
    db = lp.archive.index
    for i in range(n):
        db.add(
            {
                "SOPInstanceUID": f"1.2.3.{i}.3",
                "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7",
                "StudyInstanceUID": f"1.2.3.{i}",
                "SeriesInstanceUID": f"1.2.3.{i}.2",
                "PatientID": f"P{i % 5000:05d}",
                "PatientName": f"NAME^{i % 997}",
                "StudyDate": "20240101",
                "StudyTime": "120000",
                "AccessionNumber": f"A{i:07d}",
                "Modality": "OT",
                "path": f"files/x/{i}.dcm",
                "size": 1,
            }
        )


def test_ctrl_c_aborts_the_association_and_returns_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        _fill(lp, 300)
        calls = {"n": 0}

        def interrupting(original: Any) -> Any:
            def add(self: results.ResultBuilder, *a: object, **k: object) -> None:
                calls["n"] += 1
                if calls["n"] == 20:
                    raise KeyboardInterrupt
                original(self, *a, **k)

            return add

        for name in ("add", "add_raw"):  # pynetdicom's path and the direct one
            monkeypatch.setattr(
                results.ResultBuilder, name, interrupting(getattr(results.ResultBuilder, name))
            )
        with pytest.raises(KeyboardInterrupt):
            dl.find(lp.node, dl.Query.studies(), calling_ae="CTRLC")
        deadline = time.monotonic() + 5
        while lp.stats["aborted"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lp.stats["aborted"] == 1  # the association was aborted, not released
        monkeypatch.undo()
        again = dl.find(lp.node, dl.Query.studies(), calling_ae="CTRLC")
        assert len(again) == 300 and again.attrs["complete"]


_CHILD = """
import json, resource, sys
import dicomlab as dl
node = dl.Node.parse(sys.argv[1], name="big").replace(timeout=300)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
df = dl.find(node, dl.Query.studies(), calling_ae="BIG")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": len(df), "complete": df.attrs["complete"],
                  "grew_mb": (after - before) / 1024,
                  "frame_mb": df.memory_usage(deep=True).sum() / 2**20}))
"""


@pytest.mark.slow
def test_50000_matches_stream_with_bounded_memory(tmp_path: Path) -> None:
    n = 50_000
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        _fill(lp, n)
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, lp.node.address],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rows"] == n and out["complete"]
    # The client's peak grows by about the DataFrame itself, not by 50,000 Datasets.
    assert out["grew_mb"] < 3 * out["frame_mb"] + 60, out
