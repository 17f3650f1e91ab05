"""Servers started in-process always stop: port 0, clear port conflicts, idempotent stop."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time

import pytest

import dicomlab as dl
from dicomlab.server.lifecycle import VerificationServer


def _can_bind(port: int) -> bool:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_port_zero_picks_a_free_port_and_answers_echo() -> None:
    with VerificationServer("ZERO") as srv:
        assert srv.port > 0
        assert not _can_bind(srv.port)
        assert dl.echo(srv.node, calling_ae="T").ok
        assert srv.echoes == 1


def test_second_server_on_same_port_gives_clear_error() -> None:
    with VerificationServer("FIRST") as first:
        second = VerificationServer("SECOND", port=first.port)
        with pytest.raises(dl.ConfigError, match=f"port {first.port} .* already in use"):
            second.start()
        assert not second.running
        assert dl.echo(first.node, calling_ae="T").ok  # the first one is unharmed


def test_stop_is_idempotent_and_frees_the_port_at_once() -> None:
    srv = VerificationServer("TWICE").start()
    port = srv.port
    srv.stop()
    srv.stop()
    assert not srv.running
    assert _can_bind(port)
    again = VerificationServer("AGAIN", port=port).start()  # same port, at once
    try:
        assert dl.echo(again.node, calling_ae="T").ok
    finally:
        again.stop()


def test_stop_with_an_open_association_is_bounded() -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    srv = VerificationServer("BUSY").start()
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", srv.port, ae_title="BUSY")
    assert assoc.is_established
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not assoc.is_established  # the server aborted it
    assert _can_bind(srv.port)


def test_rerunning_a_cell_frees_the_port() -> None:
    # A notebook cell `srv = VerificationServer(port=P).start()` run twice: the first
    # object is dropped, and must not keep its port.
    srv = VerificationServer("CELL").start()
    port = srv.port
    srv = None
    gc.collect()
    srv2 = VerificationServer("CELL", port=port).start()
    try:
        assert dl.echo(srv2.node, calling_ae="T").ok
    finally:
        srv2.stop()


def test_interpreter_exit_stops_running_servers() -> None:
    code = (
        "from dicomlab.server.lifecycle import VerificationServer\n"
        "s = VerificationServer('EXIT').start()\n"
        "print(s.port, flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    port = int(proc.stdout.split()[0])
    assert _can_bind(port)
