"""Client transport: the one place where dicomlab adapts pynetdicom's sockets.

pynetdicom reports a failed TCP connect only as a log line, and leaves Nagle's
algorithm on. :class:`DicomlabAE` replaces the socket pynetdicom creates with
:class:`_ClientSocket`, which sets ``TCP_NODELAY`` and keeps the ``OSError`` of
a failed connect so that the caller can tell "connection refused" from
"timeout" from "TLS handshake failed". Everything else is pynetdicom's own.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.transport import T_CONNECT, AddressInformation, AssociationSocket

from dicomlab.log import capture
from dicomlab.net import _fast, guard, trust

__all__ = [
    "DicomlabAE",
    "adapt_accepted",
    "connect_error_of",
    "finished",
    "quiesce",
    "set_nodelay",
]


def set_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off: each DIMSE message leaves at once."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - not a TCP socket (tests with socketpair)
        pass


class _ClientSocket(AssociationSocket):
    """An AssociationSocket that sets TCP_NODELAY and remembers why connect failed."""

    connect_error: OSError | None = None
    tls_error: ssl.SSLError | None = None  # a TLS alert on the first read (TLS 1.3)

    def _shutdown_socket(self) -> None:
        _fast.shutdown_and_close(self.socket)

    def recv(self, nr_bytes: int) -> bytearray:
        try:
            return super().recv(nr_bytes)
        except ssl.SSLError as exc:
            self.tls_error = exc
            raise

    def _create_socket(self, address: AddressInformation) -> socket.socket:
        sock: socket.socket = super()._create_socket(address)
        set_nodelay(sock)
        return sock

    def connect(self, primitive: T_CONNECT) -> None:
        # Same contract as AssociationSocket.connect: put Evt2 (connected) or
        # Evt17 (failed) on the provider queue and set _ready. The difference is
        # that the OSError is kept for diagnosis instead of only being logged.
        try:
            if self.socket is None:
                raise OSError("socket already closed")
            if self.tls_args:
                context, server_hostname = self.tls_args
                self.socket = context.wrap_socket(
                    self.socket, server_side=False, server_hostname=server_hostname
                )
            self.socket.settimeout(self.assoc.connection_timeout)
            self.socket.connect(primitive.address_info.as_tuple)
            self.socket.settimeout(None)  # as pynetdicom: blocking after connect
            trust.register_client(self.socket)  # a LocalPACS of this process trusts it
            self.assoc.requestor.address_info = AddressInformation.from_tuple(
                self.socket.getsockname()
            )
            self._is_connected = True
            evt.trigger(self.assoc, evt.EVT_CONN_OPEN, {"address": primitive.address_info.as_tuple})
            primitive.result = "Evt2"
        except OSError as exc:
            self.connect_error = exc
            capture.connect_failed(self.assoc, exc)
            if self.socket is not None:
                # pynetdicom's _shutdown_socket() skips close() when shutdown()
                # fails on a never-connected socket, leaking it: close directly.
                self.socket.close()
                self.socket = None
            primitive.result = "Evt17"
        finally:
            self.provider_queue.put(primitive)
            self._ready.set()


class DicomlabAE(AE):
    """pynetdicom's AE as both our clients and LocalPACS use it: the associations it
    requests get dicomlab's socket (TCP_NODELAY, the connect error kept), and a released
    association stops counting against ``maximum_associations`` at once."""

    @property
    def active_associations(self) -> list[Association]:
        """The AE's associations still in use: one that has been released, aborted or
        rejected no longer counts (against ``maximum_associations`` in particular),
        though its thread may take a moment more to end. Otherwise a peer that opens
        its next association right after releasing one could be refused with "local
        limit exceeded" by a server allowing one association."""
        return [a for a in super().active_associations if not finished(a)]

    def _create_socket(
        self,
        assoc: Association,
        address: AddressInformation,
        tls_args: tuple[ssl.SSLContext, str] | None,
    ) -> AssociationSocket:
        sock = _ClientSocket(assoc, address=address)
        sock.tls_args = tls_args
        _fast.install(assoc, sock)  # called before the association starts
        guard.install(assoc)
        capture.attach(assoc, "SCU", tls=tls_args is not None)
        return sock


def adapt_accepted(assoc: Any) -> None:
    """A connection LocalPACS accepted, before its association starts: TCP_NODELAY, the
    event-driven reactors, the command-set guard and the network log (as
    :class:`DicomlabAE` gives the associations it requests)."""
    raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        set_nodelay(raw)
    _fast.install(assoc)
    guard.install(assoc)
    capture.attach(assoc, "SCP", tls=isinstance(raw, ssl.SSLSocket))


def finished(assoc: Any) -> bool:
    """Whether an association is over (released, aborted, rejected, or ending)."""
    return bool(
        assoc.is_released or assoc.is_aborted or assoc.is_rejected or _fast.is_ending(assoc)
    )


def connect_error_of(assoc: Association) -> OSError | None:
    """The OSError of a failed connect (or TLS handshake) on a :class:`DicomlabAE` association."""
    sock: Any = getattr(assoc.dul, "socket", None)
    # TLS 1.3 servers check the client certificate after our side of the handshake
    # completes: their refusal arrives as an alert on the first read.
    return getattr(sock, "connect_error", None) or getattr(sock, "tls_error", None)


def quiesce(assoc: Association, settle_s: float = 0.003) -> None:
    """Make sure the association's reactor thread is really paused before we send.

    pynetdicom pauses its reactor before each request by clearing a checkpoint
    and waiting for ``_is_paused``; but the reactor sets ``_is_paused`` just
    before a ``wait()`` that may return at once, so the flag can be stale and
    the reactor may then take our response off the queue ("Received unexpected
    C-FIND service message": the response is lost, pynetdicom issue #875).
    Here the checkpoint is cleared first and the flag must hold for
    ``settle_s`` (longer than one reactor loop), so the reactor is blocked
    before the request goes out. pynetdicom's own pause then finds it paused.
    """
    if _fast.is_installed(assoc):
        return  # its reactor pauses without the race
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    if checkpoint is None or not assoc.is_established:  # pragma: no cover - other versions
        return
    checkpoint.clear()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if getattr(assoc, "_is_paused", False):
            time.sleep(settle_s)
            if getattr(assoc, "_is_paused", False):
                return
        else:
            time.sleep(0.0001)
