"""dl.Deidentifier: PS3.15 Annex E de-identification, offline and on the wire.

What a user relies on: no name part, ID or birth date of the source patient survives
anywhere (in the files, the tables, the archive, the network log, the map); the same
secret gives the same pseudonyms, UIDs and date shifts on every run; references between
instances (SEG, SR, KOS -> CT) still resolve; the map re-identifies for the secret's
holder only; dciodvfy finds no new error; real peers (Orthanc, dcmtk) take part.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import subprocess
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage

import dicomlab as dl
from dicomlab.deid import table as deid_table
from dicomlab.peers import Orthanc, peer_env
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers

TODAY = date(2026, 3, 2)
SECRET = "correct horse battery staple, 2026"
OTHER_SECRET = "a different secret of some length"
UID_RE = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")
DEID = Path(deid_table.__file__).parent
# CID 7050 codes of the options (PS3.16), written out here, not read from dicomlab
BASIC = "113100"
CODES = {
    "retain_longitudinal": "113107",
    "retain_longitudinal_modified_dates": "113107",
    "retain_longitudinal_full_dates": "113106",
    "clean_descriptors": "113105",
    "clean_structured_content": "113104",
    "retain_uids": "113110",
}
SEG, SR, KOS = (
    "1.2.840.10008.5.1.4.1.1.66.4",
    "1.2.840.10008.5.1.4.1.1.88.34",
    "1.2.840.10008.5.1.4.1.1.88.59",
)


# -- shared data ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Six studies of five patients (two CT studies, each with a SEG, an SR and a KOS)."""
    folder = tmp_path_factory.mktemp("synth")
    manifest = dl.synth.write_studies(
        folder, n_studies=6, seed=7, today=TODAY, max_series=2, max_instances=2, derived=True
    )
    manifest["path"] = [str(Path(p).resolve()) for p in manifest.path]
    assert {"CT", "MR", "CR", "DX", "US", "SEG", "SR", "KO"} <= set(manifest.Modality)
    return folder, manifest


@pytest.fixture(scope="module")
def applied(
    tmp_path_factory: pytest.TempPathFactory, source: tuple[Path, pd.DataFrame]
) -> tuple[dl.Deidentifier, pd.DataFrame, Path]:
    """The whole set de-identified offline with the Basic Profile."""
    folder, _ = source
    work = tmp_path_factory.mktemp("applied")
    d = dl.Deidentifier(SECRET, map_dir=work / "map")
    with pytest.warns(dl.BurnedInAnnotationWarning, match="US"):
        out = d.apply(folder, out=work / "out")
    return d, out, work


def _identity(paths: Iterable[str]) -> set[str]:
    """Every name part (3+ characters), PatientID and birth date of these files."""
    texts: set[str] = set()
    for p in paths:
        ds = dcmread(p, stop_before_pixels=True)
        texts |= {t for t in re.split(r"[\^=\s,]+", str(ds.PatientName)) if len(t) >= 3}
        texts |= {str(ds.PatientID), str(ds.PatientBirthDate)}
    return texts


def _needles(texts: Iterable[str], *, whole: bool = False) -> re.Pattern[bytes]:
    """The texts as bytes in UTF-8 and Latin-1: anywhere and case-insensitive (ASCII), or
    ``whole``: as written and not inside a longer run of letters and digits (for files
    that also hold random base64 text, where "doE" turns up by chance)."""
    alts: set[bytes] = set()
    for text in texts:
        for encoding in ("utf-8", "latin-1"):
            try:
                alts.add(text.encode(encoding))
            except UnicodeEncodeError:
                pass
    ordered = b"|".join(re.escape(a) for a in sorted(alts, key=lambda a: (-len(a), a)))
    if whole:
        return re.compile(rb"(?<![0-9A-Za-z])(?:" + ordered + rb")(?![0-9A-Za-z])")
    return re.compile(ordered, re.IGNORECASE)


def _file_leaks(root: Path, texts: set[str]) -> dict[str, set[bytes]]:
    """Files under ``root`` (all of them, any name) whose bytes hold one of ``texts``:
    anywhere in a DICOM file; as a whole word in any other (an index, Parquet: binary
    pages that change on every run, where three letters turn up by chance)."""
    loose, whole = _needles(texts), _needles(texts, whole=True)
    found: dict[str, set[bytes]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            needles = loose if path.suffix == ".dcm" else whole
            hits = set(needles.findall(path.read_bytes()))
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def _frame_leaks(df: pd.DataFrame, needles: re.Pattern[bytes]) -> set[bytes]:
    """Needles in any cell (or column name) of ``df``."""
    cells = [str(c) for c in df.columns] + [str(v) for v in df.astype(object).to_numpy().ravel()]
    return set(needles.findall("\n".join(cells).encode("utf-8")))


def _parquet_leaks(root: Path, needles: re.Pattern[bytes]) -> dict[str, set[bytes]]:
    """Needles in the decoded values of every Parquet file under ``root`` (compression
    may hide a value from a byte scan)."""
    found: dict[str, set[bytes]] = {}
    for path in sorted(root.rglob("*.parquet")):
        hits = _frame_leaks(pq.read_table(path).to_pandas(), needles)
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def _pairs(manifest: pd.DataFrame, out: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(source manifest row, DEIDENTIFIED row) for every file."""
    by_source = {str(Path(row.source).resolve()): row for _, row in out.iterrows()}
    return [(row, by_source[row.path]) for _, row in manifest.iterrows()]


def _walk(ds: Dataset, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path of tags and item indices, element) of every element, nested ones included."""
    for elem in ds:
        here = (*path, int(elem.tag))
        yield here, elem
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _walk(item, (*here, i))


def _uids_named(ds: Dataset, keyword: str) -> list[str]:
    return [str(e.value) for _, e in _walk(ds) if e.keyword == keyword and e.value]


def _codes(ds: Dataset) -> set[str]:
    return {str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence}


# -- 1. the table ---------------------------------------------------------------------
def test_the_ps315_table_is_the_2026d_edition_and_says_what_the_standard_says() -> None:
    t = deid_table.table()
    assert len(t) >= 600 and t.edition == "2026d"
    doc = json.loads((DEID / "ps315_2026d.json").read_text(encoding="utf-8"))
    assert len(t) == len(doc["rules"])  # no row of the file lost

    def rule(tag: int) -> deid_table.Rule:
        found = t.rule(tag)
        assert found is not None, f"{tag:08X} not in the table"
        return found

    name, birth, pid = rule(0x00100010), rule(0x00100030), rule(0x00100020)
    assert (name.basic, name.action([])) == ("Z", "Z")
    assert (birth.basic, birth.action([])) == ("Z", "Z")
    assert (pid.basic, pid.action([])) == ("Z/D", "D")
    study_uid = rule(0x0020000D)
    assert study_uid.basic == "U" and study_uid.action([]) == "U"
    assert study_uid.action(["retain_uids"]) == "K"
    study_date = rule(0x00080020)
    assert study_date.basic == "Z" and study_date.action([]) == "Z"
    assert study_date.action(["retain_longitudinal_full_dates"]) == "K"
    assert study_date.action(["retain_longitudinal_modified_dates"]) == "C"
    institution = rule(0x00080080)
    assert institution.basic == "X/Z/D" and institution.action([]) == "D"
    assert institution.action(["retain_institution_identity"]) == "K"
    overlay = rule(0x60024000)
    assert overlay.tag.lower() == "60xx4000" and overlay.action([]) == "X"
    assert rule(0x601E4000) is overlay
    assert t.rule(0x00280010) is None  # Rows: not in the table (kept)
    assert t.private is not None and t.private.basic == "X"


def test_the_table_file_is_the_one_ps315_source_records() -> None:
    recorded = re.search(
        r"This copy's sha256 is `([0-9a-f]{64})`",
        (DEID / "PS315-SOURCE.md").read_text(encoding="utf-8"),
    )
    assert recorded is not None
    actual = hashlib.sha256((DEID / "ps315_2026d.json").read_bytes()).hexdigest()
    assert actual == recorded.group(1)


# -- 2. offline apply -----------------------------------------------------------------
def test_the_scan_would_see_the_source_patients(source: tuple[Path, pd.DataFrame]) -> None:
    """The byte scan below can fail: it finds every patient in the source files."""
    folder, manifest = source
    texts = _identity(manifest.path)
    assert {"DOE", "JANE", "Müller", "Gómez"} <= texts
    leaks = _file_leaks(folder, texts)
    assert len(leaks) == len(manifest)
    assert b"G\xf3mez" in set().union(*leaks.values())  # Latin-1, ISO_IR 100
    assert "Müller".encode() in set().union(*leaks.values())  # UTF-8, ISO_IR 192


def test_apply_leaves_nothing_of_the_patient_and_keeps_the_pixels(
    source: tuple[Path, pd.DataFrame], applied: tuple[dl.Deidentifier, pd.DataFrame, Path]
) -> None:
    _, manifest = source
    d, out, work = applied
    assert len(out) == len(manifest)
    assert (out.status == "ok").all(), out[out.status != "ok"][["source", "error"]]
    assert out.error.isna().all()
    texts = _identity(manifest.path)
    assert _file_leaks(work / "out", texts) == {}
    assert _frame_leaks(out, _needles(texts)) == set()
    written = sorted(str(p) for p in (work / "out").rglob("*.dcm"))
    assert written == sorted(out.path)
    for src, row in _pairs(manifest, out):
        before, after = dcmread(src.path), dcmread(row.path)
        assert after.PatientIdentityRemoved == "YES"
        assert _codes(after) == {BASIC}
        assert {i.CodingSchemeDesignator for i in after.DeidentificationMethodCodeSequence} == {
            "DCM"
        }
        assert str(after.DeidentificationMethod)
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
        assert after.file_meta.MediaStorageSOPClassUID == before.SOPClassUID
        assert after.SOPInstanceUID == row.SOPInstanceUID == d.new_uid(src.SOPInstanceUID)
        assert after.SOPInstanceUID != before.SOPInstanceUID
        assert after.StudyInstanceUID == row.StudyInstanceUID
        assert after.PatientID == after.PatientName == row.PatientID
        assert row.PatientID == d.pseudonym(src.PatientID)
        assert Path(row.path).parts[-4:] == (
            row.PatientID,
            row.StudyInstanceUID,
            row.SeriesInstanceUID,
            f"{row.SOPInstanceUID}.dcm",
        )
        if "PixelData" in before:
            assert np.array_equal(after.pixel_array, before.pixel_array), src.path
    report = d.report(out)
    assert int(report.instances.sum()) == len(manifest)
    assert len(report) == manifest.StudyInstanceUID.nunique()


# -- 3. consistency -------------------------------------------------------------------
def test_the_same_secret_gives_the_same_results_on_every_run(
    tmp_path: Path,
    source: tuple[Path, pd.DataFrame],
    applied: tuple[dl.Deidentifier, pd.DataFrame, Path],
) -> None:
    _, manifest = source
    d, first, work = applied
    files = list(manifest[manifest.Modality != "US"].path)
    cols = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]

    def run(secret: str, map_dir: Path, out: Path) -> pd.DataFrame:
        df = dl.Deidentifier(secret, map_dir=map_dir).apply(files, out=out)
        assert (df.status == "ok").all()
        return df.set_index("source")[cols].sort_index()

    expected = first.set_index("source").loc[files, cols].sort_index()
    again = run(SECRET, work / "map", tmp_path / "again")  # the same map, another day
    fresh = run(SECRET, tmp_path / "fresh-map", tmp_path / "fresh")  # another machine
    other = run(OTHER_SECRET, tmp_path / "other-map", tmp_path / "other")
    pd.testing.assert_frame_equal(again, expected)
    pd.testing.assert_frame_equal(fresh, expected)
    for col in cols:
        assert not set(other[col]) & set(expected[col]), col
    assert set(other.PatientID).isdisjoint(set(manifest.PatientID))
    # the files themselves: byte-identical from the same secret
    for a, b in zip(
        sorted((tmp_path / "again").rglob("*.dcm")),
        sorted((tmp_path / "fresh").rglob("*.dcm")),
        strict=True,
    ):
        assert a.relative_to(tmp_path / "again") == b.relative_to(tmp_path / "fresh")
        assert a.read_bytes() == b.read_bytes()
    # every new UID is a valid 2.25 UID; the standard's own UIDs are kept
    for uid in pd.concat([expected[c] for c in cols[1:]]):
        assert UID_RE.match(uid) and len(uid) <= 64, uid
    for path in first.path:
        ds = dcmread(path)
        for _, elem in _walk(ds):
            if elem.VR != "UI" or not elem.value:
                continue
            for uid in elem.value if elem.VM > 1 else [elem.value]:
                uid = str(uid)
                assert uid.startswith("1.2.840.10008.") or (UID_RE.match(uid) and len(uid) <= 64), (
                    elem.keyword,
                    uid,
                )
    assert d.new_uid("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert set(first.SOPInstanceUID).isdisjoint(set(manifest.SOPInstanceUID))


# -- 4. references --------------------------------------------------------------------
def _study_files(manifest: pd.DataFrame) -> pd.DataFrame:
    """The CT studies: the CT series and their SEG, SR and KOS."""
    studies = manifest[manifest.Modality == "SEG"].StudyInstanceUID
    return manifest[manifest.StudyInstanceUID.isin(studies)]


def _referenced(ds: Dataset) -> set[str]:
    """Every referenced SOP instance anywhere in ``ds`` (content tree, evidence, SEG's
    source images and referenced series)."""
    return set(_uids_named(ds, "ReferencedSOPInstanceUID"))


def _concepts(ds: Dataset) -> list[tuple[str, str, str]]:
    """(value type, scheme, code) of every content item, depth first."""
    return [
        (
            str(item.ValueType),
            str(item.ConceptNameCodeSequence[0].CodingSchemeDesignator),
            str(item.ConceptNameCodeSequence[0].CodeValue),
        )
        for _, e in _walk(ds)
        if e.keyword == "ContentSequence"
        for item in e.value
    ]


def _content_action(concept: tuple[str, str, str], options: list[str]) -> str | None:
    """Table E.3.4-1's action on a content item of this concept (read from the JSON)."""
    doc = json.loads((DEID / "ps315_2026d.json").read_text(encoding="utf-8"))
    _, scheme, code = concept
    for row in doc["content_items"]:
        if (row["scheme"], row["code"]) == (scheme, code):
            names = {"retain_longitudinal": "retain_longitudinal_modified_dates"}
            rule = deid_table.Rule(
                code, row["meaning"], row["basic"], tuple(row["options"].items())
            )
            return rule.action([names.get(o, o) for o in options])
    return None


@pytest.mark.parametrize(
    "options", [[], ["retain_longitudinal", "clean_structured_content"]], ids=["basic", "options"]
)
def test_references_still_resolve_after_the_uids_changed(
    tmp_path: Path, source: tuple[Path, pd.DataFrame], options: list[str]
) -> None:
    _, manifest = source
    files = _study_files(manifest)
    d = dl.Deidentifier(SECRET, options, map_dir=tmp_path / "map")
    out = d.apply(list(files.path), out=tmp_path / "out")
    assert (out.status == "ok").all(), out.error.dropna().tolist()
    held = {row.SOPInstanceUID: dcmread(row.path) for row in out.itertuples()}
    sources = {d.new_uid(r.SOPInstanceUID): dcmread(r.path) for r in files.itertuples()}
    assert set(held) == set(sources)
    checked = 0
    for uid, ds in held.items():
        before = sources[uid]
        study = {u: x for u, x in held.items() if x.StudyInstanceUID == ds.StudyInstanceUID}
        refs = _referenced(ds)
        assert refs <= set(study), (ds.Modality, refs - set(study))
        assert len(refs) == len(_referenced(before))  # none lost, none merged
        if ds.SOPClassUID == SEG:
            checked += 1
            series = {x.SeriesInstanceUID: x for x in study.values() if x.Modality == "CT"}
            for item in ds.ReferencedSeriesSequence:
                assert item.SeriesInstanceUID in series
                for ref in item.ReferencedInstanceSequence:
                    target = held[ref.ReferencedSOPInstanceUID]
                    assert target.SeriesInstanceUID == item.SeriesInstanceUID
                    assert target.SOPClassUID == ref.ReferencedSOPClassUID
            sources_of_seg = _uids_named(ds, "ReferencedSOPInstanceUID")
            assert sources_of_seg and all(held[u].Modality == "CT" for u in sources_of_seg)
            ct = held[
                ds.ReferencedSeriesSequence[0]
                .ReferencedInstanceSequence[0]
                .ReferencedSOPInstanceUID
            ]
            assert ds.FrameOfReferenceUID == ct.FrameOfReferenceUID
            assert ds.FrameOfReferenceUID == d.new_uid(before.FrameOfReferenceUID)
        if ds.SOPClassUID in (SR, KOS):
            checked += 1
            evidence = ds.CurrentRequestedProcedureEvidenceSequence
            assert {e.StudyInstanceUID for e in evidence} == {ds.StudyInstanceUID}
            for e in evidence:
                for series_item in e.ReferencedSeriesSequence:
                    for ref in series_item.ReferencedSOPSequence:
                        target = held[ref.ReferencedSOPInstanceUID]
                        assert target.SeriesInstanceUID == series_item.SeriesInstanceUID
            in_tree = {
                str(item.ReferencedSOPInstanceUID)
                for _, e in _walk(ds)
                if e.keyword == "ContentSequence"
                for c in e.value
                for item in c.get("ReferencedSOPSequence", [])
            }
            assert in_tree and in_tree <= set(study)
            # the content tree is kept but for what Table E.3.4-1 removes (e.g. 121013
            # Device Observer Name): the SR stays a TID 1500 report with its measurements
            kept = [c for c in _concepts(before) if _content_action(c, options) != "X"]
            assert _concepts(ds) == kept
            assert ("NUM", "SCT", "118565006") in kept or ds.SOPClassUID == KOS  # volume
            assert ds.ContentTemplateSequence[0].TemplateIdentifier == (
                before.ContentTemplateSequence[0].TemplateIdentifier
            )
    assert checked == 3 * 2  # a SEG, an SR and a KOS in each CT study


def test_clean_structured_content_applies_table_e_3_4_1(
    tmp_path: Path, source: tuple[Path, pd.DataFrame]
) -> None:
    """Under Clean Structured Content, a content item whose concept Table E.3.4-1 says
    to remove (121022 Accession Number, Basic action X) does not survive."""
    _, manifest = source
    sr = dcmread(manifest[manifest.Modality == "SR"].path.iloc[0])
    accession = "ACC-TEXT-918273"
    item = Dataset()
    item.RelationshipType = "HAS OBS CONTEXT"
    item.ValueType = "TEXT"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
        "121022",
        "DCM",
        "Accession Number",
    )
    item.ConceptNameCodeSequence = Sequence([code])
    item.TextValue = accession
    sr.ContentSequence.append(item)
    d = dl.Deidentifier(SECRET, ["clean_structured_content"], map_dir=tmp_path / "map")
    data, row = d.encoded(_bytes(sr))
    assert row["status"] == "ok"
    after = dcmread(io.BytesIO(data))
    assert CODES["clean_structured_content"] in _codes(after)
    assert accession.encode() not in data
    assert "121022" not in {c for _, _, c in _concepts(after)}


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# -- 5. dates -------------------------------------------------------------------------
def _dates(ds: Dataset) -> dict[tuple[Any, ...], str]:
    return {
        p: str(e.value)
        for p, e in _walk(ds)
        if e.VR == "DA" and e.value and e.keyword != "PatientBirthDate"
    }


def _day(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").date()


def test_modified_dates_move_every_date_of_a_patient_by_the_same_days(
    tmp_path: Path, source: tuple[Path, pd.DataFrame]
) -> None:
    _, manifest = source
    options = ["retain_longitudinal", "clean_descriptors"]
    d = dl.Deidentifier(SECRET, options, map_dir=tmp_path / "map")
    with pytest.warns(dl.BurnedInAnnotationWarning):
        out = d.apply(list(manifest.path), out=tmp_path / "out")
    assert (out.status == "ok").all()
    shifts: dict[str, set[int]] = defaultdict(set)
    keywords: set[str] = set()
    seen = 0
    for src, row in _pairs(manifest, out):
        before, after = dcmread(src.path), dcmread(row.path)
        assert after.LongitudinalTemporalInformationModified == "MODIFIED"
        assert _codes(after) == {BASIC, CODES["retain_longitudinal"], CODES["clean_descriptors"]}
        old, new = _dates(before), _dates(after)
        keywords.update(before[p[-1]].keyword for p in old if len(p) == 1)
        for path, value in old.items():
            assert path in new, (before.Modality, path)
            shifts[src.PatientID].add((_day(value) - _day(new[path])).days)
            seen += 1
        assert after.PatientBirthDate in ("", None)
    assert seen >= 3 * len(manifest)
    assert {"StudyDate", "SeriesDate", "ContentDate", "InstanceCreationDate"} <= keywords
    for patient, days in shifts.items():
        assert len(days) == 1, (patient, days)  # one shift for all of a patient's dates
        assert 1 <= next(iter(days)) <= 3650
    assert len(shifts) == manifest.PatientID.nunique() >= 4
    assert len({next(iter(s)) for s in shifts.values()}) > 1  # patients differ
    # one of them had two studies: the one shift held across studies (intervals kept)
    by_patient = manifest.groupby("PatientID").StudyInstanceUID.nunique()
    assert (by_patient > 1).any()


def test_full_dates_are_kept_and_without_a_date_option_they_go(
    tmp_path: Path,
    source: tuple[Path, pd.DataFrame],
    applied: tuple[dl.Deidentifier, pd.DataFrame, Path],
) -> None:
    _, manifest = source
    files = manifest[manifest.Modality.isin(["CT", "SEG", "SR", "KO", "MR"])]
    d = dl.Deidentifier(SECRET, ["retain_longitudinal_full_dates"], map_dir=tmp_path / "map")
    out = d.apply(list(files.path), out=tmp_path / "out")
    for src, row in _pairs(files, out):
        before, after = dcmread(src.path), dcmread(row.path)
        assert after.LongitudinalTemporalInformationModified == "UNMODIFIED"
        assert _codes(after) == {BASIC, CODES["retain_longitudinal_full_dates"]}
        assert _dates(after) == _dates(before)
    # the Basic Profile alone: no study date, and no source date anywhere
    _, basic, _ = applied
    source_dates = {v for p in manifest.path for v in _dates(dcmread(p)).values()}
    for src, row in _pairs(manifest, basic):
        after = dcmread(row.path)
        assert after.StudyDate in ("", None)
        assert after.LongitudinalTemporalInformationModified == "REMOVED"
        assert not set(_dates(after).values()) & source_dates, src.Modality


# -- 6. re-identification -------------------------------------------------------------
def test_reidentify_recovers_the_originals_for_the_secret_only(
    source: tuple[Path, pd.DataFrame], applied: tuple[dl.Deidentifier, pd.DataFrame, Path]
) -> None:
    _, manifest = source
    d, out, work = applied
    for who in (d, dl.Deidentifier(SECRET, map_dir=work / "map")):  # also a later session
        back = who.reidentify(out).set_index("replacement")
        for src, row in _pairs(manifest, out):
            assert back.at[row.PatientID, "original"] == src.PatientID
            assert back.at[row.PatientID, "kind"] == "patient"
            for col in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                assert back.at[row[col], "original"] == src[col]
                assert back.at[row[col], "kind"] == "uid"
    unknown = d.reidentify("2.25.1234")
    assert unknown.original.isna().all()
    with pytest.raises(dl.DeidentificationError, match="secret") as err:
        dl.Deidentifier(OTHER_SECRET, map_dir=work / "map").reidentify(out)
    assert str(work / "map") in str(err.value)
    # the map holds no original in clear: neither in its bytes nor in its values
    uids = set(manifest.StudyInstanceUID) | set(manifest.SeriesInstanceUID)
    # (the encrypted originals are random base64: names are looked for as whole words)
    everything = _identity(manifest.path) | uids | set(manifest.SOPInstanceUID)
    parts = list((work / "map").glob("part-*.parquet"))
    assert parts
    assert _file_leaks(work / "map", everything) == {}
    assert _parquet_leaks(work / "map", _needles(everything, whole=True)) == {}
    held = pd.concat([pq.read_table(p).to_pandas() for p in parts])
    assert set(out.PatientID) <= set(held.replacement)  # what it maps is there


# -- 7. a pseudonym table -------------------------------------------------------------
def test_a_pseudonym_table_is_used_and_a_patient_not_in_it_refused(
    tmp_path: Path, source: tuple[Path, pd.DataFrame]
) -> None:
    _, manifest = source
    files = manifest[manifest.Modality != "US"]
    patients = sorted(files.PatientID.unique())
    left_out = patients[-1]
    given = pd.DataFrame(
        {
            "PatientID": patients[:-1],
            "pseudonym": [f"STUDY42-{i:03d}" for i in range(len(patients) - 1)],
        }
    )
    d = dl.Deidentifier(SECRET, pseudonyms=given, map_dir=tmp_path / "map")
    out = d.apply(list(files.path), out=tmp_path / "out")
    wanted = dict(zip(given.PatientID, given.pseudonym, strict=True))
    for src, row in _pairs(files, out):
        if src.PatientID == left_out:
            assert row.status == "failed" and pd.isna(row.path)
            assert "pseudonym table" in row.error and left_out not in row.error
            continue
        assert row.status == "ok"
        ds = dcmread(row.path)
        assert ds.PatientID == ds.PatientName == row.PatientID == wanted[src.PatientID]
    refused = (files.PatientID == left_out).sum()
    assert refused and (out.status == "failed").sum() == refused
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == len(files) - refused
    assert _file_leaks(tmp_path / "out", _identity(files.path)) == {}
    with pytest.raises(dl.DeidentificationError):
        d.pseudonym(left_out)


# -- 8. the residual scan -------------------------------------------------------------
def _ct(manifest: pd.DataFrame) -> Dataset:
    return dcmread(manifest[manifest.Modality == "CT"].path.iloc[0])


def _of(manifest: pd.DataFrame, modality: str, what: str) -> tuple[Dataset, str]:
    """An instance of ``modality`` and a text that identifies its patient: ``name`` (as
    written in a letter), ``family`` (the family name alone), ``id`` or ``birth``."""
    ds = dcmread(manifest[manifest.Modality == modality].path.iloc[0])
    family, given = str(ds.PatientName).split("^")
    return ds, {
        "name": f"{given.title()} {family.title()}",
        "family": family,
        "id": str(ds.PatientID),
        "birth": str(ds.PatientBirthDate),
    }[what]


def _secrets_of(ds: Dataset) -> list[str]:
    return [*str(ds.PatientName).split("^"), str(ds.PatientID), str(ds.PatientBirthDate)]


@pytest.mark.parametrize(
    ("modality", "what"),
    [("CT", "name"), ("CR", "family"), ("CT", "id"), ("MR", "birth")],
    ids=["name", "non-ascii-family-name", "patient-id", "birth-date"],
)
def test_identifying_text_in_a_kept_attribute_refuses_the_instance(
    tmp_path: Path, source: tuple[Path, pd.DataFrame], modality: str, what: str
) -> None:
    _, manifest = source
    ds, text = _of(manifest, modality, what)
    # Content Description is not in Table E.1-1: it is kept as it is
    assert deid_table.table().rule(0x00700081) is None
    ds.ContentDescription = f"follow-up of {text}"
    d = dl.Deidentifier(SECRET, map_dir=tmp_path / "map")
    with pytest.raises(dl.DeidentificationError, match="ContentDescription") as err:
        d.dataset(ds)
    said = f"{err.value} {getattr(err.value, 'hint', '')}".lower()
    assert not [t for t in _secrets_of(ds) if t.lower() in said]
    # apply: a failed row that names the attribute, and no file
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad, enforce_file_format=True)
    out = d.apply([bad], out=tmp_path / "out")
    assert list(out.status) == ["failed"] and "ContentDescription" in out.error.iloc[0]
    assert not [t for t in _secrets_of(ds) if t.lower() in out.error.iloc[0].lower()]
    assert pd.isna(out.path.iloc[0])
    assert not list((tmp_path / "out").rglob("*.dcm"))


@pytest.mark.parametrize("what", ["family", "id"])
def test_identifying_text_in_a_kept_private_attribute_refuses_the_instance(
    tmp_path: Path, source: tuple[Path, pd.DataFrame], what: str
) -> None:
    _, manifest = source
    ds, text = _of(manifest, "CT", what)
    block = ds.private_block(0x0011, "ACME NOTES", create=True)
    block.add_new(0x01, "LO", f"patient {text}")
    kept = dl.Deidentifier(SECRET, keep_private=[("ACME NOTES", 0x01)], map_dir=tmp_path / "m")
    with pytest.raises(dl.DeidentificationError, match=r"\(0011,1001\)") as err:
        kept.dataset(ds)
    assert not [t for t in _secrets_of(ds) if t.lower() in str(err.value).lower()]


@pytest.mark.parametrize("what", ["family", "id"])
def test_clean_descriptors_scrubs_the_patient_from_descriptions(
    tmp_path: Path, source: tuple[Path, pd.DataFrame], what: str
) -> None:
    _, manifest = source
    ds, text = _of(manifest, "CT", what)
    assert deid_table.table().rule(0x00081030).action(["clean_descriptors"]) == "C"
    ds.StudyDescription = f"CT for {text}"
    ds.SeriesDescription = f"{text.lower()} follow-up"
    ds.ImageComments = f"seen {text}, born {ds.PatientBirthDate}"
    d = dl.Deidentifier(SECRET, ["clean_descriptors"], map_dir=tmp_path / "map")
    after, row = d.dataset(ds)  # scrubbed, so not refused
    assert row["status"] == "ok" and row["cleaned"] >= 3
    assert after.StudyDescription.startswith("CT for ")
    assert "follow-up" in after.SeriesDescription
    assert after.ImageComments.startswith("seen ")
    leftover = f"{after.StudyDescription} {after.SeriesDescription} {after.ImageComments}"
    assert not [t for t in _secrets_of(ds) if t.lower() in leftover.lower()], leftover
    # the Basic Profile removes them
    plain, _ = dl.Deidentifier(SECRET, map_dir=tmp_path / "m2").dataset(ds)
    for keyword in ("StudyDescription", "SeriesDescription", "ImageComments"):
        assert keyword not in plain


# -- 9. private attributes ------------------------------------------------------------
def _with_privates(ds: Dataset) -> Dataset:
    ds.add_new(0x00110010, "LO", "ACME 1.0")
    ds.add_new(0x00111001, "LO", "keep me")
    ds.add_new(0x00111002, "LO", "drop me")
    ds.add_new(0x00110012, "LO", "ACME 1.0")  # the same creator, another block
    ds.add_new(0x00111201, "LO", "keep me too")
    ds.add_new(0x00130010, "LO", "OTHER")
    ds.add_new(0x00131001, "LO", "other vendor")
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.add_new(0x00190010, "LO", "NESTED")
    item.add_new(0x00191001, "LO", "inside a sequence")
    ds.ReferencedImageSequence = Sequence([item])
    return ds


def test_private_attributes_go_unless_kept_by_creator_and_element(
    tmp_path: Path, source: tuple[Path, pd.DataFrame]
) -> None:
    _, manifest = source
    d = dl.Deidentifier(SECRET, map_dir=tmp_path / "map")
    data, row = d.encoded(_bytes(_with_privates(_ct(manifest))))
    after = dcmread(io.BytesIO(data))
    assert not [e.tag for _, e in _walk(after) if e.tag.is_private]
    assert row["private_removed"] >= 7
    assert b"keep me" not in data and b"inside a sequence" not in data
    keep = dl.Deidentifier(SECRET, keep_private=[("ACME 1.0", 0x01)], map_dir=tmp_path / "m2")
    data, _ = keep.encoded(_bytes(_with_privates(_ct(manifest))))
    after = dcmread(io.BytesIO(data))
    private = {int(e.tag): e.value for _, e in _walk(after) if e.tag.is_private}
    assert private == {
        0x00110010: "ACME 1.0",
        0x00111001: "keep me",
        0x00110012: "ACME 1.0",
        0x00111201: "keep me too",
    }


# -- 10. dciodvfy ---------------------------------------------------------------------
def _errors(path: str) -> set[str]:
    out = subprocess.run(
        [need_peer("dciodvfy"), path], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (out.stdout + out.stderr).splitlines()
    return {re.sub(r"<[^>]*>|\d+", "#", line) for line in lines if line.startswith("Error")}


def test_dciodvfy_finds_no_new_error_in_deidentified_objects(
    tmp_path: Path,
    source: tuple[Path, pd.DataFrame],
    applied: tuple[dl.Deidentifier, pd.DataFrame, Path],
) -> None:
    need_peer("dciodvfy")
    _, manifest = source
    _, basic, _ = applied
    d = dl.Deidentifier(
        SECRET, ["retain_longitudinal", "clean_structured_content"], map_dir=tmp_path / "map"
    )
    files = manifest.groupby("Modality").head(1)
    with pytest.warns(dl.BurnedInAnnotationWarning):
        more = d.apply(list(files.path), out=tmp_path / "out")
    added: dict[str, set[str]] = {}
    for out in (basic, more):
        for src, row in _pairs(files, out):
            new = _errors(row.path) - _errors(src.path)
            if new:
                added[f"{src.Modality} {Path(row.path).name}"] = new
    assert added == {}
    assert _errors(files.path.iloc[0]) == set()  # the inputs are clean to begin with


# -- 12. burned-in annotation ---------------------------------------------------------
def test_burned_in_risk_is_reported_and_warned(
    tmp_path: Path,
    source: tuple[Path, pd.DataFrame],
    applied: tuple[dl.Deidentifier, pd.DataFrame, Path],
) -> None:
    _, manifest = source
    _, out, _ = applied
    assert set(out[out.Modality == "US"].burned_in_risk) == {"possible"}
    assert set(out[out.Modality.isin(["CT", "MR", "DX"])].burned_in_risk) == {"no"}
    d = dl.Deidentifier(SECRET, map_dir=tmp_path / "map")
    ct = _ct(manifest)
    ct.BurnedInAnnotation = "NO"
    assert d.dataset(ct)[1]["burned_in_risk"] == "no"
    sc = _ct(manifest)
    sc.SOPClassUID = sc.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    sc.Modality = "OT"
    sc.ConversionType = "WSD"
    sc.save_as(tmp_path / "sc.dcm", enforce_file_format=True)
    with pytest.warns(dl.BurnedInAnnotationWarning, match="OT"):
        rows = d.apply([tmp_path / "sc.dcm"], out=tmp_path / "out")
    assert list(rows.burned_in_risk) == ["possible"]
    yes = _ct(manifest)
    yes.BurnedInAnnotation = "YES"
    yes.save_as(tmp_path / "yes.dcm", enforce_file_format=True)
    with pytest.warns(dl.BurnedInAnnotationWarning, match="CT"):
        rows = d.apply([tmp_path / "yes.dcm"], out=tmp_path / "out")
    assert list(rows.burned_in_risk) == ["yes"]
    study = d.report(rows)
    assert list(study.burned_in_risk) == ["yes"]


# -- 11. real peers -------------------------------------------------------------------
@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dl.LocalPACS]]:
    """A LocalPACS per retrieve method, none de-identifying of its own."""
    root = tmp_path_factory.mktemp("receivers")
    book = dl.NodeBook()
    made = {
        m: dl.LocalPACS(root / m, ae_title=f"DEID{m.upper()}", port=0, book=book, fsync=False)
        for m in ("get", "move")
    }
    for lp in made.values():
        lp.start()
    yield made
    for lp in made.values():
        lp.stop()


@pytest.fixture(scope="module")
def peer_studies(source: tuple[Path, pd.DataFrame]) -> pd.DataFrame:
    """A CT study (with its SEG, SR and KOS) and the MR study."""
    _, manifest = source
    ct = manifest[manifest.Modality == "CT"].StudyInstanceUID.iloc[0]
    mr = manifest[manifest.Modality == "MR"].StudyInstanceUID.iloc[0]
    return manifest[manifest.StudyInstanceUID.isin([ct, mr])]


@pytest.fixture(scope="module")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory,
    receivers: dict[str, dl.LocalPACS],
    peer_studies: pd.DataFrame,
) -> Iterator[Orthanc]:
    need_peer("Orthanc")
    nodes = [lp.node for lp in receivers.values()]
    with Orthanc.knowing(tmp_path_factory.mktemp("orthanc"), *nodes) as o:
        o.upload(peer_studies.path)
        yield o


def _log_leaks(texts: set[str], new_uids: set[str], stores: int) -> dict[str, Any]:
    """What of ``texts`` this test's network log holds (files, decoded Parquet values,
    read_log's rows); the log is not empty: ``stores`` C-STOREs at least, every UID it
    shows a new one."""
    dl.log.flush()
    folder = dl.log.folder()
    assert folder is not None and folder.exists()
    needles = _needles(texts)
    found: dict[str, Any] = dict(_file_leaks(folder, texts))
    found.update(_parquet_leaks(folder, needles))
    ops = dl.read_log()
    rows = _frame_leaks(ops, needles)
    if rows:
        found["read_log()"] = rows
    assert (ops.service == "C-STORE").sum() >= stores
    shown = set(ops.sop_instance_uid.dropna()) | set(ops.study_instance_uid.dropna())
    assert shown <= new_uids | {""}, shown - new_uids
    return found


@pytest.mark.parametrize("method", ["get", "move"])
def test_a_deidentifying_retrieve_brings_nothing_identifying(
    tmp_path: Path,
    method: str,
    receivers: dict[str, dl.LocalPACS],
    orthanc: Orthanc,
    peer_studies: pd.DataFrame,
) -> None:
    local = receivers[method]
    studies = sorted(peer_studies.StudyInstanceUID.unique())
    d = dl.Deidentifier(SECRET, map_dir=tmp_path / "map")

    def pull() -> pd.DataFrame:
        res = dl.retrieve(
            orthanc.node,
            studies,
            into=local,
            method=method,
            deidentify=d,
            progress=False,
            calling_ae=local.ae_title,
        )
        assert isinstance(res, pd.DataFrame)
        return res

    res = pull()
    assert res.complete.all(), res.error.tolist()
    assert sorted(res.StudyInstanceUID) == sorted(d.new_uid(s) for s in studies)
    held = local.instances()
    assert len(held) == len(peer_studies)
    assert set(held.SOPInstanceUID) == {d.new_uid(u) for u in peer_studies.SOPInstanceUID}
    assert set(held.PatientID) == {d.pseudonym(p) for p in peer_studies.PatientID}
    texts = _identity(peer_studies.path)
    uids = set(peer_studies.StudyInstanceUID) | set(peer_studies.SOPInstanceUID)
    everything = texts | uids | set(peer_studies.SeriesInstanceUID)
    needles = _needles(everything)
    assert _file_leaks(local.archive.root, everything) == {}
    assert _frame_leaks(held, needles) == set()
    assert _frame_leaks(res, needles) == set()
    again = pull()
    assert again.skipped.all() and again.complete.all()
    assert _frame_leaks(again, needles) == set()
    new_uids = {d.new_uid(u) for u in uids}
    assert _log_leaks(everything, new_uids, stores=len(peer_studies)) == {}
    # the map re-identifies what arrived, in a later session too
    back = dl.Deidentifier(SECRET, map_dir=tmp_path / "map").reidentify(held)
    assert set(back.original.dropna()) >= set(peer_studies.SOPInstanceUID)


def _storescu(ae: str, port: int, files: Iterable[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_peer("storescu"), "-aet", "DEIDSCU", "-aec", ae, "127.0.0.1", str(port), *files],
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=120,
        check=False,
    )


def test_storescu_into_a_deidentifying_localpacs_then_on_to_orthanc(
    tmp_path: Path, source: tuple[Path, pd.DataFrame], orthanc: Orthanc
) -> None:
    _, manifest = source
    files = manifest[manifest.Modality.isin(["CT", "MR"])]
    d = dl.Deidentifier(SECRET, map_dir=tmp_path / "map")
    local = dl.LocalPACS(tmp_path / "lp", port=0, deidentify=d, allow_unknown="all", fsync=False)
    with local:
        r = _storescu(local.ae_title, local.port, files.path)
        assert r.returncode == 0, r.stderr
        held = local.instances()
    assert set(held.SOPInstanceUID) == {d.new_uid(u) for u in files.SOPInstanceUID}
    assert set(held.PatientID) == {d.pseudonym(p) for p in files.PatientID}
    uids = set(files.StudyInstanceUID) | set(files.SOPInstanceUID)
    everything = _identity(files.path) | uids
    assert _file_leaks(tmp_path / "lp", everything) == {}
    assert _frame_leaks(held, _needles(everything)) == set()
    assert _log_leaks(everything, {d.new_uid(u) for u in uids}, stores=len(files)) == {}
    # the de-identified files go on to Orthanc with dcmtk
    before = len(orthanc.rest("GET", "/instances"))
    paths = [str((tmp_path / "lp" / p) if not Path(p).is_absolute() else p) for p in held.path]
    r = _storescu(orthanc.ae_title, orthanc.port, paths)
    assert r.returncode == 0, r.stderr
    ids = orthanc.rest("GET", "/instances")
    assert len(ids) == before + len(files)
    tags = [orthanc.rest("GET", f"/instances/{i}/simplified-tags") for i in ids]
    arrived = [t for t in tags if t["SOPInstanceUID"] in set(held.SOPInstanceUID)]
    assert len(arrived) == len(files)
    assert {t["PatientID"] for t in arrived} == set(held.PatientID)
    # after the LocalPACS stopped, the map still re-identifies (a later session)
    later = dl.Deidentifier(SECRET, map_dir=tmp_path / "map")
    back = later.reidentify(sorted(set(held.PatientID))).set_index("replacement")
    originals = {k: (None if pd.isna(v) else v) for k, v in back.original.items()}
    parts = sorted(p.name for p in (tmp_path / "map").glob("*"))
    assert originals == {d.pseudonym(p): p for p in files.PatientID}, f"map parts: {parts}"


@pytest.mark.parametrize("what", ["family", "id"])
def test_a_deidentifying_localpacs_refuses_what_would_still_identify(
    tmp_path: Path, source: tuple[Path, pd.DataFrame], what: str
) -> None:
    _, manifest = source
    ds, text = _of(manifest, "CT", what)
    ds.ContentDescription = f"{text} follow-up"  # not in Table E.1-1: would be kept
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad, enforce_file_format=True)
    d = dl.Deidentifier(SECRET, map_dir=tmp_path / "map")
    root = tmp_path / "lp"
    with dl.LocalPACS(root, port=0, deidentify=d, allow_unknown="all", fsync=False) as local:
        with warnings.catch_warnings():  # a failed row may warn: not the point here
            warnings.simplefilter("ignore", dl.PartialResultWarning)
            res = dl.store(local.node, [bad], progress=False, calling_ae="DEIDSCU")
        assert isinstance(res, pd.DataFrame) and len(res) == 1
        assert int(res.status.iloc[0]) >= 0xA000  # a failure status
        error = str(res.error.iloc[0])
        assert "not de-identified" in error
        assert not [t for t in _secrets_of(ds) if t.lower() in error.lower()]
        assert len(local.instances()) == 0
        assert local.archive.stats["failed"] == 1
    assert not [p for p in (root / "files").rglob("*") if p.is_file()]
    assert _file_leaks(root, _identity([str(bad)])) == {}
    # the sender learns which attribute to remove (names only, never values)
    assert "ContentDescription" in error, error


@pytest.mark.parametrize(
    "options",
    [[], ["retain_longitudinal", "clean_descriptors"], ["retain_uids", "clean_structured_content"]],
)
def test_the_byte_rewriter_gives_what_pydicom_gives(
    source: tuple[Path, pd.DataFrame], tmp_path: Path, options: list[str]
) -> None:
    """A file's bytes de-identified (the fast path of every transfer) equal the same
    file read by pydicom, de-identified as a data set and written by pydicom; so do the
    outcome rows. Every modality of the synthetic set, SEG, SR and KOS included."""
    _, manifest = source
    fast = dl.Deidentifier(SECRET, options, map_dir=tmp_path / "fast")
    slow = dl.Deidentifier(SECRET, options, map_dir=tmp_path / "slow")
    for path in manifest.path:
        data = Path(path).read_bytes()
        out, row = fast.encoded(data)
        ds, slow_row = slow.dataset(dcmread(io.BytesIO(data)))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        assert out == buffer.getvalue(), (path, row["Modality"])
        assert row == slow_row


def test_a_file_in_pieces_is_de_identified_as_the_whole_file(
    source: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """What a C-STORE receiver hands over (a file in pieces, split anywhere, a header
    longer than the first 64 KiB included) gives the bytes the whole file gives."""
    _, manifest = source
    whole = dl.Deidentifier(SECRET, ["retain_longitudinal"], map_dir=tmp_path / "a")
    parts = dl.Deidentifier(SECRET, ["retain_longitudinal"], map_dir=tmp_path / "b")
    ds = _ct(manifest)
    ds.ImageComments = "x" * 70_000  # pushes the pixel data past the first 64 KiB
    long_header = _bytes(ds)
    files = [Path(p).read_bytes() for p in manifest.path[:12]] + [long_header]
    for data in files:
        expected, row = whole.encoded(data)
        for cuts in ([], [132], [7, 300, 1000], [len(data) // 2], [65_000, 65_600]):
            edges = [0, *[c for c in cuts if c < len(data)], len(data)]
            pieces = [memoryview(data)[a:b] for a, b in itertools.pairwise(edges)]
            out, got = parts.encoded_parts(pieces)
            assert b"".join(out) == expected
            assert got == row


def test_the_byte_rewriter_reads_implicit_vr_as_pydicom_does(
    source: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """Implicit VR Little Endian (the default transfer syntax, VRs from the dictionary):
    the byte rewriter and pydicom give the same file, sequences included."""
    _, manifest = source
    fast = dl.Deidentifier(SECRET, ["clean_descriptors"], map_dir=tmp_path / "fast")
    slow = dl.Deidentifier(SECRET, ["clean_descriptors"], map_dir=tmp_path / "slow")
    for modality in ("CT", "SEG", "SR", "KO"):
        ds = dcmread(manifest[manifest.Modality == modality].path.iloc[0])
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        data = _bytes(ds)
        out, row = fast.encoded(data)
        assert dcmread(io.BytesIO(out)).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        done, slow_row = slow.dataset(dcmread(io.BytesIO(data)))
        assert out == _bytes(done), modality
        assert row == slow_row


def test_a_deidentifying_store_sends_orthanc_nothing_identifying(
    tmp_path: Path, source: tuple[Path, pd.DataFrame], orthanc: Orthanc
) -> None:
    """``dl.store(orthanc, files, deidentify=d)``: what Orthanc receives (its own stored
    files, byte-scanned) holds no name, ID or birth date of the source, nor its UIDs;
    the outcome table names the user's files and holds the new UIDs; nothing is left in
    a temporary folder."""
    _, manifest = source
    files = manifest[manifest.Modality.isin(["CR", "SR"])]
    d = dl.Deidentifier(SECRET, ["retain_longitudinal"], map_dir=tmp_path / "map")
    before = set(orthanc.rest("GET", "/instances"))
    temp = set(Path(tempfile.gettempdir()).iterdir())
    res = dl.store(orthanc.node, list(files.path), deidentify=d, progress=False)
    assert (res.status == 0).all(), res[["status", "error"]]
    assert set(res.path) == set(files.path)
    assert set(res.SOPInstanceUID) == {d.new_uid(u) for u in files.SOPInstanceUID}
    assert set(Path(tempfile.gettempdir()).iterdir()) <= temp
    new = set(orthanc.rest("GET", "/instances")) - before
    assert len(new) == len(files)
    uids = set(files.StudyInstanceUID) | set(files.SeriesInstanceUID) | set(files.SOPInstanceUID)
    needles = _needles(_identity(files.path) | uids)
    for orthanc_id in new:
        data = orthanc.rest("GET", f"/instances/{orthanc_id}/file")
        assert isinstance(data, bytes) and data[128:132] == b"DICM"
        assert set(needles.findall(data)) == set(), orthanc_id
        ds = dcmread(io.BytesIO(data))
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientID in {d.pseudonym(p) for p in files.PatientID}
    assert _frame_leaks(res, needles) == set()
