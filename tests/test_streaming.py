"""A large instance arriving in many PDUs is written while the rest of it arrives (its
file begun in the archive, finished once the instance is checked): byte for byte the
same as sent, and nothing left behind when it is cut off, refused or a duplicate
(dcmtk storescu as the sender, and raw PDUs for what no peer sends on demand)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydicom import dcmread

import dicomlab as dl
from dicomlab.net import wire
from dicomlab.net._fast.channel import dataset_offset
from dicomlab.peers import Orthanc, peer_env
from dicomlab.server.archive import Archive
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.raw import A_ASSOCIATE_AC, RawAssociation

pytestmark = pytest.mark.peers

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Four CT instances of 512x512 (about 512 KB each)."""
    folder = tmp_path_factory.mktemp("large")
    return dl.synth.write_studies(folder, n_studies=1, seed=12, image_size=512).head(4)


def _begun(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the files the archive begins early (one entry per instance)."""
    begun: list[int] = []
    original = archive.incoming

    def counting(meta: bytes) -> Any:
        got = original(meta)
        if got is not None:
            begun.append(1)
        return got

    monkeypatch.setattr(archive, "incoming", counting)
    return begun


def _storescu_16k(lp: dl.LocalPACS, paths: list[str]) -> None:
    """dcmtk storescu sends ``paths`` in PDUs of 16 KB (Orthanc's size: ~32 per instance)."""
    exe = need_peer("storescu")
    args = [exe, "--max-send-pdu", "16384", "-aec", lp.ae_title, "127.0.0.1", str(lp.port)]
    r = subprocess.run(
        [*args, *paths], capture_output=True, text=True, env=peer_env(), timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr


def _temporaries(lp: dl.LocalPACS) -> list[Path]:
    return sorted(lp.archive.files.rglob("*.tmp"))


def _data_set(path: str | Path) -> bytes:
    raw = Path(path).read_bytes()
    offset = dataset_offset(raw)
    assert offset is not None
    return raw[offset:]


def test_a_large_instance_in_small_pdus_is_written_while_it_arrives_byte_exact(
    tmp_path: Path, large: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp:
        begun = _begun(lp.archive, monkeypatch)
        _storescu_16k(lp, list(large.path))
        assert len(begun) == len(large)  # every one was begun before its last byte came
        held = lp.instances().set_index("SOPInstanceUID")
        assert len(held) == len(large)
        for row in large.itertuples():
            assert _data_set(held.loc[row.SOPInstanceUID, "path"]) == _data_set(row.path)
            assert dcmread(held.loc[row.SOPInstanceUID, "path"]).file_meta.TransferSyntaxUID
        assert _temporaries(lp) == []
        # the same again: duplicates, each begun and then removed, one file each
        _storescu_16k(lp, list(large.path))
        assert lp.stats["duplicates"] == len(large)
        assert len([p for p in lp.archive.files.rglob("*") if p.is_file()]) == len(large)
        assert _temporaries(lp) == []


# -- raw PDUs: a sender cut off mid-instance, an instance refused after it was begun ----------


def _associated(lp: dl.LocalPACS) -> RawAssociation:
    raw = RawAssociation(lp.port)
    assert raw.associate("RAWSENDER", lp.ae_title, [(CT, [EXPLICIT_LE])]) == A_ASSOCIATE_AC
    assert raw.accepted == {1: EXPLICIT_LE}
    return raw


def _store_message(path: str, sop_instance: str | None = None) -> tuple[bytes, bytes]:
    """The command set and data set of a C-STORE-RQ of the file; ``sop_instance``:
    announce another SOP Instance UID than the data set's."""
    ds = dcmread(path, stop_before_pixels=True)
    return wire.store_request(1, CT, sop_instance or str(ds.SOPInstanceUID)), _data_set(path)


def _wait_for(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def test_a_sender_cut_off_mid_instance_leaves_no_file_and_no_row(
    tmp_path: Path, large: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp:
        begun = _begun(lp.archive, monkeypatch)
        command, data = _store_message(large.path.iloc[0])
        pdus = [wire.command_pdu(1, command, 16384), *wire.data_pdus(1, data, 16384)]
        with _associated(lp) as raw:
            raw.sock.sendall(b"".join(pdus[: len(pdus) * 2 // 3]))  # two thirds, then gone
            assert _wait_for(lambda: begun)  # it was being written
        assert _wait_for(lambda: _temporaries(lp) == [])
        assert len(lp.instances()) == 0
        assert [p for p in lp.archive.files.rglob("*") if p.is_file()] == []
        assert dl.echo(lp.node).ok  # and it goes on serving
        _storescu_16k(lp, [large.path.iloc[0]])  # the whole instance again: stored
        assert len(lp.instances()) == 1


def test_an_instance_refused_after_it_was_begun_leaves_nothing(
    tmp_path: Path, large: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command announces another SOP Instance UID than the data set holds: refused
    (0xA900, the data set does not match), though its file was begun as it arrived."""
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp:
        begun = _begun(lp.archive, monkeypatch)
        with _associated(lp) as raw:
            raw.send_message(1, *_store_message(large.path.iloc[1], sop_instance="1.2.3.4.5"))
            reply = raw.read_response()
        assert reply is not None and reply.status is not None
        assert reply.status & 0xFF00 == 0xA900, hex(reply.status)
        assert begun
        assert _temporaries(lp) == []
        assert len(lp.instances()) == 0
        assert [p for p in lp.archive.files.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("method", ["get", "move"])
def test_large_instances_from_orthanc_are_written_as_they_arrive(
    tmp_path: Path, large: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Orthanc sends in PDUs of 16 KB: a C-GET's sub-operations (read by the retrieving
    thread) and a C-MOVE's (read by the LocalPACS's association) are both written while
    they arrive, and kept byte for byte."""
    need_peer("Orthanc")
    with (
        dl.LocalPACS(tmp_path / "lp", ae_title="DLRECV", port=0) as lp,
        Orthanc.knowing(tmp_path / "o", lp.node) as orthanc,
    ):
        orthanc.upload(large.path)
        begun = _begun(lp.archive, monkeypatch)
        studies = dl.find(orthanc.node, dl.Query.studies(), calling_ae=lp.ae_title)
        out = dl.retrieve(
            orthanc.node, studies, into=lp, method=method, progress=False, calling_ae=lp.ae_title
        )
        assert out.complete.all(), out.error.dropna()
        assert len(begun) == len(large)
        held = lp.instances().set_index("SOPInstanceUID")
        for row in large.itertuples():
            assert _data_set(held.loc[row.SOPInstanceUID, "path"]) == _data_set(row.path)
        assert _temporaries(lp) == []


@pytest.mark.parametrize("fsync", [True, False])
def test_with_fsync_on_the_disk_starts_writing_each_part_as_it_arrives(
    tmp_path: Path, large: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """fsync on: each part of a streamed instance is handed to the disk as it is written
    (whole pages, in order, never past what was written), so the fsync before the
    response waits only for the last part; fsync off asks nothing of the disk."""
    from dicomlab.server import writeback

    assert writeback.available()  # Linux: the reference machine and CI
    calls: list[tuple[int, int, int]] = []
    original = writeback.start

    def spying(fd: int, begin: int, end: int) -> int:
        got = original(fd, begin, end)
        calls.append((begin, end, got))
        return got

    monkeypatch.setattr(writeback, "start", spying)
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=fsync) as lp:
        _storescu_16k(lp, list(large.path))
        held = lp.instances().set_index("SOPInstanceUID")
        for row in large.itertuples():
            assert _data_set(held.loc[row.SOPInstanceUID, "path"]) == _data_set(row.path)
    if not fsync:
        assert calls == []
        return
    started = [c for c in calls if c[2] > c[0]]
    assert len(started) >= len(large)  # at least one part of each instance
    for begin, end, got in calls:
        assert begin % writeback.PAGE == 0 and got % writeback.PAGE == 0
        assert begin <= got <= end
