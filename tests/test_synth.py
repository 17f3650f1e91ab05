"""Synthetic studies: deterministic, dated relative to "today", varied and valid DICOM."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.config import RAISE
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
)
from pydicom.valuerep import validate_value

from dicomlab import synth

TODAY = date(2026, 1, 15)
N_STUDIES = 12  # enough for every name with a Specific Character Set (patients 0-8)
SOP_CLASSES = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "US": UltrasoundImageStorage,
}
UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")


def relative(manifest: pd.DataFrame, root: Path) -> pd.DataFrame:
    out = manifest.copy()
    out["path"] = [str(Path(p).relative_to(root)) for p in out["path"]]
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("synth-a")
    return root, synth.write_studies(root, N_STUDIES, seed=7, today=TODAY)


@pytest.fixture(scope="module")
def datasets(written: tuple[Path, pd.DataFrame]) -> list[Dataset]:
    _, manifest = written
    return [pydicom.dcmread(p) for p in manifest["path"]]


def per_study(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per study, in generation order."""
    return manifest.drop_duplicates("StudyInstanceUID").reset_index(drop=True)


# -- determinism ------------------------------------------------------------------


def test_same_seed_and_today_give_identical_files_and_manifest(
    written: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    root_a, manifest_a = written
    root_b = tmp_path / "synth-b"
    manifest_b = synth.write_studies(root_b, N_STUDIES, seed=7, today=TODAY)

    pd.testing.assert_frame_equal(relative(manifest_a, root_a), relative(manifest_b, root_b))
    files_a = sorted(p.relative_to(root_a) for p in root_a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(root_b) for p in root_b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert len(files_a) == len(manifest_a)
    for rel in files_a:
        assert (root_a / rel).read_bytes() == (root_b / rel).read_bytes(), rel


def test_generate_is_deterministic_in_memory() -> None:
    first = list(synth.generate(6, seed=3, today=TODAY))
    second = list(synth.generate(6, seed=3, today=TODAY))
    assert len(first) == len(second) > 6
    for a, b in zip(first, second, strict=True):
        assert a == b
        assert a.file_meta == b.file_meta
        assert a.PixelData == b.PixelData


def test_different_seeds_give_different_uids_and_patients() -> None:
    a = list(synth.generate(6, seed=1, today=TODAY))
    b = list(synth.generate(6, seed=2, today=TODAY))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert not {ds[keyword].value for ds in a} & {ds[keyword].value for ds in b}, keyword
    assert not {ds.PatientID for ds in a} & {ds.PatientID for ds in b}
    assert a[0].PixelData != b[0].PixelData


def test_uid_helper_is_deterministic_and_distinct() -> None:
    assert synth.uid(1, "study", 0) == synth.uid(1, "study", 0)
    assert synth.uid(1, "study", 0) != synth.uid(1, "study", 1)
    assert synth.uid(1, "study", 0) != synth.uid(2, "study", 0)
    assert synth.uid(1, "study", 0).startswith("2.25.")


def test_all_uids_are_unique(written: tuple[Path, pd.DataFrame]) -> None:
    _, manifest = written
    assert manifest["SOPInstanceUID"].is_unique
    series = manifest.drop_duplicates("SeriesInstanceUID")
    assert not series["SeriesInstanceUID"].isin(manifest["StudyInstanceUID"]).any()
    assert manifest["StudyInstanceUID"].nunique() == N_STUDIES


# -- dates -------------------------------------------------------------------------


def test_study_dates_relative_to_today(written: tuple[Path, pd.DataFrame]) -> None:
    _, manifest = written
    assert pd.api.types.is_datetime64_any_dtype(manifest["StudyDate"])
    # Studies in generation order: today, yesterday, this week, then a spread of history.
    days_back = [(TODAY - d.date()).days for d in per_study(manifest)["StudyDate"]]
    assert days_back[0] == 0
    assert days_back[1] == 1
    assert all(0 <= d <= 365 * 8 for d in days_back)
    assert sum(d <= 6 for d in days_back) >= 6  # "the last 7 days" has something to show
    assert any(d > 365 for d in days_back)  # ... and there is history years back


def test_study_date_is_the_same_in_every_instance_of_a_study(datasets: list[Dataset]) -> None:
    dates: dict[str, set[str]] = defaultdict(set)
    for ds in datasets:
        dates[ds.StudyInstanceUID].add(ds.StudyDate)
        assert ds.SeriesDate == ds.ContentDate == ds.StudyDate
    assert all(len(v) == 1 for v in dates.values())


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    today=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
)
def test_first_study_today_second_yesterday_for_any_seed(seed: int, today: date) -> None:
    firsts: dict[str, str] = {}
    for ds in synth.generate(6, seed, today=today, image_size=1, max_series=1, max_instances=1):
        firsts.setdefault(ds.StudyInstanceUID, ds.StudyDate)
    dates = [date.fromisoformat(d[:4] + "-" + d[4:6] + "-" + d[6:]) for d in firsts.values()]
    assert dates[0] == today
    assert dates[1] == today - timedelta(days=1)
    assert all(today - timedelta(days=6) <= d <= today - timedelta(days=2) for d in dates[2:6])


# -- content -----------------------------------------------------------------------


def test_all_modalities_present_with_matching_sop_class() -> None:
    seen = {}
    for ds in synth.generate(5, seed=0, today=TODAY, image_size=1):
        seen[ds.Modality] = ds.SOPClassUID
        assert ds.SOPClassUID == SOP_CLASSES[ds.Modality]
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert set(seen) == {"CT", "MR", "CR", "DX", "US"}


def test_modalities_can_be_restricted() -> None:
    mods = {ds.Modality for ds in synth.generate(6, seed=0, today=TODAY, modalities=("MR", "US"))}
    assert mods == {"MR", "US"}
    with pytest.raises(ValueError, match="XA"):
        list(synth.generate(2, modalities=("XA",)))


@pytest.mark.parametrize(
    ("family_given", "charset"),
    [
        ("Müller^Jürgen", "ISO_IR 192"),
        ("Ødegård^Åse", "ISO_IR 192"),
        ("Παπαδόπουλος^Νίκος", "ISO_IR 192"),
        ("Gómez^José", "ISO_IR 100"),
        ("Lefèvre^Hélène", "ISO_IR 100"),
    ],
)
def test_non_ascii_names_decode_from_files(
    datasets: list[Dataset], family_given: str, charset: str
) -> None:
    matches = [ds for ds in datasets if str(ds.PatientName) == family_given]
    assert matches, f"{family_given} not generated"
    for ds in matches:
        assert ds.SpecificCharacterSet == charset
        # The bytes on disk are in that character set, not in UTF-8 by accident.
        encoding = "utf-8" if charset == "ISO_IR 192" else "latin-1"
        assert _raw_patient_name(ds.filename) == family_given.encode(encoding)


def _raw_patient_name(path: str) -> bytes:
    """The undecoded PatientName bytes of a file (trailing padding removed)."""
    raw = pydicom.dcmread(path).get_item("PatientName")
    assert raw is not None
    value = raw.value
    assert isinstance(value, bytes)
    return value.rstrip(b" \x00")


def test_ascii_names_have_no_character_set(datasets: list[Dataset]) -> None:
    plain = [ds for ds in datasets if "SpecificCharacterSet" not in ds]
    assert plain
    for ds in plain:
        str(ds.PatientName).encode("ascii")


def test_each_patient_is_consistent_across_studies(datasets: list[Dataset]) -> None:
    patients: dict[str, set[tuple[str, str, str, str | None]]] = defaultdict(set)
    for ds in datasets:
        patients[ds.PatientID].add(
            (
                str(ds.PatientName),
                ds.PatientBirthDate,
                ds.PatientSex,
                ds.get("SpecificCharacterSet"),
            )
        )
    assert all(len(v) == 1 for v in patients.values()), patients
    assert len(patients) < N_STUDIES  # some patients have more than one study


def test_files_are_dicom_files_with_file_meta(
    written: tuple[Path, pd.DataFrame], datasets: list[Dataset]
) -> None:
    _, manifest = written
    for path, ds in zip(manifest["path"], datasets, strict=True):
        with open(path, "rb") as fh:
            assert fh.read(132)[128:] == b"DICM"
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert meta.ImplementationClassUID.is_valid
        assert ds.pixel_array.shape == (16, 16)


def test_manifest_matches_the_files(
    written: tuple[Path, pd.DataFrame], datasets: list[Dataset]
) -> None:
    root, manifest = written
    assert list(manifest.columns) == synth.MANIFEST_COLUMNS
    on_disk = sorted(str(p) for p in root.rglob("*") if p.is_file())
    assert on_disk == sorted(manifest["path"])  # and no temporary files left behind
    for row, ds in zip(manifest.itertuples(index=False), datasets, strict=True):
        assert re.fullmatch(
            r"study_\d{4}/series_\d{3}/\d{4}\.dcm", str(Path(row.path).relative_to(root))
        )
        assert row.SOPInstanceUID == ds.SOPInstanceUID
        assert row.SeriesInstanceUID == ds.SeriesInstanceUID
        assert row.StudyInstanceUID == ds.StudyInstanceUID
        assert row.PatientID == ds.PatientID
        assert row.Modality == ds.Modality
        assert row.AccessionNumber == ds.AccessionNumber
        assert row.SOPClassUID == ds.SOPClassUID
        assert row.StudyDate.strftime("%Y%m%d") == ds.StudyDate


def test_uids_are_valid(datasets: list[Dataset]) -> None:
    for ds in datasets:
        uids = [
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.SOPInstanceUID,
            ds.SOPClassUID,
            ds.file_meta.MediaStorageSOPInstanceUID,
        ]
        if "FrameOfReferenceUID" in ds:
            uids.append(ds.FrameOfReferenceUID)
        for value in uids:
            assert len(value) <= 64, value
            assert UID_RE.fullmatch(value), value
            assert UID(value).is_valid, value


def test_series_and_instance_bounds() -> None:
    series: dict[str, set[str]] = defaultdict(set)
    instances: dict[str, list[int]] = defaultdict(list)
    for ds in synth.generate(15, seed=5, today=TODAY, image_size=1, max_series=2, max_instances=3):
        series[ds.StudyInstanceUID].add(ds.SeriesInstanceUID)
        instances[ds.SeriesInstanceUID].append(int(ds.InstanceNumber))
    assert len(series) == 15
    assert all(1 <= len(s) <= 2 for s in series.values())
    assert all(n == list(range(1, len(n) + 1)) and len(n) <= 3 for n in instances.values())
    assert any(len(s) == 2 for s in series.values())
    assert any(len(n) == 3 for n in instances.values())


def _string_elements_are_valid(ds: Dataset) -> None:
    for elem in ds:
        if elem.VR in ("SH", "LO", "CS", "DA", "TM", "UI", "PN", "AE") and elem.VM == 1:
            value = str(elem.value)
            validate_value(elem.VR, value, RAISE)


@pytest.mark.parametrize("seed", [0, 42, 2026])
def test_text_values_fit_their_value_representation(seed: int) -> None:
    for ds in synth.generate(8, seed, today=TODAY, image_size=1):
        _string_elements_are_valid(ds)


def test_text_values_fit_their_value_representation_for_large_seeds() -> None:
    for ds in synth.generate(2, seed=20260115, today=TODAY, image_size=1):
        _string_elements_are_valid(ds)


# -- pixels --------------------------------------------------------------------------


def test_512_image_is_16_bit_512_by_512() -> None:
    (ds,) = synth.generate(1, seed=0, today=TODAY, image_size=512, max_series=1, max_instances=1)
    assert (ds.Rows, ds.Columns) == (512, 512)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    assert ds.PixelRepresentation == 0 and ds.SamplesPerPixel == 1
    assert len(ds.PixelData) == 512 * 512 * 2
    pixels = ds.pixel_array
    assert pixels.shape == (512, 512)
    assert pixels.dtype.itemsize == 2
    assert int(pixels.max()) <= 0x0FFF
    assert len(set(pixels.ravel()[:4096].tolist())) > 100  # an image, not a constant


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_studies"):
        list(synth.generate(-1))
    for size in (0, 4097):
        with pytest.raises(ValueError, match="image_size"):
            list(synth.generate(1, image_size=size))
    assert list(synth.generate(0)) == []


def test_write_zero_studies_gives_an_empty_manifest(tmp_path: Path) -> None:
    manifest = synth.write_studies(tmp_path / "empty", 0, today=TODAY)
    assert list(manifest.columns) == synth.MANIFEST_COLUMNS
    assert len(manifest) == 0


def test_cohort_fixture_matches_its_synthetic_source(tmp_path: Path) -> None:
    """data/fixtures/cohort_accessions.csv: 15 accessions of seed 7's 30 studies, 3 made up."""
    fixture = Path(__file__).resolve().parent.parent / "data/fixtures/cohort_accessions.csv"
    wanted = pd.read_csv(fixture, dtype=str).AccessionNumber
    made = synth.write_studies(tmp_path, n_studies=30, seed=7)
    known = set(made.AccessionNumber)
    assert len(wanted) == 18 and wanted.is_unique
    assert sum(a in known for a in wanted) == 15
