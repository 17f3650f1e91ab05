"""One adapted association's socket, driven from the calling thread.

The base of every direct operation (:mod:`dicomlab.net._fast.store` sends and serves
C-STOREs, :mod:`dicomlab.net._fast.qr` runs C-FIND, C-GET and C-MOVE): a
:class:`Channel` parks the DUL thread, writes request PDUs and reads whole response
messages from the socket's read-ahead buffer, and ends the association with an
A-ABORT whenever an operation breaks off midway, so it is never reused after an
interrupted operation. Also here: the PDU blocks and file readers both directions
use, and :class:`Reply`, how one direct operation ended.

The state machine stays in Sta6 throughout (P-DATA in Sta6 changes no state, PS3.8
9.2). The network log is kept by :mod:`dicomlab.log.capture` directly; pynetdicom's
DIMSE and PDU debug-log lines are not emitted for these messages. Associations with
other handlers bound to DIMSE, PDU or data events keep pynetdicom's path.
"""

from __future__ import annotations

import itertools
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pynetdicom import evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)

from dicomlab.core import gather
from dicomlab.log import capture
from dicomlab.net import wire
from dicomlab.net._fast.reads import ReadAhead
from dicomlab.net._fast.state import Park, state_of

__all__ = [
    "Channel",
    "Reply",
    "blocks",
    "buffer_of",
    "dataset_offset",
    "file_pdus",
    "only_known_observers",
    "peer_max_pdu",
    "recv_more",
]


_PIECE = 4 << 20
_READ = 256 * 1024
_PARK_WAIT_S = 2.0


_WATCHED = (
    evt.EVT_DIMSE_RECV,
    evt.EVT_DIMSE_SENT,
    evt.EVT_PDU_RECV,
    evt.EVT_PDU_SENT,
    evt.EVT_DATA_RECV,
    evt.EVT_DATA_SENT,
)


_PYNETDICOM_LOGGERS = frozenset(
    {
        standard_dimse_recv_handler,
        standard_dimse_sent_handler,
        standard_pdu_recv_handler,
        standard_pdu_sent_handler,
    }
)


_ALLOWED = capture.observers() | _PYNETDICOM_LOGGERS


def only_known_observers(assoc: Any) -> bool:
    """True when nothing but the network log (and pynetdicom's debug log) watches
    the events the direct path does not fire."""
    return all(h in _ALLOWED for e in _WATCHED for h, _ in assoc.get_handlers(e))


def peer_max_pdu(assoc: Any) -> int:
    """The peer's maximum PDU length (0: no limit); kept once the association is
    established (it is negotiated then, and pynetdicom works it out on every ask)."""
    state = state_of(assoc)
    if state is not None and state.peer_max_pdu is not None:
        return state.peer_max_pdu
    got = int(getattr(assoc.dimse, "maximum_pdu_size", 0) or 0)
    if state is not None and assoc.is_established:
        state.peer_max_pdu = got
    return got


def buffer_of(assoc: Any) -> bytearray | None:
    """The read-ahead buffer of the association's socket (None: not adapted)."""
    sock = getattr(assoc.dul, "socket", None)
    return sock.read_ahead if isinstance(sock, ReadAhead) else None


def recv_more(sock: ReadAhead, timeout: float | None) -> bool | None:
    """Add what the socket has to ``sock``'s read-ahead buffer, waiting up to ``timeout``.

    True: bytes arrived; False: the connection is closed or broken; None: timed out.
    """
    raw = sock.socket
    if raw is None:
        return False
    pending = getattr(raw, "pending", None)
    if pending is None:  # plain TCP: take what is there without a select() first
        try:
            piece = raw.recv(_READ, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            piece = None
        except OSError:
            return False
        if piece is not None:
            if not piece:
                return False
            sock.read_ahead += piece
            return True
    if pending is None or not pending():  # nothing decrypted and waiting: wait for the socket
        try:
            ready, _, _ = select.select([raw], [], [], timeout)
        except (OSError, ValueError):
            return False
        if not ready:
            return None
    try:
        return bool(sock.fill(len(sock.read_ahead) + 1))
    except OSError:
        return False


def file_pdus(path: str | Path, offset: int, context_id: int, max_pdu: int) -> Iterator[bytes]:
    """P-DATA-TF PDUs carrying the data set stored in ``path`` from ``offset``, read in
    pieces of about 4 MB (each read releases the GIL: few large reads, not one per PDU)."""
    piece = (max_pdu - 6) if max_pdu else _PIECE
    block = max(piece, _PIECE - _PIECE % piece)
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(block)
        while True:
            following = f.read(block)
            yield from wire.data_pdus(context_id, data, max_pdu, last=not following)
            if not following:
                return
            data = following


def blocks(pdus: Iterable[bytes], limit: int | None = None) -> Iterator[bytes]:
    """The PDUs joined into writes of about ``limit`` bytes (default 4 MB): one write per
    block instead of one per PDU, while a large data set still streams."""
    limit = limit or _PIECE
    block: list[bytes] = []
    size = 0
    for pdu in pdus:
        block.append(pdu)
        size += len(pdu)
        if size >= limit:
            yield b"".join(block)
            block, size = [], 0
    if block:
        yield b"".join(block)


def dataset_offset(head: bytes | memoryview) -> int | None:
    """Where the data set starts in a DICOM file (PS3.10 7.1): after the preamble,
    ``DICM`` and the file meta group whose length (0002,0000) gives; None if the
    file does not start that way."""
    if len(head) < 144 or bytes(head[128:132]) != b"DICM":
        return None
    if bytes(head[132:138]) != b"\x02\x00\x00\x00UL" or bytes(head[138:140]) != b"\x04\x00":
        return None
    offset = 144 + int.from_bytes(head[140:144], "little")
    if len(head) >= offset + 2 and bytes(head[offset : offset + 2]) == b"\x02\x00":
        return None  # the group length does not cover the group
    return offset if offset <= len(head) else None


@dataclass(frozen=True, slots=True)
class Reply:
    """What came of one direct operation: a final status, or why there is none
    (``timed_out``: no response in time, we aborted; ``peer_ended``: the peer aborted
    or closed the connection)."""

    status: int | None
    error_comment: str | None = None
    error: str | None = None
    timed_out: bool = False
    peer_ended: bool = False


class Channel:
    """DIMSE messages on one adapted association, sent and read from the calling thread.

    Use as a context manager around a run of operations: the first one parks the DUL
    thread and :meth:`release` hands the socket back (before any pynetdicom operation
    on the same association, and on exit). Anything that breaks an operation midway
    aborts the association and marks the channel :attr:`broken`: it is never reused.
    """

    def __init__(self, assoc: Any) -> None:
        self.assoc = assoc
        self._state = state_of(assoc)
        self._park: Park | None = self._state.park if self._state is not None else None
        self._parked = False
        self.broken: str | None = None

    @property
    def usable(self) -> bool:
        return (
            self._park is not None
            and self.broken is None
            and buffer_of(self.assoc) is not None
            and self.assoc.is_established
            and only_known_observers(self.assoc)
        )

    @property
    def peer_max_pdu(self) -> int:
        """The peer's maximum PDU length (0: no limit)."""
        return peer_max_pdu(self.assoc)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _message_id(self) -> int:
        """The next message ID on this association (1 to 65535, then round again)."""
        assert self._state is not None
        self._state.message_id = mid = self._state.message_id % 0xFFFF + 1
        return mid

    def _hold(self) -> bool:
        if self._parked:
            return True
        park, state = self._park, self._state
        if park is None or state is None:
            return False
        park.resume.clear()
        park.requested = True
        state.wake_dul()
        if not park.parked.wait(_PARK_WAIT_S) or not self.assoc.is_established:
            park.requested = False
            park.resume.set()
            return False
        self._parked = True
        return True

    def release(self) -> None:
        """Let the DUL thread have the socket again."""
        if not self._parked or self._park is None:
            return
        self._parked = False
        self._park.requested = False
        self._park.resume.set()
        timer = getattr(self.assoc.dul, "_idle_timer", None)
        if timer is not None:
            timer.restart()

    def _fail(self, reason: str, abort: bool = True, timed_out: bool = False) -> Reply:
        self.broken = reason
        self.release()
        if abort and self.assoc.is_established:
            self.assoc.abort()
        else:  # the DUL now reads the peer's abort (or the closed connection) we left it
            deadline = time.monotonic() + 1.0
            while self.assoc.is_established and time.monotonic() < deadline:
                time.sleep(0.005)
        return Reply(None, error=reason, timed_out=timed_out, peer_ended=not abort)

    def _send(self, blobs: Iterable[bytes]) -> Reply | None:
        """Write ``blobs`` to the socket; a failed :class:`Reply` if the connection broke."""
        raw = self.assoc.dul.socket.socket
        sent = 0
        try:
            for blob in blobs:
                raw.sendall(blob)
                sent += len(blob)
        except OSError as exc:
            return self._fail(f"the connection broke while sending: {exc}")
        finally:
            capture.count_bytes(self.assoc, sent=sent)
        return None

    def _next(
        self,
        wanted: tuple[int, ...],
        limit: int,
        timeout: float | None,
        what: str,
        on_wait: Callable[[bytearray, wire.MessageScan], None] | None = None,
    ) -> wire.MessageScan | Reply:
        """Wait up to ``timeout`` for the next whole message, one of ``wanted``; its scan
        (the bytes stay in the buffer up to ``scan.pos``), or a failed :class:`Reply`.
        ``on_wait`` is called with the buffer and the scan before each wait for more."""
        sock = self.assoc.dul.socket
        buf = sock.read_ahead
        deadline = None if timeout is None else time.monotonic() + timeout
        scan = wire.MessageScan(limit, wanted=wanted)
        while True:
            need = scan.feed(buf)
            if need == 0:
                return scan
            if need is None:
                kind = buf[0] if buf else None
                if kind == 0x07:
                    return self._fail("the peer aborted the association", abort=False)
                if kind == 0x05:
                    return self._fail("the peer asked to release the association mid-operation")
                if scan.too_large:
                    return self._fail(
                        f"a message over {limit >> 20} MB, more than the direct path holds in "
                        "memory (DICOMLAB_FASTPATH=0 takes pynetdicom's path)"
                    )
                return self._fail(f"the peer answered with something other than a {what}")
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return self._fail(f"no {what} within {timeout:g} s", timed_out=True)
            if on_wait is not None:
                on_wait(buf, scan)
            got = recv_more(sock, wait)
            if got is False:
                return self._fail("the peer closed the connection", abort=False)

    def _operate(self, operation: Callable[[int], Reply]) -> Reply | None:
        """Run ``operation(message_id)`` with the DUL parked; None if it cannot be parked
        (nothing sent). An exception or interrupt aborts the association, then propagates.
        Callers check :attr:`usable` first."""
        if not self._hold():
            return None
        mid = self._message_id()
        try:
            return operation(mid)
        except BaseException:  # mid-message: the association cannot be reused
            self._fail("interrupted")
            raise

    def _request(self, context_id: int, command: bytes, data: Iterable[bytes]) -> Reply | None:
        """Write a request: its command set, then the P-DATA-TF PDUs of its data set."""
        head = wire.command_pdu(context_id, command, self.peer_max_pdu)
        return self._send(blocks(itertools.chain([head], data)))

    def _request_gathered(
        self, context_id: int, command: bytes, data: bytes | memoryview
    ) -> Reply | None:
        """:meth:`_request` for a data set held in memory, its PDUs written in one gathered
        write (``sendmsg``: their heads and views of ``data``, nothing copied); joined
        blocks where the socket cannot gather (TLS)."""
        raw = self.assoc.dul.socket.socket
        max_pdu = self.peer_max_pdu
        if isinstance(raw, ssl.SSLSocket) or not hasattr(raw, "sendmsg"):
            return self._request(context_id, command, wire.data_pdus(context_id, data, max_pdu))
        head = wire.command_pdu(context_id, command, max_pdu)
        pieces = [head, *wire.data_pdu_parts(context_id, data, max_pdu)]
        views = [memoryview(p) for p in pieces]
        try:
            sent = gather.write_all(raw.sendmsg, views)
        except OSError as exc:
            return self._fail(f"the connection broke while sending: {exc}")
        finally:
            for view in views:
                view.release()
        capture.count_bytes(self.assoc, sent=sent)
        return None

    def _response(
        self,
        wanted: tuple[int, ...],
        mid: int,
        limit: int,
        timeout: float | None,
        service: str,
        on_wait: Callable[[bytearray, wire.MessageScan], None] | None = None,
    ) -> wire.MessageScan | Reply:
        """The next message, one of ``wanted``, as :meth:`_next`; a response (to ``service``,
        whose request was message ``mid``) for another message, or without a status,
        ends the association. Requests in ``wanted`` pass as they are."""
        scan = self._next(wanted, limit, timeout, f"{service} response", on_wait)
        if isinstance(scan, Reply):
            return scan
        command = scan.command
        assert command is not None
        is_response = bool((command.command_field or 0) & 0x8000)
        if is_response and (command.responded_to != mid or command.status is None):
            return self._fail(f"a {service}-RSP for message {command.responded_to}, not {mid}")
        return scan

    def _consume(self, scan: wire.MessageScan) -> None:
        del self.assoc.dul.socket.read_ahead[: scan.pos]
        capture.count_bytes(self.assoc, received=scan.pos)
