"""Cohort bundles: a re-run reports exactly what changed on the PACS and pulls only that."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.cohort import SAFE_COLUMNS


def _studies(manifest: pd.DataFrame) -> list[str]:
    return list(manifest.StudyInstanceUID.unique())


@pytest.mark.slow
def test_a_rerun_reports_3_new_studies_and_1_deleted_instance_and_pulls_only_the_new(
    tmp_path: Path,
) -> None:
    first = dl.synth.write_studies(tmp_path / "a", n_studies=6, seed=11)
    later = dl.synth.write_studies(tmp_path / "b", n_studies=3, seed=12)
    with (
        dl.LocalPACS(tmp_path / "pacs", ae_title="CPACS", port=0, fsync=False) as pacs,
        dl.LocalPACS(tmp_path / "mine", ae_title="CMINE", port=0, fsync=False) as mine,
    ):
        pacs.import_files(tmp_path / "a")
        cohort = dl.Cohort("ct-2025", pacs.node, dl.Query.studies(), folder=tmp_path / "bundle")
        out = cohort.pull(into=mine, method="get", progress=False)
        assert len(out) == 6 and out.complete.all()
        assert out.attrs["changes"] == {"new study": 6}
        assert len(mine.instances()) == len(first)

        pacs.import_files(tmp_path / "b")  # 3 studies added on the PACS
        gone = str(first.SOPInstanceUID.iloc[0])
        assert pacs.delete_instance(gone) == 1  # and 1 instance deleted
        changes = cohort.diff()  # told before anything moves
        again = cohort.pull(into=mine, method="get", progress=False)
        assert cohort.changes.equals(changes)
        assert sorted(changes.change) == ["instances removed"] + ["new study"] * 3
        removed = changes[changes.change == "instances removed"].iloc[0]
        assert removed.StudyInstanceUID == first.StudyInstanceUID.iloc[0]
        assert removed.instances_before - removed.instances_after == 1
        assert set(changes[changes.change == "new study"].StudyInstanceUID) == set(_studies(later))
        assert set(again.StudyInstanceUID) == set(_studies(later))  # only those moved
        assert again.complete.all()
        assert len(mine.instances()) == len(first) + len(later)  # the local copy keeps it

        third = cohort.pull(into=mine, method="get", progress=False)
        assert len(third) == 0 and third.attrs["changes"] == {}  # nothing changed
    runs = cohort.runs()
    assert list(runs.studies) == [6, 9, 9] and list(runs.new) == [6, 3, 0]
    assert list(runs.transferred) == [6, 3, 0]
    assert runs.job_id.iloc[0] and runs.job_id.iloc[0] in set(dl.jobs().job_id)


def test_a_bundle_holds_no_phi_unless_asked(tmp_path: Path) -> None:
    manifest = dl.synth.write_studies(tmp_path / "a", n_studies=2, seed=13)
    with (
        dl.LocalPACS(tmp_path / "pacs", port=0, fsync=False) as pacs,
        dl.LocalPACS(tmp_path / "mine", ae_title="CMINE", port=0, fsync=False) as mine,
    ):
        pacs.import_files(tmp_path / "a")
        plain = dl.Cohort("plain", pacs.node, dl.Query.studies(), folder=tmp_path / "p")
        plain.pull(into=mine, method="get", progress=False)
        opted = dl.Cohort("named", pacs.node, dl.Query.studies(), folder=tmp_path / "n", phi=True)
        opted.pull(into=mine, method="get", progress=False)
    names = {str(i) for i in manifest.PatientID.unique()} | {
        str(a) for a in manifest.AccessionNumber.unique()
    }
    for path in (tmp_path / "p").rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1")
            assert not any(n in text for n in names), path
    assert tuple(plain.studies().columns) == SAFE_COLUMNS
    assert "PatientID" in opted.studies().columns
    assert json.loads((tmp_path / "n" / "manifest.json").read_text())["phi"] is True


def test_a_cohort_refuses_what_it_cannot_reproduce() -> None:
    with pytest.raises(dl.ValidationError, match="cohort name"):
        dl.Cohort("no spaces", "X@127.0.0.1:1", dl.Query.studies())
    with pytest.raises(dl.ValidationError, match="study-level"):
        dl.Cohort("c", "X@127.0.0.1:1", dl.Query.patients())
    with pytest.raises(dl.ValidationError, match="queries or accessions"):
        dl.Cohort("c", "X@127.0.0.1:1")
