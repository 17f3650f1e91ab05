"""Faults and hostile input not covered elsewhere: LocalPACS keeps serving, nothing is lost.

Complements test_localpacs_robustness (garbage and truncated PDUs, huge PDU lengths,
path-traversal UIDs, the association limit, disk full, duplicates), test_transfer
(cancel part way) and test_find_large (Ctrl-C). Here: HTTP on the DICOM port,
UIDs with separators sent by dcmtk, invalid AE titles in a hand-built
A-ASSOCIATE-RQ, a connection flood, an exception inside the archive, a sender
killed mid-transfer, a C-MOVE destination stopped mid-move, and peers that never
answer a DIMSE request.

Every test that starts a LocalPACS seeds it first and checks at the end that it
still answers C-ECHO and still holds every seeded file byte for byte.
"""

from __future__ import annotations

import gc
import itertools
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.presentation import PresentationContext

import dicomlab as dl
from dicomlab.peers import free_port, peer_env
from dicomlab.testing.fixtures import need_peer

HOST = "127.0.0.1"
CALLED = "DICOMLAB"
ARTIM_S = 10.0
"""LocalPACS's ACSE timeout (ServerThread.start): its ARTIM timer in PS3.8 terms."""

Snapshot = dict[str, bytes]
Record = list[int | str]

A_ASSOCIATE_AC_PDU, A_ASSOCIATE_RJ_PDU, P_DATA_TF_PDU, A_ABORT_PDU = 0x02, 0x03, 0x04, 0x07
_RELEASE_RQ = struct.pack(">BBLL", 0x05, 0, 4, 0)
_HTTP_GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
_STORE_RESPONSE = re.compile(r"Received Store Response \(([^)]*)\)")


# -- data ----------------------------------------------------------------------------


def _write(folder: Path, n: int, seed: int, image_size: int = 16) -> list[Path]:
    """Exactly ``n`` synthetic CT files (one per instance) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    datasets = dl.synth.generate(
        n, seed, image_size=image_size, max_instances=8, modalities=("CT",)
    )
    paths = []
    for i, ds in enumerate(itertools.islice(datasets, n)):
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    assert len(paths) == n
    return paths


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of a few instances each LocalPACS holds before the fault."""
    folder = tmp_path_factory.mktemp("seed")
    _write(folder, 4, seed=101)
    return folder


@pytest.fixture(scope="module")
def batch_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write(tmp_path_factory.mktemp("batch"), 12, seed=202)


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


# -- LocalPACS state -----------------------------------------------------------------------


def _seed(lp: dl.LocalPACS, folder: Path) -> Snapshot:
    """Import the seed files; their SOP Instance UIDs and bytes as held."""
    out = lp.import_files(folder)
    assert (out.status == "stored").all(), out
    return _snapshot(lp)


def _snapshot(lp: dl.LocalPACS) -> Snapshot:
    df = lp.instances()
    return {uid: Path(p).read_bytes() for uid, p in zip(df.SOPInstanceUID, df.path, strict=True)}


def _alive_and_intact(lp: dl.LocalPACS, before: Snapshot, added: int = 0) -> None:
    """C-ECHO answered; ``added`` more instances than before; every earlier file unchanged."""
    r = dl.echo(lp.node.replace(timeout=5), calling_ae="PROBE")
    assert r.ok, r.detail
    df = lp.instances()
    assert len(df) == len(before) + added
    paths = dict(zip(df.SOPInstanceUID, df.path, strict=True))
    for uid, data in before.items():
        assert uid in paths, f"{uid} was lost"
        assert Path(paths[uid]).read_bytes() == data, f"{uid}: file changed"
        assert dcmread(paths[uid]).SOPInstanceUID == uid


def _whole_and_indexed(lp: dl.LocalPACS) -> None:
    """Every indexed file reads completely; every file on disk is indexed; no temporaries."""
    held = lp.instances()
    for uid, path, size in zip(held.SOPInstanceUID, held.path, held["size"], strict=True):
        ds = dcmread(path)
        assert ds.SOPInstanceUID == uid
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        assert Path(path).stat().st_size == size
    on_disk = {p.resolve() for p in lp.archive.files.rglob("*") if p.is_file()}
    assert on_disk == {Path(p).resolve() for p in held.path}
    assert not [p for p in lp.archive.root.rglob("*") if p.name.endswith(".tmp")]


def _echo_within(lp: dl.LocalPACS, seconds: float, calling: str = "PROBE") -> dl.EchoResult:
    """The first successful C-ECHO within ``seconds``, or the last failed one."""
    deadline = time.monotonic() + seconds
    while True:
        r = dl.echo(lp.node.replace(timeout=3), calling_ae=calling)
        if r.ok or time.monotonic() >= deadline:
            return r
        time.sleep(0.1)


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``condition()`` holds within ``timeout`` (server counters lag the wire)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _scp_rows(
    where: Callable[[pd.DataFrame], pd.Series], expected: int, timeout: float = 5.0
) -> pd.DataFrame:
    """The server's association log rows matching ``where(df)``, once ``expected`` are written.

    Rows are written when a connection closes, from the server's threads.
    """
    deadline = time.monotonic() + timeout
    while True:
        df = dl.log.read_associations()
        rows = df[(df.role == "SCP") & where(df)]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


# -- raw DICOM upper layer -----------------------------------------------------------------


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _ae(text: str | bytes) -> bytes:
    """A 16-byte AE title field (space padded)."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    return raw.ljust(16, b" ")


def _associate_rq(calling: bytes, called: bytes) -> bytes:
    """An A-ASSOCIATE-RQ proposing Verification (PS3.8 9.3.2), AE fields as given.

    The AE title fields are 16 bytes in a valid PDU; longer ones shift what follows.
    """
    context = _item(
        0x20,
        bytes([1, 0, 0, 0])
        + _item(0x30, b"1.2.840.10008.1.1")  # Verification
        + _item(0x40, b"1.2.840.10008.1.2"),  # Implicit VR Little Endian
    )
    user = _item(
        0x50,
        _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.826.0.1.3680043.9.3811.3.0.4"),
    )
    body = (
        struct.pack(">HH", 1, 0)
        + called
        + calling
        + bytes(32)
        + _item(0x10, b"1.2.840.10008.3.1.1.1")
        + context
        + user
    )
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def _recv_exact(s: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_pdu(s: socket.socket) -> tuple[int, bytes] | None:
    """The next PDU as (type, whole PDU), or None when the connection closed."""
    head = _recv_exact(s, 6)
    if head is None:
        return None
    kind, _, length = struct.unpack(">BBL", head)
    body = _recv_exact(s, length)
    return None if body is None else (kind, head + body)


def _closed_within(s: socket.socket, seconds: float) -> bool:
    """Whether the peer closes the connection within ``seconds`` (reading what it sends)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def _connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=5)


def _assert_builder_accepted(port: int) -> None:
    """Control: the hand-built request with valid AE titles is accepted (then released)."""
    with _connect(port) as s:
        s.sendall(_associate_rq(_ae("RAWSCU"), _ae(CALLED)))
        reply = _read_pdu(s)
        assert reply is not None and reply[0] == A_ASSOCIATE_AC_PDU, reply
        s.sendall(_RELEASE_RQ)
        reply = _read_pdu(s)
        assert reply is not None and reply[0] == 0x06  # A-RELEASE-RP


# -- a peer that never answers --------------------------------------------------------------


def _accept_all(request: bytes, prefer: str | None = None) -> bytes:
    """The A-ASSOCIATE-AC accepting every proposed context with its first transfer syntax
    (``prefer`` where the context proposes it)."""
    rq = A_ASSOCIATE_RQ()
    rq.decode(request)
    primitive = rq.to_primitive()
    primitive.result = 0
    results = []
    for cx in primitive.presentation_context_definition_list:
        ok = PresentationContext()
        ok.context_id = cx.context_id
        ok.abstract_syntax = cx.abstract_syntax
        offered = [str(ts) for ts in cx.transfer_syntax]
        ok.transfer_syntax = [prefer if prefer in offered else offered[0]]
        ok.result = 0
        results.append(ok)
    primitive.presentation_context_definition_results_list = results
    ac = A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    return bytes(ac.encode())


class MuteSCP:
    """Accepts every association and context, then never answers a DIMSE request.

    No real peer does this on demand (it stands for a PACS whose worker hangs), so
    this is a raw-socket stand-in. ``records`` holds, per connection, the PDU types
    received in order, then ``"closed"`` when the client closed the connection.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.records: list[Record] = []
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def __enter__(self) -> MuteSCP:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        self.sock.close()

    def node(self, timeout: float, **changes: object) -> dl.Node:
        return dl.Node("mute", ae_title="MUTE", host=HOST, port=self.port, timeout=timeout).replace(
            **changes
        )

    def finished(self, timeout: float = 5.0) -> list[Record]:
        """The records once every connection is closed by the client."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r and r[-1] == "closed" for r in self.records):
                break
            time.sleep(0.05)
        return [list(r) for r in self.records]

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # timeout
                continue
            conn.settimeout(None)
            record: Record = []
            self.records.append(record)
            self._conns.append(conn)
            self._spawn(self._serve, conn, record)

    @staticmethod
    def _serve(conn: socket.socket, record: Record) -> None:
        with conn:
            try:
                pdu = _read_pdu(conn)
                if pdu is not None:
                    record.append(pdu[0])
                    if pdu[0] == 0x01:
                        conn.sendall(_accept_all(pdu[1]))
                    while (pdu := _read_pdu(conn)) is not None:
                        record.append(pdu[0])
            except OSError:
                pass
            record.append("closed")


def _aborted_by_us(record: Record) -> bool:
    """One association: request, some P-DATA (one DIMSE request), then our A-ABORT."""
    return (
        record[0] == 0x01
        and record[-2:] == [A_ABORT_PDU, "closed"]
        and set(record[1:-2]) == {P_DATA_TF_PDU}
    )


# -- 1. HTTP on the DICOM port ----------------------------------------------------------------


def test_http_on_the_dicom_port_is_aborted_logged_and_harmless(
    tmp_path: Path, seed_files: Path
) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp, seed_files)
        with _connect(lp.port) as s:
            client_port = s.getsockname()[1]
            s.sendall(_HTTP_GET)
            reply = _read_pdu(s)
            # An A-ABORT (not an HTTP answer, not silence): this is no DICOM peer.
            assert reply is not None and reply[0] == A_ABORT_PDU, reply
        _alive_and_intact(lp, before)
        rows = _scp_rows(lambda df: df.peer_port == client_port, expected=1)
        assert len(rows) == 1
        assert rows.outcome.iloc[0] in ("aborted", "failed", "rejected")
        assert rows.peer_host.iloc[0] == HOST


_REFUSED = {
    "http-request": _HTTP_GET,
    "non-ascii-calling-ae": _associate_rq(_ae("CAFÉ".encode()), _ae(CALLED)),
}


@pytest.mark.parametrize("name", list(_REFUSED))
def test_a_refused_connection_frees_its_association_slot_at_once(
    tmp_path: Path, seed_files: Path, name: str
) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all", max_associations=1) as lp:
        before = _seed(lp, seed_files)
        with _connect(lp.port) as s:
            s.sendall(_REFUSED[name])
            reply = _read_pdu(s)
            assert reply is None or reply[0] in (A_ASSOCIATE_RJ_PDU, A_ABORT_PDU), reply
        r = _echo_within(lp, 2)  # the only slot is free again once the connection is gone
        assert r.ok, r.detail
        _alive_and_intact(lp, before)


def test_an_http_client_that_stays_connected_is_disconnected(
    tmp_path: Path, seed_files: Path
) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all", max_associations=1) as lp:
        before = _seed(lp, seed_files)
        with _connect(lp.port) as s:
            s.sendall(_HTTP_GET)
            # PS3.8 Sta13: after its A-ABORT the acceptor closes the transport at the
            # latest when its ARTIM timer expires, whatever the peer does.
            assert _closed_within(s, ARTIM_S + 2)
            r = _echo_within(lp, 2)
            assert r.ok, r.detail
        _alive_and_intact(lp, before)


# -- 2. UIDs with separators, from a real sender --------------------------------------------


@pytest.mark.peers
def test_uids_with_separators_or_65_chars_from_storescu_are_refused(
    tmp_path: Path, seed_files: Path, batch_files: list[Path]
) -> None:
    """dcmtk sends such UIDs as they are; each gets a failure status, nothing lands anywhere."""
    need_peer("storescu")
    bad = {
        "inner-slash": "1.2.826.0.1/../../evil",
        "backslash": "1.2.826.0.1\\2.3",  # a second value to DICOM, a separator to Windows
        "windows-traversal": "..\\..\\evil",
        "65-chars": "1." + "2" * 63,
    }
    folder = tmp_path / "bad"
    folder.mkdir()
    files = []
    for i, (name, uid) in enumerate(bad.items()):
        ds = dcmread(batch_files[i])
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
        files.append(folder / f"{name}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    files.insert(2, batch_files[-1])  # a valid one in between: the association goes on
    outside = tmp_path.parent
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp, seed_files)
        proc = _storescu(lp.port, files, "DCMTKSCU", "-nh")
        out = proc.stdout + proc.stderr
        assert _STORE_RESPONSE.findall(out) == [
            "Error: CannotUnderstand",
            "Error: CannotUnderstand",
            "Success",
            "Error: CannotUnderstand",
            "Error: CannotUnderstand",
        ], out
        assert lp.stats["failed"] == len(bad)
        held = set(lp.instances().SOPInstanceUID)
        assert not held & set(bad.values())
        assert _uid(batch_files[-1]) in held
        assert not [p for p in outside.rglob("*evil*")]
        assert not [p for p in Path.cwd().glob("*evil*")]
        assert not [p for p in lp.archive.root.rglob("*") if "\\" in p.name]
        _whole_and_indexed(lp)
        _alive_and_intact(lp, before, added=1)


def _storescu(
    port: int, files: Sequence[Path], calling: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_peer("storescu"), "-v", *extra, "-aet", calling, "-aec", CALLED, HOST, str(port)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=60,
    )


# -- 3. invalid AE titles in a raw A-ASSOCIATE-RQ -------------------------------------------


_BAD_AE = {
    "calling-17-chars": _associate_rq(b"ABCDEFGHIJKLMNOPQ", _ae(CALLED)),
    "both-20-chars": _associate_rq(b"C" * 20, CALLED.encode() + b"X" * 12),
    "calling-utf8": _associate_rq(_ae("CAFÉ".encode()), _ae(CALLED)),
    "called-latin1": _associate_rq(_ae("SCU"), _ae("DICOMLABÉ".encode("latin-1"))),
    "calling-control-chars": _associate_rq(_ae(b"EVIL\x1b[2J\x07"), _ae(CALLED)),
    "calling-backslash": _associate_rq(_ae(b"A\\B"), _ae(CALLED)),
}


@pytest.mark.parametrize("name", list(_BAD_AE))
def test_invalid_ae_titles_are_refused_cleanly_and_logged(
    tmp_path: Path, seed_files: Path, name: str
) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp, seed_files)
        _assert_builder_accepted(lp.port)
        with _connect(lp.port) as s:
            client_port = s.getsockname()[1]
            t0 = time.monotonic()
            s.sendall(_BAD_AE[name])
            reply = _read_pdu(s)
            # Rejected or aborted, never accepted; and the server closes the connection.
            assert reply is None or reply[0] in (A_ASSOCIATE_RJ_PDU, A_ABORT_PDU), reply
            assert _closed_within(s, 3)
            assert time.monotonic() - t0 < 3
        _alive_and_intact(lp, before)
        rows = _scp_rows(lambda df: df.peer_port == client_port, expected=1)
        assert len(rows) == 1, "no association log row for the refused request"
        row = rows.iloc[0]
        assert row.outcome in ("rejected", "aborted", "failed")
        assert row.peer_host == HOST
        if not pd.isna(row.peer_ae):  # whatever is kept is printable: no log injection
            assert row.peer_ae.isprintable() and row.peer_ae.isascii()


# -- 4. a flood of connections beyond max_associations -----------------------------------


def test_a_flood_past_the_limit_is_rejected_counted_logged_then_served(
    tmp_path: Path, seed_files: Path
) -> None:
    n = 30
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all", max_associations=2) as lp:
        before = _seed(lp, seed_files)
        rejected0 = lp.stats["rejected"]
        held: list[socket.socket] = []
        try:
            replies = []
            for k in range(n):  # valid requests, then idle
                s = _connect(lp.port)
                held.append(s)
                s.sendall(_associate_rq(_ae(f"FLOOD{k:02d}"), _ae(CALLED)))
                reply = _read_pdu(s)
                assert reply is not None
                replies.append(reply[0])
            for _ in range(n):  # connect and send nothing
                held.append(_connect(lp.port))
            assert replies == [A_ASSOCIATE_AC_PDU] * 2 + [A_ASSOCIATE_RJ_PDU] * (n - 2)
            assert _eventually(lambda: lp.stats["rejected"] - rejected0 == n - 2)
        finally:
            for s in held:
                s.close()
        t0 = time.monotonic()
        r = _echo_within(lp, 5)
        assert r.ok, r.detail
        assert time.monotonic() - t0 < 5
        rows = _scp_rows(lambda df: df.peer_ae.str.startswith("FLOOD").fillna(False), n)
        assert (rows.outcome == "rejected").sum() == n - 2
        assert rows[rows.outcome == "rejected"].reject_reason.str.contains("limit").all()
        assert (rows.outcome == "aborted").sum() == 2  # the two accepted, then dropped
        _alive_and_intact(lp, before)


# -- 5. an exception inside the archive during C-STORE ---------------------------------------


def _failing_add(lp: dl.LocalPACS, victims: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this LocalPACS's archive raise RuntimeError for the ``victims`` only."""
    real = lp.archive.add

    def add(row: dict[str, object], *args: object, **kwargs: object) -> str:
        if row["SOPInstanceUID"] in victims:
            raise RuntimeError("archive bug")
        return real(row, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lp.archive, "add", add)


@pytest.mark.peers
def test_an_archive_exception_fails_only_that_instance(
    tmp_path: Path, seed_files: Path, batch_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    need_peer("storescu")
    by_dcmtk, by_us = batch_files[:6], batch_files[6:12]
    victims = {_uid(by_dcmtk[2]), _uid(by_us[3])}
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp, seed_files)
        _failing_add(lp, victims, monkeypatch)

        proc = _storescu(lp.port, by_dcmtk, "DCMTKSCU", "-nh")
        out = proc.stdout + proc.stderr
        answers = _STORE_RESPONSE.findall(out)
        assert [a == "Success" for a in answers] == [True, True, False, True, True, True], out
        assert "Releasing Association" in out

        res = dl.store(lp.node, by_us, max_connections=1, progress=False, calling_ae="DLSENDER")
        assert isinstance(res, pd.DataFrame) and len(res) == len(by_us)
        res = res.set_index("SOPInstanceUID")
        victim = res.loc[_uid(by_us[3])]
        assert dl.decode_status(int(victim.status)).category == "failure"
        assert not pd.isna(victim.error)
        others = res.drop(index=_uid(by_us[3]))
        assert (others.status == 0).all() and others.error.isna().all()
        assert not res.attrs["complete"]

        # Both associations went on after the failure and ended normally.
        rows = _scp_rows(lambda df: df.peer_ae.isin(["DCMTKSCU", "DLSENDER"]), 2)
        assert sorted(rows.peer_ae) == ["DCMTKSCU", "DLSENDER"]
        assert (rows.outcome == "released").all()
        held = set(lp.instances().SOPInstanceUID)
        assert not held & victims
        assert {_uid(p) for p in batch_files} - victims <= held
        _whole_and_indexed(lp)
        _alive_and_intact(lp, before, added=len(batch_files) - len(victims))


def test_an_archive_exception_is_counted_as_failed(
    tmp_path: Path, batch_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        _failing_add(lp, {_uid(batch_files[0])}, monkeypatch)
        res = dl.store(lp.node, batch_files[0], progress=False, calling_ae="DLSENDER")
        assert isinstance(res, pd.DataFrame)
        assert dl.decode_status(int(res.status.iloc[0])).category == "failure"
        assert lp.stats["failed"] == 1


# -- 6. peer abort mid C-STORE, destination gone mid C-MOVE ----------------------------------


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """80 instances of 128 KB: a transfer that lasts long enough to interrupt."""
    return _write(tmp_path_factory.mktemp("big"), 80, seed=303, image_size=256)


@pytest.mark.peers
def test_storescu_killed_mid_transfer_leaves_only_whole_files(
    tmp_path: Path, seed_files: Path, big_files: list[Path]
) -> None:
    storescu = need_peer("storescu")
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp, seed_files)
        aborted0 = lp.stats["aborted"]
        proc = subprocess.Popen(
            [storescu, "-aet", "DOOMED", "-aec", CALLED, HOST, str(lp.port)]
            + [str(p) for p in big_files],
            env=peer_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while (
                lp.stats["stored"] < len(before) + 5
                and proc.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)  # no A-ABORT, no release: the connection breaks
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, "storescu finished before it was killed"
        assert _eventually(lambda: lp.stats["aborted"] == aborted0 + 1)

        got = len(lp.instances()) - len(before)
        assert 5 <= got < len(big_files)
        _whole_and_indexed(lp)
        rows = _scp_rows(lambda df: df.peer_ae == "DOOMED", 1)
        assert list(rows.outcome) == ["aborted"]
        _alive_and_intact(lp, before, added=got)

        # Sending everything again completes the set: nothing half-stored blocks it.
        proc2 = _storescu(lp.port, big_files, "AGAIN")
        assert _STORE_RESPONSE.findall(proc2.stdout + proc2.stderr) == ["Success"] * len(big_files)
        _whole_and_indexed(lp)
        _alive_and_intact(lp, before, added=len(big_files))


@dataclass
class MoveRun:
    """A C-MOVE from LocalPACS A to LocalPACS B, with B stopped part way, then resumed."""

    result: pd.DataFrame
    expected: dict[str, int]  # study -> instances A holds
    received: pd.DataFrame  # what B held after the interrupted move
    b_files_ok: bool
    a_echo: dl.EchoResult
    a_intact: bool
    again: pd.DataFrame  # the same retrieve once B is back
    b_after: pd.DataFrame
    associations: pd.DataFrame  # the network log of it all


@pytest.fixture(scope="module")
def move_with_destination_stopped(tmp_path_factory: pytest.TempPathFactory) -> MoveRun:
    base = tmp_path_factory.mktemp("move")
    # Four studies of 21-50 instances: the first is still moving when B stops.
    dl.synth.write_studies(
        base / "src", n_studies=4, seed=5, image_size=128, max_series=2, max_instances=30
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DICOMLAB_HOME", str(base / "home"))
        b = dl.LocalPACS(base / "b", ae_title="DLDEST", port=0, fsync=False).start()
        # a slow destination (20 ms per instance), so the first study is surely still
        # moving when B stops after 5 instances
        real_add = b.archive.add

        def slow_add(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.02)
            return real_add(*args, **kwargs)

        mp.setattr(b.archive, "add", slow_add)
        try:
            book = dl.NodeBook([dl.Node("dest", ae_title="DLDEST", host=HOST, port=b.port)])
            with dl.LocalPACS(base / "a", ae_title="DLSOURCE", port=0, book=book) as a:
                a.import_files(base / "src")
                a_before = _snapshot(a)
                # a generous timeout: on a loaded machine an answer must not become one
                node = a.node.replace(retrieve="move", timeout=30)
                studies = dl.find(node, dl.Query.studies(), calling_ae="DLDEST")
                counts = a.instances().groupby("StudyInstanceUID").size()
                expected = {str(k): int(v) for k, v in counts.items()}
                assert len(studies) == 4 and min(expected.values()) >= 20

                job = dl.retrieve(
                    node,
                    studies,
                    into=b,
                    method="move",
                    max_connections=1,
                    wait=False,
                    progress=False,
                    calling_ae="DLDEST",
                )
                assert isinstance(job, dl.Job)
                deadline = time.monotonic() + 30
                while b.stats["stored"] < 5 and time.monotonic() < deadline:
                    time.sleep(0.002)
                b.stop()  # the destination goes away mid-move
                result = job.result(timeout=60)
                received = b.instances()
                b_files_ok = all(dcmread(p).pixel_array.size > 0 for p in received.path)
                b_files_ok &= not [p for p in b.archive.root.rglob("*.tmp")]

                # B back on the same port and root: the same retrieve completes the rest.
                b = dl.LocalPACS(base / "b", ae_title="DLDEST", port=b.port, fsync=False).start()
                again = dl.retrieve(
                    node, studies, into=b, method="move", progress=False, calling_ae="DLDEST"
                )
                assert isinstance(again, pd.DataFrame)
                a_echo = dl.echo(a.node, calling_ae="PROBE")
                a_intact = _snapshot(a) == a_before
                b_after = b.instances()
        finally:
            b.stop()
        gc.collect()
        associations = dl.log.read_associations()
    return MoveRun(
        result,
        expected,
        received,
        b_files_ok,
        a_echo,
        a_intact,
        again,
        b_after,
        associations,
    )


def test_destination_stopped_mid_move_reports_partial_and_keeps_whole_files(
    move_with_destination_stopped: MoveRun,
) -> None:
    run = move_with_destination_stopped
    res = run.result
    assert len(res) == 4
    assert not res.attrs["complete"]
    assert not res.complete.all()
    broken = res[~res.complete]
    assert broken.error.notna().all() and (broken.error.str.len() > 0).all()
    assert broken.status.notna().all(), list(broken.error)  # the source answered
    # The table matches what arrived: per study, and in total.
    arrived = run.received.groupby("StudyInstanceUID").size()
    for row in res.itertuples():
        assert row.expected_instances == run.expected[str(row.StudyInstanceUID)]
        assert row.received_instances == arrived.get(row.StudyInstanceUID, 0)
        assert bool(row.complete) == (row.received_instances == row.expected_instances)
    assert 5 <= len(run.received) < sum(run.expected.values())
    assert run.b_files_ok
    # The source is unharmed, and the retrieve run again completes everything.
    assert run.a_echo.ok, run.a_echo.detail
    assert run.a_intact
    assert run.again.complete.all(), run.again.error.tolist()
    assert run.again.skipped.sum() == res.complete.sum()
    assert len(run.b_after) == sum(run.expected.values())
    assert run.b_after.SOPInstanceUID.is_unique


def test_destination_stopped_mid_move_is_not_blamed_on_registration(
    move_with_destination_stopped: MoveRun,
) -> None:
    res = move_with_destination_stopped.result
    after = res[res.received_instances == 0]
    assert len(after) >= 1  # studies attempted after the destination stopped
    for error in after.error:
        assert "may not know our AE title" not in error, error


def test_partial_move_error_names_the_failed_suboperations(
    move_with_destination_stopped: MoveRun,
) -> None:
    res = move_with_destination_stopped.result
    # the study moving when the destination stopped: 0xB000 (sub-operations failed)
    failed = res[(res.failed.fillna(0) > 0) | (res.status == 0xB000)]
    assert len(failed) >= 1, res[
        ["status", "failed", "attempts", "received_instances", "error"]
    ].to_string()
    for error in failed.error:
        assert "reported success" not in error, error
        assert "fail" in error, error


def test_a_move_broken_off_after_the_destination_stopped_is_not_retried(
    tmp_path: Path, seed_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source stops answering after the destination went away (no real peer does that
    on demand: the break is simulated after two real pending counts). Retrying cannot
    succeed, so the row keeps the counts seen and says the destination stopped."""
    from dicomlab.transfer import getmove

    with dl.LocalPACS(tmp_path / "b", ae_title="DLDEST", port=0) as b:
        book = dl.NodeBook([dl.Node("dest", ae_title="DLDEST", host=HOST, port=b.port)])
        with dl.LocalPACS(tmp_path / "a", ae_title="DLSOURCE", port=0, book=book) as a:
            _seed(a, seed_files)
            study = a.instances().StudyInstanceUID.iloc[0]

            def broken(ctx: Any, assoc: Any, model: Any, item: Any, track: Any) -> None:
                track(0xFF00, 1, 0, 0)
                track(0xFF00, 1, 2, 0)
                b.stop()
                raise dl.DimseTimeout("no C-MOVE response within 1 s")

            monkeypatch.setattr(getmove, "_exchange", broken)
            t0 = time.monotonic()
            res = dl.retrieve(
                a.node, [study], into=b, method="move", progress=False, calling_ae="DLDEST"
            )
            took = time.monotonic() - t0
    assert isinstance(res, pd.DataFrame)
    row = res.iloc[0]
    assert row.attempts == 1 and took < 3  # no 0.5 + 1 + 2 s of pointless retries
    assert row.failed == 2 and not row.complete
    assert "DLDEST (the destination) is not running" in row.error, row.error
    assert "2 sub-operations had failed" in row.error, row.error


def test_the_c_stores_localpacs_sends_for_a_move_are_logged(
    move_with_destination_stopped: MoveRun,
) -> None:
    log = move_with_destination_stopped.associations
    sent = log[(log.role == "SCU") & (log.local_ae == "DLSOURCE") & (log.peer_ae == "DLDEST")]
    assert len(sent) >= 2  # the interrupted sub-association and the resumed one


def test_a_move_to_an_unreachable_destination_leaks_no_socket(
    tmp_path: Path, seed_files: Path
) -> None:
    with dl.LocalPACS(tmp_path / "b", ae_title="DLDEST", port=0) as b:
        # A knows DLDEST at a port where nothing listens.
        book = dl.NodeBook([dl.Node("dest", ae_title="DLDEST", host=HOST, port=free_port())])
        with dl.LocalPACS(tmp_path / "a", ae_title="DLSOURCE", port=0, book=book) as a:
            before = _seed(a, seed_files)
            study = a.instances().StudyInstanceUID.iloc[0]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResourceWarning)
                res = dl.retrieve(
                    a.node, [study], into=b, method="move", progress=False, calling_ae="DLDEST"
                )
                gc.collect()
            assert isinstance(res, pd.DataFrame)
            assert not res.complete.any() and res.error.notna().all()
            _alive_and_intact(a, before)
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks


# -- 7. DIMSE timeout: a peer that never answers ----------------------------------------------


def test_find_without_an_answer_times_out_aborts_and_the_next_call_works(
    tmp_path: Path, seed_files: Path
) -> None:
    with MuteSCP() as mute, dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp, seed_files)
        node = mute.node(timeout=1, max_connections=1)
        t0 = time.monotonic()
        with pytest.raises(dl.DimseTimeout, match="within 1 s"):  # never an empty result
            dl.find(node, dl.Query.studies(), calling_ae="ASKER")
        assert time.monotonic() - t0 < 4

        t0 = time.monotonic()
        with pytest.raises(dl.DimseTimeout):  # every value failed, nothing came: it raises
            dl.find_many(
                node,
                dl.Query.studies(),
                progress=False,
                calling_ae="ASKER",
                AccessionNumber=["A1", "A2"],
            )
        assert time.monotonic() - t0 < 8

        # Three associations for three queries, each aborted by us after its one
        # request: a timed-out association is never reused.
        records = mute.finished()
        assert len(records) == 3, records
        assert all(_aborted_by_us(r) for r in records), records

        healthy = dl.find(lp.node, dl.Query.studies(), calling_ae="ASKER")
        assert healthy.attrs["complete"], healthy.attrs
        assert len(healthy) == lp.instances().StudyInstanceUID.nunique()
        _alive_and_intact(lp, before)


def test_find_timeout_is_reported_as_a_timeout() -> None:
    with MuteSCP() as mute, pytest.raises(dl.DimseTimeout) as caught:
        dl.find(mute.node(timeout=1), dl.Query.studies(), calling_ae="ASKER")
    text = str(caught.value)
    assert re.search(r"within 1 s|timed out|timeout", text), text
    assert "aborted the association" not in text, text


@dataclass
class StoreRun:
    files: list[Path]
    result: pd.DataFrame
    elapsed: float
    records: list[Record]


@pytest.fixture(scope="module")
def store_to_mute(tmp_path_factory: pytest.TempPathFactory) -> StoreRun:
    """dl.store of five files to a peer that never answers a C-STORE (timeout 1 s)."""
    base = tmp_path_factory.mktemp("mute-store")
    files = _write(base / "files", 5, seed=404)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DICOMLAB_HOME", str(base / "home"))
        with MuteSCP() as mute:
            t0 = time.monotonic()
            res = dl.store(
                mute.node(timeout=1), files, max_connections=1, progress=False, calling_ae="SENDER"
            )
            elapsed = time.monotonic() - t0
            records = mute.finished()
        dl.log.flush()
    assert isinstance(res, pd.DataFrame)
    return StoreRun(files, res, elapsed, records)


def test_store_without_an_answer_times_out_aborts_and_the_next_store_works(
    tmp_path: Path, seed_files: Path, store_to_mute: StoreRun
) -> None:
    run = store_to_mute
    res = run.result
    assert run.elapsed < 3 * 1.5 + 2  # bounded by the node timeout, not hanging
    assert len(res) >= 1 and not res.attrs["complete"]
    assert res.status.isna().all() and res.error.notna().all()
    timed_out = res[res.error.str.contains("no C-STORE response")]
    assert len(timed_out) >= 1
    assert timed_out.error.str.contains("within 1 s").all()
    # One association per timed-out instance, each aborted after its one C-STORE.
    assert len(run.records) == len(timed_out), run.records
    assert all(_aborted_by_us(r) for r in run.records), run.records

    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        before = _seed(lp, seed_files)
        ok = dl.store(lp.node, run.files, progress=False, calling_ae="SENDER")
        assert isinstance(ok, pd.DataFrame)
        assert (ok.status == 0).all() and ok.attrs["complete"]
        _whole_and_indexed(lp)
        _alive_and_intact(lp, before, added=len(run.files))


def test_store_without_an_answer_reports_every_file(store_to_mute: StoreRun) -> None:
    res = store_to_mute.result
    assert sorted(res.path) == sorted(str(p) for p in store_to_mute.files)
    assert res.error.notna().all()
