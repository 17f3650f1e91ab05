"""Ctrl-C (a kernel interrupt) during a blocking retrieve: aborted, reported, never reused."""

from __future__ import annotations

import _thread
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread

import dicomlab as dl
from dicomlab.peers import Orthanc
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers


def _interrupt_when(condition: threading.Event, check: object, timeout: float = 60) -> None:
    """Send the main thread a KeyboardInterrupt (what Jupyter's interrupt does) once ``check()``."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition.is_set():
            if check():  # type: ignore[operator]
                condition.set()
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()


def test_ctrl_c_during_retrieve_aborts_keeps_what_arrived_and_resumes(tmp_path: Path) -> None:
    need_peer("Orthanc")
    big = dl.synth.write_studies(
        tmp_path / "big", n_studies=12, seed=21, image_size=128, max_series=2, max_instances=6
    )
    with (
        dl.LocalPACS(tmp_path / "lp", ae_title="DLCTRLC", port=0, fsync=False) as lp,
        Orthanc.knowing(tmp_path / "o", lp.node) as o,
    ):
        o.upload(big.path)
        # Each instance takes >= 30 ms to store, so that the interrupt lands inside a
        # study's C-GET (the fast path moves a whole small study in a few ms).
        add = lp.archive.add

        def slow_add(*args: object, **kwargs: object) -> object:
            time.sleep(0.03)
            return add(*args, **kwargs)  # type: ignore[arg-type]

        lp.archive.add = slow_add  # type: ignore[method-assign]
        studies = dl.find(o.node, dl.Query.studies(), calling_ae="DLCTRLC")
        fired = threading.Event()
        # interrupt while the third study or later is arriving: some done, one running
        first_two = big[big.StudyInstanceUID.isin(studies.StudyInstanceUID[:2])]
        _interrupt_when(fired, lambda: lp.stats["stored"] > len(first_two))

        def pull() -> pd.DataFrame:
            out = dl.retrieve(
                o.node,
                studies,
                into=lp,
                method="get",
                max_connections=1,
                progress=False,
                calling_ae="DLCTRLC",
            )
            assert isinstance(out, pd.DataFrame)
            return out

        t0 = time.monotonic()
        res = pull()
        assert fired.is_set(), "the transfer ended before the interrupt"
        assert time.monotonic() - t0 < 60
        # the call returns the outcome table: what finished, and that the rest did not
        assert not res.attrs["complete"]
        assert res.complete.sum() >= 2 and (~res.complete).sum() >= 1
        assert res.error.dropna().str.contains("cancel").all()
        held = lp.instances()
        for path in held.path:  # every file that arrived is whole
            assert dcmread(path).SOPInstanceUID
        # the interrupted association was aborted (never released, never reused)
        dl.log.flush()
        assocs = dl.log.read_associations()
        ours = assocs[(assocs.role == "SCU") & (assocs.peer_ae == o.ae_title)]
        assert (ours.outcome == "aborted").sum() >= 1
        # running the cell again finishes the job: done studies are skipped
        again = pull()
        assert again.attrs["complete"], again
        assert again.skipped.sum() >= 2
        assert sorted(lp.instances().SOPInstanceUID) == sorted(big.SOPInstanceUID)
