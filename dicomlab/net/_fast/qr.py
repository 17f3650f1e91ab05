"""Direct C-FIND, C-GET and C-MOVE: responses read by the calling thread, outside
pynetdicom's DIMSE layer.

A C-FIND with thousands of matches is thousands of small messages. Through
pynetdicom each pending response is decoded into a pydicom dataset by the DUL
thread, handed to the association's reactor and then to the caller, and the three
threads queue behind one another for the GIL; that, not the network, was most of
the time of a 5,000-match query. Here the caller parks the DUL thread
(:class:`dicomlab.net._fast.channel.Channel`), writes the C-FIND-RQ and reads every
C-FIND-RSP itself, handing each identifier's raw bytes to a callback that reads
only the wanted attributes (:func:`dicomlab.core.header.scan_elements`).

A C-GET is served the same way: the caller reads the C-GET-RSPs and serves the
C-STORE sub-operations arriving on the association itself
(:func:`dicomlab.net._fast.store.serve_scanned`, the association's ``EVT_C_STORE``
handler), one thread doing what getscu does in one; a C-MOVE's responses are read
likewise. Sub-operation counts reach a callback with every response.

The per-response timeout, the interrupt and abort rules and the network log are
those of the C-STORE direct path: a response that does not come in time, an
unexpected message, a peer that aborts or a Ctrl-C end the association; it is
never reused after an interrupted operation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from dicomlab.core.header import EXPLICIT_LE, IMPLICIT_LE
from dicomlab.core.status import status_category
from dicomlab.log import capture
from dicomlab.net import wire
from dicomlab.net._fast.channel import Channel, Reply
from dicomlab.net._fast.store import Streaming, serve_scanned, streaming

__all__ = ["Querier", "Request", "prepare"]

_IDENTIFIER_LIMIT = 16 << 20
"""Largest C-FIND response read (the identifiers are small; this only bounds a bad peer)."""
_SUB_STORE_LIMIT = 1 << 30
"""Largest C-STORE sub-operation of a C-GET (held in memory whole, as pynetdicom holds it)."""
_SERVICES = {wire.C_FIND_RQ: "C-FIND", wire.C_GET_RQ: "C-GET", wire.C_MOVE_RQ: "C-MOVE"}


@dataclass(frozen=True, slots=True)
class Request:
    """An identifier encoded for the accepted context of its SOP class."""

    context_id: int
    sop_class: str
    transfer_syntax: str
    identifier: bytes


def prepare(assoc: Any, sop_class: str, identifier: Dataset) -> Request | None:
    """``identifier`` encoded for ``sop_class``'s accepted context; None when it cannot
    go the direct way (no such context, or not a little endian, uncompressed syntax)."""
    cx = next((c for c in assoc.accepted_contexts if str(c.abstract_syntax) == sop_class), None)
    if cx is None or cx.context_id is None:
        return None
    syntax = str(cx.transfer_syntax[0])
    if syntax not in (IMPLICIT_LE, EXPLICIT_LE):
        return None
    encoded = encode(identifier, syntax == IMPLICIT_LE, True)
    if encoded is None:
        return None
    return Request(int(cx.context_id), sop_class, syntax, encoded)


class Querier(Channel):
    """Runs C-FINDs, C-GETs and C-MOVEs on one adapted association from the calling
    thread."""

    def find(
        self,
        context_id: int,
        sop_class: str,
        identifier: bytes,
        on_match: Callable[[bytes], None],
        timeout: float | None,
    ) -> Reply | None:
        """Send a C-FIND-RQ with the encoded ``identifier``; call ``on_match`` with the
        identifier of every pending response, in order; return the final status (or why
        there is none). None: it cannot go this way, nothing was sent (the caller uses
        pynetdicom). ``timeout`` bounds the wait for each response. An exception from
        ``on_match`` or an interrupt aborts the association and propagates."""

        if not self.usable:
            return None

        def each(command: wire.Command, data: bytes | None) -> None:
            if data is not None:
                on_match(data)

        return self._operate(
            lambda mid: self._query(
                wire.C_FIND_RQ, context_id, sop_class, identifier, each, timeout, mid
            )
        )

    def retrieve(
        self,
        context_id: int,
        command_field: int,
        sop_class: str,
        identifier: bytes,
        on_response: Callable[[wire.Command], None],
        timeout: float | None,
        move_destination: str | None = None,
    ) -> Reply | None:
        """Send a C-GET-RQ (``command_field`` C_GET_RQ) or a C-MOVE-RQ to
        ``move_destination``; call ``on_response`` with every response, pending and final
        (their sub-operation counts); return the final status (or why there is none).
        For a C-GET, the C-STORE sub-operations are served as they come. None: nothing
        was sent (the caller uses pynetdicom). An exception from ``on_response`` or an
        interrupt aborts the association and propagates."""
        if not self.usable:
            return None
        return self._operate(
            lambda mid: self._query(
                command_field,
                context_id,
                sop_class,
                identifier,
                lambda command, _: on_response(command),
                timeout,
                mid,
                move_destination,
            )
        )

    def _query(
        self,
        command_field: int,
        context_id: int,
        sop_class: str,
        identifier: bytes,
        on_response: Callable[[wire.Command, bytes | None], None],
        timeout: float | None,
        mid: int,
        move_destination: str | None = None,
    ) -> Reply:
        """One C-FIND, C-GET or C-MOVE: the request, then each response handed to
        ``on_response`` with its identifier (pending responses that carry one), C-STORE
        sub-operations of a C-GET served between them."""
        assoc = self.assoc
        service = _SERVICES[command_field]
        capture.direct_request(
            assoc, "SCU", service, mid, sop_class, None, context_id, identifier=identifier
        )
        request = wire.query_request(command_field, mid, sop_class, 0, move_destination)
        failed = self._request(
            context_id, request, wire.data_pdus(context_id, identifier, self.peer_max_pdu)
        )
        if failed is not None:
            return failed
        answer = command_field | 0x8000
        is_get = command_field == wire.C_GET_RQ
        wanted = (answer, wire.C_STORE_RQ) if is_get else (answer,)
        limit = _SUB_STORE_LIMIT if is_get else _IDENTIFIER_LIMIT
        streams = _Streams(assoc) if is_get else None
        try:
            return self._follow(streams, wanted, mid, limit, timeout, service, on_response)
        finally:
            if streams is not None:
                streams.discard()

    def _follow(
        self,
        streams: _Streams | None,
        wanted: tuple[int, ...],
        mid: int,
        limit: int,
        timeout: float | None,
        service: str,
        on_response: Callable[[wire.Command, bytes | None], None],
    ) -> Reply:
        """The responses of :meth:`_query`'s request, to the final one (C-GET: with its
        C-STORE sub-operations served between them, each written while it arrives)."""
        assoc = self.assoc
        buf = assoc.dul.socket.read_ahead
        on_wait = streams.wait if streams is not None else None
        while True:
            scan = self._response(wanted, mid, limit, timeout, service, on_wait)
            if isinstance(scan, Reply):
                return scan
            command = scan.command
            assert command is not None
            if command.command_field == wire.C_STORE_RQ:
                served = serve_scanned(assoc, scan, streams.take(scan) if streams else None)
                if served is None:
                    return self._fail("a C-STORE sub-operation this association cannot take")
                if served is False:
                    return self._fail("the peer closed the connection", abort=False)
                continue
            assert command.status is not None
            pending = status_category(command.status) == "pending"
            data = None
            if pending and command.has_data_set:
                with memoryview(buf) as view:
                    data = b"".join(view[a:b] for a, b in scan.spans)
            self._consume(scan)
            counts = (command.completed, command.failed, command.warning)
            capture.direct_response(assoc, "SCU", mid, command.status, counts)
            on_response(command, data)
            if not pending:
                return Reply(command.status, command.error_comment)


class _Streams:
    """The C-STORE sub-operation a C-GET is reading, written as it arrives
    (:class:`dicomlab.net._fast.store.Streaming`), one message at a time."""

    def __init__(self, assoc: Any) -> None:
        self.assoc = assoc
        self.scan: wire.MessageScan | None = None
        self.stream: Streaming | bool | None = None

    def wait(self, buf: bytearray, scan: wire.MessageScan) -> None:
        if scan is not self.scan:  # the next message: what was begun for another goes
            self.discard()
            self.scan = scan
        if self.stream is None:
            self.stream = streaming(self.assoc, scan)
        if isinstance(self.stream, Streaming):
            self.stream.advance(buf, scan)

    def take(self, scan: wire.MessageScan) -> Streaming | None:
        """What was begun for ``scan``, for serving it (the caller discards what is left)."""
        stream = self.stream if scan is self.scan else None
        self.scan, self.stream = None, None
        return stream if isinstance(stream, Streaming) else None

    def discard(self) -> None:
        if isinstance(self.stream, Streaming):
            self.stream.discard()
        self.scan, self.stream = None, None
