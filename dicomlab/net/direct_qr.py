"""Direct C-FIND: a query's responses read by the calling thread, outside pynetdicom's DIMSE layer.

A C-FIND with thousands of matches is thousands of small messages. Through
pynetdicom each pending response is decoded into a pydicom dataset by the DUL
thread, handed to the association's reactor and then to the caller, and the three
threads queue behind one another for the GIL; that, not the network, was most of
the time of a 5,000-match query. Here the caller parks the DUL thread
(:class:`dicomlab.net.direct.Channel`), writes the C-FIND-RQ and reads every
C-FIND-RSP itself, handing each identifier's raw bytes to a callback that reads
only the wanted attributes (:func:`dicomlab.core.header.scan_elements`).

The per-response timeout, the interrupt and abort rules and the network log are
those of the C-STORE direct path: a response that does not come in time, an
unexpected message, a peer that aborts or a Ctrl-C end the association; it is
never reused after an interrupted operation.
"""

from __future__ import annotations

from collections.abc import Callable

from dicomlab.log import capture
from dicomlab.net import wire
from dicomlab.net.direct import Channel, Reply

__all__ = ["Querier"]

_IDENTIFIER_LIMIT = 16 << 20
"""Largest C-FIND response read (the identifiers are small; this only bounds a bad peer)."""


class Querier(Channel):
    """Runs C-FINDs on one adapted association from the calling thread."""

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
        return self._operate(
            lambda mid: self._find(context_id, sop_class, identifier, on_match, timeout, mid)
        )

    def _find(
        self,
        context_id: int,
        sop_class: str,
        identifier: bytes,
        on_match: Callable[[bytes], None],
        timeout: float | None,
        mid: int,
    ) -> Reply:
        assoc = self.assoc
        capture.direct_request(
            assoc, "SCU", "C-FIND", mid, sop_class, None, context_id, identifier=identifier
        )
        request = wire.query_request(wire.C_FIND_RQ, mid, sop_class)
        failed = self._request(
            context_id, request, wire.data_pdus(context_id, identifier, self.peer_max_pdu)
        )
        if failed is not None:
            return failed
        buf = assoc.dul.socket._dl_buffer
        while True:
            scan = self._response(wire.C_FIND_RSP, mid, _IDENTIFIER_LIMIT, timeout)
            if isinstance(scan, Reply):
                return scan
            rsp = scan.command
            assert rsp is not None and rsp.status is not None
            pending = rsp.status in (0xFF00, 0xFF01)
            if pending and rsp.has_data_set:
                with memoryview(buf) as view:
                    data = b"".join(view[a:b] for a, b in scan.spans)
                self._consume(scan)
                on_match(data)
            else:
                self._consume(scan)
            capture.direct_response(assoc, "SCU", mid, rsp.status)
            if not pending:
                return Reply(rsp.status, rsp.error_comment)
