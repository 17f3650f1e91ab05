"""dl.find / dl.find_many against real peers: Orthanc, dcmtk dcmqrscp and LocalPACS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.peers import DcmQRSCP, Orthanc
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers

TODAY = date.today()  # presets use the local calendar, so the data is made for today


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("synth")
    manifest = dl.synth.write_studies(folder, n_studies=12, seed=21, today=TODAY)
    return folder, manifest


@pytest.fixture(scope="module")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, synthetic: tuple[Path, pd.DataFrame]
) -> Iterator[Orthanc]:
    need_peer("Orthanc")
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as o:
        o.upload(synthetic[1].path)
        yield o


@pytest.fixture(scope="module")
def dcmqrscp(
    tmp_path_factory: pytest.TempPathFactory, synthetic: tuple[Path, pd.DataFrame]
) -> Iterator[DcmQRSCP]:
    need_peer("dcmqrscp")
    need_peer("dcmqridx")
    with DcmQRSCP(tmp_path_factory.mktemp("qr"), files=list(synthetic[1].path)) as q:
        yield q


@pytest.fixture(scope="module")
def local(
    tmp_path_factory: pytest.TempPathFactory, synthetic: tuple[Path, pd.DataFrame]
) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path_factory.mktemp("lp"), port=0, allow_unknown="all") as lp:
        lp.import_files(synthetic[0])
        yield lp


@pytest.fixture(params=["orthanc", "dcmqrscp", "local"])
def peer(request: pytest.FixtureRequest) -> dl.Node:
    node: dl.Node = request.getfixturevalue(request.param).node
    return node


def _studies(manifest: pd.DataFrame, first: date, last: date) -> set[str]:
    days = manifest.StudyDate.dt.date
    return set(manifest[(days >= first) & (days <= last)].StudyInstanceUID)


def test_presets_return_exactly_the_expected_studies(
    peer: dl.Node, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    manifest = synthetic[1]
    cases = {
        "today": (TODAY, TODAY),
        "yesterday": (TODAY - timedelta(days=1), TODAY - timedelta(days=1)),
        "last7days": (TODAY - timedelta(days=6), TODAY),
        "all": (date(1900, 1, 1), date(2999, 1, 1)),
    }
    for preset, (first, last) in cases.items():
        df = dl.find(peer, dl.Query.studies(date=preset), calling_ae="TESTER")
        assert df.attrs["complete"], df.attrs
        expected = _studies(manifest, first, last)
        assert expected, preset
        assert set(df.StudyInstanceUID) == expected, preset
        assert len(df) == len(expected)


def test_filters_and_typed_columns(peer: dl.Node, synthetic: tuple[Path, pd.DataFrame]) -> None:
    manifest = synthetic[1]
    target = manifest.iloc[0]
    df = dl.find(
        peer, dl.Query.studies(AccessionNumber=target.AccessionNumber), calling_ae="TESTER"
    )
    assert list(df.StudyInstanceUID) == [target.StudyInstanceUID]
    assert df.StudyDate.dtype == "datetime64[ns]"
    assert df.StudyDate.iloc[0] == target.StudyDate
    assert df.NumberOfStudyRelatedInstances.dtype == "Int64"
    count = df.NumberOfStudyRelatedInstances.iloc[0]
    if peer.name == "dcmqrscp":  # dcmqrscp does not compute this optional key
        assert pd.isna(count)
    else:
        assert count == (manifest.StudyInstanceUID == target.StudyInstanceUID).sum()
    assert df.StudyTime.dtype == "timedelta64[ns]"
    pid = dl.find(peer, dl.Query.studies(PatientID=target.PatientID), calling_ae="TESTER")
    assert set(pid.StudyInstanceUID) == set(
        manifest[manifest.PatientID == target.PatientID].StudyInstanceUID
    )


def test_series_and_image_levels(peer: dl.Node, synthetic: tuple[Path, pd.DataFrame]) -> None:
    manifest = synthetic[1]
    study = manifest.StudyInstanceUID.iloc[3]
    series = dl.find(peer, dl.Query.series(StudyInstanceUID=study), calling_ae="TESTER")
    assert set(series.SeriesInstanceUID) == set(
        manifest[manifest.StudyInstanceUID == study].SeriesInstanceUID
    )
    one = series.SeriesInstanceUID.iloc[0]
    images = dl.find(
        peer, dl.Query.instances(StudyInstanceUID=study, SeriesInstanceUID=one), calling_ae="TESTER"
    )
    assert set(images.SOPInstanceUID) == set(
        manifest[manifest.SeriesInstanceUID == one].SOPInstanceUID
    )
    assert images.InstanceNumber.dtype == "Int64"


def test_study_frame_fans_out_to_series(
    peer: dl.Node, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    manifest = synthetic[1]
    studies = dl.find(peer, dl.Query.studies(date="last7days"), calling_ae="TESTER")
    series = dl.find(
        peer, dl.Query.series(StudyInstanceUID=studies.StudyInstanceUID), calling_ae="TESTER"
    )
    expected = manifest[manifest.StudyInstanceUID.isin(studies.StudyInstanceUID)]
    assert set(series.SeriesInstanceUID) == set(expected.SeriesInstanceUID)
    assert set(series.query_value) == set(studies.StudyInstanceUID)
    assert series.attrs["complete"]


def test_non_ascii_names_round_trip(peer: dl.Node) -> None:
    df = dl.find(peer, dl.Query.studies(), calling_ae="TESTER")
    names = set(df.PatientName.dropna())
    assert {"Müller^Jürgen", "Gómez^José"} <= names
    assert df.attrs["undecodable"] == []
    hit = dl.find(peer, dl.Query.studies(PatientName="Müller*"), calling_ae="TESTER")
    assert len(hit) >= 1 and set(hit.PatientName) == {"Müller^Jürgen"}


def test_empty_result_has_the_full_typed_schema(peer: dl.Node) -> None:
    full = dl.find(peer, dl.Query.studies(), calling_ae="TESTER")
    empty = dl.find(peer, dl.Query.studies(PatientID="NO-SUCH-PATIENT"), calling_ae="TESTER")
    assert len(empty) == 0
    assert list(empty.columns) == list(full.columns)
    assert empty.dtypes.to_dict() == full.dtypes.to_dict()
    assert empty.attrs["complete"] and empty.attrs["status"] == 0


def test_find_many_2000_values_with_reconciliation(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    manifest = synthetic[1]
    real = list(manifest.AccessionNumber.unique())
    fake = [f"NOPE{i:05d}" for i in range(2000 - len(real))]
    node = local.node.replace(max_connections=4)
    t0 = time.monotonic()
    df = dl.find_many(
        node, dl.Query.studies(), progress=False, calling_ae="TESTER", AccessionNumber=real + fake
    )
    assert time.monotonic() - t0 < 120
    assert df.attrs["complete"]
    assert set(df.AccessionNumber) == set(real)
    assert set(df.query_value) == set(real)
    rec = dl.reconcile(df)
    assert len(rec) == 2000
    assert set(rec[rec.outcome == "none"].query_value) == set(fake)
    assert (rec[rec.query_value.isin(real)].n_matches >= 1).all()


def test_find_many_runs_on_the_transfer_queue_reusing_one_association_per_worker(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    """300 values over 3 connections: 3 associations in all, one progress bar counting
    queries, and the same rows as one query per value."""
    manifest = synthetic[1]
    values = [*manifest.AccessionNumber.unique()] + [f"NONE{i:04d}" for i in range(290)]
    before = local.stats["associations"]
    df = dl.find_many(
        local.node.replace(max_connections=3),
        dl.Query.studies(),
        calling_ae="TESTER",
        AccessionNumber=values,
    )
    assert local.stats["associations"] - before == 3
    bar = capsys.readouterr().err
    assert "C-FIND" in bar and f"{len(values)}/{len(values)}" in bar and "query/s" in bar
    one_by_one = pd.concat(
        [
            dl.find(local.node, dl.Query.studies(AccessionNumber=v), calling_ae="TESTER")
            for v in manifest.AccessionNumber.unique()
        ]
    )
    assert sorted(df.StudyInstanceUID) == sorted(one_by_one.StudyInstanceUID)
    assert dl.reconcile(df).outcome.value_counts()["none"] == 290


def test_find_many_reports_values_matching_several(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    manifest = synthetic[1]
    per_patient = manifest.groupby("PatientID").StudyInstanceUID.nunique()
    several = set(per_patient[per_patient > 1].index)
    assert several
    df = dl.find_many(
        local.node,
        dl.Query.studies(),
        progress=False,
        calling_ae="TESTER",
        PatientID=list(per_patient.index),
    )
    rec = dl.reconcile(df)
    assert set(rec[rec.outcome == "several"].query_value) == several


def test_capped_results_are_reported_incomplete(
    tmp_path: Path, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    need_peer("Orthanc")
    with Orthanc(tmp_path / "capped", config={"LimitFindResults": 3}) as o:
        o.upload(synthetic[1].path)
        with pytest.warns(dl.PartialResultWarning, match="partial result, 3 rows"):
            df = dl.find(o.node, dl.Query.studies(), calling_ae="TESTER")
    assert len(df) == 3
    assert df.attrs["complete"] is False
    assert "partial" in df.attrs["error"]


def test_bad_queries_raise_before_sending() -> None:
    nowhere = dl.Node("x", ae_title="X", port=9, timeout=1)  # nothing is ever sent there
    with pytest.raises(dl.ValidationError, match="'NotAKeyword'"):
        dl.find(nowhere, dl.Query.studies(NotAKeyword="1"))
    with pytest.raises(dl.ValidationError, match="'20261345'"):
        dl.find(nowhere, dl.Query.studies(StudyDate="20261345"))
    with pytest.raises(dl.ValidationError, match="'lastweek'"):
        dl.Query.studies(date="lastweek")


def test_network_failure_raises_typed_error() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(dl.ConnectionRefused):
        dl.find(
            dl.Node("x", ae_title="X", port=port, timeout=2),
            dl.Query.studies(),
            calling_ae="TESTER",
        )


def test_patient_root_preference_and_fallback(
    local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    manifest = synthetic[1]
    node = local.node.replace(query_model="patient")
    df = dl.find(node, dl.Query.studies(date="all"), calling_ae="TESTER")
    assert set(df.StudyInstanceUID) == set(manifest.StudyInstanceUID)
    patients = dl.find(local.node, dl.Query.patients(), calling_ae="TESTER")
    assert set(patients.PatientID) == set(manifest.PatientID)
    with pytest.raises(dl.ValidationError, match="'visit'"):
        dl.Node("n", ae_title="N", query_model="visit")  # type: ignore[arg-type]
