"""pynetdicom's association server as LocalPACS runs it: the listener behind the admission
gate, and the small event handlers every server binds.

A :class:`Listener` hands each new connection to a :class:`~dicomlab.server.gate.Gate`
(pynetdicom gets the connection and a thread only once its first PDU is in), copies
the supported contexts cheaply for every association, and leaves out pynetdicom's
``gc.collect()`` between accepts. :mod:`dicomlab.server.lifecycle` owns and stops it.
"""

from __future__ import annotations

import copy
import ssl
import weakref
from typing import Any

from pynetdicom import evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from dicomlab.net.transport import adapt_accepted, set_nodelay
from dicomlab.server.gate import Gate, PendingLimits

__all__ = ["Listener", "reject", "tune_connection", "wake", "wake_unassociated", "weak"]


def weak(method: Any, gone: Any = 0xC000) -> Any:
    """Call a bound method without keeping its object alive; ``gone`` is the answer once
    the object is (for a DIMSE handler, 0xC000: the server is being stopped).

    pynetdicom keeps handlers for as long as the server runs (and a listener its
    dispatcher, a worker pool its report). Holding the owner weakly lets a server whose
    owner is dropped (a notebook cell run again) be collected, and its ``__del__`` free
    the port.
    """
    if not hasattr(method, "__self__"):
        return method  # a plain function holds no owner
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = ref()
        if bound is None:
            return gone
        return bound(*args, **kwargs)

    return call


def wake(assoc: Any) -> None:
    """End an acceptor still waiting for its A-ASSOCIATE-RQ now, not after acse_timeout.

    pynetdicom's acceptor thread blocks on the DUL queue until a request or
    the timeout; an empty item reads as a timeout, so the thread ends at once
    (and stops counting against ``max_associations``).
    """
    queue = getattr(getattr(assoc, "dul", None), "to_user_queue", None)
    if queue is not None:
        queue.put(None)


def tune_connection(event: Any) -> None:
    """A new connection, adapted before its association starts."""
    adapt_accepted(event.assoc)


def wake_unassociated(event: Any) -> None:
    # The connection closed before an association was made: in Sta2 (a port probe,
    # awaiting A-ASSOCIATE-RQ) or Sta13 (we aborted an invalid first PDU). The
    # acceptor thread waiting for the request would otherwise hold a thread and an
    # association slot for acse_timeout.
    assoc = event.assoc
    if (
        assoc.is_acceptor
        and not assoc.is_established
        and not assoc.is_released
        and assoc.dul.state_machine.current_state in ("Sta1", "Sta2", "Sta13")
    ):
        wake(assoc)


def reject(assoc: Any, result: int, source: int, diagnostic: int) -> None:
    """Reject an association from its EVT_REQUESTED handler, as pynetdicom's own ACSE does
    (pynetdicom then skips negotiation and closes the connection)."""
    assoc.acse.send_reject(result, source, diagnostic)
    assoc.is_rejected = True
    evt.trigger(assoc, evt.EVT_REJECTED, {})
    assoc.kill()


class _SupportedContexts(list):  # type: ignore[type-arg]
    """The server's supported contexts, which pynetdicom deep-copies for every association.

    A real deep copy rebuilds every transfer syntax UID, re-validating each with a
    regular expression: for LocalPACS (every storage class with every transfer
    syntax, about 6,000 UIDs) that took about 80 ms per association, paid by each
    C-MOVE sub-association. Each context is copied with its own list of the same
    (immutable) UIDs instead: what the association may change is still its own.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        out = []
        for cx in self:
            dup = copy.copy(cx)
            dup._transfer_syntax = list(cx._transfer_syntax)
            out.append(dup)
        return out


class Listener(ThreadedAssociationServer):
    """pynetdicom's threaded server, fed by a :class:`~dicomlab.server.gate.Gate`: a
    connection gets its thread (and pynetdicom's attention) only once its first PDU is in."""

    gate: Gate | None = None
    dispatch: Any = None
    """Called with ``(socket, address)`` of a connection whose A-ASSOCIATE-RQ has arrived;
    True when it took the connection (a worker process serves it), else pynetdicom does."""
    serving = False
    """Whether its accept loop runs (a worker process's listener only serves what it is handed)."""
    # The listen backlog: socketserver's 5 makes a burst of connections wait for SYN
    # retries (1 s, 3 s, 7 s...) before the gate even sees them.
    request_queue_size = 1024
    block_on_close = False  # stop() ends connections itself: shutdown() must not wait on them
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contexts = _SupportedContexts(self.contexts)

    def service_actions(self) -> None:
        """Nothing between accepts. pynetdicom runs a full ``gc.collect()`` every 60 loops of
        the accept loop: under a connection flood that was ~9 collections a second of ~60 ms
        each with the GIL held, and every honest association crawled behind them."""

    def open_gate(self, limits: PendingLimits, tls_context: ssl.SSLContext | None) -> None:
        self.gate = Gate(self._serve, limits, tls_context, self.ae_title)

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.gate is None:  # pragma: no cover - open_gate runs before serving
            super().process_request(request, client_address)
            return
        set_nodelay(request)
        self.gate.add(request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        if self.dispatch is not None and self.dispatch(request, client_address):
            return
        super().process_request(request, client_address)  # a thread for this connection

    def serve_handed(self, request: Any, client_address: Any) -> None:
        """Serve a connection accepted elsewhere, its A-ASSOCIATE-RQ waiting to be read."""
        super().process_request(request, client_address)

    def close(self) -> None:
        """Stop accepting and close the listening socket (whether or not it was serving)."""
        if self.serving:
            self.shutdown()
            return
        self.server_close()
        if self in self.ae._servers:
            self.ae._servers.remove(self)
