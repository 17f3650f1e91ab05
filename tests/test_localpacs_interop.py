"""LocalPACS against independent implementations: dcmtk tools and Orthanc, both directions."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread

import dicomlab as dl
from dicomlab.peers import Orthanc, StoreSCP, peer_env
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers

TODAY = date(2026, 3, 10)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("synth")
    manifest = dl.synth.write_studies(folder, n_studies=8, seed=11, today=TODAY)
    return folder, manifest


@pytest.fixture
def book() -> dl.NodeBook:
    return dl.NodeBook()


@pytest.fixture
def local(tmp_path: Path, book: dl.NodeBook) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path / "archive", port=0, book=book, allow_unknown="all") as lp:
        yield lp


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    need_peer(args[0])
    return subprocess.run(
        args, capture_output=True, text=True, env=peer_env(), cwd=cwd, timeout=120, check=False
    )


def _storescu(local: dl.LocalPACS, files: list[str]) -> None:
    r = _run(
        ["storescu", "-aet", "SCU", "-aec", local.ae_title, "127.0.0.1", str(local.port), *files]
    )
    assert r.returncode == 0, r.stderr


def _findscu(local: dl.LocalPACS, tmp: Path, keys: list[str], study_root: bool = True) -> list:
    out = tmp / "find"
    out.mkdir(exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    args = ["findscu", "-S" if study_root else "-P", "-X", "-od", str(out), "-aec", local.ae_title]
    for k in keys:
        args += ["-k", k]
    r = _run([*args, "127.0.0.1", str(local.port)])
    assert r.returncode == 0, r.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_storescu_into_localpacs_indexes_everything(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    _, manifest = synthetic
    _storescu(local, list(manifest.path))
    held = local.instances()
    assert sorted(held.SOPInstanceUID) == sorted(manifest.SOPInstanceUID)
    assert local.stats["stored"] == len(manifest)
    # Stored as received: the bytes after the file meta are those storescu sent.
    for row in manifest.head(5).itertuples():
        ours = held.set_index("SOPInstanceUID").loc[row.SOPInstanceUID, "path"]
        assert dcmread(ours).PixelData == dcmread(row.path).PixelData
    # Non-ASCII names decoded into the index.
    names = set(held.PatientName)
    assert {"Müller^Jürgen", "Gómez^José"} <= names
    studies = local.studies()
    assert len(studies) == manifest.StudyInstanceUID.nunique()
    per_study = manifest.groupby("StudyInstanceUID").size()
    for s in studies.itertuples():
        assert int(s.NumberOfStudyRelatedInstances) == per_study[s.StudyInstanceUID]


def test_findscu_matching_rules(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    folder, manifest = synthetic
    local.import_files(folder)
    base = [
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "PatientName",
        "StudyDate",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    ]
    everything = _findscu(local, tmp_path, base)
    assert {d.StudyInstanceUID for d in everything} == set(manifest.StudyInstanceUID)

    today = TODAY.strftime("%Y%m%d")
    rsp = _findscu(local, tmp_path, [*base[:-3], f"StudyDate={today}"])
    expected = set(manifest[manifest.StudyDate == pd.Timestamp(TODAY)].StudyInstanceUID)
    assert expected and {d.StudyInstanceUID for d in rsp} == expected

    week = f"{(TODAY - pd.Timedelta(days=6)).strftime('%Y%m%d')}-{today}"
    rsp = _findscu(local, tmp_path, [*base[:-3], f"StudyDate={week}"])
    recent = manifest[manifest.StudyDate >= pd.Timestamp(TODAY) - pd.Timedelta(days=6)]
    assert {d.StudyInstanceUID for d in rsp} == set(recent.StudyInstanceUID)

    rsp = _findscu(local, tmp_path, [*base, "ModalitiesInStudy=CT"])
    ct = set(manifest[manifest.Modality == "CT"].StudyInstanceUID)
    assert ct and {d.StudyInstanceUID for d in rsp} == ct

    rsp = _findscu(
        local, tmp_path, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=doe*"]
    )
    assert rsp and all(str(d.PatientName).upper().startswith("DOE") for d in rsp)

    one = manifest.iloc[0]
    rsp = _findscu(
        local,
        tmp_path,
        [
            "QueryRetrieveLevel=IMAGE",
            "SOPInstanceUID",
            f"StudyInstanceUID={one.StudyInstanceUID}",
            f"SeriesInstanceUID={one.SeriesInstanceUID}",
        ],
    )
    in_series = manifest[manifest.SeriesInstanceUID == one.SeriesInstanceUID]
    assert {d.SOPInstanceUID for d in rsp} == set(in_series.SOPInstanceUID)

    # Patient Root, patient level.
    rsp = _findscu(
        local,
        tmp_path,
        ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "NumberOfPatientRelatedStudies"],
        study_root=False,
    )
    assert {d.PatientID for d in rsp} == set(manifest.PatientID)


def test_non_ascii_names_answered_in_utf8(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    local.import_files(synthetic[0])
    rsp = _findscu(local, tmp_path, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName"])
    names = {str(d.PatientName) for d in rsp}
    assert "Müller^Jürgen" in names
    assert any(d.get("SpecificCharacterSet") == "ISO_IR 192" for d in rsp)


def test_movescu_to_storescp_identical_pixels(
    local: dl.LocalPACS, book: dl.NodeBook, synthetic: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    folder, manifest = synthetic
    local.import_files(folder)
    need_peer("storescp")
    with StoreSCP(tmp_path / "scp") as scp:
        book.add(scp.node)
        study = manifest.StudyInstanceUID.iloc[2]
        r = _run(
            [
                "movescu",
                "-S",
                "-aem",
                scp.ae_title,
                "-aec",
                local.ae_title,
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study}",
                "127.0.0.1",
                str(local.port),
            ]
        )
        assert r.returncode == 0, r.stderr
        received = {dcmread(p).SOPInstanceUID: dcmread(p) for p in scp.output.iterdir()}
    expected = manifest[manifest.StudyInstanceUID == study]
    assert set(received) == set(expected.SOPInstanceUID)
    for row in expected.itertuples():
        assert received[row.SOPInstanceUID].PixelData == dcmread(row.path).PixelData


def test_movescu_to_unknown_destination_is_refused(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    local.import_files(synthetic[0])
    r = _run(
        [
            "movescu",
            "-S",
            "-aem",
            "NOBODY",
            "-aec",
            local.ae_title,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={synthetic[1].StudyInstanceUID.iloc[0]}",
            "127.0.0.1",
            str(local.port),
        ]
    )
    assert "MoveDestinationUnknown" in r.stderr or "a801" in r.stderr.lower()


def test_getscu_identical_pixels(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    folder, manifest = synthetic
    local.import_files(folder)
    out = tmp_path / "get"
    out.mkdir()
    series = manifest.SeriesInstanceUID.iloc[-1]
    study = manifest[manifest.SeriesInstanceUID == series].StudyInstanceUID.iloc[0]
    r = _run(
        [
            "getscu",
            "-S",
            "-od",
            str(out),
            "-aec",
            local.ae_title,
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={study}",
            "-k",
            f"SeriesInstanceUID={series}",
            "127.0.0.1",
            str(local.port),
        ]
    )
    assert r.returncode == 0, r.stderr
    got = {dcmread(p).SOPInstanceUID: dcmread(p) for p in out.iterdir()}
    expected = manifest[manifest.SeriesInstanceUID == series]
    assert set(got) == set(expected.SOPInstanceUID)
    for row in expected.itertuples():
        assert got[row.SOPInstanceUID].PixelData == dcmread(row.path).PixelData


def test_orthanc_both_directions(
    local: dl.LocalPACS, book: dl.NodeBook, synthetic: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    need_peer("Orthanc")
    _, manifest = synthetic
    half = manifest.StudyInstanceUID.unique()
    to_orthanc, to_local = half[:4], half[4:]
    for path in manifest[manifest.StudyInstanceUID.isin(to_local)].path:
        local.import_files(path)
    with Orthanc.knowing(tmp_path / "orthanc", local.node) as orthanc:
        book.add(orthanc.node)
        orthanc.upload(manifest[manifest.StudyInstanceUID.isin(to_orthanc)].path)

        # 1. Orthanc C-MOVEs a study into LocalPACS (movescu asks Orthanc to move).
        study = to_orthanc[0]
        r = _run(
            [
                "movescu",
                "-S",
                "-aet",
                local.ae_title,
                "-aem",
                local.ae_title,
                "-aec",
                orthanc.ae_title,
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study}",
                "127.0.0.1",
                str(orthanc.port),
            ]
        )
        assert r.returncode == 0, r.stderr
        moved = manifest[manifest.StudyInstanceUID == study]
        held = set(local.instances().SOPInstanceUID)
        assert set(moved.SOPInstanceUID) <= held

        # 2. Orthanc as SCU queries LocalPACS through its REST API.
        q = orthanc.rest(
            "POST",
            f"/modalities/{local.ae_title}/query",
            {"Level": "Study", "Query": {"StudyInstanceUID": "", "PatientName": ""}},
        )
        answers = orthanc.rest("GET", f"{q['Path']}/answers?expand")
        found = {a["0020,000d"]["Value"] for a in answers}
        assert set(to_local) <= found

        # 3. Orthanc retrieves from LocalPACS (C-MOVE, LocalPACS -> Orthanc).
        one = to_local[0]
        q = orthanc.rest(
            "POST",
            f"/modalities/{local.ae_title}/query",
            {"Level": "Study", "Query": {"StudyInstanceUID": one}},
        )
        orthanc.rest(
            "POST", f"{q['Path']}/retrieve", {"TargetAet": orthanc.ae_title, "Synchronous": True}
        )
        got = orthanc.rest("POST", "/tools/lookup", raw=one.encode())
        assert got and got[0]["Type"] == "Study"

        # 4. Orthanc stores into LocalPACS (C-STORE via /modalities/.../store).
        oid = orthanc.rest("POST", "/tools/lookup", raw=to_orthanc[1].encode())[0]["ID"]
        orthanc.rest(
            "POST", f"/modalities/{local.ae_title}/store", {"Resources": [oid], "Synchronous": True}
        )
        assert set(manifest[manifest.StudyInstanceUID == to_orthanc[1]].SOPInstanceUID) <= set(
            local.instances().SOPInstanceUID
        )
