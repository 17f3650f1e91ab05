"""The event-driven reactors (dicomlab.net._fast): correct in both roles, idle when idle.

Every interoperability test already runs through the fast path; these tests pin the
properties it exists for: no lost responses under rapid small messages (pynetdicom
#875), no CPU burnt by idle associations, no leaked descriptors or threads, and an
off switch.
"""

from __future__ import annotations

import copy
import os
import resource
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

import dicomlab as dl
from dicomlab.net import _fast
from dicomlab.net._fast import channel, reads
from dicomlab.net._fast.state import FastState, state_of
from dicomlab.net.transport import DicomlabAE
from dicomlab.peers import StoreSCP, peer_env
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers


def _tiny(n: int) -> list[Dataset]:
    out = []
    for ds in dl.synth.generate(1, seed=3, modalities=("CT",), max_instances=1, image_size=8):
        for i in range(n):
            one = copy.deepcopy(ds)
            uid = dl.synth.uid(f"fastpath-{i}")
            one.SOPInstanceUID = one.file_meta.MediaStorageSOPInstanceUID = uid
            out.append(one)
        break
    return out


@contextmanager
def _association(port: int, called: str, timeout: float = 5.0) -> Iterator[Association]:
    ae = DicomlabAE(ae_title="FASTSCU")
    ae.dimse_timeout = timeout  # a lost response fails fast instead of hanging
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("peer", ["storescp", "localpacs"])
def test_rapid_small_stores_lose_no_response(peer: str, storescp: StoreSCP, tmp_path: Path) -> None:
    datasets = _tiny(400)
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        port, called = (
            (storescp.port, storescp.ae_title) if peer == "storescp" else (lp.port, lp.ae_title)
        )
        with _association(port, called) as assoc:
            assert _fast.is_installed(assoc)
            statuses = []
            for ds in datasets:
                rsp = assoc.send_c_store(ds)
                statuses.append(int(rsp.Status) if "Status" in rsp else None)
        assert statuses == [0] * len(datasets)
        if peer == "localpacs":
            assert len(lp.instances()) == len(datasets)


def test_a_request_after_the_connection_closed_fails_at_once(storescp: StoreSCP) -> None:
    """pynetdicom tells a sender of a closed connection once, through the message queue.
    A C-MOVE SCP that sends its next C-STORE before the association is marked aborted
    (its reactor had not run yet) must not wait dimse_timeout for an answer that cannot
    come: its requester saw no C-MOVE response for 30 s. The window is held open here by
    keeping the reactor paused, as a sender does."""
    ds = _tiny(1)[0]
    ae = DicomlabAE(ae_title="FASTSCU")
    ae.dimse_timeout = 20
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", storescp.port, ae_title=storescp.ae_title)
    assert assoc.is_established
    try:
        assoc._reactor_checkpoint.clear()
        deadline = time.monotonic() + 5
        while not assoc._is_paused and time.monotonic() < deadline:
            time.sleep(0.001)
        assert storescp.proc is not None
        storescp.proc.kill()  # the peer goes away: its side of the connection closes
        storescp.proc.wait()
        while assoc.dul.state_machine.current_state != "Sta1" and time.monotonic() < deadline:
            time.sleep(0.001)
        assert assoc.dul.state_machine.current_state == "Sta1"
        assert assoc.dimse.get_msg(block=False) == (None, None)  # the one notice, taken
        assert assoc.is_established  # not marked yet: the window a C-MOVE SCP fell into
        t0 = time.monotonic()
        status = assoc.send_c_store(ds)
        took = time.monotonic() - t0
    finally:
        assoc.abort()
    assert "Status" not in status  # no answer: the sub-operation fails
    assert took < 2, f"the C-STORE waited {took:.1f} s on a closed connection"


def test_both_roles_run_the_fast_path(tmp_path: Path) -> None:
    with (
        dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp,
        _association(lp.port, lp.ae_title) as assoc,
    ):
        assert _fast.is_installed(assoc)
        acceptors = lp.active_associations
        assert acceptors and all(_fast.is_installed(a) for a in acceptors)
        assert int(assoc.send_c_echo().Status) == 0


def test_the_fast_paths_state_is_one_typed_object_per_association(tmp_path: Path) -> None:
    """Beside the members privates.py lists, the fast path adds one attribute to an
    association (its FastState; the network log keeps its own record) and nothing to
    its DUL or socket."""
    with (
        dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp,
        _association(lp.port, lp.ae_title) as assoc,
    ):
        assert int(assoc.send_c_echo().Status) == 0
        for a in [assoc, *lp.active_associations]:
            assert isinstance(state_of(a), FastState)
            for owner in (a, a.dul, a.dul.socket):
                added = [k for k in vars(owner) if k.startswith(("_dl", "_dicomlab"))]
                assert sorted(added) == (
                    ["_dicomlab_fast", "_dicomlab_log"] if owner is a else []
                ), added
            assert state_of(a).message_id == 0  # pynetdicom sent the echo, not the direct path


def test_idle_associations_burn_no_cpu(tmp_path: Path) -> None:
    """Two idle associations (four reactor threads each side) for 2 s: near-zero CPU.

    pynetdicom's own loops wake every millisecond (measured here: 0.54 s, several times this
    budget); the fast path sleeps until something happens.
    """
    with (
        dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp,
        _association(lp.port, lp.ae_title) as a,
        _association(lp.port, lp.ae_title) as b,
    ):
        assert int(a.send_c_echo().Status) == 0 and int(b.send_c_echo().Status) == 0
        cpu0 = _cpu_s()
        time.sleep(2.0)
        used = _cpu_s() - cpu0
        assert int(a.send_c_echo().Status) == 0  # still alive and responsive
    assert used < 0.15, f"idle associations used {used:.3f} s of CPU in 2 s"


def test_associations_leave_no_descriptors_or_threads(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp:
        assert dl.echo(lp.node).ok  # warm up (imports, logging handlers)
        fds0, threads0 = _open_fds(), threading.active_count()
        for _ in range(30):
            r = dl.echo(lp.node)
            assert r.ok, r.detail
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and (
            _open_fds() > fds0 + 2 or threading.active_count() > threads0
        ):
            time.sleep(0.05)
        assert _open_fds() <= fds0 + 2
        assert threading.active_count() <= threads0


def test_release_ends_both_threads_promptly(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp:
        with _association(lp.port, lp.ae_title) as assoc:
            dul = assoc.dul
        t0 = time.monotonic()
        assoc.join(2)
        dul.join(2)
        assert not assoc.is_alive() and not dul.is_alive()
        assert time.monotonic() - t0 < 0.5


def test_switched_off_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DICOMLAB_FASTPATH", "0")
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all") as lp:
        with _association(lp.port, lp.ae_title) as assoc:
            assert not _fast.is_installed(assoc)
            for ds in _tiny(20):
                assert int(assoc.send_c_store(ds).Status) == 0
        assert len(lp.instances()) == 20


def _parse_pdus(stream: bytes) -> list[tuple[int, int, bytes]]:
    """(context id, control header, data) of each P-DATA-TF PDU in ``stream``."""
    out = []
    pos = 0
    while pos < len(stream):
        kind, _, length = struct.unpack_from(">BBI", stream, pos)
        assert kind == 0x04
        item_len, ctx, control = struct.unpack_from(">IBB", stream, pos + 6)
        assert item_len == length - 4  # one PDV item per PDU
        out.append((ctx, control, stream[pos + 12 : pos + 6 + length]))
        pos += 6 + length
    return out


@pytest.mark.parametrize("size", [0, 1, 16378, 16379, 100_000, 250_001])
@pytest.mark.parametrize("block", [64 * 1024, 4 * 1024 * 1024])
def test_file_pdus_carry_the_data_set_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, block: int
) -> None:
    monkeypatch.setattr(channel, "_PIECE", block)
    payload = bytes((i * 7) % 251 for i in range(size))
    path = tmp_path / "f.dcm"
    path.write_bytes(b"x" * 300 + payload)
    pdus = _parse_pdus(b"".join(channel.file_pdus(path, 300, 5, 16384)))
    assert b"".join(d for _, _, d in pdus) == payload
    assert all(ctx == 5 for ctx, _, _ in pdus)
    assert all(len(d) <= 16384 - 6 for _, _, d in pdus)
    assert [c for _, c, _ in pdus] == [0] * (len(pdus) - 1) + [2]  # data set; last flagged


def _pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">IBB", len(data) + 2, context_id, control) + data


def _pdata(*pdvs: bytes) -> bytearray:
    body = b"".join(pdvs)
    return bytearray(struct.pack(">BBI", 4, 0, len(body)) + body)


def test_only_pdus_that_continue_a_data_set_take_the_fast_branch() -> None:
    middle = _pdata(_pdv(1, 0, b"abc"), _pdv(1, 0, b""), _pdv(1, 0, b"de"))
    spans = reads.data_fragments(middle, len(middle))
    assert spans is not None
    assert b"".join(bytes(middle[a:b]) for a, b in spans) == b"abcde"
    # the last fragment of a data set, or any command fragment: pynetdicom's path
    for control in (2, 1, 3):
        pdu = _pdata(_pdv(1, 0, b"abc"), _pdv(1, control, b"x"))
        assert reads.data_fragments(pdu, len(pdu)) is None
    # an item length running past the PDU, or too short to hold its header: not ours
    bad = _pdata(_pdv(1, 0, b"abc"))
    bad[6:10] = struct.pack(">I", 100)
    assert reads.data_fragments(bad, len(bad)) is None
    short = _pdata(struct.pack(">IB", 1, 1))
    assert reads.data_fragments(short, len(short)) is None
    assert reads.data_fragments(_pdata(), 6) is None  # no PDV at all


@pytest.mark.peers
def _storescu_in_4k_pdus(lp: dl.LocalPACS, paths: list[str]) -> None:
    """dcmtk storescu sends ``paths`` into ``lp`` in PDUs of 4 KB (~100 per instance)."""
    args = ["storescu", "--max-send-pdu", "4096", "-aec", lp.ae_title, "127.0.0.1"]
    r = subprocess.run(
        [*args, str(lp.port), *paths],
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def test_small_pdus_from_dcmtk_arrive_whole_and_counted(tmp_path: Path) -> None:
    """storescu cut to 4 KB PDUs: ~100 fragments per instance, most through the fast branch."""
    need_peer("storescu")
    manifest = dl.synth.write_studies(tmp_path / "in", n_studies=1, seed=4, image_size=256)
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        _storescu_in_4k_pdus(lp, list(manifest.path))
        held = lp.instances().set_index("SOPInstanceUID")
        for row in manifest.itertuples():
            assert dcmread(held.loc[row.SOPInstanceUID, "path"]).PixelData == (
                dcmread(row.path).PixelData
            )
    dl.log.flush()
    assocs = dl.log.read_associations()
    scp = assocs[(assocs.role == "SCP") & (assocs.peer_ae == "STORESCU")].iloc[-1]
    sent = sum(Path(p).stat().st_size for p in manifest.path)
    # every byte that came in is counted (files minus their 132-byte preamble and file meta,
    # plus PDU and command overhead)
    assert 0.9 * sent < scp.bytes_received < 1.2 * sent


def test_fragmented_instances_are_written_byte_for_byte_from_the_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each C-STORE in ~100 fragments goes through the direct handler (no pynetdicom
    primitive, no copy of the data set) and its file holds exactly the bytes sent."""
    from dicomlab.net._fast.channel import dataset_offset
    from dicomlab.net.dimse import DIRECT_STORE
    from dicomlab.server import handlers

    need_peer("storescu")
    calls: list[int] = []
    direct = getattr(handlers.handle_store, DIRECT_STORE)

    def spy(received: object, *args: object) -> object:
        calls.append(len(received.parts))  # type: ignore[attr-defined]
        return direct(received, *args)

    monkeypatch.setattr(handlers.handle_store, DIRECT_STORE, spy)
    manifest = dl.synth.write_studies(tmp_path / "in", n_studies=1, seed=5, image_size=256)
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        _storescu_in_4k_pdus(lp, list(manifest.path))
        held = lp.instances().set_index("SOPInstanceUID")
    assert len(calls) == len(manifest) and min(calls) > 10  # every one direct, in pieces
    for row in manifest.itertuples():
        sent = Path(row.path).read_bytes()
        kept = Path(held.loc[row.SOPInstanceUID, "path"]).read_bytes()
        sent_at, kept_at = dataset_offset(sent), dataset_offset(kept)
        assert sent_at is not None and kept_at is not None
        assert kept[kept_at:] == sent[sent_at:]
