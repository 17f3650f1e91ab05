"""Connections that have not asked for an association yet: held apart, bounded, never starving.

A TCP connection costs a server nothing to open and, in pynetdicom's model, a thread
and (until it sends its A-ASSOCIATE-RQ) an association slot to keep: 16 idle
connections were enough to lock every caller out of a LocalPACS, and a single one
blocks dcmtk's storescp. Here a new connection waits in the :class:`Gate` instead,
with no thread of its own (one selector thread serves them all), and is handed to
pynetdicom only once its first PDU has arrived whole (on the TLS port: once its
handshake is done and its first bytes arrived). While it waits:

* it has :attr:`PendingLimits.first_pdu_s` to send that PDU, or it is dropped;
* at most :attr:`PendingLimits.total` connections wait at once, and at most
  :attr:`PendingLimits.per_address` from one address. A newcomer past a limit is always
  admitted: the oldest waiting connection is dropped to make room (from the
  newcomer's address when that address is over its share, else from the address
  holding the most), so a flood cannot lock out the next honest caller;
* dropped connections are counted (:attr:`Gate.counters`) and summarised, per
  address, in the network log by :func:`dicomlab.log.capture.connections_dropped`
  (a row per address and minute at most, whatever the flood's size).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import struct
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dicomlab.errors import ValidationError
from dicomlab.log import capture

__all__ = ["Gate", "PendingLimits"]

log = logging.getLogger(__name__)

_PEEK_MAX = 256 * 1024
"""A first PDU larger than this is handed over unchecked (pynetdicom reads and judges it)."""
_PARK_S = 0.01
"""How long a connection whose first PDU arrived in part waits before the next look."""
_SUMMARY_S = 60.0
"""Dropped connections from one address are logged as one row per this many seconds."""


@dataclass(frozen=True, slots=True)
class PendingLimits:
    """Bounds on connections waiting for their first PDU (see :mod:`dicomlab.server.gate`)."""

    total: int = 512
    per_address: int = 128
    first_pdu_s: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.total <= 10_000:
            raise ValidationError(f"pending total {self.total!r} must be in 1-10000")
        if not 1 <= self.per_address <= self.total:
            raise ValidationError(
                f"pending per_address {self.per_address!r} must be in 1-{self.total}"
            )
        if not 0.1 <= self.first_pdu_s <= 600:
            raise ValidationError(f"first_pdu_s {self.first_pdu_s!r} must be in 0.1-600 seconds")


@dataclass(slots=True)
class _Waiting:
    sock: socket.socket
    address: Any
    deadline: float
    tls: ssl.SSLSocket | None = None
    handshaken: bool = False
    parked_until: float | None = None
    """Set while out of the selector: part of its first PDU is buffered (which keeps the
    socket readable), so it is looked at again after :data:`_PARK_S`, not in a spin."""


@dataclass(slots=True)
class _Summary:
    n: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class Gate:
    """Holds new connections until their first PDU arrives, then calls ``ready`` with them.

    Parameters
    ----------
    ready
        Called (in the gate's thread) with ``(socket, address)`` of a connection whose
        first PDU is waiting in its buffer: start serving it (it is blocking again).
    limits
        The bounds.
    tls_context
        On a TLS port: the handshake is done here, without blocking anyone.
    local_ae
        Our AE title, for the network log.
    """

    def __init__(
        self,
        ready: Callable[[socket.socket, Any], None],
        limits: PendingLimits,
        tls_context: ssl.SSLContext | None,
        local_ae: str,
    ) -> None:
        self._ready = ready
        self.limits = limits
        self._tls = tls_context
        self._local_ae = local_ae
        self._selector = selectors.DefaultSelector()
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()  # oldest first
        self._by_address: Counter[str] = Counter()
        self._incoming: list[tuple[socket.socket, Any]] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._summaries: dict[str, _Summary] = {}
        self._logged_at: dict[str, float] = {}
        self.counters: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name=f"dicomlab-{local_ae}-gate")
        self._thread.daemon = True
        self._thread.start()

    # -- called from the accepting thread -------------------------------------------------
    def add(self, sock: socket.socket, address: Any) -> None:
        """A newly accepted connection: wait for its first PDU."""
        with self._lock:
            if self._stopping:
                _close(sock)
                return
            self._incoming.append((sock, address))
        self._poke()

    @property
    def pending(self) -> int:
        """Connections waiting now."""
        return len(self._waiting) + len(self._incoming)

    def stop(self, timeout: float = 5.0) -> None:
        """Drop every waiting connection and end the gate's thread (idempotent)."""
        with self._lock:
            self._stopping = True
        self._poke()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the gate's thread ------------------------------------------------------------------
    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    stopping, incoming, self._incoming = self._stopping, self._incoming, []
                if stopping:
                    for sock, _ in incoming:
                        _close(sock)
                    break
                for sock, address in incoming:
                    self._admit(sock, address)
                self._expire()
                timeout = self._next_deadline()
                for key, events in self._selector.select(timeout):
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    self._progress(key.data, events)
        except Exception:  # pragma: no cover - a bug here must not leave sockets open
            log.exception("connection gate of %s failed", self._local_ae)
        finally:
            for waiting in list(self._waiting.values()):
                self._drop(waiting, "server stopping", log_it=False)
            self._flush_summaries(force=True)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _admit(self, sock: socket.socket, address: Any) -> None:
        host = _host(address)
        limits = self.limits
        if self._by_address[host] >= limits.per_address:
            self._drop(self._oldest(host), "crowded out by newer connections from its address")
        elif len(self._waiting) >= limits.total:
            busiest = self._by_address.most_common(1)[0][0]
            self._drop(self._oldest(busiest), "crowded out: too many connections waiting")
        try:
            sock.setblocking(False)
            tls = None
            if self._tls is not None:
                tls = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            log.info("connection from %s failed before its first PDU: %s", address, exc)
            _close(sock)
            return
        waiting = _Waiting(tls or sock, address, time.monotonic() + limits.first_pdu_s, tls=tls)
        self._waiting[id(waiting)] = waiting
        self._by_address[host] += 1
        self.counters["accepted"] += 1
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if tls is not None else 0)
        self._selector.register(waiting.sock, mask, waiting)
        if tls is not None:
            self._progress(waiting, selectors.EVENT_READ)  # start the handshake

    def _oldest(self, host: str) -> _Waiting:
        return next(w for w in self._waiting.values() if _host(w.address) == host)

    def _progress(self, waiting: _Waiting, events: int) -> None:
        if id(waiting) not in self._waiting:
            return
        if waiting.tls is not None and not waiting.handshaken:
            self._handshake(waiting)
            return
        if waiting.tls is not None:
            if waiting.tls.pending() or events & selectors.EVENT_READ:
                self._hand_over(waiting)
            return
        try:
            head = waiting.sock.recv(_PEEK_MAX, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            head = b""
        if not head:
            self._forget(waiting)
            _close(waiting.sock)  # closed before asking anything: a port probe
            return
        if head[0] != 0x01:
            self._hand_over(waiting)  # not an A-ASSOCIATE-RQ: pynetdicom answers an A-ABORT
            return
        if len(head) >= 6:
            (length,) = struct.unpack_from(">I", head, 2)
            if len(head) >= 6 + length or len(head) >= _PEEK_MAX:
                self._hand_over(waiting)
                return
        # Only part of the request is here: look again shortly (it stays readable meanwhile).
        self._selector.unregister(waiting.sock)
        waiting.parked_until = time.monotonic() + _PARK_S

    def _handshake(self, waiting: _Waiting) -> None:
        assert waiting.tls is not None
        try:
            waiting.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(waiting.sock, selectors.EVENT_READ, waiting)
            return
        except ssl.SSLWantWriteError:
            self._selector.modify(waiting.sock, selectors.EVENT_WRITE, waiting)
            return
        except (OSError, ValueError) as exc:  # ssl.SSLError, reset: this client only
            log.info("TLS handshake with %s failed: %s", waiting.address, exc)
            capture.handshake_failed(self._local_ae, waiting.address, exc)
            self._forget(waiting)
            _close(waiting.sock)
            return
        waiting.handshaken = True
        self._selector.modify(waiting.sock, selectors.EVENT_READ, waiting)
        if waiting.tls.pending():
            self._hand_over(waiting)

    def _hand_over(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        try:
            waiting.sock.setblocking(True)
        except OSError:
            _close(waiting.sock)
            return
        self.counters["handed_over"] += 1
        try:
            self._ready(waiting.sock, waiting.address)
        except Exception:
            log.exception("cannot serve the connection from %s", waiting.address)
            _close(waiting.sock)

    def _forget(self, waiting: _Waiting) -> None:
        if self._waiting.pop(id(waiting), None) is None:
            return
        host = _host(waiting.address)
        self._by_address[host] -= 1
        if self._by_address[host] <= 0:
            del self._by_address[host]
        if waiting.parked_until is None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(waiting.sock)

    def _drop(self, waiting: _Waiting, reason: str, log_it: bool = True) -> None:
        self._forget(waiting)
        self.counters["dropped"] += 1  # counted before the peer can see the close
        if log_it:
            self._summarise(_host(waiting.address), reason)
        _close(waiting.sock)

    def _expire(self) -> None:
        now = time.monotonic()
        for waiting in list(self._waiting.values()):
            if waiting.deadline <= now:
                if waiting.tls is not None and not waiting.handshaken:
                    what = "TLS handshake"
                else:
                    what = "A-ASSOCIATE-RQ"
                self._drop(waiting, f"no {what} within {self.limits.first_pdu_s:g} s")
            elif waiting.parked_until is not None and waiting.parked_until <= now:
                waiting.parked_until = None
                self._selector.register(waiting.sock, selectors.EVENT_READ, waiting)
        self._flush_summaries()

    def _next_deadline(self) -> float:
        times = [w.deadline for w in self._waiting.values()]
        times += [w.parked_until for w in self._waiting.values() if w.parked_until is not None]
        wait = min(times) - time.monotonic() if times else _SUMMARY_S
        if self._summaries:
            wait = min(wait, 1.0)
        return max(0.005, min(wait, _SUMMARY_S))

    # -- the network log: bounded summaries -------------------------------------------------
    def _summarise(self, host: str, reason: str) -> None:
        summary = self._summaries.setdefault(host, _Summary())
        summary.n += 1
        summary.reasons[reason] += 1

    def _flush_summaries(self, force: bool = False) -> None:
        """One log row per address and :data:`_SUMMARY_S` at most, however many drops."""
        now = time.monotonic()
        for host, last in list(self._logged_at.items()):
            if now - last >= _SUMMARY_S and host not in self._summaries:
                del self._logged_at[host]
        for host, summary in list(self._summaries.items()):
            if force or now - self._logged_at.get(host, now - _SUMMARY_S) >= _SUMMARY_S:
                del self._summaries[host]
                self._logged_at[host] = now
                why = "; ".join(f"{n} {reason}" for reason, n in summary.reasons.most_common())
                capture.connections_dropped(self._local_ae, host, summary.n, why)


def _host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
