"""Direct C-STORE: storage messages handled by one thread, outside pynetdicom's DIMSE layer.

pynetdicom moves every DIMSE message through three threads (the DUL reading PDUs,
the association's reactor serving requests, the caller waiting for responses) and
builds primitives and pydicom datasets for each command. For the bulk of storage
traffic (thousands of C-STORE requests of the same shape) that per-message cost is
most of the time: dcmtk does the same work in one thread. Here, on associations
that :mod:`dicomlab.net.fastpath` adapted:

* **Receiving** (:func:`serve_store`, called by the DUL thread when a new message
  starts): when the buffered bytes hold a whole, plain C-STORE-RQ (command then
  data set on one accepted context, at most :data:`_MESSAGE_LIMIT` bytes), the DUL
  thread itself calls the association's ``EVT_C_STORE`` handler with a pynetdicom
  ``C_STORE`` primitive and writes the C-STORE-RSP to the socket. Nothing is
  consumed until the message is known to be plain; anything else (other services,
  unusual framing, an abort, larger data sets) is left to pynetdicom as before.
* **Sending** (:class:`Sender`): the caller parks the DUL thread (it stops touching
  the socket), writes each file's command and data PDUs itself and reads the
  response itself, then un-parks it. A response that does not come in time, a
  peer that aborts, an interrupt (Ctrl-C) or any error mid-message end the
  association with an A-ABORT: it is never reused after an interrupted operation.

The state machine stays in Sta6 throughout (P-DATA in Sta6 changes no state, PS3.8
9.2). The network log is kept by :mod:`dicomlab.log.capture` directly; pynetdicom's
DIMSE and PDU debug-log lines are not emitted for these messages. Associations
with other handlers bound to DIMSE, PDU or data events keep pynetdicom's path.
Set ``DICOMLAB_FASTPATH=0`` to turn this off with the rest of the fast path.
"""

from __future__ import annotations

import io
import itertools
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.dimse_primitives import C_STORE

from dicomlab.log import capture
from dicomlab.net import guard, wire

__all__ = [
    "Channel",
    "Park",
    "Reply",
    "Sender",
    "blocks",
    "dataset_offset",
    "file_pdus",
    "serve_scanned",
    "serve_store",
]

log = logging.getLogger(__name__)

_MESSAGE_LIMIT = 64 << 20
"""Largest C-STORE message handled directly (larger ones stream through pynetdicom)."""
_RESPONSE_LIMIT = 1 << 20
_FILE_LIMIT = 64 << 20
"""Largest file sent from memory; larger files are sent in pieces of about 4 MB."""
_PIECE = 4 << 20
_READ = 256 * 1024
_TICK_S = 0.05
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


def _only_known_observers(assoc: Any) -> bool:
    """True when nothing but the network log (and pynetdicom's debug log) watches
    the events the direct path does not fire."""
    allowed = capture.observers() | _PYNETDICOM_LOGGERS
    return all(h in allowed for e in _WATCHED for h, _ in assoc.get_handlers(e))


def _peer_max_pdu(assoc: Any) -> int:
    return int(getattr(assoc.dimse, "maximum_pdu_size", 0) or 0)


def _recv_more(sock: Any, timeout: float | None) -> bool | None:
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
            sock._dl_buffer += piece
            return True
    if pending is None or not pending():  # nothing decrypted and waiting: wait for the socket
        try:
            ready, _, _ = select.select([raw], [], [], timeout)
        except (OSError, ValueError):
            return False
        if not ready:
            return None
    try:
        return bool(sock.fill(len(sock._dl_buffer) + 1))
    except OSError:
        return False


# -- receiving: in the DUL thread ----------------------------------------------------------


def _store_status(result: Any) -> tuple[int, str | None]:
    """The handler's return value as (status, error comment), as pynetdicom validates it."""
    if isinstance(result, Dataset):
        if "Status" not in result:
            log.error("the EVT_C_STORE handler returned a Dataset without a Status")
            return 0xC001, None
        comment = result.get("ErrorComment")
        return int(result.Status), str(comment) if comment else None
    if isinstance(result, int):
        return result, None
    log.error("the EVT_C_STORE handler returned an invalid status: %r", result)
    return 0xC002, None


def _request(command: wire.Command, context_id: int, data: io.BytesIO) -> C_STORE:
    req = C_STORE()
    req.MessageID = command.message_id
    req.AffectedSOPClassUID = command.sop_class
    req.AffectedSOPInstanceUID = command.sop_instance
    req.Priority = command.priority if command.priority in (0, 1, 2) else 2
    if command.move_originator_ae:
        req.MoveOriginatorApplicationEntityTitle = command.move_originator_ae
    if command.move_originator_id is not None:
        req.MoveOriginatorMessageID = command.move_originator_id
    req.DataSet = data
    req._context_id = context_id
    return req


def serve_store(dul: Any) -> bool:
    """Serve the next message if it is a plain C-STORE-RQ (DUL thread, Sta6, no message
    in progress); False leaves every byte to pynetdicom."""
    assoc = dul.assoc
    serves = getattr(assoc, "_dl_serves_store", None)
    if serves is None:  # a requestor without an SCP-role context never gets a C-STORE-RQ
        serves = not assoc.is_requestor or any(cx.as_scp for cx in assoc.accepted_contexts)
        assoc._dl_serves_store = serves
    sock = dul.socket
    buf = getattr(sock, "_dl_buffer", None)
    if not serves or buf is None or assoc._sent_release or not _only_known_observers(assoc):
        return False
    scan = wire.MessageScan(_MESSAGE_LIMIT)
    while True:
        need = scan.feed(buf)
        if need is None:
            return False
        if need == 0:
            break
        got = _recv_more(sock, _TICK_S)
        if got is False:
            return False  # pynetdicom reads what is left and reports the closed connection
        if dul._kill_thread or not dul.to_provider_queue.empty():
            return False  # stop, or send (an abort) first: the bytes stay buffered
    served = serve_scanned(assoc, scan)
    if served is False:
        dul.event_queue.put("Evt17")  # transport connection closed, as pynetdicom
    return served is not None


def serve_scanned(assoc: Any, scan: wire.MessageScan) -> bool | None:
    """Serve the whole C-STORE-RQ ``scan`` found at the start of the socket's buffer:
    call the association's ``EVT_C_STORE`` handler and write the C-STORE-RSP.

    None: not servable here (a context that does not match, a value pynetdicom's
    primitive refuses), nothing consumed. True: served. False: served, but the
    connection broke before the response was written.
    """
    sock = assoc.dul.socket
    buf = sock._dl_buffer
    command, context_id = scan.command, int(scan.context_id or 0)
    assert command is not None
    cx = assoc._accepted_cx.get(context_id)
    if (
        cx is None
        or str(cx.abstract_syntax) != command.sop_class
        or (assoc.is_requestor and not cx.as_scp)
        or command.message_id is None
        or guard.command_problem(command) is not None
    ):
        return None  # pynetdicom answers (or, for a bad command set, aborts: net/guard.py)
    data = io.BytesIO()
    with memoryview(buf) as view:
        for start, stop in scan.spans:
            data.write(view[start:stop])
    try:
        req = _request(command, context_id, data)
    except (TypeError, ValueError):
        return None  # a value pynetdicom's primitive refuses: its path reports it
    del buf[: scan.pos]
    capture.count_bytes(assoc, received=scan.pos)
    mid = command.message_id
    sop_class, sop_instance = command.sop_class or "", command.sop_instance or ""
    capture.direct_request(
        assoc, "SCP", "C-STORE", mid, sop_class, sop_instance, context_id, data.getbuffer().nbytes
    )
    try:
        result = evt.trigger(assoc, evt.EVT_C_STORE, {"request": req, "context": cx.as_tuple})
    except Exception:
        log.exception("exception in the handler bound to EVT_C_STORE")
        result = 0xC211
    status, comment = _store_status(result)
    pdu = wire.command_pdu(
        context_id,
        wire.store_response(mid, sop_class, sop_instance, status, comment),
        _peer_max_pdu(assoc),
    )
    try:
        sock.socket.sendall(pdu)
    except (OSError, AttributeError):
        return False
    capture.count_bytes(assoc, sent=len(pdu))
    capture.direct_response(assoc, "SCP", mid, status, comment=comment)
    return True


# -- sending: in the caller's thread, the DUL parked ------------------------------------------


class Park:
    """The DUL thread's parking place: while parked it does not touch the socket."""

    def __init__(self) -> None:
        self.requested = False
        self.parked = threading.Event()
        self.resume = threading.Event()

    def hold(self, dul: Any, tick: float) -> None:
        """Called by the DUL loop: wait here while parking is requested (or until killed)."""
        self.parked.set()
        try:
            while self.requested and not self.resume.wait(tick):
                if dul._kill_thread:
                    return
        finally:
            self.parked.clear()


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
        dul = assoc.dul
        self._park: Park | None = getattr(dul, "_dl_park", None)
        self._parked = False
        self.broken: str | None = None

    @property
    def usable(self) -> bool:
        return (
            self._park is not None
            and self.broken is None
            and self.assoc.is_established
            and _only_known_observers(self.assoc)
        )

    @property
    def peer_max_pdu(self) -> int:
        """The peer's maximum PDU length (0: no limit)."""
        return _peer_max_pdu(self.assoc)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _message_id(self) -> int:
        """The next message ID on this association (1 to 65535, then round again)."""
        mid = int(getattr(self.assoc, "_dl_message_id", 0)) % 0xFFFF + 1
        self.assoc._dl_message_id = mid
        return mid

    def _hold(self) -> bool:
        if self._parked:
            return True
        park, dul = self._park, self.assoc.dul
        if park is None:
            return False
        park.resume.clear()
        park.requested = True
        dul._dl_wake_now()
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
        self, wanted: tuple[int, ...], limit: int, timeout: float | None, what: str
    ) -> wire.MessageScan | Reply:
        """Wait up to ``timeout`` for the next whole message, one of ``wanted``; its scan
        (the bytes stay in the buffer up to ``scan.pos``), or a failed :class:`Reply`."""
        sock = self.assoc.dul.socket
        buf = sock._dl_buffer
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
            got = _recv_more(sock, wait)
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

    def _response(
        self,
        wanted: tuple[int, ...],
        mid: int,
        limit: int,
        timeout: float | None,
        service: str,
    ) -> wire.MessageScan | Reply:
        """The next message, one of ``wanted``, as :meth:`_next`; a response (to ``service``,
        whose request was message ``mid``) for another message, or without a status,
        ends the association. Requests in ``wanted`` pass as they are."""
        scan = self._next(wanted, limit, timeout, f"{service} response")
        if isinstance(scan, Reply):
            return scan
        command = scan.command
        assert command is not None
        is_response = bool((command.command_field or 0) & 0x8000)
        if is_response and (command.responded_to != mid or command.status is None):
            return self._fail(f"a {service}-RSP for message {command.responded_to}, not {mid}")
        return scan

    def _consume(self, scan: wire.MessageScan) -> None:
        del self.assoc.dul.socket._dl_buffer[: scan.pos]
        capture.count_bytes(self.assoc, received=scan.pos)


class Sender(Channel):
    """Sends files as C-STOREs on one adapted association, from the calling thread."""

    def store_file(
        self,
        path: str | Path,
        sop_class: str,
        sop_instance: str,
        context_id: int,
        timeout: float | None,
    ) -> Reply | None:
        """Send the data set of the file at ``path`` as stored; None if it cannot go this
        way (the caller then uses pynetdicom). Raises only what the caller's thread
        is interrupted with, after aborting the association."""
        if not self.usable:
            return None
        try:
            size = Path(path).stat().st_size
            with open(path, "rb") as f:
                content = f.read(size if size <= _FILE_LIMIT else 65536)
        except OSError:
            return None  # pynetdicom's path reports the file error as before
        offset = dataset_offset(content)
        if offset is None:
            return None
        return self._operate(
            lambda mid: self._exchange(
                path, content, offset, size, sop_class, sop_instance, context_id, mid, timeout
            )
        )

    def _exchange(
        self,
        path: str | Path,
        content: bytes,
        offset: int,
        size: int,
        sop_class: str,
        sop_instance: str,
        context_id: int,
        mid: int,
        timeout: float | None,
    ) -> Reply:
        assoc = self.assoc
        max_pdu = _peer_max_pdu(assoc)
        capture.direct_request(
            assoc, "SCU", "C-STORE", mid, sop_class, sop_instance, context_id, size - offset
        )
        pdus = (
            wire.data_pdus(context_id, memoryview(content)[offset:], max_pdu)
            if size <= _FILE_LIMIT
            else file_pdus(path, offset, context_id, max_pdu)
        )
        failed = self._request(context_id, wire.store_request(mid, sop_class, sop_instance), pdus)
        if failed is not None:
            return failed
        scan = self._response((wire.C_STORE_RSP,), mid, _RESPONSE_LIMIT, timeout, "C-STORE")
        if isinstance(scan, Reply):
            return scan
        command = scan.command
        assert command is not None and command.status is not None
        self._consume(scan)
        capture.direct_response(assoc, "SCU", mid, command.status)
        return Reply(command.status, command.error_comment)
