"""Direct C-STORE: storage messages handled by one thread, outside pynetdicom's DIMSE layer.

pynetdicom moves every DIMSE message through three threads (the DUL reading PDUs,
the association's reactor serving requests, the caller waiting for responses) and
builds primitives and pydicom datasets for each command. For the bulk of storage
traffic (thousands of C-STORE requests of the same shape) that per-message cost is
most of the time: dcmtk does the same work in one thread. Here, on associations
that :mod:`dicomlab.net._fast.reactor` adapted:

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
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE

from dicomlab.core.indexrow import is_valid_uid
from dicomlab.log import capture
from dicomlab.net import guard, wire
from dicomlab.net._fast.channel import (
    Channel,
    Reply,
    buffer_of,
    dataset_offset,
    file_pdus,
    only_known_observers,
    peer_max_pdu,
    recv_more,
)
from dicomlab.net._fast.state import state_of

__all__ = [
    "DIRECT",
    "DIRECT_BEGIN",
    "Received",
    "Sender",
    "Streaming",
    "serve_scanned",
    "serve_store",
    "streaming",
]

log = logging.getLogger(__name__)


_MESSAGE_LIMIT = 64 << 20
"""Largest C-STORE message handled directly (larger ones stream through pynetdicom)."""
_RESPONSE_LIMIT = 1 << 20
_FILE_LIMIT = 64 << 20
"""Largest file sent from memory; larger files are sent in pieces of about 4 MB."""
_TICK_S = 0.05


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
    sop_class, sop_instance = command.sop_class, command.sop_instance
    if (
        sop_class is not None
        and sop_instance is not None
        and is_valid_uid(sop_class)
        and is_valid_uid(sop_instance)
    ):
        # Checked here (digits and dots, at most 64): set without pynetdicom's and pydicom's
        # checks of the same, two regular expressions each (a sixth of a small instance's
        # time). Anything else goes through them, and is refused as they refuse it.
        req._affected_sop_class_uid = UID(sop_class, validation_mode=config.IGNORE)
        req._affected_sop_instance_uid = UID(sop_instance, validation_mode=config.IGNORE)
    else:
        req.AffectedSOPClassUID = sop_class
        req.AffectedSOPInstanceUID = sop_instance
    req.Priority = command.priority if command.priority in (0, 1, 2) else 2
    if command.move_originator_ae:
        req.MoveOriginatorApplicationEntityTitle = command.move_originator_ae
    if command.move_originator_id is not None:
        req.MoveOriginatorMessageID = command.move_originator_id
    req.DataSet = data
    req._context_id = context_id
    return req


DIRECT = "serves_received"
"""The attribute by which an ``EVT_C_STORE`` handler names its direct form: a callable
taking a :class:`Received` (and the handler's bound arguments) and answering a status.
The direct path then calls it instead of building pynetdicom's ``C_STORE`` primitive and
``Event``, and without copying the data set out of the socket's buffer."""


@dataclass(frozen=True, slots=True)
class Received:
    """A C-STORE-RQ read whole off the socket, served directly (:func:`serve_scanned`)."""

    assoc: Any
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    context_class: str
    """The presentation context's abstract syntax."""
    parts: tuple[memoryview, ...]
    """The data set's fragments in order: views of the socket's buffer, valid during the
    handler's call only (they are released after it; keep copies, never the views)."""
    incoming: Any = None
    """What the handler's early form (:data:`DIRECT_BEGIN`) began for this instance while
    it arrived, holding the first fragments already (None: nothing was begun). The
    handler finishes it or leaves it: it is discarded after the call either way."""


DIRECT_BEGIN = "begins_received"
"""The attribute by which an ``EVT_C_STORE`` handler names its early form: a callable
taking (association, SOP Class UID, SOP Instance UID, transfer syntax, the handler's
bound arguments...) for a C-STORE-RQ whose data set is still arriving, and answering a
sink (``write(views)``, ``discard()``) for its fragments, or None. The sink then reaches
the direct form as :attr:`Received.incoming`."""

_STREAM_MIN = 128 << 10
"""Data set bytes that must be waiting before they are written early (smaller instances
are written whole by the handler, in one write, as before)."""


class Streaming:
    """The fragments of a C-STORE-RQ's data set handed to the handler's early form's
    sink while the rest of the message is awaited (:func:`streaming`): the writes
    overlap the wait for the peer's next bytes instead of following the last one.

    Only views made for each write and released after it are taken: the socket's
    buffer stays free to grow. A sink that fails (a full disk) is discarded: the
    handler then writes the whole instance and reports the failure as before."""

    __slots__ = ("done", "sink")

    def __init__(self, sink: Any) -> None:
        self.sink: Any = sink
        self.done = 0  # fragments given to the sink

    def advance(self, buf: bytearray, scan: wire.MessageScan) -> None:
        """Give the sink the fragments that arrived since last time, when there are
        :data:`_STREAM_MIN` bytes of them."""
        spans = scan.spans[self.done :]
        if self.sink is None or sum(b - a for a, b in spans) < _STREAM_MIN:
            return
        with memoryview(buf) as view:
            parts = [view[a:b] for a, b in spans]
            try:
                self.sink.write(parts)
            except OSError as exc:
                log.warning("writing a received instance early failed: %s", exc)
                self.discard()
            finally:
                for part in parts:
                    part.release()
        self.done += len(spans)

    def take(self) -> Any:
        """The sink, for the handler (None if it failed); this no longer holds it."""
        sink, self.sink = self.sink, None
        return sink

    def discard(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.discard()


def streaming(assoc: Any, scan: wire.MessageScan) -> Streaming | bool | None:
    """A :class:`Streaming` for the C-STORE-RQ ``scan`` is reading (the association's
    handler has an early form, and :data:`_STREAM_MIN` bytes of its data set are in);
    None: not yet known; False: this message is not written early."""
    command = scan.command
    if command is None or not scan.spans:
        return None
    if sum(b - a for a, b in scan.spans) < _STREAM_MIN:
        return None
    sop_class, sop_instance = command.sop_class or "", command.sop_instance or ""
    cx = assoc._accepted_cx.get(int(scan.context_id or 0))
    handler, args = _bound(assoc)
    begin = getattr(handler, DIRECT_BEGIN, None)
    if (
        command.command_field != wire.C_STORE_RQ
        or cx is None
        or str(cx.abstract_syntax) != sop_class
        or (assoc.is_requestor and not cx.as_scp)
        or begin is None
        or not (is_valid_uid(sop_class) and is_valid_uid(sop_instance))
    ):
        return False
    try:
        sink = begin(assoc, sop_class, sop_instance, str(cx.transfer_syntax[0]), *(args or ()))
    except Exception:
        log.exception("exception in the early form of the handler bound to EVT_C_STORE")
        return False
    return Streaming(sink) if sink is not None else False


def _bound(assoc: Any) -> tuple[Any, Any]:
    """The handler bound to ``EVT_C_STORE`` and its arguments ((None, None): none)."""
    bound = assoc.get_handlers(evt.EVT_C_STORE)
    if not bound or bound[0] is None:
        return None, None
    return bound[0], bound[1]


def _logged(assoc: Any, scan: wire.MessageScan, sop_class: str, sop_instance: str) -> None:
    """The C-STORE-RQ ``scan`` found, taken off the socket: its bytes counted, its
    operation's row started (either path)."""
    command = scan.command
    assert command is not None and command.message_id is not None
    capture.count_bytes(assoc, received=scan.pos)
    capture.direct_request(
        assoc,
        "SCP",
        "C-STORE",
        command.message_id,
        sop_class,
        sop_instance,
        int(scan.context_id or 0),
        sum(stop - start for start, stop in scan.spans),
    )


def _serve_direct(
    assoc: Any,
    scan: wire.MessageScan,
    cx: Any,
    direct: Any,
    args: Any,
    uids: tuple[str, str],
    stream: Streaming | None = None,
) -> int | Dataset | None:
    """Call ``direct`` with the message's data set as views of the buffer, then free the
    message's bytes; its status, or None when a view outlived the call (the bytes cannot
    be freed: a bug, logged; the caller ends the connection)."""
    buf = assoc.dul.socket.read_ahead
    view = memoryview(buf)
    parts = tuple(view[start:stop] for start, stop in scan.spans)
    _logged(assoc, scan, *uids)
    received = Received(
        assoc,
        *uids,
        str(cx.transfer_syntax[0]),
        str(cx.abstract_syntax),
        parts,
        stream.take() if stream is not None else None,
    )
    try:
        result: int | Dataset = direct(received, *(args or ()))
    except Exception:
        log.exception("exception in the handler bound to EVT_C_STORE")
        result = 0xC211
    finally:
        if received.incoming is not None:
            received.incoming.discard()  # a handler that left it: nothing stays behind
        del received
        for part in parts:
            part.release()
        view.release()
    try:
        del buf[: scan.pos]
    except BufferError:
        log.error("a C-STORE handler kept a view of the received data set: connection ended")
        return None
    return result


def serve_store(dul: Any) -> bool:
    """Serve the next message if it is a plain C-STORE-RQ (DUL thread, Sta6, no message
    in progress); False leaves every byte to pynetdicom."""
    assoc = dul.assoc
    state, buf = state_of(assoc), buffer_of(assoc)
    if state is None or buf is None:
        return False
    if state.serves_store is None:  # a requestor without an SCP-role context never gets one
        state.serves_store = not assoc.is_requestor or any(
            cx.as_scp for cx in assoc.accepted_contexts
        )
    if not state.serves_store or assoc._sent_release or not only_known_observers(assoc):
        return False
    sock = dul.socket
    scan = wire.MessageScan(_MESSAGE_LIMIT)
    stream: Streaming | bool | None = None
    try:
        while True:
            need = scan.feed(buf)
            if need is None:
                return False
            if need == 0:
                break
            if stream is None:
                stream = streaming(assoc, scan)
            if isinstance(stream, Streaming):
                stream.advance(buf, scan)
            got = recv_more(sock, _TICK_S)
            if got is False:
                return False  # pynetdicom reads what is left and reports the closed connection
            if dul._kill_thread or not dul.to_provider_queue.empty():
                return False  # stop, or send (an abort) first: the bytes stay buffered
        served = serve_scanned(assoc, scan, stream if isinstance(stream, Streaming) else None)
    finally:
        if isinstance(stream, Streaming):
            stream.discard()  # not served here (or served: then it holds nothing)
    if served is False:
        dul.event_queue.put("Evt17")  # transport connection closed, as pynetdicom
    return served is not None


def serve_scanned(
    assoc: Any, scan: wire.MessageScan, stream: Streaming | None = None
) -> bool | None:
    """Serve the whole C-STORE-RQ ``scan`` found at the start of the socket's buffer:
    call the association's ``EVT_C_STORE`` handler and write the C-STORE-RSP
    (``stream``: what was written of it while it arrived, for the handler's direct form;
    the caller discards what is left of it).

    None: not servable here (a context that does not match, a value pynetdicom's
    primitive refuses), nothing consumed. True: served. False: served, but the
    connection broke before the response was written.
    """
    sock = assoc.dul.socket
    buf = sock.read_ahead
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
    mid = command.message_id
    sop_class, sop_instance = command.sop_class or "", command.sop_instance or ""
    handler, args = _bound(assoc)
    direct = getattr(handler, DIRECT, None)
    if direct is not None and is_valid_uid(sop_class) and is_valid_uid(sop_instance):
        result = _serve_direct(assoc, scan, cx, direct, args, (sop_class, sop_instance), stream)
        if result is None:
            return False  # the buffer could not be freed: treated as a broken connection
    else:
        data = io.BytesIO()
        with memoryview(buf) as view:
            for start, stop in scan.spans:
                data.write(view[start:stop])
        try:
            req = _request(command, context_id, data)
        except (TypeError, ValueError):
            return None  # a value pynetdicom's primitive refuses: its path reports it
        del buf[: scan.pos]
        _logged(assoc, scan, sop_class, sop_instance)
        try:
            result = evt.trigger(assoc, evt.EVT_C_STORE, {"request": req, "context": cx.as_tuple})
        except Exception:
            log.exception("exception in the handler bound to EVT_C_STORE")
            result = 0xC211
    status, comment = _store_status(result)
    pdu = wire.command_pdu(
        context_id,
        wire.store_response(mid, sop_class, sop_instance, status, comment),
        peer_max_pdu(assoc),
    )
    try:
        sock.socket.sendall(pdu)
    except (OSError, AttributeError):
        return False
    capture.count_bytes(assoc, sent=len(pdu))
    capture.direct_response(assoc, "SCP", mid, status, comment=comment)
    return True


# -- sending: in the caller's thread, the DUL parked ------------------------------------------


@dataclass(frozen=True, slots=True)
class FileRead:
    """A file to send, read: its size and its bytes (the first 64 KB of a file over
    64 MB, whose data set is then read piece by piece as it is sent)."""

    size: int
    content: bytes


def read_file(path: str | Path) -> FileRead | None:
    """What :meth:`Sender.store_file` sends of ``path``; None if it cannot be read (the
    caller's other path then reports the file's error)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return FileRead(size, f.read(size if size <= _FILE_LIMIT else 65536))
    except OSError:
        return None


class Sender(Channel):
    """Sends files as C-STOREs on one adapted association, from the calling thread."""

    def store_file(
        self,
        path: str | Path,
        sop_class: str,
        sop_instance: str,
        context_id: int,
        timeout: float | None,
        read: FileRead | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> Reply | None:
        """Send the data set of the file at ``path`` as stored; None if it cannot go this
        way (the caller then uses pynetdicom). Raises only what the caller's thread
        is interrupted with, after aborting the association.

        ``read``: the file as :func:`read_file` read it already. ``meanwhile``: called
        while the peer works on the request (once the request is sent, before the first
        wait for its response), if the response is not there at once."""
        if not self.usable:
            return None
        got = read if read is not None else read_file(path)
        if got is None:
            return None  # pynetdicom's path reports the file error as before
        offset = dataset_offset(got.content)
        if offset is None:
            return None
        return self._operate(
            lambda mid: self._exchange(
                path, got, offset, sop_class, sop_instance, context_id, mid, timeout, meanwhile
            )
        )

    def _exchange(
        self,
        path: str | Path,
        read: FileRead,
        offset: int,
        sop_class: str,
        sop_instance: str,
        context_id: int,
        mid: int,
        timeout: float | None,
        meanwhile: Callable[[], None] | None,
    ) -> Reply:
        assoc = self.assoc
        size, content = read.size, read.content
        max_pdu = peer_max_pdu(assoc)
        capture.direct_request(
            assoc, "SCU", "C-STORE", mid, sop_class, sop_instance, context_id, size - offset
        )
        request = wire.store_request(mid, sop_class, sop_instance)
        if size <= _FILE_LIMIT:
            failed = self._request_gathered(context_id, request, memoryview(content)[offset:])
        else:
            pdus = file_pdus(path, offset, context_id, max_pdu)
            failed = self._request(context_id, request, pdus)
        if failed is not None:
            return failed
        pending = [meanwhile] if meanwhile is not None else []

        def on_wait(buf: bytearray, scan: wire.MessageScan) -> None:
            if pending:
                pending.pop()()

        scan = self._response(
            (wire.C_STORE_RSP,), mid, _RESPONSE_LIMIT, timeout, "C-STORE", on_wait
        )
        if isinstance(scan, Reply):
            return scan
        command = scan.command
        assert command is not None and command.status is not None
        self._consume(scan)
        capture.direct_response(assoc, "SCU", mid, command.status)
        return Reply(command.status, command.error_comment)
