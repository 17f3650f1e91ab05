"""The private pynetdicom members the fast path relies on: all present, and if one goes
missing in a release, the fast path stays off and everything still works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pynetdicom
import pytest

import dicomlab as dl
from dicomlab.net import _fast
from dicomlab.net._fast import privates


@pytest.fixture
def fresh_check() -> Iterator[None]:
    privates.problems.cache_clear()
    yield
    privates.problems.cache_clear()


def test_this_pynetdicom_has_every_private_member_we_use(fresh_check: None) -> None:
    assert privates.problems() == (), (
        f"pynetdicom {pynetdicom.__version__} changed members the fast path relies on "
        f"(verified with {privates.VERIFIED_WITH}): update dicomlab/net/_fast/privates.py and "
        "the code that uses them"
    )


def test_a_renamed_member_turns_the_fast_path_off_and_nothing_breaks(
    tmp_path: Path,
    fresh_check: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    members = dict(privates.PRIVATE_MEMBERS)
    owner = "pynetdicom.association.Association"
    members[owner] = (*members[owner], "_renamed_in_a_future_release")
    monkeypatch.setattr(privates, "PRIVATE_MEMBERS", members)
    assert privates.problems() == (f"{owner}._renamed_in_a_future_release",)
    assert "the fast path is off" in caplog.text and "_renamed_in_a_future_release" in caplog.text
    assert not _fast.enabled()
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as pacs:
        dl.synth.write_studies(tmp_path / "synth", n_studies=1, seed=2, max_series=1)
        sent = dl.store(pacs.node, tmp_path / "synth", progress=False)
        assert isinstance(sent, type(pacs.instances())) and (sent.status == 0).all()
        assert dl.echo(pacs.node).ok
        assert len(dl.find(pacs.node, dl.Query.studies())) == 1
