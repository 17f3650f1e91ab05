"""LocalPACS under hostile or unlucky conditions: it keeps answering and never loses data.

Every test stores a few instances first and checks afterwards that the server
still answers C-ECHO and that those instances are still indexed with their
files byte for byte: path-traversal UIDs, garbage and truncated PDUs, a huge
declared PDU length, many concurrent associations, the association limit,
stopping with associations open, duplicates, a full disk, access control.
"""

from __future__ import annotations

import copy
import errno
import os
import resource
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import CTImageStorage, Verification

import dicomlab as dl
from dicomlab.peers import peer_env
from dicomlab.testing.fixtures import need_peer

CALLED = "DICOMLAB"
Snapshot = dict[str, bytes]


# -- helpers -------------------------------------------------------------------------


def _ct(n_studies: int = 1, seed: int = 7) -> list[Dataset]:
    """Small synthetic CT instances (file meta included)."""
    return list(dl.synth.generate(n_studies, seed, modalities=("CT",), max_instances=3))


def _with_uid(ds: Dataset, sop_instance_uid: str) -> Dataset:
    out = copy.deepcopy(ds)
    out.SOPInstanceUID = sop_instance_uid
    out.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    return out


@contextmanager
def _association(
    port: int, calling: str = "SCU", contexts: Sequence[str] = (CTImageStorage,)
) -> Iterator[Association]:
    """An established pynetdicom association to the LocalPACS on ``port``."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for cx in contexts:
        ae.add_requested_context(cx)
    assoc = ae.associate("127.0.0.1", port, ae_title=CALLED)
    assert assoc.is_established, f"{calling} could not associate"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        if assoc.is_alive():
            assoc.abort()


def _store(port: int, datasets: Sequence[Dataset], calling: str = "SCU") -> list[int]:
    """C-STORE each dataset over one association; the DIMSE statuses."""
    with _association(port, calling) as assoc:
        statuses = []
        for ds in datasets:
            rsp = assoc.send_c_store(ds)
            assert "Status" in rsp, "no C-STORE response"
            statuses.append(int(rsp.Status))
        return statuses


def _new_files(folder: Path, before: set[Path]) -> set[Path]:
    """Files created under ``folder`` since ``before``, except network logs' Parquet files.

    Each test has its own DICOMLAB_HOME; a server's last rows of an earlier test can
    be written into that test's home while this one runs.
    """
    return {
        p
        for p in _files(folder) - before
        if not (p.suffix == ".parquet" and p.parent.parent.parent.name == "logs")
    }


def _seed(lp: dl.LocalPACS, calling: str = "SCU") -> Snapshot:
    """Store a few instances; their SOP Instance UIDs and file bytes."""
    datasets = _ct(2, seed=1)
    assert len(datasets) >= 2
    assert _store(lp.port, datasets, calling) == [0] * len(datasets)
    return _snapshot(lp)


def _snapshot(lp: dl.LocalPACS) -> Snapshot:
    df = lp.instances()
    return {uid: Path(p).read_bytes() for uid, p in zip(df.SOPInstanceUID, df.path, strict=True)}


def _assert_alive_and_intact(lp: dl.LocalPACS, before: Snapshot) -> None:
    """The server answers C-ECHO at once, and every instance in ``before`` is kept as it was."""
    t0 = time.monotonic()
    r = dl.echo(lp.node, calling_ae="PROBE")
    assert r.ok, r.detail
    assert time.monotonic() - t0 < 3
    df = lp.instances()
    assert len(df) == len(before)
    assert set(df.SOPInstanceUID) == set(before)
    for uid, p in zip(df.SOPInstanceUID, df.path, strict=True):
        assert Path(p).read_bytes() == before[uid], f"{uid}: file changed"
        assert Path(p).resolve().is_relative_to(lp.archive.root / "files")


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def _raw(port: int, data: bytes, hold_s: float = 0.0) -> None:
    """Connect, send ``data``, keep the connection open ``hold_s`` seconds, close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if data:
            s.sendall(data)
        time.sleep(hold_s)


def _associate_rq(calling: str, called: str) -> bytes:
    """A valid A-ASSOCIATE-RQ PDU proposing Verification."""
    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title = calling
    prim.called_ae_title = called
    cx = build_context(Verification)
    cx.context_id = 1
    prim.presentation_context_definition_list = [cx]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    prim.user_information = [max_length, impl]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(prim)
    return bytes(pdu.encode())


def _recv_pdu(s: socket.socket) -> tuple[int, bytes]:
    header = b""
    while len(header) < 6:
        chunk = s.recv(6 - len(header))
        assert chunk, "connection closed before a PDU arrived"
        header += chunk
    pdu_type, _, length = struct.unpack(">BBL", header)
    body = b""
    while len(body) < length:
        chunk = s.recv(length - len(body))
        assert chunk, "connection closed in the middle of a PDU"
        body += chunk
    return pdu_type, body


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- 1. path traversal and invalid UIDs ---------------------------------------------------


@pytest.mark.parametrize(
    "bad_uid",
    ["../../escape", "/abs", "1." + "2" * 68],
    ids=["dotdot", "absolute", "70-chars"],
)
def test_invalid_sop_instance_uid_is_refused_and_writes_nothing_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_uid: str
) -> None:
    root = tmp_path / "a" / "b" / "pacs"
    outside = tmp_path.parent
    abs_before = (Path("/abs").exists(), Path("/abs.dcm").exists())
    # pynetdicom refuses to send a UID over 64 characters; real peers (dcmtk) do send them.
    monkeypatch.setitem(_config.VALIDATORS, "UI", lambda value: (True, ""))
    with dl.LocalPACS(root, port=0, allow_unknown="all") as lp:
        before = _seed(lp)
        files_before = _files(outside)
        (status,) = _store(lp.port, [_with_uid(_ct()[0], bad_uid)])
        assert status == 0xC000  # cannot understand
        assert dl.decode_status(status).category == "failure"
        assert lp.stats["failed"] == 1
        assert bad_uid not in set(lp.instances().SOPInstanceUID)
        new = _new_files(outside, files_before)
        assert all(p.resolve().is_relative_to(lp.archive.root) for p in new), new
        assert not [p for p in new if p.resolve().is_relative_to(lp.archive.files)]
        assert not [p for p in _files(outside) if "escape" in p.name]
        assert (Path("/abs").exists(), Path("/abs.dcm").exists()) == abs_before
        _assert_alive_and_intact(lp, before)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("PatientID", "../../../../escape"),
        ("PatientID", ".."),
        ("PatientID", "/abs/escape"),
        ("StudyInstanceUID", "../../escape"),
        ("SeriesInstanceUID", "1.2/../../escape"),
    ],
)
def test_traversal_in_patient_study_or_series_stays_inside_files(
    tmp_path: Path, keyword: str, value: str
) -> None:
    root = tmp_path / "a" / "b" / "pacs"
    outside = tmp_path.parent
    with dl.LocalPACS(root, port=0, allow_unknown="all") as lp:
        before = _seed(lp)
        files_before = _files(outside)
        ds = _with_uid(_ct()[0], dl.synth.uid("traversal", keyword, value))
        setattr(ds, keyword, value)
        (status,) = _store(lp.port, [ds])
        assert status in (0x0000, 0xC000)
        new = _new_files(outside, files_before)
        assert all(p.resolve().is_relative_to(lp.archive.root) for p in new), new
        assert not [p for p in _files(outside) if "escape" in p.name]
        df = lp.instances()
        if status == 0x0000:  # stored: under a safe name, inside root/files
            row = df[df.SOPInstanceUID == ds.SOPInstanceUID]
            assert len(row) == 1
            assert row.iloc[0][keyword] == value  # the index keeps the real value
            rel = Path(row.iloc[0].path).resolve().relative_to(lp.archive.files)
            assert len(rel.parts) == 4  # patient/study/series/instance.dcm
            assert not any(part in ("", ".", "..") or "/" in part for part in rel.parts)
            assert dcmread(row.iloc[0].path).SOPInstanceUID == ds.SOPInstanceUID
            assert len(df) == len(before) + 1
            before[ds.SOPInstanceUID] = Path(row.iloc[0].path).read_bytes()
        else:  # refused: nothing new in the archive's files
            assert not [p for p in new if p.resolve().is_relative_to(lp.archive.files)]
        _assert_alive_and_intact(lp, before)


# -- 2. garbage and truncated PDUs ----------------------------------------------------------


def test_garbage_and_truncated_pdus_do_not_disturb_the_server(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp)
        truncated_rq = b"\x01\x00" + struct.pack(">L", 1000) + os.urandom(20)
        probes = [
            os.urandom(1000),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"",  # a port probe: connect and close
            truncated_rq,
        ]
        for data in probes:
            _raw(lp.port, data)
            _assert_alive_and_intact(lp, before)

        # A truncated A-ASSOCIATE-RQ whose sender stays silent: others are still served.
        with socket.create_connection(("127.0.0.1", lp.port), timeout=5) as silent:
            silent.sendall(truncated_rq)
            time.sleep(1.0)
            _assert_alive_and_intact(lp, before)
        _assert_alive_and_intact(lp, before)
        # A real store still works after all that.
        extra = _with_uid(_ct()[0], dl.synth.uid("after-garbage"))
        assert _store(lp.port, [extra]) == [0]
        assert len(lp.instances()) == len(before) + 1


def test_closed_probe_connections_do_not_hold_association_slots(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, max_associations=2) as lp:
        _raw(lp.port, b"")  # e.g. nc -z or a load balancer's TCP health check
        _raw(lp.port, os.urandom(100))
        time.sleep(0.5)  # both peers are long gone
        r = dl.echo(lp.node, calling_ae="PROBE")
        assert r.ok, r.detail


def test_stop_after_a_port_probe_is_quick(tmp_path: Path) -> None:
    lp = dl.LocalPACS(tmp_path / "pacs", port=0).start()
    try:
        _raw(lp.port, b"")
        assert dl.echo(lp.node, calling_ae="PROBE").ok
    finally:
        t0 = time.monotonic()
        lp.stop()
        elapsed = time.monotonic() - t0
    assert elapsed < 2.0


def test_stop_with_a_silent_open_connection_is_quick_and_clean(tmp_path: Path) -> None:
    # A client that connected and never sent an A-ASSOCIATE-RQ is still open at stop():
    # the server must end it without waiting for acse_timeout and without a thread crash
    # (warnings are errors here, so an exception in pynetdicom's thread fails the test).
    lp = dl.LocalPACS(tmp_path / "pacs", port=0).start()
    silent = socket.create_connection(("127.0.0.1", lp.port), timeout=5)
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        lp.stop()
        assert time.monotonic() - t0 < 2.0
    finally:
        silent.close()
    again = dl.LocalPACS(tmp_path / "pacs", port=lp.port).start()
    try:
        assert dl.echo(again.node, calling_ae="AFTER").ok
    finally:
        again.stop()


# -- 3. a huge declared PDU length --------------------------------------------------------


def test_huge_declared_pdu_length_costs_no_memory(tmp_path: Path) -> None:
    huge = 0xFFFFFFF0
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp)
        rss0 = _maxrss_mb()

        # On a fresh connection: a P-DATA-TF and an A-ASSOCIATE-RQ claiming ~4 GiB.
        for pdu_type in (0x04, 0x01):
            _raw(lp.port, struct.pack(">BBL", pdu_type, 0, huge) + b"\x00" * 65536)
            _assert_alive_and_intact(lp, before)

        # After a valid association: a P-DATA-TF claiming ~4 GiB, then the peer goes away.
        with socket.create_connection(("127.0.0.1", lp.port), timeout=10) as s:
            s.sendall(_associate_rq("RAWSCU", CALLED))
            pdu_type, _ = _recv_pdu(s)
            assert pdu_type == 0x02  # A-ASSOCIATE-AC
            s.sendall(struct.pack(">BBL", 0x04, 0, huge) + b"\x00" * (1 << 20))
        _assert_alive_and_intact(lp, before)

        assert _maxrss_mb() - rss0 < 100
        extra = _with_uid(_ct()[0], dl.synth.uid("after-huge"))
        assert _store(lp.port, [extra]) == [0]


# -- 4. many concurrent storing associations --------------------------------------------------


@pytest.mark.slow
def test_twenty_concurrent_associations_store_2000_instances(tmp_path: Path) -> None:
    n_assocs, per_assoc = 20, 100
    template = _ct()[0]
    statuses: dict[str, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_assocs)

    def worker(k: int, port: int) -> None:
        try:
            ds = copy.deepcopy(template)
            ds.StudyInstanceUID = dl.synth.uid("robust", "study", k % 4)
            ds.SeriesInstanceUID = dl.synth.uid("robust", "series", k)
            barrier.wait(timeout=30)
            with _association(port, calling=f"W{k:02d}") as assoc:
                for i in range(per_assoc):
                    uid = dl.synth.uid("robust", "instance", k, i)
                    ds.SOPInstanceUID = uid
                    ds.file_meta.MediaStorageSOPInstanceUID = uid
                    ds.InstanceNumber = i + 1
                    rsp = assoc.send_c_store(ds)
                    with lock:
                        statuses[uid] = int(rsp.Status) if "Status" in rsp else -1
        except Exception as exc:
            with lock:
                errors.append(f"worker {k}: {exc!r}")

    root = tmp_path / "pacs"
    with dl.LocalPACS(root, port=0, max_associations=32, fsync=False, allow_unknown="all") as lp:
        before = _seed(lp)
        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(k, lp.port)) for k in range(n_assocs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert time.monotonic() - t0 < 90
        assert errors == []
        assert len(statuses) == n_assocs * per_assoc
        assert set(statuses.values()) == {0x0000}

        df = lp.instances()
        assert len(df) == n_assocs * per_assoc + len(before)
        assert df.SOPInstanceUID.is_unique
        assert set(statuses) <= set(df.SOPInstanceUID)
        assert df.path.is_unique
        assert lp.stats["stored"] == len(df)
        assert lp.stats["duplicates"] == 0 and lp.stats["failed"] == 0
        mine = df[df.SOPInstanceUID.isin(statuses)]
        assert sorted(mine.source_ae.unique()) == [f"W{k:02d}" for k in range(n_assocs)]
        for uid, path in zip(mine.SOPInstanceUID, mine.path, strict=True):
            ds = dcmread(path)
            assert ds.SOPInstanceUID == uid
            assert ds.file_meta.MediaStorageSOPInstanceUID == uid
            assert ds.PixelData == template.PixelData
        assert not list(root.rglob("*.tmp")) and not list(root.rglob(".*.dcm.*"))
        # 2002 files on disk, no more: one per indexed instance.
        assert len([p for p in lp.archive.files.rglob("*") if p.is_file()]) == len(df)
        before.update(_snapshot(lp))
        _assert_alive_and_intact(lp, before)


def test_the_same_instance_stored_concurrently_is_kept_once(tmp_path: Path) -> None:
    ds = _with_uid(_ct()[0], dl.synth.uid("racing"))
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def worker(k: int, port: int) -> None:
        with _association(port, calling=f"R{k}") as assoc:
            barrier.wait(timeout=30)
            statuses.append(int(assoc.send_c_store(ds).Status))

    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp)
        threads = [threading.Thread(target=worker, args=(k, lp.port)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert statuses == [0] * 8
        df = lp.instances()
        assert (df.SOPInstanceUID == ds.SOPInstanceUID).sum() == 1
        assert lp.stats["duplicates"] == 7
        files = [p for p in lp.archive.files.rglob("*") if p.is_file()]
        assert len(files) == len(before) + 1
        before.update(_snapshot(lp))
        _assert_alive_and_intact(lp, before)


# -- 5. the association limit ---------------------------------------------------------------


def test_associations_past_the_limit_are_rejected_then_served_again(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, max_associations=2, allow_unknown="all") as lp:
        before = _seed(lp)
        with _association(lp.port, "HOLD1"), _association(lp.port, "HOLD2"):
            r = dl.echo(lp.node, calling_ae="THIRD")
            assert not r.ok
            assert r.cause == "rejected"
            assert "local limit exceeded" in r.detail
            assert lp.stats["rejected"] == 1
        # Released: the slots are free at once (not when the acceptor threads end).
        r = dl.echo(lp.node, calling_ae="THIRD")
        assert r.ok, r.detail
        _assert_alive_and_intact(lp, before)
        # Both slots are free again: two associations at once work.
        with _association(lp.port, "AGAIN1"), _association(lp.port, "AGAIN2") as second:
            rsp = second.send_c_store(_with_uid(_ct()[0], dl.synth.uid("after-limit")))
            assert rsp.Status == 0


@pytest.mark.peers
def test_a_released_association_frees_its_slot_at_once(tmp_path: Path) -> None:
    """With one slot, associations opened right after the previous one was released are
    all accepted, from dicomlab and from dcmtk: the slot is free once the release is
    answered, though the server's thread for it may take a moment more to end."""
    echoscu = need_peer("echoscu")
    with dl.LocalPACS(tmp_path / "pacs", port=0, max_associations=1, allow_unknown="all") as lp:
        for i in range(30):
            r = dl.echo(lp.node, calling_ae=f"NEXT{i}")
            assert r.ok, f"echo {i}: {r.detail}"
        for i in range(10):
            done = subprocess.run(
                [echoscu, "-aet", f"DCMTK{i}", "-aec", lp.ae_title, "127.0.0.1", str(lp.port)],
                env=peer_env(),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
        assert lp.stats["rejected"] == 0


# -- 6. stopping with associations open ---------------------------------------------------


def test_stop_with_open_associations_is_bounded_and_frees_the_port(tmp_path: Path) -> None:
    root = tmp_path / "pacs"
    lp = dl.LocalPACS(root, port=0, allow_unknown="all").start()
    held: list[Association] = []
    try:
        before = _seed(lp)
        port = lp.port
        for k in range(3):
            ae = AE(ae_title=f"HOLD{k}")
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", port, ae_title=CALLED)
            assert assoc.is_established
            held.append(assoc)
        t0 = time.monotonic()
        lp.stop()
        assert time.monotonic() - t0 < 5
        assert not lp.running
        deadline = time.monotonic() + 5
        while any(a.is_established for a in held) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(a.is_established for a in held)  # the server aborted them

        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))  # free at once
        finally:
            s.close()
        with dl.LocalPACS(root, port=port, allow_unknown="all") as again:
            assert again.port == port
            _assert_alive_and_intact(again, before)  # the archive survived the stop
    finally:
        lp.stop()
        for a in held:
            if a.is_alive():
                a.abort()


# -- 7. duplicates ----------------------------------------------------------------------------


def test_duplicate_keeps_the_first_copy(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp)
        first = _with_uid(_ct()[0], dl.synth.uid("dup"))
        second = copy.deepcopy(first)
        second.SeriesDescription = "SECOND COPY"
        assert _store(lp.port, [first]) == [0]
        df = lp.instances()
        row = df[df.SOPInstanceUID == first.SOPInstanceUID]
        assert len(row) == 1
        path = Path(row.iloc[0].path)
        first_bytes = path.read_bytes()

        assert _store(lp.port, [second], calling="OTHER") == [0]
        assert lp.stats["duplicates"] == 1
        assert lp.stats["stored"] == len(before) + 1
        df = lp.instances()
        row = df[df.SOPInstanceUID == first.SOPInstanceUID]
        assert len(row) == 1
        assert row.iloc[0].source_ae == "SCU"  # the first sender
        assert path.read_bytes() == first_bytes
        assert dcmread(path).SeriesDescription != "SECOND COPY"
        assert len([p for p in lp.archive.files.rglob("*") if p.is_file()]) == len(before) + 1
        before[first.SOPInstanceUID] = first_bytes
        _assert_alive_and_intact(lp, before)


def test_duplicate_under_another_patient_leaves_one_file(tmp_path: Path) -> None:
    """The same SOP Instance UID again with another Patient ID (a folder of its own): a
    duplicate, answered with success, and no second file left beside the first copy, nor
    the empty folders made for it."""
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        first = _with_uid(_ct()[0], dl.synth.uid("dup-patient"))
        second = copy.deepcopy(first)
        second.PatientID = "ANOTHER-PATIENT"
        assert _store(lp.port, [first]) == [0]
        path = Path(lp.instances().iloc[0].path)
        first_bytes = path.read_bytes()
        assert _store(lp.port, [second]) == [0]
        assert (lp.stats["stored"], lp.stats["duplicates"]) == (1, 1)
        files = [p for p in lp.archive.files.rglob("*") if p.is_file()]
        assert files == [path] and path.read_bytes() == first_bytes
        folders = sorted(p for p in lp.archive.files.rglob("*") if p.is_dir())
        assert folders == [path.parent.parent.parent, path.parent.parent, path.parent]
        df = lp.instances()
        assert len(df) == 1 and df.iloc[0].PatientID == first.PatientID
        # and a third copy, under that other patient again, finds its folder made anew
        assert _store(lp.port, [second]) == [0]
        assert lp.stats["duplicates"] == 2 and len(lp.instances()) == 1


def test_a_file_left_without_its_index_row_is_stored_again(tmp_path: Path) -> None:
    """A crash between the file's rename and its index row leaves a file nobody can find:
    receiving the instance again indexes it (it is no duplicate)."""
    ds = _with_uid(_ct()[0], dl.synth.uid("orphan"))
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        assert _store(lp.port, [ds]) == [0]
        path = Path(lp.instances().iloc[0].path)
        assert lp.archive.delete_instance(str(ds.SOPInstanceUID)) == 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a crash")  # the file is there, its row is not
        assert _store(lp.port, [ds]) == [0]
        assert (lp.stats["stored"], lp.stats["duplicates"]) == (2, 0)
        df = lp.instances()
        assert list(df.SOPInstanceUID) == [ds.SOPInstanceUID]
        assert dcmread(path).SOPInstanceUID == ds.SOPInstanceUID


# -- 8. disk full ------------------------------------------------------------------------------


def _fail_once(
    real: Callable[..., Any], under: Path | None = None
) -> tuple[Callable[..., Any], list[int]]:
    """``real`` failing once with ENOSPC; with ``under``, only for a path below it.

    (The network log's background writer renames its files too: it must not take the
    one failure meant for the archive.)
    """
    calls: list[int] = []

    def fake(*args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else None
        mine = under is None or (
            isinstance(first, str | os.PathLike) and str(under) in os.fspath(first)
        )
        if mine:
            calls.append(1)
            if len(calls) == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    return fake, calls


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_disk_full_answers_out_of_resources_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all", fsync=True) as lp:
        before = _seed(lp)
        ds = _with_uid(_ct()[0], dl.synth.uid("enospc", failing))
        # fsync takes a descriptor: only the archive fsyncs while the store runs
        fake, calls = _fail_once(
            getattr(os, failing), None if failing == "fsync" else lp.archive.root
        )
        with monkeypatch.context() as m:
            m.setattr(os, failing, fake)
            (status,) = _store(lp.port, [ds])
        assert calls, f"os.{failing} was never called"
        assert status == 0xA700  # out of resources
        assert lp.stats["failed"] == 1
        assert ds.SOPInstanceUID not in set(lp.instances().SOPInstanceUID)
        on_disk = {p.resolve() for p in lp.archive.files.rglob("*") if p.is_file()}
        assert on_disk == {Path(p).resolve() for p in lp.instances().path}  # no .tmp, no partial
        _assert_alive_and_intact(lp, before)

        assert _store(lp.port, [ds]) == [0]  # the disk has room again
        df = lp.instances()
        row = df[df.SOPInstanceUID == ds.SOPInstanceUID]
        assert len(row) == 1
        assert dcmread(row.iloc[0].path).SOPInstanceUID == ds.SOPInstanceUID
        assert lp.stats["duplicates"] == 0


# -- 9. access control ---------------------------------------------------------------------------


def test_store_needs_a_node_allowed_to_store(tmp_path: Path) -> None:
    book = dl.NodeBook(
        [
            dl.Node("friend", ae_title="FRIEND", allow_store=False),
            dl.Node("trusted", ae_title="TRUSTED", allow_store=True),
        ]
    )
    with dl.LocalPACS(tmp_path / "pacs", port=0, book=book, allow_unknown=("echo",)) as lp:
        before = _seed(lp, calling="TRUSTED")
        assert len(before) >= 2
        for calling in ("STRANGER", "FRIEND"):
            ds = _with_uid(_ct()[0], dl.synth.uid("refused", calling))
            assert _store(lp.port, [ds], calling=calling) == [0x0124]  # not authorised
            assert ds.SOPInstanceUID not in set(lp.instances().SOPInstanceUID)
            assert dl.echo(lp.node, calling_ae=calling).ok  # echo stays allowed
        assert len([p for p in lp.archive.files.rglob("*") if p.is_file()]) == len(before)
        assert lp.stats["stored"] == len(before)
        _assert_alive_and_intact(lp, before)

        ds = _with_uid(_ct()[0], dl.synth.uid("allowed"))
        assert _store(lp.port, [ds], calling="TRUSTED") == [0]
        df = lp.instances()
        assert df[df.SOPInstanceUID == ds.SOPInstanceUID].source_ae.tolist() == ["TRUSTED"]


def test_delete_study_then_receive_it_again(tmp_path: Path) -> None:
    """Deleting a study removes its files and rows; receiving it again stores it anew,
    even after its folders were removed (by delete, or by hand behind our back)."""
    import shutil

    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        datasets = _ct(1, seed=21)
        assert _store(lp.port, datasets) == [0] * len(datasets)
        study = str(datasets[0].StudyInstanceUID)
        held = lp.instances()
        assert len(held) == len(datasets)
        assert lp.archive.delete_study(study) == len(datasets)
        assert lp.instances().empty
        assert not any((lp.archive.files).rglob("*.dcm"))
        assert _store(lp.port, datasets) == [0] * len(datasets)
        assert len(lp.instances()) == len(datasets)
        for child in lp.archive.files.iterdir():  # a user cleans the folder by hand
            shutil.rmtree(child)
        extra = _with_uid(datasets[0], dl.synth.uid("after-cleanup"))
        assert _store(lp.port, [extra]) == [0]
        assert Path(
            lp.archive.root,
            lp.instances().set_index("SOPInstanceUID").loc[str(extra.SOPInstanceUID), "path"],
        ).exists()


def test_instances_parse_every_time_of_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """received_at is ISO 8601: pandas cannot guess the format of some times (20:26:14Z was
    one, seen in CI), which warned and parsed element by element."""
    at = time.strptime("2026-11-23T20:26:14", "%Y-%m-%dT%H:%M:%S")
    monkeypatch.setattr(time, "gmtime", lambda *a: at)
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        _seed(lp)
        df = lp.instances()
    assert len(df) >= 2 and str(df.received_at.dtype) == "datetime64[ns, UTC]"
    assert (df.received_at == pd.Timestamp("2026-11-23T20:26:14Z")).all()


def test_settle_waits_for_an_instance_still_being_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a retrieve counts includes an instance whose add was under way when the
    operation ended (its sender may have given up mid-store)."""
    from pydicom.filebase import DicomBytesIO

    from dicomlab.core.indexrow import header_row
    from dicomlab.server.archive import Archive

    archive = Archive(tmp_path / "a", fsync=False)
    ds = _ct()[0]
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    write = archive._write

    def slow_write(*args: Any) -> int:
        time.sleep(0.4)
        return write(*args)

    monkeypatch.setattr(archive, "_write", slow_write)
    row = header_row(ds)
    adder = threading.Thread(
        target=archive.add, args=(row, str(ds.file_meta.TransferSyntaxUID), [buf.getvalue()])
    )
    adder.start()
    time.sleep(0.1)
    study = str(ds.StudyInstanceUID)
    assert archive.index.count_matching({"StudyInstanceUID": study})[0] == 0
    t0 = time.monotonic()
    assert archive.settle("1.2.3.another.study", 5)  # nothing of it under way: at once
    assert time.monotonic() - t0 < 0.1
    assert archive.settle(study, 5)
    assert archive.index.count_matching({"StudyInstanceUID": study})[0] == 1
    assert archive.settle(study, 0)  # settled: true at once
    adder.join()
    archive.close()
