"""Transcoding on send: ``dl.store`` converts an instance the peer does not accept in
its own transfer syntax to one it accepted, losslessly, and says so in ``sent_as``;
``transcode=False`` refuses instead. Against dcmtk storescp accepting uncompressed
syntaxes only, and Orthanc accepting JPEG 2000 lossless only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
)

import dicomlab as dl
from dicomlab.cli import main
from dicomlab.peers import Orthanc, StoreSCP, peer_env
from dicomlab.testing.fixtures import need_peer

UNCOMPRESSED = {str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Two CT and two MR images of 64x64, uncompressed, and each also in JPEG 2000
    lossless and in JPEG-LS lossless (columns ``j2k`` and ``jls``)."""
    folder = tmp_path_factory.mktemp("images")
    manifest = dl.synth.write_studies(
        folder / "plain",
        n_studies=2,
        seed=21,
        max_series=1,
        max_instances=2,
        modalities=("CT", "MR"),
        image_size=64,
    )
    for column, syntax in (("j2k", JPEG2000Lossless), ("jls", JPEGLSLossless)):
        paths = []
        for i, path in enumerate(manifest.path):
            ds = dcmread(path)
            ds.compress(syntax, generate_instance_uid=False)
            out = folder / column / f"{i}.dcm"
            out.parent.mkdir(exist_ok=True)
            ds.save_as(out, enforce_file_format=True)
            paths.append(str(out))
        manifest[column] = paths
    return manifest


def _mixed(tmp_path: Path, images: pd.DataFrame) -> Path:
    """A folder of the images, some in JPEG 2000 and the others in JPEG-LS."""
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, path in enumerate([*images.j2k[:2], *images.jls[2:]]):
        shutil.copy(path, mixed / f"{i}.dcm")
    return mixed


def _arrived_uncompressed_and_identical(arrived: list[Path], images: pd.DataFrame) -> None:
    assert len(arrived) == len(images)
    want: dict[str, np.ndarray] = {}
    for path in images.path:
        want.update(_pixels(path))
    for path in arrived:
        ds = dcmread(path)
        assert str(ds.file_meta.TransferSyntaxUID) in UNCOMPRESSED
        assert np.array_equal(ds.pixel_array, want[str(ds.SOPInstanceUID)])


def _pixels(path: str | Path) -> dict[str, np.ndarray]:
    ds = dcmread(path)
    return {str(ds.SOPInstanceUID): ds.pixel_array}


@pytest.mark.parametrize("column", ["j2k", "jls"])
def test_compressed_files_reach_an_uncompressed_only_storescp_decoded(
    tmp_path: Path, images: pd.DataFrame, column: str
) -> None:
    need_peer("storescp")
    with StoreSCP(tmp_path / "scp", accept_all=False) as scp:
        res = dl.store(scp.node, list(images[column]), progress=False)
        arrived = sorted(scp.output.glob("*"))
    assert (res.status == 0).all(), res[["status", "error"]]
    assert set(res.transfer_syntax) == {
        str(JPEG2000Lossless if column == "j2k" else JPEGLSLossless)
    }
    assert set(res.sent_as) <= UNCOMPRESSED
    assert len(arrived) == len(images)
    got: dict[str, np.ndarray] = {}
    for path in arrived:
        assert str(dcmread(path).file_meta.TransferSyntaxUID) in UNCOMPRESSED
        got.update(_pixels(path))
    want: dict[str, np.ndarray] = {}
    for path in images.path:
        want.update(_pixels(path))
    assert set(got) == set(want)
    for uid, pixels in want.items():
        assert np.array_equal(got[uid], pixels), uid  # identical values, lossless


def test_transcode_false_refuses_with_a_clear_row_and_sends_nothing(
    tmp_path: Path, images: pd.DataFrame
) -> None:
    need_peer("storescp")
    with StoreSCP(tmp_path / "scp", accept_all=False) as scp:
        res = dl.store(scp.node, list(images.j2k), progress=False, transcode=False)
        arrived = list(scp.output.glob("*"))
    assert arrived == []
    assert res.status.isna().all() and res.sent_as.isna().all()
    assert res.error.str.contains(
        "does not accept JPEG 2000 Image Compression \\(Lossless Only\\) for "
        ".*transcode=False: not converted"
    ).all(), list(res.error)
    with pytest.raises(dl.ValidationError, match="transcode"):
        dl.store(scp.node, list(images.j2k), transcode="no")  # type: ignore[arg-type]


def test_uncompressed_files_are_compressed_for_an_archive_that_takes_only_jpeg_2000(
    tmp_path: Path, images: pd.DataFrame
) -> None:
    """Orthanc configured with AcceptedTransferSyntaxes = [JPEG 2000 lossless]: the
    uncompressed files go compressed losslessly, and Orthanc's own copies decode to the
    same pixel values."""
    need_peer("Orthanc")
    config = {"AcceptedTransferSyntaxes": [str(JPEG2000Lossless)]}
    with Orthanc(tmp_path / "o", config=config) as orthanc:
        res = dl.store(orthanc.node, list(images.path), progress=False)
        assert (res.status == 0).all(), res[["status", "error"]]
        assert set(res.sent_as) == {str(JPEG2000Lossless)}
        want: dict[str, np.ndarray] = {}
        for path in images.path:
            want.update(_pixels(path))
        ids = orthanc.rest("GET", "/instances")
        assert len(ids) == len(images)
        for orthanc_id in ids:
            data = orthanc.rest("GET", f"/instances/{orthanc_id}/file")
            stored = tmp_path / f"{orthanc_id}.dcm"
            stored.write_bytes(data)
            ds = dcmread(stored)
            assert str(ds.file_meta.TransferSyntaxUID) == str(JPEG2000Lossless)
            assert np.array_equal(ds.pixel_array, want[str(ds.SOPInstanceUID)])
        # and without transcoding, Orthanc refuses what it does not take
        refused = dl.store(orthanc.node, list(images.path), progress=False, transcode=False)
    assert refused.error.str.contains("transcode=False").all()


def test_localpacs_decompresses_for_a_c_get_that_takes_uncompressed_only(
    tmp_path: Path, images: pd.DataFrame
) -> None:
    """A LocalPACS holding JPEG 2000 and JPEG-LS files serves dcmtk getscu (which takes
    uncompressed storage syntaxes only, its default): every instance arrives
    uncompressed, with identical pixel values."""
    getscu = need_peer("getscu")
    out = tmp_path / "got"
    out.mkdir()
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as local:
        local.import_files(_mixed(tmp_path, images))
        held = local.instances()
        assert set(held.TransferSyntaxUID) == {str(JPEG2000Lossless), str(JPEGLSLossless)}
        for study in sorted(set(held.StudyInstanceUID)):
            r = subprocess.run(
                [
                    getscu,
                    "-aet",
                    "GETSCU",
                    "-aec",
                    local.ae_title,
                    "-od",
                    str(out),
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    f"StudyInstanceUID={study}",
                    "127.0.0.1",
                    str(local.port),
                ],
                capture_output=True,
                text=True,
                env=peer_env(),
                check=False,
            )
            assert r.returncode == 0, r.stderr
    arrived = sorted(out.glob("*"))
    _arrived_uncompressed_and_identical(arrived, images)


def test_the_store_command_transcodes_unless_told_not_to(
    tmp_path: Path, images: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    need_peer("storescp")
    folder = Path(images.j2k.iloc[0]).parent
    with StoreSCP(tmp_path / "scp", accept_all=False) as scp:
        assert main(["store", scp.node.address, str(folder), "--no-transcode"]) == 3
        said = capsys.readouterr().out
        assert "the peer does not accept JPEG 2000" in said
        assert f"{len(images)} files: statuses {{<NA>: {len(images)}}}" in said
        assert list(scp.output.glob("*")) == []
        assert main(["store", scp.node.address, str(folder)]) == 0
        assert f"{len(images)} files" in capsys.readouterr().out
        assert len(list(scp.output.glob("*"))) == len(images)


def test_localpacs_decompresses_for_a_c_move_destination_that_takes_uncompressed_only(
    tmp_path: Path, images: pd.DataFrame
) -> None:
    """dcmtk movescu asks a LocalPACS holding JPEG 2000 and JPEG-LS files to C-MOVE them
    to a storescp that takes uncompressed syntaxes only: every instance arrives
    uncompressed, with identical pixel values."""
    movescu = need_peer("movescu")
    need_peer("storescp")
    mixed = _mixed(tmp_path, images)
    with StoreSCP(tmp_path / "scp", accept_all=False) as scp:
        book = dl.NodeBook([dl.Node("scp", ae_title=scp.ae_title, port=scp.port)])
        with dl.LocalPACS(
            tmp_path / "lp", port=0, book=book, allow_unknown="all", fsync=False
        ) as local:
            local.import_files(mixed)
            for study in sorted(set(local.instances().StudyInstanceUID)):
                r = subprocess.run(
                    [
                        movescu,
                        "-aet",
                        "MOVESCU",
                        "-aec",
                        local.ae_title,
                        "-aem",
                        scp.ae_title,
                        "-k",
                        "QueryRetrieveLevel=STUDY",
                        "-k",
                        f"StudyInstanceUID={study}",
                        "127.0.0.1",
                        str(local.port),
                    ],
                    capture_output=True,
                    text=True,
                    env=peer_env(),
                    check=False,
                )
                assert r.returncode == 0, r.stderr
        arrived = sorted(scp.output.glob("*"))
    _arrived_uncompressed_and_identical(arrived, images)
