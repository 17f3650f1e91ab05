"""The event-driven reactors: :func:`install` adapts one association's DUL and reactor
threads before it starts (the package docstring, :mod:`dicomlab.net._fast`, says how
and why)."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import select
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from pynetdicom import _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from dicomlab.net import wire
from dicomlab.net._fast import privates, reads, store
from dicomlab.net._fast.channel import blocks, file_pdus
from dicomlab.net._fast.state import FastState, Park, attach, state_of

__all__ = ["enabled", "install", "is_ending", "is_installed"]

log = logging.getLogger(__name__)

_config.STORE_SEND_CHUNKED_DATASET = True


_RAW_CONTEXT = 0
"""Marks a block of pre-encoded PDUs: presentation context IDs are odd, never 0."""

_TICK_S = 0.05
"""Longest idle wait: bounds how late timers (ARTIM, idle) and thread exits are seen."""


def enabled() -> bool:
    """Whether new associations get the event-driven reactors: ``DICOMLAB_FASTPATH`` is
    not off, and this pynetdicom has every private member they rely on
    (:func:`dicomlab.net._fast.privates.problems`)."""
    if os.environ.get("DICOMLAB_FASTPATH", "1") in ("0", "false", "no", "off"):
        return False
    return not privates.problems()


def is_installed(assoc: Association) -> bool:
    return state_of(assoc) is not None


def is_ending(assoc: Association) -> bool:
    """Whether the peer asked to release an adapted association and our reply is going."""
    state = state_of(assoc)
    return state is not None and state.ending


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
    state = FastState(wake_dul=lambda: _force_poke(waker))
    weakref.finalize(dul, waker.close)  # if the association never starts

    # DUL: wake on queued primitives, block on the socket when idle.
    dul.to_provider_queue = _WakingQueue(waker.poke)
    dul._run_loop_delay = 0  # the idle wait happens in the transport check below
    transport_event = dul._is_transport_event
    dul._is_transport_event = _dul_transport_event(dul, transport_event, waker, state.park)
    dul.kill_dul = _kill_dul(dul, waker)
    dul.stop_dul = _stop_dul(dul, waker)
    a.dimse.send_msg = _send_msg(a)
    dul._send = _dul_send(dul, dul._send)
    sock = sock if sock is not None else dul.socket
    if sock is not None:
        reads.buffered(sock)
    dul._read_pdu_data = reads.read_pdu(dul, dul._read_pdu_data, store.serve_store)
    target = dul._target

    def run_dul() -> None:
        try:
            target()
        finally:
            waker.close()

    dul._target = run_dul

    # Association: wake on DIMSE messages, release/abort and pause changes.
    wake = state.wake_reactor
    a.dimse.msg_queue = _WakingQueue(wake.set)
    dul.to_user_queue = _WakingQueue(wake.set)
    checkpoint = _WakingEvent(wake)
    checkpoint.set()
    a._reactor_checkpoint = checkpoint
    a._run_reactor = lambda: _association_reactor(a, state)
    attach(assoc, state)


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
        if primitive.MessageIDBeingRespondedTo is None and _connection_gone(assoc):
            # A request on an association whose connection has already gone (its
            # reactor has not marked it aborted yet): the waiting sender is told at once,
            # not after dimse_timeout (pynetdicom's abort notice went to an earlier wait).
            log.debug("request on %s after its connection closed", assoc.name)
            dimse.msg_queue.put((None, None))
            return
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
            pdus = itertools.chain(pdus, file_pdus(from_file[0], from_file[1], context_id, max_pdu))
        for blob in blocks(pdus):
            _queue_block(assoc.dul, blob)
        # The network timeout is for an idle association: one streaming a long answer is
        # not (pynetdicom restarts it only for PDUs received, and aborted a 70,000-match
        # C-FIND at the next check once it had taken more than network_timeout to send).
        assoc.dul._idle_timer.restart()

    return send_msg


def _connection_gone(assoc: Any) -> bool:
    """Whether nothing sent on ``assoc`` can be answered: aborted, or its transport
    closed. The socket is looked at first: pynetdicom closes it (AA-3, AA-4) and tells
    the waiting sender before its state machine leaves Sta6, so a sender woken by that
    notice can come back while the DUL still looks alive and associated."""
    if assoc.is_aborted or assoc._kill:
        return True
    dul = assoc.dul
    transport = dul.socket
    raw = getattr(transport, "socket", None)
    if raw is None or not getattr(transport, "_is_connected", True) or raw.fileno() == -1:
        return True
    return not dul.is_alive() or dul.state_machine.current_state in ("Sta1", "Sta13")


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


def _dul_transport_event(
    dul: Any, original: Callable[[], bool], waker: _Waker, park: Park
) -> Callable[[], bool]:
    """pynetdicom's transport check, blocking (up to a tick) when there is nothing to do."""

    def check() -> bool:
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


def _association_reactor(assoc: Any, state: FastState) -> None:
    """pynetdicom's acceptor/requestor reactor loop, waiting on events instead of sleeping."""
    wake = state.wake_reactor
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
            state.ending = True  # its slot is free (DicomlabAE) once the peer has our reply
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
