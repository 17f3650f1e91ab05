"""Event-driven reactors for pynetdicom associations: the one place dicomlab changes its threads.

pynetdicom 3.0 runs two polling loops per association:

* the DUL thread checks the socket and the queue of outgoing primitives, and
  sleeps 1 ms whenever a pass found nothing to do;
* the association thread sleeps 1 ms at the top of every pass, then looks for an
  incoming DIMSE message to serve.

Each request/response pair therefore waits on the order of a millisecond or two in
sleeps on each side; with large instances over loopback that is most of the time
(measured: plain pynetdicom ~180-290 instances/s where dcmtk does ~700/s). Its
reactor pause is also racy (pynetdicom issue #875: a response can be taken by the
reactor and lost), which :func:`dicomlab.net.transport.quiesce` works around at a
cost of a few milliseconds per message.

:func:`install` adapts one association before it starts, without touching any
class or global state:

* the DUL's idle pass blocks in ``select()`` on the peer's socket and a wake-up
  socket that is poked whenever a primitive is queued for sending (so both
  incoming PDUs and outgoing requests are handled at once, and an idle
  association costs no CPU);
* each DIMSE message is encoded into its P-DATA-TF PDUs by the sending thread and
  handed to the DUL as one block written with one ``sendall`` (pynetdicom queues
  every 16 KB PDU separately, ~70 us of hand-offs each); blocks are capped at
  4 MB so a large file is still streamed;
* socket reads ask for 256 KB at a time and serve PDUs from that buffer, instead of
  pynetdicom's 4 KB pieces and two reads per PDU;
* P-DATA-TF PDUs that only continue a data set being received are written into
  it directly (no PDU objects, no state-machine pass); the PDU that ends a message
  and every other PDU go through pynetdicom;
* the association's reactor waits on an event set when a DIMSE message or a
  release/abort arrives, instead of sleeping, and pauses without the race: it only
  reports itself paused while it is blocked, and checks the pause request again
  after every wake-up, before it touches the message queue.

One pynetdicom option is set for the whole process when this module is imported:
``_config.STORE_SEND_CHUNKED_DATASET`` (a C-STORE of a file path streams the file's
bytes as stored instead of decoding and re-encoding the dataset; dicomlab only sends
a path when the peer accepted the file's own transfer syntax).

Plain C-STORE messages go further (:mod:`dicomlab.net.direct`): the DUL thread
serves a whole incoming C-STORE-RQ itself, and ``dl.store`` parks the DUL thread
(:class:`dicomlab.net.direct.Park`, checked at the top of each transport check)
while it writes requests and reads responses on the socket from its own thread.

Everything else (state machine, PDU codec, other DIMSE services, handlers) is
pynetdicom's own.
Every private pynetdicom member this relies on is listed in :mod:`dicomlab.net.privates`;
if one is missing the fast path stays off.
The behaviour is covered by the interoperability tests (dcmtk and Orthanc, both
roles), which all run through this module. Set ``DICOMLAB_FASTPATH=0`` to turn it off
(then pynetdicom runs as shipped, with :func:`quiesce` guarding the race).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import select
import socket
import ssl
import threading
import weakref
from collections.abc import Callable, Iterator
from types import MethodType
from typing import Any

from pynetdicom import _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from dicomlab.net import direct, privates, wire

__all__ = ["enabled", "install", "is_installed", "shutdown_and_close"]

log = logging.getLogger(__name__)

_config.STORE_SEND_CHUNKED_DATASET = True

_RAW_CONTEXT = 0
"""Marks a block of pre-encoded PDUs: presentation context IDs are odd, never 0."""

_TICK_S = 0.05
"""Longest idle wait: bounds how late timers (ARTIM, idle) and thread exits are seen."""


def enabled() -> bool:
    """Whether new associations get the event-driven reactors: ``DICOMLAB_FASTPATH`` is
    not off, and this pynetdicom has every private member they rely on
    (:func:`dicomlab.net.privates.problems`)."""
    if os.environ.get("DICOMLAB_FASTPATH", "1") in ("0", "false", "no", "off"):
        return False
    return not privates.problems()


def is_installed(assoc: Association) -> bool:
    return bool(getattr(assoc, "_dl_fastpath", False))


class _WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue that calls ``wake()`` after each put."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._wake()


class _WakingEvent(threading.Event):
    """The reactor's pause checkpoint; setting it also wakes the idle reactor."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.set()


class _Waker:
    """A socket pair the DUL thread selects on, poked when there is something to send."""

    def __init__(self) -> None:
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)
        self.w.setblocking(False)
        self.closed = False
        self.waiting = False  # the DUL is (about to be) blocked in select()

    def poke(self) -> None:
        if self.closed or not self.waiting:
            return
        try:
            self.w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already poked (buffer full) or closing: the DUL will wake anyway

    def drain(self) -> None:
        try:
            while self.r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:  # idempotent
        self.closed = True
        self.r.close()
        self.w.close()


def install(assoc: Association, sock: Any = None) -> None:
    """Give ``assoc`` event-driven DUL and association reactors (before it starts).

    ``sock`` is its AssociationSocket when not yet set on the association.
    """
    if not enabled() or is_installed(assoc) or assoc.is_alive():
        return
    a: Any = assoc  # instance attributes are replaced below: untyped on purpose
    dul: Any = a.dul
    if dul.is_alive() or not dul.to_provider_queue.empty():
        return  # too late to swap queues safely: leave pynetdicom's loops
    waker = _Waker()
    weakref.finalize(dul, waker.close)  # if the association never starts

    # DUL: wake on queued primitives, block on the socket when idle.
    dul.to_provider_queue = _WakingQueue(waker.poke)
    dul._run_loop_delay = 0  # the idle wait happens in the transport check below
    transport_event = dul._is_transport_event
    dul._is_transport_event = MethodType(_dul_transport_event(transport_event, waker), dul)
    dul.kill_dul = _kill_dul(dul, waker)
    dul.stop_dul = _stop_dul(dul, waker)
    dul._dl_park = direct.Park()
    dul._dl_wake_now = lambda: _force_poke(waker)
    a.dimse.send_msg = _send_msg(a)
    dul._send = _dul_send(dul, dul._send)
    sock = sock if sock is not None else dul.socket
    if sock is not None:
        _buffered(sock)
    dul._read_pdu_data = _read_pdu(dul, dul._read_pdu_data)
    target = dul._target

    def run_dul() -> None:
        try:
            target()
        finally:
            waker.close()

    dul._target = run_dul

    # Association: wake on DIMSE messages, release/abort and pause changes.
    wake = threading.Event()
    a._dl_wake = wake
    a.dimse.msg_queue = _WakingQueue(wake.set)
    dul.to_user_queue = _WakingQueue(wake.set)
    checkpoint = _WakingEvent(wake)
    checkpoint.set()
    a._reactor_checkpoint = checkpoint
    a._run_reactor = MethodType(_association_reactor, assoc)
    a._dl_fastpath = True


def _pdata_tf(pdata: P_DATA) -> bytes:
    """Encode a P-DATA primitive as P-DATA-TF PDUs (pynetdicom gives one PDV per primitive;
    each PDV's data starts with its message control header)."""
    return b"".join(
        wire.pdu(context_id, data[0], memoryview(data)[1:])
        for context_id, data in pdata.presentation_data_value_list
    )


def _send_msg(assoc: Any) -> Callable[[Any, int], None]:
    """pynetdicom's ``DIMSEServiceProvider.send_msg``, handing the DUL blocks of PDUs.

    A data set sent from a file (``STORE_SEND_CHUNKED_DATASET``) is read in reads of up
    to a block, not pynetdicom's one read per PDU: each read releases the GIL, and
    getting it back behind the DUL thread costs far more than the read.
    """
    dimse = assoc.dimse

    def send_msg(primitive: Any, context_id: int) -> None:
        if primitive.MessageIDBeingRespondedTo is None:
            message = _RQ_TO_MESSAGE[primitive.__class__]()
        else:
            message = _RSP_TO_MESSAGE[primitive.__class__]()
        message.primitive_to_message(primitive)
        message.context_id = context_id
        evt.trigger(assoc, evt.EVT_DIMSE_SENT, {"message": message})
        max_pdu = dimse.maximum_pdu_size
        from_file = getattr(message, "_data_set_path", None)
        if from_file is not None and max_pdu:
            message._data_set_path = None  # command only from pynetdicom; the file below
        pdus: Iterator[bytes] = (
            _pdata_tf(pdata) for pdata in message.encode_msg(context_id, max_pdu)
        )
        if from_file is not None and max_pdu:
            file_pdus = direct.file_pdus(from_file[0], from_file[1], context_id, max_pdu)
            pdus = itertools.chain(pdus, file_pdus)
        for blob in direct.blocks(pdus):
            _queue_block(assoc.dul, blob)
        # The network timeout is for an idle association: one streaming a long answer is
        # not (pynetdicom restarts it only for PDUs received, and aborted a 70,000-match
        # C-FIND at the next check once it had taken more than network_timeout to send).
        assoc.dul._idle_timer.restart()

    return send_msg


def _queue_block(dul: Any, blob: bytes) -> None:
    raw = P_DATA()
    raw.presentation_data_value_list = [[_RAW_CONTEXT, blob]]  # type: ignore[list-item]
    dul.send_pdu(raw)


def _dul_send(dul: Any, original: Callable[[Any], None]) -> Callable[[Any], None]:
    """The DUL's PDU writer: blocks of pre-encoded PDUs go out with one ``sendall``."""

    def send(pdu: Any) -> None:
        items = getattr(pdu, "presentation_data_value_items", None)
        if (
            not isinstance(pdu, P_DATA_TF)
            or not items
            or items[0].presentation_context_id != _RAW_CONTEXT
        ):
            original(pdu)
            return
        blob = items[0].presentation_data_value
        sock = getattr(dul.socket, "socket", None)
        if sock is None:
            log.warning("attempted to send data over a closed connection")
            return
        try:
            sock.sendall(blob)
        except OSError:
            dul.event_queue.put("Evt17")  # transport connection closed, as pynetdicom
            return
        evt.trigger(dul.assoc, evt.EVT_DATA_SENT, {"data": blob})

    return send


_READ_AHEAD = 256 * 1024
"""Bytes asked of the socket per read: a read serves many PDUs (each read releases the GIL,
and getting it back behind the other threads costs more than the read)."""
_MAX_READ = 1 << 20
"""Cap per read, so a hostile declared length (up to 4 GiB) grows memory only as bytes
really arrive."""


class _ReadAhead:
    """Mixed into an AssociationSocket's class: buffered reads, and ``ready`` that knows."""

    socket: Any
    _dl_buffer: bytearray
    tls_error: ssl.SSLError | None = None

    @property
    def ready(self) -> bool:
        if self._dl_buffer and self.socket is not None and getattr(self, "_is_connected", False):
            return True
        return bool(super().ready)  # type: ignore[misc]

    def fill(self, nr_bytes: int) -> bool:
        """Read until the buffer holds ``nr_bytes``; False if the connection broke first."""
        buf = self._dl_buffer
        while len(buf) < nr_bytes:
            want = min(max(nr_bytes - len(buf), _READ_AHEAD), _MAX_READ)
            try:
                piece = self.socket.recv(want)
            except ssl.SSLError as exc:  # a TLS alert (e.g. "certificate required"): keep it
                self.tls_error = exc
                raise
            if not piece:
                return False
            buf += piece
        return True

    def recv(self, nr_bytes: int) -> bytearray:
        """``AssociationSocket.recv``: ``nr_bytes`` (fewer only if the connection broke)."""
        buf = self._dl_buffer
        self.fill(nr_bytes)  # a broken connection returns what arrived, as pynetdicom does
        out = buf[:nr_bytes]
        del buf[:nr_bytes]
        return out

    def _shutdown_socket(self) -> None:
        shutdown_and_close(self.socket)


def shutdown_and_close(sock: Any) -> None:
    """pynetdicom's ``_shutdown_socket``, but the socket is closed even when shutdown fails.

    pynetdicom skips ``close()`` when ``shutdown()`` raises (a connection the peer
    already broke, e.g. after a TLS alert), leaking the file descriptor.
    """
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


_FAST_PDU_MAX = 4 << 20
"""Largest P-DATA-TF PDU read by :func:`_read_pdu`'s fast branch (larger: pynetdicom's path)."""


def _data_fragments(buf: bytearray, end: int) -> list[tuple[int, int]] | None:
    """Spans of the PDVs of the P-DATA-TF PDU in ``buf[:end]`` if all are data-set fragments
    that do not end their message (control header xxxxxx00); else None."""
    spans = []
    pos = 6
    while pos < end:
        if pos + 6 > end:
            return None
        item_end = pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
        if item_end > end or item_end < pos + 6 or buf[pos + 5] & 0x03:
            return None
        spans.append((pos + 6, item_end))
        pos = item_end
    return spans or None


def _read_pdu(dul: Any, original: Callable[[], None]) -> Callable[[], None]:
    """pynetdicom's ``_read_pdu_data``, with a fast branch for the bulk of a data set.

    A P-DATA-TF PDU whose fragments all continue the data set of the DIMSE message
    being received (established association, command set already complete, no event
    pending) is written straight into that message's data set: no PDU or primitive
    objects, no state-machine pass (the transition is Sta6 -> Sta6 with nothing else
    to do). Every other PDU, including the one that ends a message, takes
    pynetdicom's path, so message completion, events and errors are pynetdicom's own.
    Peers that cap PDUs at 16 KB (Orthanc's default) send ~35 of these per 512x512
    image.
    """

    def fast_one(sock: Any, buf: bytearray, message: Any) -> bool:
        """Consume the next PDU if it only continues ``message``'s data set."""
        if not sock.fill(6) or buf[0] != 0x04:
            return False
        end = 6 + int.from_bytes(buf[2:6], "big")
        if end > _FAST_PDU_MAX or not sock.fill(end):
            return False
        spans = _data_fragments(buf, end)
        if spans is None:
            return False
        target = message._data_set_file or message.data_set
        with memoryview(buf) as view:
            for start, stop in spans:
                target.write(view[start:stop])
            if dul.assoc.get_handlers(evt.EVT_DATA_RECV):
                evt.trigger(dul.assoc, evt.EVT_DATA_RECV, {"data": bytes(view[:end])})
        if message._data_set_file:
            message._data_set_file.file.flush()
        del buf[:end]
        return True

    def read() -> None:
        sock = dul.socket
        if dul.state_machine.current_state == "Sta13":
            # After our A-ABORT we only wait for the peer to close, for the ARTIM time.
            # A peer that stays connected mid-PDU (an HTTP client after "GET / ...")
            # must not block this read forever: the timeout reads as a closed connection.
            raw = getattr(sock, "socket", None)
            if raw is not None:
                try:
                    raw.settimeout(max(0.1, float(dul.artim_timer.remaining)))
                except (OSError, TypeError, ValueError):
                    pass
            original()
            return
        buf = getattr(sock, "_dl_buffer", None)
        message = dul.assoc.dimse.message
        if (
            message is None
            and buf is not None
            and dul.state_machine.current_state == "Sta6"
            and dul.event_queue.empty()
            and direct.serve_store(dul)
        ):
            return
        if (
            buf is None
            or message is None
            or getattr(message, "command_set", None) is None
            or dul.state_machine.current_state != "Sta6"
            or not dul.event_queue.empty()
        ):
            original()
            return
        # Consume data fragments while they are next (already buffered or on the socket),
        # then hand the first other PDU to pynetdicom.
        while fast_one(sock, buf, message):
            if not buf and not sock.ready:
                return
            if dul._kill_thread or not dul.to_provider_queue.empty():
                return  # let the reactor send or stop between PDUs
        original()

    return read


_BUFFERED: dict[type, type] = {}


def _buffered(sock: Any) -> None:
    """Give ``sock`` (an AssociationSocket, before use) read-ahead, by a per-class subclass."""
    cls = type(sock)
    sub = _BUFFERED.get(cls)
    if sub is None:
        sub = _BUFFERED[cls] = type(f"ReadAhead{cls.__name__}", (_ReadAhead, cls), {})
    sock._dl_buffer = bytearray()
    sock.__class__ = sub


def _force_poke(waker: _Waker) -> None:
    """Wake the DUL now, wherever it waits (even between its checks of the flag)."""
    waker.waiting = True
    waker.poke()


def _signal_stop(dul: Any, waker: _Waker) -> None:
    """Set the DUL's kill flag and wake it now, wherever it waits."""
    dul._kill_thread = True
    _force_poke(waker)


def _kill_dul(dul: Any, waker: _Waker) -> Callable[[], None]:
    return lambda: _signal_stop(dul, waker)


def _stop_dul(dul: Any, waker: _Waker) -> Callable[[], bool]:
    """pynetdicom's ``stop_dul`` (stop if idle, Sta1), waking the DUL instead of spinning."""

    def stop_dul() -> bool:
        if dul.state_machine.current_state != "Sta1":
            return False
        _signal_stop(dul, waker)
        if threading.current_thread() is not dul:
            dul.join()
        return True

    return stop_dul


def _dul_transport_event(original: Callable[[], bool], waker: _Waker) -> Callable[[Any], bool]:
    """pynetdicom's transport check, blocking (up to a tick) when there is nothing to do."""

    def check(dul: Any) -> bool:
        park: direct.Park = dul._dl_park
        if park.requested:  # a direct sender has the socket: leave it alone
            park.hold(dul, _TICK_S)
            return False
        if original():
            return True
        # Set "waiting" before the last look at the queues: a put after that look
        # sees the flag and pokes; a put before it is seen by the look.
        waker.waiting = True
        if dul._kill_thread or not dul.event_queue.empty() or not dul.to_provider_queue.empty():
            waker.waiting = False
            return False
        sock = getattr(dul.socket, "socket", None)
        watch: list[Any] = [waker.r]
        if sock is not None and getattr(dul.socket, "_is_connected", False):
            watch.append(sock)
        try:
            select.select(watch, [], [], _TICK_S)
        except (OSError, ValueError):
            pass  # socket closed under us: pynetdicom's own check reports it
        waker.waiting = False
        waker.drain()
        return bool(original())

    return check


def _association_reactor(assoc: Any) -> None:
    """pynetdicom's acceptor/requestor reactor loop, waiting on events instead of sleeping."""
    wake: threading.Event = assoc._dl_wake
    checkpoint: threading.Event = assoc._reactor_checkpoint
    while not assoc._kill:
        # Paused only while blocked; the pause request is checked after each wake-up,
        # before the message queue is touched (no lost responses, pynetdicom #875).
        assoc._is_paused = False
        if not checkpoint.is_set():
            assoc._is_paused = True
            checkpoint.wait()
            continue
        wake.clear()
        context_id, msg = assoc.dimse.get_msg(block=False)
        if msg:
            assoc._serve_request(msg, context_id)
            continue
        if assoc.is_established and assoc.acse.is_release_requested():
            assoc._dl_ending = True  # its slot is free (DicomlabAE) once the peer has our reply
            assoc.acse.send_release(is_response=True)
            log.debug("association released by the peer")
            assoc.is_released = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_RELEASED, {})
            assoc.kill()
            return
        if assoc.acse.is_aborted():
            assoc.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires
            assoc.is_aborted = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_ABORTED, {})
            assoc.kill()
            return
        if not assoc.dul.is_alive():
            assoc.kill()
            return
        if assoc.dul.idle_timer_expired():
            log.error("network timeout reached on %s", assoc.name)
            if assoc.network_timeout_response == "A-RELEASE":
                assoc.release()
            else:
                assoc.abort()
            assoc.kill()
            return
        # Idle: blocked, so a sender may go ahead; re-checked after the wait.
        assoc._is_paused = True
        wake.wait(_TICK_S)
