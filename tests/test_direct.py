"""The direct C-STORE path: wire encodings against pynetdicom's, and real peers both ways."""

from __future__ import annotations

import _thread
import socket
import subprocess
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import Any, Self

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import split_dataset
from test_faults import _accept_all, _read_pdu

import dicomlab as dl
from dicomlab.net import wire
from dicomlab.net._fast import channel, store
from dicomlab.peers import StoreSCP, peer_env
from dicomlab.testing.fixtures import need_peer

HOST = "127.0.0.1"
CT = "1.2.840.10008.5.1.4.1.1.2"

uids = st.from_regex(r"\A[1-9][0-9]{0,5}(\.[1-9][0-9]{0,5}){1,8}\Z", fullmatch=True).filter(
    lambda u: len(u) <= 64
)
aes = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,15}\Z", fullmatch=True)


def _pynetdicom_command(message: Any, primitive: Any) -> bytes:
    message.primitive_to_message(primitive)
    first = next(iter(message.encode_msg(1, 0)))
    pdv = first.presentation_data_value_list[0][1]
    assert pdv[0] == 0x03  # command, last fragment
    return bytes(pdv[1:])


@settings(max_examples=60, deadline=None)
@given(
    mid=st.integers(1, 0xFFFF),
    sop_class=uids,
    sop_instance=uids,
    priority=st.sampled_from([0, 1, 2]),
    originator=st.none() | st.tuples(aes, st.integers(1, 0xFFFF)),
)
def test_store_request_is_encoded_as_pynetdicom_encodes_it(
    mid: int, sop_class: str, sop_instance: str, priority: int, originator: Any
) -> None:
    p = C_STORE()
    p.MessageID = mid
    p.AffectedSOPClassUID = sop_class
    p.AffectedSOPInstanceUID = sop_instance
    p.Priority = priority
    if originator is not None:
        p.MoveOriginatorApplicationEntityTitle = originator[0]
        p.MoveOriginatorMessageID = originator[1]
    p.DataSet = BytesIO(b"\x08\x00")
    ours = wire.store_request(mid, sop_class, sop_instance, priority, originator)
    assert ours == _pynetdicom_command(C_STORE_RQ(), p)
    back = wire.decode_command(ours)
    assert (back.command_field, back.message_id, back.sop_class, back.sop_instance) == (
        wire.C_STORE_RQ,
        mid,
        sop_class,
        sop_instance,
    )
    assert back.has_data_set and back.priority == priority
    if originator is not None:
        assert (back.move_originator_ae, back.move_originator_id) == originator


@settings(max_examples=60, deadline=None)
@given(
    mid=st.integers(1, 0xFFFF),
    sop_instance=uids,
    status=st.integers(0, 0xFFFF),
    comment=st.none() | st.from_regex(r"\A[A-Za-z0-9 ,.:-]{1,64}\Z", fullmatch=True),
)
def test_store_response_is_encoded_as_pynetdicom_encodes_it(
    mid: int, sop_instance: str, status: int, comment: str | None
) -> None:
    comment = comment.strip() or None if comment else None
    p = C_STORE()
    p.MessageIDBeingRespondedTo = mid
    p.AffectedSOPClassUID = CT
    p.AffectedSOPInstanceUID = sop_instance
    p.Status = status
    if comment:
        p.ErrorComment = comment
    ours = wire.store_response(mid, CT, sop_instance, status, comment)
    assert ours == _pynetdicom_command(C_STORE_RSP(), p)
    back = wire.decode_command(ours)
    assert (back.command_field, back.responded_to, back.status) == (wire.C_STORE_RSP, mid, status)
    assert not back.has_data_set
    assert back.error_comment == comment


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_decoding_garbage_raises_only_value_error(data: bytes) -> None:
    try:
        wire.decode_command(data)
    except ValueError:
        pass


def test_a_truncated_command_is_refused() -> None:
    good = wire.store_request(1, CT, "1.2.3")
    for cut in (1, 7, 9, len(good) - 1):
        with pytest.raises(ValueError):
            wire.decode_command(good[:cut])


def _message(context_id: int, command: bytes, data: bytes, max_pdu: int) -> bytes:
    return wire.command_pdu(context_id, command, max_pdu) + b"".join(
        wire.data_pdus(context_id, data, max_pdu)
    )


def test_the_scan_finds_a_whole_store_request_byte_by_byte() -> None:
    data = bytes(range(256)) * 300
    stream = _message(3, wire.store_request(9, CT, "1.2.3.4"), data, 16384)
    scan = wire.MessageScan(1 << 20)
    buf = bytearray()
    for byte in stream:
        need = scan.feed(buf)
        assert need is not None and need > len(buf)  # never done early, never refused
        buf.append(byte)
    assert scan.feed(buf) == 0
    assert scan.pos == len(stream) and scan.context_id == 3
    assert scan.command is not None and scan.command.message_id == 9
    assert b"".join(buf[a:b] for a, b in scan.spans) == data
    assert bytes(buf) == stream  # nothing consumed


@pytest.mark.parametrize(
    "stream",
    [
        # another service: left to pynetdicom
        pytest.param(wire.pdu(1, 3, b""), id="empty-command"),
        pytest.param(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00", id="a-abort"),
        pytest.param(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00", id="a-release-rq"),
        pytest.param(wire.pdu(1, 0, b"data first"), id="data-before-command"),
        pytest.param(
            wire.command_pdu(1, wire.store_request(1, CT, "1.2"), 0) + wire.pdu(3, 2, b"x"),
            id="second-context",
        ),
        pytest.param(
            wire.command_pdu(1, wire.store_request(1, CT, "1.2"), 0) + wire.pdu(1, 3, b"x"),
            id="command-instead-of-data",
        ),
        pytest.param(b"\x04\x00\x00\x00\x00\x08\x00\x00\x00\x10\x01\x03abcd", id="item-too-long"),
    ],
)
def test_the_scan_refuses_what_is_not_a_plain_store_request(stream: bytes) -> None:
    assert wire.MessageScan(1 << 20).feed(bytearray(stream)) is None


def test_the_scan_refuses_other_services_and_oversized_messages() -> None:
    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    command = _pynetdicom_command(C_ECHO_RQ(), echo)
    assert wire.MessageScan(1 << 20).feed(bytearray(wire.command_pdu(1, command, 0))) is None
    big = _message(1, wire.store_request(1, CT, "1.2"), b"\0" * 100_000, 16384)
    assert wire.MessageScan(50_000).feed(bytearray(big)) is None


def test_the_data_set_offset_is_where_pynetdicom_finds_it(tmp_path: Path) -> None:
    files = dl.synth.write_studies(tmp_path, n_studies=1, seed=3, image_size=16, max_instances=2)
    for path in files.path:
        raw = Path(path).read_bytes()
        _, offset = split_dataset(Path(path))
        assert channel.dataset_offset(raw) == offset
    assert channel.dataset_offset(b"\0" * 200) is None  # no DICM prefix
    raw = Path(files.path.iloc[0]).read_bytes()
    assert channel.dataset_offset(raw[:130]) is None


# -- real peers ------------------------------------------------------------------------------


class _Spy:
    """Counts what a function returned, calling through."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.results = fn, []  # type: ignore[var-annotated]
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.fn(*args, **kwargs)
        with self.lock:
            self.results.append(out)
        return out


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("direct-study")
    return dl.synth.write_studies(folder, n_studies=2, seed=77, image_size=64, max_instances=5)


def _data_set(path: str | Path) -> bytes:
    raw = Path(path).read_bytes()
    offset = channel.dataset_offset(raw)
    assert offset is not None
    return raw[offset:]


def _storescu(port: int, files: list[str], *options: str) -> None:
    cmd = [need_peer("storescu"), "-aet", "SENDER", "-aec", "DIRECT", *options, HOST, str(port)]
    done = subprocess.run(cmd + files, capture_output=True, text=True, env=peer_env(), timeout=120)
    assert done.returncode == 0, done.stderr


def _same_data_sets(study: pd.DataFrame, held: dict[str, str | Path]) -> None:
    """Every instance of ``study`` is held (by SOP Instance UID) with its data set intact."""
    assert len(held) == len(study)
    for _, row in study.iterrows():
        assert _data_set(held[row.SOPInstanceUID]) == _data_set(row.path)


def _storescu_into_localpacs(
    tmp_path: Path, study: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, *options: str
) -> list[bool]:
    """storescu sends ``study`` to a LocalPACS; what each serve_store call answered."""
    need_peer("storescu")
    spy = _Spy(store.serve_store)
    monkeypatch.setattr(store, "serve_store", spy)
    with dl.LocalPACS(tmp_path / "lp", ae_title="DIRECT", port=0, allow_unknown="all") as lp:
        _storescu(lp.port, list(study.path), *options)
        held = lp.instances()
    _same_data_sets(study, dict(zip(held.SOPInstanceUID, held.path, strict=True)))
    return spy.results


def test_storescu_into_localpacs_goes_the_direct_way_byte_exact(
    tmp_path: Path, study: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = _storescu_into_localpacs(tmp_path, study, monkeypatch)
    assert served.count(True) == len(study)  # every instance served directly
    dl.log.flush()
    ops = dl.log.read_log()
    stores = ops[(ops.service == "C-STORE") & (ops.role == "SCP")]
    assert set(stores.sop_instance_uid) == set(study.SOPInstanceUID)
    assert (stores.status == 0).all() and (stores.bytes > 0).all()


def test_messages_over_the_limit_take_pynetdicoms_path(
    tmp_path: Path, study: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_MESSAGE_LIMIT", 4096)  # every 64x64 instance is larger
    served = _storescu_into_localpacs(tmp_path, study, monkeypatch, "--max-send-pdu", "4096")
    assert True not in served and served  # asked, and declined every time


def test_dl_store_into_storescp_sends_directly_byte_exact(
    tmp_path: Path, study: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_peer("storescp")
    spy = _Spy(store.Sender._exchange)
    monkeypatch.setattr(store.Sender, "_exchange", lambda self, *a: spy(self, *a))
    with StoreSCP(tmp_path / "scp") as scp:
        res = dl.store(scp.node, list(study.path), progress=False, calling_ae="SENDER")
        received = {dcmread(p).SOPInstanceUID: p for p in scp.output.rglob("*") if p.is_file()}
    assert isinstance(res, pd.DataFrame) and res.attrs["complete"], res
    assert len(spy.results) == len(study)
    assert all(r.status == 0 for r in spy.results)
    _same_data_sets(study, received)
    dl.log.flush()
    ops = dl.log.read_log()
    stores = ops[(ops.service == "C-STORE") & (ops.role == "SCU")]
    assert set(stores.sop_instance_uid) >= set(study.SOPInstanceUID)
    assert (stores.status == 0).all()


class RawPeer:
    """A hand-written peer on a loopback port, one connection at a time, each served by
    :meth:`serve_one` (for failures no real peer produces on demand)."""

    def __init__(self) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    self.serve_one(conn)
                except OSError:
                    pass

    def serve_one(self, conn: socket.socket) -> None:
        raise NotImplementedError


class AbortingSCP(RawPeer):
    """Accepts every association, reads one whole C-STORE request, then sends A-ABORT.

    Stands for a PACS that gives up mid-operation (no real peer does it on demand).
    """

    def serve_one(self, conn: socket.socket) -> None:
        rq = _read_pdu(conn)
        assert rq is not None and rq[0] == 0x01
        conn.sendall(_accept_all(rq[1]))
        scan, buf = wire.MessageScan(1 << 24), bytearray()
        while scan.feed(buf) != 0:
            piece = conn.recv(65536)
            if not piece:
                break
            buf += piece
        conn.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x00")  # A-ABORT
        time.sleep(0.2)


def test_a_peer_that_aborts_mid_store_fails_that_file_and_the_rest_get_fresh_associations(
    study: pd.DataFrame,
) -> None:
    files = list(study.path)[:3]
    with AbortingSCP() as peer:
        node = dl.Node("aborter", ae_title="ABORTER", host=HOST, port=peer.port, timeout=5)
        res = dl.store(node, files, max_connections=1, progress=False, calling_ae="SENDER")
    assert isinstance(res, pd.DataFrame)
    assert sorted(res.path) == sorted(files)  # a row for every file
    assert not res.attrs["complete"] and res.status.isna().all()
    assert res.error.str.contains("aborted").any(), res.error.tolist()
    assert peer.connections >= 2  # never reused after the abort


def test_ctrl_c_during_dl_store_finishes_the_instance_in_flight_then_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_peer("storescp")
    files = dl.synth.write_studies(
        tmp_path / "src", n_studies=4, seed=5, image_size=128, max_instances=8
    )
    sent = threading.Event()
    exchange = store.Sender._exchange

    def slow(self: store.Sender, *args: Any) -> Any:
        time.sleep(0.02)  # room for the interrupt to land inside a run of stores
        out = exchange(self, *args)
        sent.set()
        return out

    monkeypatch.setattr(store.Sender, "_exchange", slow)
    threading.Thread(target=lambda: sent.wait(30) and _thread.interrupt_main(), daemon=True).start()
    with StoreSCP(tmp_path / "scp") as scp:
        res = dl.store(scp.node, list(files.path), max_connections=1, progress=False)
        assert isinstance(res, pd.DataFrame)
        assert not res.attrs["complete"] and len(res) == len(files)
        done = res[res.status.notna()]
        assert len(done) >= 1 and (done.status == 0).all()
        assert res[res.status.isna()].error.str.contains("cancel").all()
        # what the peer holds is exactly what was reported stored, each file whole
        held = {dcmread(p).SOPInstanceUID for p in scp.output.rglob("*") if p.is_file()}
        assert held == set(done.SOPInstanceUID)
        again = dl.store(scp.node, list(files.path), max_connections=1, progress=False)
        assert isinstance(again, pd.DataFrame) and again.attrs["complete"]
        held = {dcmread(p).SOPInstanceUID for p in scp.output.rglob("*") if p.is_file()}
    assert held == set(files.SOPInstanceUID)


def test_an_interrupt_mid_message_aborts_the_association(
    tmp_path: Path, study: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A direct send broken off inside a message (here: KeyboardInterrupt while its PDUs
    are built) never leaves the association usable: it is aborted, and the next
    association works."""
    need_peer("storescp")
    from pynetdicom.presentation import build_context

    from dicomlab.net.association import open_association

    first = study.iloc[0]
    pdus = wire.data_pdu_parts

    def broken(*args: Any, **kwargs: Any) -> Any:
        yield from []
        raise KeyboardInterrupt

    with StoreSCP(tmp_path / "scp") as scp:
        cx = build_context(first.SOPClassUID, str(dcmread(first.path).file_meta.TransferSyntaxUID))
        with open_association(scp.node, [cx], calling_ae="SENDER") as opened:
            assoc = opened.assoc
            context_id = int(assoc.accepted_contexts[0].context_id or 0)
            sender = store.Sender(assoc)
            monkeypatch.setattr(wire, "data_pdu_parts", broken)
            with pytest.raises(KeyboardInterrupt):
                sender.store_file(
                    first.path, first.SOPClassUID, first.SOPInstanceUID, context_id, 5
                )
            monkeypatch.setattr(wire, "data_pdu_parts", pdus)
            assert sender.broken == "interrupted"
            assert assoc.is_aborted and not assoc.is_established
            assert (
                sender.store_file(
                    first.path, first.SOPClassUID, first.SOPInstanceUID, context_id, 5
                )
                is None
            )  # refuses to reuse it
        res = dl.store(scp.node, [first.path], progress=False)
        assert isinstance(res, pd.DataFrame) and res.attrs["complete"]


def test_an_abort_while_a_sender_holds_the_socket_ends_at_once(
    tmp_path: Path, study: pd.DataFrame
) -> None:
    """pynetdicom's abort waits for the DUL thread to send the A-ABORT: a direct sender
    that still holds the socket (it never released it) must not make it wait forever."""
    need_peer("storescp")
    from pynetdicom.presentation import build_context

    from dicomlab.net.association import open_association

    first = study.iloc[0]
    with StoreSCP(tmp_path / "scp") as scp:
        cx = build_context(first.SOPClassUID, str(dcmread(first.path).file_meta.TransferSyntaxUID))
        with open_association(scp.node, [cx], calling_ae="SENDER") as opened:
            assoc = opened.assoc
            context_id = int(assoc.accepted_contexts[0].context_id or 0)
            sender = store.Sender(assoc)  # not used as a context manager: never released
            reply = sender.store_file(
                first.path, first.SOPClassUID, first.SOPInstanceUID, context_id, 5
            )
            assert reply is not None and reply.status == 0
            t0 = time.monotonic()
            assoc.abort()
            assert time.monotonic() - t0 < 3
            assert assoc.is_aborted and not assoc.dul.is_alive()
        res = dl.store(scp.node, [first.path], progress=False)
        assert isinstance(res, pd.DataFrame) and res.attrs["complete"]
