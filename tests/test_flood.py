"""Idle connections cannot starve LocalPACS: the next honest caller is always served.

A flood in another process holds 200 TCP connections from one address that never send
an A-ASSOCIATE-RQ, re-opening each as soon as it is dropped, for 30 s, against a
LocalPACS allowing 4 associations. Meanwhile dcmtk's echoscu and storescu and dl.find
from the same address, and a hand-built echo from 127.0.0.2, must each be served
within 2 s. (dcmtk's storescp is blocked by a single such connection.)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread

import dicomlab as dl
from dicomlab.peers import peer_env
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.raw import A_ASSOCIATE_AC, A_RELEASE_RP, RawAssociation

FLOOD_S = 30.0
_FLOOD = textwrap.dedent(
    """
    import select, socket, sys, time
    port, n, seconds, source = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    def connect():
        s = socket.socket()
        s.setblocking(False)
        s.bind((source, 0))
        s.connect_ex(("127.0.0.1", port))
        return s
    socks = [connect() for _ in range(n)]
    opened = n
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        readable, _, _ = select.select(socks, [], [], 0.05)
        for s in readable:  # the server dropped it (or reset it): open another at once
            try:
                gone = s.recv(1) == b""
            except OSError:
                gone = True
            if gone:
                socks.remove(s)
                s.close()
                socks.append(connect())
                opened += 1
    for s in socks:
        s.close()
    print(opened)
    """
)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _fd_targets() -> list[str]:
    """What each open descriptor is (for the message of a failed check)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(f"{fd}: {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(f"{fd}: gone")
    return out


def _timed(what: str, call: object, times: dict[str, float]) -> None:
    t0 = time.monotonic()
    assert callable(call)
    call()
    times[what] = time.monotonic() - t0


@pytest.mark.peers
@pytest.mark.slow
def test_a_flood_of_idle_connections_never_locks_out_the_next_caller(tmp_path: Path) -> None:
    echoscu, storescu = need_peer("echoscu"), need_peer("storescu")
    folder = tmp_path / "fifty"
    dl.synth.write_studies(folder, n_studies=5, seed=2, max_instances=10, modalities=("CT",))
    files = sorted(folder.rglob("*.dcm"))[:50]
    assert len(files) == 50
    n_studies = len({dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in files})
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all", max_associations=4) as lp:
        assert dl.echo(lp.node).ok
        threads0, fds0 = threading.active_count(), _fds()
        flood = subprocess.Popen(
            [sys.executable, "-c", _FLOOD, str(lp.port), "200", str(FLOOD_S), "127.0.0.1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        times: dict[str, float] = {}
        try:
            deadline = time.monotonic() + 10
            while lp.stats["pending"] < 100 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert lp.stats["pending"] >= 100, lp.stats  # the flood is in

            def echo() -> None:
                r = subprocess.run(
                    [echoscu, "-aet", "HONEST", "-aec", lp.ae_title, "127.0.0.1", str(lp.port)],
                    capture_output=True,
                    text=True,
                    env=peer_env(),
                    timeout=30,
                )
                assert r.returncode == 0, r.stdout + r.stderr

            def store() -> None:
                r = subprocess.run(
                    [storescu, "-aet", "HONEST", "-aec", lp.ae_title, "127.0.0.1", str(lp.port)]
                    + [str(f) for f in files],
                    capture_output=True,
                    text=True,
                    env=peer_env(),
                    timeout=60,
                )
                assert r.returncode == 0, r.stdout + r.stderr

            def find() -> None:
                assert len(dl.find(lp.node, dl.Query.studies())) == n_studies

            def other_address() -> None:
                with RawAssociation(lp.port, source="127.0.0.2", timeout=5) as raw:
                    verification = [("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])]
                    assert raw.associate("HONEST2", lp.ae_title, verification) == A_ASSOCIATE_AC
                    assert raw.release() == A_RELEASE_RP

            rounds = 0
            while flood.poll() is None and rounds < 3:
                for name, call in (
                    ("echoscu", echo),
                    ("storescu x50", store),
                    ("dl.find", find),
                    ("raw echo from 127.0.0.2", other_address),
                ):
                    _timed(name, call, times)
                    assert times[name] < 2.0, times
                rounds += 1
                time.sleep(5)
            assert rounds >= 2, "the flood ended before the honest callers were tried twice"
            assert flood.poll() is None, "the flood must still be running at the last check"
        finally:
            out, _ = flood.communicate(timeout=FLOOD_S + 30)
        reopened = int(out.strip() or 0)
        logging.getLogger(__name__).info(
            "flood re-opened %d connections; honest callers took %s", reopened, times
        )
        assert reopened > 400, f"the flood re-opened only {reopened} connections"
        assert len(lp.instances()) == 50
        assert lp.stats["dropped"] > 0
        deadline = time.monotonic() + 10
        while (
            lp.stats["pending"] or threading.active_count() > threads0 or _fds() > fds0 + 2
        ) and time.monotonic() < deadline:  # a file the log's writer has open for a moment
            time.sleep(0.1)
        assert lp.stats["pending"] == 0
        assert threading.active_count() <= threads0, threading.enumerate()
        assert _fds() <= fds0 + 2, _fd_targets()
    dl.log.flush()
    rows = dl.log.read_associations(since="today")
    summaries = rows[rows.error.fillna("").str.startswith("dropped ")]
    assert 1 <= len(summaries) <= 5, summaries[["peer_host", "error"]]  # bounded: a row a minute
    assert (summaries.peer_host == "127.0.0.1").all()


def test_the_server_panel_counts_waiting_and_dropped_connections(tmp_path: Path) -> None:
    import socket

    limits = dl.PendingLimits(total=8, per_address=3, first_pdu_s=30)
    with dl.LocalPACS(tmp_path / "pacs", port=0, pending=limits) as lp:
        panel = dl.widgets.ServerPanel(lp, refresh_s=0.1)
        idle = [socket.create_connection(("127.0.0.1", lp.port)) for _ in range(5)]
        try:
            deadline = time.monotonic() + 5
            want = "connections waiting to associate 3 · dropped 2"
            while want not in panel.counters.value and time.monotonic() < deadline:
                time.sleep(0.05)
            assert want in panel.counters.value, panel.counters.value
            assert dl.echo(lp.node).ok  # the newest caller is served
        finally:
            for s in idle:
                s.close()
            panel.close()


def test_pending_limits_refuse_nonsense() -> None:
    with pytest.raises(dl.ValidationError, match="per_address 9"):
        dl.PendingLimits(total=8, per_address=9)
    with pytest.raises(dl.ValidationError, match="first_pdu_s 0"):
        dl.PendingLimits(first_pdu_s=0)
    with pytest.raises(dl.ConfigError, match="PendingLimits"):
        dl.LocalPACS("unused", pending=3)  # type: ignore[arg-type]


def test_a_connection_silent_past_first_pdu_s_is_dropped_and_summarised(tmp_path: Path) -> None:
    import socket

    limits = dl.PendingLimits(first_pdu_s=0.5)
    with dl.LocalPACS(tmp_path / "pacs", port=0, pending=limits) as lp:
        with socket.create_connection(("127.0.0.1", lp.port), timeout=5) as s:
            t0 = time.monotonic()
            assert s.recv(1) == b""  # closed by the server
            assert 0.4 < time.monotonic() - t0 < 2.0
        assert lp.stats["dropped"] == 1 and lp.stats["pending"] == 0
    dl.log.flush()
    rows = dl.log.read_associations(since="today")
    (error,) = rows[rows.error.fillna("").str.startswith("dropped ")].error
    assert error == (
        "dropped 1 connection before any A-ASSOCIATE-RQ: 1 no A-ASSOCIATE-RQ within 0.5 s"
    )


def test_a_request_that_arrives_in_pieces_is_served(tmp_path: Path) -> None:
    """The gate waits for the whole first PDU (without spinning on the part it has)."""
    from dicomlab.testing.raw import associate_rq

    request = associate_rq("SLOWPOKE", "DICOMLAB", [("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])])
    with dl.LocalPACS(tmp_path / "pacs", port=0) as lp:
        with RawAssociation(lp.port) as raw:
            for piece in (request[:1], request[1:4], request[4:40], request[40:]):
                raw.sock.sendall(piece)
                time.sleep(0.2)
            assert raw.read_pdu()[0] == A_ASSOCIATE_AC
            assert raw.release() == A_RELEASE_RP
        assert lp.stats["dropped"] == 0


def test_idle_connections_on_the_tls_port_cannot_starve_it(tmp_path: Path) -> None:
    """The same gate on the TLS port: silent TCP connections, cut-short ClientHellos and a
    client that finished its handshake and then says nothing take no association slot."""
    import socket
    import ssl

    certs = dl.tls.make_demo_certificates(tmp_path / "certs")
    limits = dl.PendingLimits(total=64, per_address=16, first_pdu_s=5)
    with dl.LocalPACS(
        tmp_path / "pacs",
        port=0,
        tls=certs.server(),
        tls_port=0,
        max_associations=1,
        pending=limits,
    ) as lp:
        assert lp.tls_port is not None
        held: list[socket.socket] = []
        try:
            for _ in range(40):
                held.append(socket.create_connection(("127.0.0.1", lp.tls_port)))
            half = socket.create_connection(("127.0.0.1", lp.tls_port))
            half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # cut short
            held.append(half)
            context = ssl.create_default_context(cafile=str(certs.ca))
            quiet = context.wrap_socket(
                socket.create_connection(("127.0.0.1", lp.tls_port)), server_hostname="localhost"
            )  # handshake done, no A-ASSOCIATE-RQ: handed to pynetdicom, holds no slot
            held.append(quiet)
            t0 = time.monotonic()
            r = dl.echo(lp.tls_node)
            assert r.ok, r.detail
            assert time.monotonic() - t0 < 2
            assert lp.stats["dropped"] >= 40 - 16
        finally:
            for s in held:
                s.close()


def test_a_start_that_fails_on_the_tls_port_leaves_no_gate_running(tmp_path: Path) -> None:
    certs = dl.tls.make_demo_certificates(tmp_path / "certs")
    with dl.LocalPACS(tmp_path / "first", port=0) as first:
        second = dl.LocalPACS(tmp_path / "second", port=0, tls=certs.server(), tls_port=first.port)
        with pytest.raises(dl.ConfigError, match="already in use"):
            second.start()  # the plain port opened, then the TLS port was taken
        assert not second.running
        gates = [t for t in threading.enumerate() if t.name.endswith("-gate")]
        assert len(gates) == 1, gates  # only the first server's
