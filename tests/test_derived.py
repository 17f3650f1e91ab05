"""Synthetic studies are exemplary DICOM, and their derived objects travel.

dciodvfy (dicom3tools, the standard's reference IOD validator) checks every modality
dl.synth writes and the SEG, SR and KOS built with highdicom; the derived objects then
go to Orthanc, dcmtk storescp and LocalPACS and come back byte-identical.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

import dicomlab as dl
from dicomlab.cli import main
from dicomlab.peers import Orthanc, StoreSCP
from dicomlab.testing.fixtures import need_peer

TODAY = date(2026, 3, 2)
SEG, SR, KOS = (
    "1.2.840.10008.5.1.4.1.1.66.4",
    "1.2.840.10008.5.1.4.1.1.88.34",
    "1.2.840.10008.5.1.4.1.1.88.59",
)


@pytest.fixture(scope="module")
def study_set(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Every modality, twice, and the derived objects of both CT studies."""
    folder = tmp_path_factory.mktemp("synth")
    return dl.synth.write_studies(folder, n_studies=10, seed=25, today=TODAY, derived=True)


def _messages(path: str) -> list[str]:
    out = subprocess.run(
        [need_peer("dciodvfy"), path], capture_output=True, text=True, timeout=60, check=False
    )
    return [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if line.startswith(("Error", "Warning"))
    ]


def test_every_modality_and_derived_object_passes_dciodvfy(study_set: pd.DataFrame) -> None:
    assert {"CT", "MR", "CR", "DX", "US", "SEG", "SR", "KO"} <= set(study_set.Modality)
    found = {p: _messages(p) for p in study_set.path}
    failing = {p: m for p, m in found.items() if m}
    assert not failing, next(iter(failing.items()))


def test_dciodvfy_is_not_silent_about_a_broken_object(
    study_set: pd.DataFrame, tmp_path: Path
) -> None:
    """The check above can fail: a CT without its Type 1 Image Type is reported."""
    ds = dcmread(study_set[study_set.Modality == "CT"].path.iloc[0])
    del ds.ImageType
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    assert any("ImageType" in m for m in _messages(str(broken)))


def _by_uid(study_set: pd.DataFrame) -> dict[str, Dataset]:
    return {row.SOPInstanceUID: dcmread(row.path) for row in study_set.itertuples()}


def test_derived_objects_reference_instances_of_their_own_study(study_set: pd.DataFrame) -> None:
    held = _by_uid(study_set)
    derived = study_set[study_set.SOPClassUID.isin([SEG, SR, KOS])]
    assert sorted(derived.groupby("StudyInstanceUID").SOPClassUID.apply(sorted).sum()) == sorted(
        [SEG, SR, KOS] * 2
    )
    for row in derived.itertuples():
        ds = held[row.SOPInstanceUID]
        refs = _references(ds)
        assert refs, f"{row.Modality} references nothing"
        for uid in refs:
            assert uid in held, f"{row.Modality} references {uid}, which is not in the set"
            assert held[uid].StudyInstanceUID == row.StudyInstanceUID
            assert held[uid].PatientID == ds.PatientID
    seg = held[derived[derived.SOPClassUID == SEG].SOPInstanceUID.iloc[0]]
    sr = held[derived[derived.SOPClassUID == SR].SOPInstanceUID.iloc[0]]
    assert seg.SOPInstanceUID in _references(sr)  # the report measures the segmentation


def _references(ds: Dataset) -> set[str]:
    """Every Referenced SOP Instance UID anywhere in ``ds`` (sequences included)."""
    found: set[str] = set()

    def walk(item: Dataset) -> None:
        for elem in item:
            if elem.keyword == "ReferencedSOPInstanceUID":
                found.add(str(elem.value))
            elif elem.VR == "SQ":
                for child in elem.value:
                    walk(child)

    walk(ds)
    found.discard(str(ds.SOPInstanceUID))
    return found


def test_the_same_seed_gives_the_same_bytes_derived_objects_included(tmp_path: Path) -> None:
    def digests(folder: Path) -> dict[str, str]:
        df = dl.synth.write_studies(folder, n_studies=1, seed=9, today=TODAY, derived=True)
        return {
            str(Path(p).relative_to(folder)): hashlib.sha256(Path(p).read_bytes()).hexdigest()
            for p in df.path
        }

    first = digests(tmp_path / "a")
    assert len(first) >= 4 and first == digests(tmp_path / "b")


def _data_set_bytes(path: str | Path) -> bytes:
    """A file's data set as stored, without the preamble and file meta (which every
    archive writes its own way)."""
    raw = Path(path).read_bytes()
    meta_end = 144 + int.from_bytes(raw[140:144], "little")
    return raw[meta_end:]


@pytest.fixture
def derived_files(study_set: pd.DataFrame) -> pd.DataFrame:
    return study_set[study_set.SOPClassUID.isin([SEG, SR, KOS])]


def test_derived_objects_travel_through_localpacs_and_orthanc(
    tmp_path: Path, study_set: pd.DataFrame, derived_files: pd.DataFrame
) -> None:
    need_peer("Orthanc")
    study = derived_files.StudyInstanceUID.iloc[0]
    whole = study_set[study_set.StudyInstanceUID == study]
    with (
        dl.LocalPACS(tmp_path / "lp", port=0) as lp,
        Orthanc(tmp_path / "orthanc") as orthanc,
    ):
        sent = dl.store(orthanc.node, whole, progress=False)
        assert isinstance(sent, pd.DataFrame) and sent.attrs["complete"], sent.error.tolist()
        # back from Orthanc into LocalPACS (C-GET), indexed with their SOP classes
        got = dl.retrieve(orthanc.node, [study], into=lp, method="get", progress=False)
        assert isinstance(got, pd.DataFrame) and got.complete.all(), got.error.tolist()
        held = lp.instances().set_index("SOPInstanceUID")
        for row in derived_files[derived_files.StudyInstanceUID == study].itertuples():
            assert held.loc[row.SOPInstanceUID, "SOPClassUID"] == row.SOPClassUID
            assert _data_set_bytes(held.loc[row.SOPInstanceUID, "path"]) == _data_set_bytes(
                row.path
            )
        # and LocalPACS answers an image-level C-FIND with them
        q = dl.Query.instances(StudyInstanceUID=study, return_keys=["SOPClassUID"])
        found = dl.find(lp.node, q)
        assert {SEG, SR, KOS} <= set(found.SOPClassUID)


def test_derived_objects_reach_dcmtk_storescp_intact(
    storescp: StoreSCP, derived_files: pd.DataFrame
) -> None:
    sent = dl.store(storescp.node, derived_files, progress=False)
    assert isinstance(sent, pd.DataFrame) and sent.attrs["complete"], sent.error.tolist()
    received = {dcmread(p).SOPInstanceUID: p for p in storescp.output.rglob("*") if p.is_file()}
    for row in derived_files.itertuples():
        assert _data_set_bytes(received[row.SOPInstanceUID]) == _data_set_bytes(row.path)


@pytest.fixture
def local_with_studies(tmp_path: Path, study_set: pd.DataFrame) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
        images = study_set[~study_set.SOPClassUID.isin([SEG, SR, KOS])]
        dl.store(lp.node, images, progress=False)
        yield lp


def test_key_objects_bookmark_a_selection_and_a_pacs_keeps_them(
    local_with_studies: dl.LocalPACS,
) -> None:
    lp = local_with_studies
    rows = lp.instances()
    studies = sorted(rows.StudyInstanceUID.unique())[:2]
    selection = pd.concat([rows[rows.StudyInstanceUID == s].head(2) for s in studies])
    kos = dl.key_objects(selection, description="cohort A")
    assert [str(k.StudyInstanceUID) for k in kos] == studies  # one document per study
    for doc in kos:
        picked = set(selection[selection.StudyInstanceUID == doc.StudyInstanceUID].SOPInstanceUID)
        assert _references(doc) == picked
    again = dl.key_objects(selection, description="cohort A")
    assert [k.SOPInstanceUID for k in again] == [k.SOPInstanceUID for k in kos]  # reproducible
    sent = dl.store(lp.node, kos, progress=False)
    assert isinstance(sent, pd.DataFrame) and sent.attrs["complete"], sent.error.tolist()
    found = dl.find(lp.node, dl.Query.series(Modality="KO"))
    assert sorted(found.StudyInstanceUID) == studies


def test_key_objects_need_the_files() -> None:
    with pytest.raises(ValueError, match="path column"):
        dl.key_objects(pd.DataFrame({"SOPInstanceUID": ["1.2.3"]}))


def test_the_command_line_writes_derived_objects_too(tmp_path: Path) -> None:
    assert main(["synth", str(tmp_path / "s"), "-n", "1", "--seed", "2", "--derived"]) == 0
    modalities = {dcmread(p, stop_before_pixels=True).Modality for p in tmp_path.rglob("*.dcm")}
    assert modalities == {"CT", "SEG", "SR", "KO"}
