"""A retrieve keeps one association per worker between items, and never reuses a broken one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread
from test_faults import MuteSCP, _aborted_by_us

import dicomlab as dl
from dicomlab.peers import Orthanc
from dicomlab.testing.fixtures import need_peer


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("session-studies")
    return dl.synth.write_studies(folder, n_studies=5, seed=808, image_size=32, max_instances=4)


@pytest.mark.parametrize("method", ["get", "move"])
@pytest.mark.parametrize("connections", [1, 2])
def test_a_retrieve_opens_one_association_per_worker(
    tmp_path: Path, studies: pd.DataFrame, method: str, connections: int
) -> None:
    need_peer("Orthanc")
    with (
        dl.LocalPACS(tmp_path / "lp", ae_title="DLSESS", port=0, fsync=False) as lp,
        Orthanc.knowing(tmp_path / "o", lp.node) as o,
    ):
        o.upload(studies.path)
        found = dl.find(o.node, dl.Query.studies(), calling_ae="DLSESS")
        dl.log.flush()
        before = len(dl.log.read_associations())
        res = dl.retrieve(
            o.node,
            found,
            into=lp,
            method=method,
            max_connections=connections,
            progress=False,
            calling_ae="DLSESS",
        )
        assert isinstance(res, pd.DataFrame)
        assert res.complete.all() and len(res) == studies.StudyInstanceUID.nunique()
        held = lp.instances()
        assert sorted(held.SOPInstanceUID) == sorted(studies.SOPInstanceUID)
        for path in held.path:
            assert dcmread(path).SOPInstanceUID
        dl.log.flush()
        assocs = dl.log.read_associations().iloc[before:]
    ours = assocs[(assocs.role == "SCU") & (assocs.peer_ae == o.ae_title)]
    # one association per worker carried every planning query and retrieve, and
    # each was released (not aborted) when the job ended
    assert 1 <= len(ours) <= connections, ours[["contexts_proposed", "outcome"]]
    assert (ours.outcome == "released").all()
    ops = dl.log.read_log()
    ops = ops[ops.association_id.isin(ours.association_id)]
    assert (ops.service == f"C-{method.upper()}").sum() == len(res)


def test_a_broken_operation_is_never_followed_by_another_on_its_association() -> None:
    """A study from a peer that never answers: the planning query and each retrieve
    attempt time out and are aborted; each next one opens a fresh association."""
    with MuteSCP() as mute:
        node = mute.node(timeout=1, max_connections=1)
        res = dl.retrieve(
            node,
            ["1.2.3.1"],
            into=None,
            method="get",
            progress=False,
            calling_ae="ASKER",
        )
        records = mute.finished()
    assert isinstance(res, pd.DataFrame) and not res.complete.any()
    assert len(records) >= 2
    # every association carried exactly one request, then our A-ABORT
    assert all(_aborted_by_us(r) for r in records), records
