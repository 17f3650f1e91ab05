"""LocalPACS with worker processes: storage received on every core, nothing lost, nothing
indexed twice, nothing left running (dcmtk storescu as the senders)."""

from __future__ import annotations

import gc
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dicomlab as dl
from dicomlab.errors import ConfigError, ValidationError
from dicomlab.peers import free_port, peer_env
from dicomlab.server.workers import RESTARTS
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.tiny import tiny_instance

pytestmark = pytest.mark.peers

SENDERS = 4
PER_SENDER = 60
SHARED = 15
"""Instances every sender also sends (the same SOP Instance UIDs, at the same time)."""


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One folder per sender: its own instances, plus the shared ones."""
    base = tmp_path_factory.mktemp("senders")
    shared = [tiny_instance(9000, k) for k in range(SHARED)]
    out = []
    for s in range(SENDERS):
        folder = base / str(s)
        folder.mkdir()
        for k in range(PER_SENDER):
            (folder / f"own{k:03d}.dcm").write_bytes(tiny_instance(s, k))
        for k, data in enumerate(shared):
            (folder / f"shared{k:03d}.dcm").write_bytes(data)
        out.append(folder)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"  # a zombie is not running
    except (OSError, IndexError):
        return False


def _send_all(port: int, called: str, folders: list[Path]) -> list[subprocess.CompletedProcess]:
    exe = need_peer("storescu")
    procs = [
        subprocess.Popen(
            [exe, "-aet", f"SENDER{i}", "-aec", called, "+sd", "127.0.0.1", str(port), str(f)],
            env=peer_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, f in enumerate(folders)
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[dl.LocalPACS]:
    lp = dl.LocalPACS(tmp_path / "archive", port=0, allow_unknown="all", fsync=False, workers=2)
    with lp:
        assert lp.wait_for_workers(60), "the worker processes did not start"
        yield lp


def test_four_senders_at_once_lose_nothing_and_index_nothing_twice(
    pacs: dl.LocalPACS, folders: list[Path]
) -> None:
    results = _send_all(pacs.port, pacs.ae_title, folders)
    assert all(r.returncode == 0 for r in results), [r.stderr[-400:] for r in results]
    expected = SENDERS * PER_SENDER + SHARED
    db = sqlite3.connect(pacs.archive.root / "index.sqlite")
    rows, distinct = db.execute(
        'SELECT count(*), count(DISTINCT "SOPInstanceUID") FROM instances'
    ).fetchone()
    db.close()
    assert rows == distinct == expected
    held = pacs.instances()
    assert len(held) == expected
    assert all(Path(p).is_file() for p in held.path)
    files = list((pacs.archive.root / "files").rglob("*.dcm"))
    assert len(files) == expected  # no file without its row, none twice
    assert not list((pacs.archive.root / "files").rglob("*.tmp"))
    stats = pacs.stats
    # Every association went to a worker process, and its counters came back here.
    assert stats["to_workers"] == SENDERS
    assert stats["associations"] == SENDERS
    assert stats["stored"] == expected
    assert stats["stored"] + stats["duplicates"] == SENDERS * (PER_SENDER + SHARED)
    assert {c.ae_title for c in pacs.callers()} == {f"SENDER{i}" for i in range(SENDERS)}


def test_stop_leaves_no_process_and_frees_the_port(tmp_path: Path, folders: list[Path]) -> None:
    lp = dl.LocalPACS(tmp_path / "a", port=0, allow_unknown="all", fsync=False, workers=2)
    lp.start()
    assert lp.wait_for_workers(60)
    pids, port = lp.worker_pids, lp.port
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    # Senders still sending when it stops: their associations are ended, not waited for.
    exe = need_peer("storescu")
    senders = [
        subprocess.Popen(
            [exe, "-aec", lp.ae_title, "+sd", "127.0.0.1", str(port), str(f)],
            env=peer_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for f in folders
    ]
    time.sleep(0.3)
    t0 = time.monotonic()
    lp.stop()
    assert time.monotonic() - t0 < 5.0
    for s in senders:
        s.wait(30)
    assert not [p for p in pids if _alive(p)]
    with socket.socket() as probe:  # the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    assert not list((tmp_path / "a" / "files").rglob("*.tmp"))


def test_a_cell_run_again_leaves_nothing_behind(tmp_path: Path) -> None:
    """A notebook cell making a LocalPACS with workers on a fixed port, run twice: the
    first one (dropped, never stopped) gives its port and processes back."""
    port = free_port()
    first = dl.LocalPACS(tmp_path / "a", port=port, allow_unknown="all", workers=1).start()
    assert first.wait_for_workers(60)
    old = first.worker_pids
    del first
    gc.collect()
    second = dl.LocalPACS(tmp_path / "a", port=port, allow_unknown="all", workers=1).start()
    try:
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in old) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in old if _alive(p)]
        assert second.wait_for_workers(60)
        assert dl.echo(second.node).status == 0
    finally:
        second.stop()


def test_workers_end_when_their_owner_is_killed(tmp_path: Path) -> None:
    """SIGKILL the process owning a LocalPACS with workers: no worker outlives it."""
    script = (
        "import sys, dicomlab as dl\n"
        f"lp = dl.LocalPACS({str(tmp_path / 'k')!r}, port=0, workers=2).start()\n"
        "assert lp.wait_for_workers(60)\n"
        "print(*lp.worker_pids, flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "a worker outlived its owner"
    finally:
        owner.kill()
        owner.communicate(timeout=10)  # and its pipes closed


def test_what_workers_do_not_serve_is_served_here(
    pacs: dl.LocalPACS, folders: list[Path], tmp_path: Path
) -> None:
    """Queries, this process's own stores, and refused callers stay with the owner."""
    r = _send_all(pacs.port, pacs.ae_title, folders[:1])[0]
    assert r.returncode == 0, r.stderr
    handed = pacs.stats["to_workers"]
    found = dl.find(pacs.node, dl.Query.studies())
    assert len(found) == 2  # study 0 and the shared study
    extra = tmp_path / "extra.dcm"
    extra.write_bytes(tiny_instance(77, 0))
    out = dl.store(pacs.node, extra, progress=False)
    assert (out.status == 0).all()
    assert pacs.stats["to_workers"] == handed  # the C-FIND and our own C-STORE: not handed
    assert len(pacs.instances()) == PER_SENDER + SHARED + 1


def test_a_caller_that_may_not_store_is_refused_by_the_owner(
    tmp_path: Path, folders: list[Path]
) -> None:
    with dl.LocalPACS(tmp_path / "r", port=0, workers=1) as lp:  # unknown callers: echo only
        assert lp.wait_for_workers(60)
        r = _send_all(lp.port, lp.ae_title, folders[:1])[0]
        assert lp.stats["to_workers"] == 0
        assert len(lp.instances()) == 0
        assert lp.stats["associations"] == 1  # its association was served here, not handed
        assert r.returncode != 0  # storescu was told: refused, not stored


def test_a_dead_worker_costs_no_connection(pacs: dl.LocalPACS, folders: list[Path]) -> None:
    victim = pacs.worker_pids[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(victim) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # its owner notices its socket closing
    results = _send_all(pacs.port, pacs.ae_title, folders)
    assert all(r.returncode == 0 for r in results), [r.stderr[-400:] for r in results]
    assert len(pacs.instances()) == SENDERS * PER_SENDER + SHARED


def _replaced(pacs: dl.LocalPACS, victim: int, timeout: float = 30.0) -> list[int]:
    """The worker pids once ``victim`` has been reaped and the pool is whole again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = pacs.worker_pids
        whole = victim not in pids and len(pids) == 2 and all(_alive(p) for p in pids)
        if whole and pacs.wait_for_workers(max(0.1, deadline - time.monotonic())):
            return pids
        time.sleep(0.05)
    raise AssertionError(f"worker {victim} was not replaced: {pacs.worker_pids}")


def test_a_dead_worker_is_replaced_and_the_new_one_receives(
    pacs: dl.LocalPACS, folders: list[Path]
) -> None:
    victim = pacs.worker_pids[0]
    os.kill(victim, signal.SIGKILL)
    pids = _replaced(pacs, victim)
    assert not Path(f"/proc/{victim}").exists()  # reaped, no zombie left
    before = pacs.counters["to_workers"]
    results = _send_all(pacs.port, pacs.ae_title, folders)
    assert all(r.returncode == 0 for r in results), [r.stderr[-400:] for r in results]
    assert len(pacs.instances()) == SENDERS * PER_SENDER + SHARED
    assert pacs.counters["to_workers"] - before == SENDERS  # both workers took connections
    pacs.stop()
    assert not any(_alive(p) for p in pids)


def test_a_worker_dying_again_and_again_is_not_restarted_for_ever(pacs: dl.LocalPACS) -> None:
    for _ in range(RESTARTS):
        victim = pacs.worker_pids[0]
        os.kill(victim, signal.SIGKILL)
        _replaced(pacs, victim)
    victim = pacs.worker_pids[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim in pacs.worker_pids and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a replacement would be started by now
    assert len(pacs.worker_pids) == 1 and victim not in pacs.worker_pids
    assert dl.echo(pacs.node).ok  # the owner and the last worker still serve


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="workers"):
        dl.LocalPACS("/tmp/never-made", workers=-1)
    with pytest.raises(ValidationError, match="workers"):
        dl.LocalPACS("/tmp/never-made", workers="many")
    deid = dl.Deidentifier(secret="s" * 32)
    with pytest.raises(ConfigError, match="deidentify"):
        dl.LocalPACS("/tmp/never-made", workers=2, deidentify=deid)


def _request_pdu(contexts: list[str], role: str | None = None) -> bytes:
    """An A-ASSOCIATE-RQ as pynetdicom encodes it."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import (
        A_ASSOCIATE,
        MaximumLengthNotification,
        SCP_SCU_RoleSelectionNegotiation,
    )
    from pynetdicom.presentation import build_context
    from pynetdicom.transport import AddressInformation

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "CALLER"
    primitive.called_ae_title = "CALLED"
    primitive.calling_presentation_address = AddressInformation("127.0.0.1", 1)
    primitive.called_presentation_address = AddressInformation("127.0.0.1", 2)
    cxs = [build_context(uid) for uid in contexts]
    for i, cx in enumerate(cxs):
        cx.context_id = 2 * i + 1
    primitive.presentation_context_definition_list = cxs
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    items: list[object] = [length]
    if role is not None:
        item = SCP_SCU_RoleSelectionNegotiation()
        item.sop_class_uid = role
        item.scp_role = True
        items.append(item)
    primitive.user_information = items
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def test_the_association_request_is_read_as_pynetdicom_wrote_it() -> None:
    from dicomlab.net.wire import associate_request
    from dicomlab.server.workers import STORAGE_ONLY, VERIFICATION

    ct, find = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.2.2.1"
    rq = associate_request(_request_pdu([ct, VERIFICATION]))
    assert rq is not None
    assert (rq.called_ae, rq.calling_ae) == ("CALLED", "CALLER")
    assert rq.abstract_syntaxes == (ct, VERIFICATION) and not rq.role_selection
    assert set(rq.abstract_syntaxes) <= STORAGE_ONLY
    asked = associate_request(_request_pdu([ct, find], role=ct))
    assert asked is not None and asked.role_selection and find not in STORAGE_ONLY
    whole = _request_pdu([ct])
    assert associate_request(whole[:-1]) is None  # cut short: left to pynetdicom
    assert associate_request(b"\x02" + whole[1:]) is None  # not a request
