"""dl.retrieve and dl.store against real peers: Orthanc (C-MOVE, C-GET, C-STORE) and storescp."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread

import dicomlab as dl
from dicomlab.peers import Orthanc, StoreSCP
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("synth")
    return folder, dl.synth.write_studies(folder, n_studies=10, seed=31, today=date(2026, 5, 1))


@pytest.fixture
def local(tmp_path: Path) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path / "lp", ae_title="DLRECV", port=0, fsync=False) as lp:
        yield lp


@pytest.fixture
def orthanc(
    tmp_path: Path, local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame]
) -> Iterator[Orthanc]:
    need_peer("Orthanc")
    with Orthanc.knowing(tmp_path / "o", local.node) as o:
        o.upload(synthetic[1].path)
        yield o


def _intact(local: dl.LocalPACS, manifest: pd.DataFrame) -> None:
    held = local.instances().set_index("SOPInstanceUID")
    assert set(held.index) == set(manifest.SOPInstanceUID)
    for row in manifest.itertuples():
        assert (
            dcmread(held.loc[row.SOPInstanceUID, "path"]).PixelData == dcmread(row.path).PixelData
        )


@pytest.mark.parametrize("method", ["move", "get"])
@pytest.mark.parametrize("connections", [1, 4])
def test_retrieve_ten_studies_intact_then_nothing_twice(
    orthanc: Orthanc,
    local: dl.LocalPACS,
    synthetic: tuple[Path, pd.DataFrame],
    method: str,
    connections: int,
) -> None:
    manifest = synthetic[1]
    studies = dl.find(orthanc.node, dl.Query.studies(), calling_ae=local.ae_title)
    assert len(studies) == 10

    def pull() -> pd.DataFrame:
        out = dl.retrieve(
            orthanc.node,
            studies,
            into=local,
            method=method,
            max_connections=connections,
            progress=False,
            calling_ae=local.ae_title,
        )
        assert isinstance(out, pd.DataFrame)
        return out

    res = pull()
    assert len(res) == 10
    assert res.complete.all(), res[["error"]]
    assert (res.status == 0).all()
    assert (res.received_instances == res.expected_instances).all()
    assert res.received_instances.sum() == len(manifest)
    assert res.attrs["complete"]
    _intact(local, manifest)

    stored = local.stats["stored"]
    again = pull()  # the same cell run again
    assert again.skipped.all() and again.complete.all()
    assert (again.attempts == 0).all()
    assert local.stats["stored"] == stored and local.stats["duplicates"] == 0


def test_retrieve_series_rows_and_uid_lists(
    orthanc: Orthanc, local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    manifest = synthetic[1]
    study = manifest.StudyInstanceUID.iloc[0]
    series = dl.find(
        orthanc.node, dl.Query.series(StudyInstanceUID=study), calling_ae=local.ae_title
    )
    res = dl.retrieve(
        orthanc.node,
        series.head(1),
        into=local,
        method="get",
        progress=False,
        calling_ae=local.ae_title,
    )
    assert list(res.level) == ["series"] and res.complete.all()
    one = manifest[manifest.SeriesInstanceUID == series.SeriesInstanceUID.iloc[0]]
    assert set(local.instances().SOPInstanceUID) == set(one.SOPInstanceUID)
    res = dl.retrieve(
        orthanc.node,
        [manifest.StudyInstanceUID.iloc[1]],
        into=local,
        method="move",
        progress=False,
        calling_ae=local.ae_title,
    )
    assert (
        res.complete.all()
        and res.expected_instances.iloc[0]
        == (manifest.StudyInstanceUID == manifest.StudyInstanceUID.iloc[1]).sum()
    )


def test_success_with_missing_instances_is_flagged_incomplete(
    orthanc: Orthanc, local: dl.LocalPACS
) -> None:
    studies = dl.find(orthanc.node, dl.Query.studies(), calling_ae=local.ae_title).head(1)
    # The PACS's count says one more than it will send: the silent C-MOVE failure.
    studies["NumberOfStudyRelatedInstances"] += 1
    res = dl.retrieve(
        orthanc.node, studies, into=local, method="move", progress=False, calling_ae=local.ae_title
    )
    assert res.status.iloc[0] == 0
    assert not res.complete.iloc[0]
    assert "incomplete" in res.error.iloc[0]
    assert not res.attrs["complete"]


def test_unknown_move_destination_explains_what_to_register(
    tmp_path: Path, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    need_peer("Orthanc")
    with (
        dl.LocalPACS(tmp_path / "lp", ae_title="NOTREGISTERED", port=0) as lp,
        Orthanc(tmp_path / "o2") as o,
    ):
        o.upload(synthetic[1].path[:3])
        studies = dl.find(o.node, dl.Query.studies(), calling_ae="X")
        res = dl.retrieve(o.node, studies, into=lp, method="move", progress=False, calling_ae="X")
        assert not res.complete.any()
        err = res.error.iloc[0]
        assert "NOTREGISTERED" in err and str(lp.port) in err and "method='get'" in err
        fixed = dl.retrieve(o.node, studies, into=lp, method="get", progress=False, calling_ae="X")
        assert fixed.complete.all()


def test_cancel_part_way_keeps_valid_files(
    tmp_path: Path, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    need_peer("Orthanc")
    big = dl.synth.write_studies(
        tmp_path / "big", n_studies=30, seed=8, image_size=128, max_series=2, max_instances=6
    )
    with (
        dl.LocalPACS(tmp_path / "lp", ae_title="DLCANCEL", port=0, fsync=False) as lp,
        Orthanc.knowing(tmp_path / "o3", lp.node) as o,
    ):
        o.upload(big.path)
        studies = dl.find(o.node, dl.Query.studies(), calling_ae="DLCANCEL")
        job = dl.retrieve(
            o.node,
            studies,
            into=lp,
            method="get",
            max_connections=1,
            wait=False,
            progress=False,
            calling_ae="DLCANCEL",
        )
        assert isinstance(job, dl.Job)
        deadline = time.monotonic() + 30
        while (job.progress.state == "done").sum() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        job.cancel()
        res = job.result(timeout=60)
        assert job.done()
        assert not res.attrs["complete"]
        assert res.complete.sum() >= 2 and (~res.complete).sum() >= 1
        assert res.error.str.contains("cancel").any()
        held = lp.instances()
        assert 0 < len(held) < len(big)
        for path in held.path:  # every file that arrived is whole
            assert dcmread(path).SOPInstanceUID


def test_store_mixed_folder_into_storescp_and_orthanc(
    tmp_path: Path, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    need_peer("storescp")
    need_peer("Orthanc")
    folder, manifest = synthetic
    (folder / "notes.txt").write_text("not DICOM")
    try:
        with StoreSCP(tmp_path / "scp") as scp:
            res = dl.store(scp.node, folder, max_connections=2, progress=False, calling_ae="SENDER")
            received = {dcmread(p).SOPInstanceUID for p in scp.output.iterdir()}
        assert received == set(manifest.SOPInstanceUID)
        assert len(res) == len(manifest) + 1
        bad = res[res.path.str.endswith("notes.txt")]
        assert bad.status.isna().all() and bad.error.iloc[0] == "not a DICOM file"
        good = res.drop(bad.index)
        assert (good.status == 0).all() and good.error.isna().all()
        assert not res.attrs["complete"]

        with Orthanc(tmp_path / "o4") as o:
            res = dl.store(
                o.node, manifest.path, max_connections=4, progress=False, calling_ae="SENDER"
            )
            assert (res.status == 0).all() and res.attrs["complete"]
            assert len(o.rest("GET", "/instances")) == len(manifest)
    finally:
        (folder / "notes.txt").unlink()


def test_store_local_instances_and_datasets(
    tmp_path: Path, local: dl.LocalPACS, synthetic: tuple[Path, pd.DataFrame]
) -> None:
    need_peer("storescp")
    local.import_files(synthetic[0])
    with StoreSCP(tmp_path / "scp2") as scp:
        res = dl.store(scp.node, local.instances().head(5), progress=False, calling_ae="S")
        assert (res.status == 0).all() and len(res) == 5
        ds = next(iter(dl.synth.generate(1, seed=77)))
        one = dl.store(scp.node, ds, progress=False, calling_ae="S")
        assert one.status.iloc[0] == 0
        assert len(list(scp.output.iterdir())) == 6


def test_store_negotiates_syntaxes_from_the_files(tmp_path: Path) -> None:
    """An RLE file goes as is where accepted; to an implicit-only peer it is converted."""
    need_peer("storescp")
    from pydicom.uid import ImplicitVRLittleEndian, RLELossless

    ds = next(iter(dl.synth.generate(1, seed=12, image_size=32)))
    ds.compress(RLELossless)
    rle = tmp_path / "rle.dcm"
    ds.save_as(rle, enforce_file_format=True)
    plain = tmp_path / "plain.dcm"
    next(iter(dl.synth.generate(1, seed=13))).save_as(plain, enforce_file_format=True)
    with StoreSCP(tmp_path / "all") as scp:
        res = dl.store(scp.node, [rle, plain], progress=False, calling_ae="S")
        assert (res.status == 0).all()
        assert set(res.sent_as) == {RLELossless, "1.2.840.10008.1.2.1"}
        got = {dcmread(p).SOPInstanceUID: dcmread(p) for p in scp.output.iterdir()}
        assert got[ds.SOPInstanceUID].file_meta.TransferSyntaxUID == RLELossless
    with StoreSCP(tmp_path / "implicit", extra=["+xi"]) as scp:
        res = dl.store(scp.node, [rle, plain], progress=False, calling_ae="S")
        assert (res.status == 0).all(), res.error.tolist()
        assert set(res.sent_as) == {ImplicitVRLittleEndian}
        got = {dcmread(p).SOPInstanceUID: dcmread(p) for p in scp.output.iterdir()}
        assert got[ds.SOPInstanceUID].pixel_array.tolist() == ds.pixel_array.tolist()


def test_store_refused_mid_batch_keeps_every_files_row_in_order(tmp_path: Path) -> None:
    """On one association, the instances the peer refuses (here two cut short: their
    headers read well, LocalPACS answers 0xC000 to the data sets) get their own failed
    rows, in the files' order, and the instances around them are stored."""
    files = []
    for i, ds in enumerate(
        dl.synth.generate(1, seed=31, image_size=256, max_series=1, max_instances=8)
    ):
        path = tmp_path / "in" / f"{i:02d}.dcm"
        path.parent.mkdir(exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        if i in (2, 5):
            path.write_bytes(path.read_bytes()[:-1000])
        files.append(path)
    assert len(files) > 6
    with dl.LocalPACS(tmp_path / "pacs", port=0, fsync=False) as pacs:
        res = dl.store(pacs.node, files, max_connections=1, progress=False, calling_ae="S")
        held = set(pacs.instances().SOPInstanceUID)
    assert isinstance(res, pd.DataFrame)
    assert list(res.path) == [str(f) for f in files]
    refused = res.index[res.status != 0].tolist()
    assert refused == [2, 5]
    assert (res.status[refused] == 0xC000).all() and res.error[refused].notna().all()
    assert res.drop(refused).error.isna().all()
    assert held == set(res.drop(refused).SOPInstanceUID)
    assert (res.duration_s > 0).all() and not res.attrs["complete"]
