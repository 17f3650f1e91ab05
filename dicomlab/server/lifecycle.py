"""Owning a pynetdicom server: start on a port (0 = any free one), stop for sure.

:class:`ServerThread` owns its listeners (a plain port, and optionally a TLS port
beside it) and their association threads. ``stop()`` is idempotent, aborts open
associations and TLS handshakes within a bounded time and frees the ports;
servers still running at interpreter exit are stopped.

New connections wait in a :class:`~dicomlab.server.gate.Gate` (one thread for all of
them, bounded, with a short deadline) until their first PDU is in; only then does
pynetdicom get the connection and a thread, and only an association whose request
arrived counts against the server's limit. On the TLS port the gate also runs the
handshakes, without blocking: one client that connects and sends nothing blocks nobody.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
import weakref
from types import TracebackType
from typing import Any, Self

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomlab.core.nodes import TLS, Node, validate_ae_title, validate_host, validate_port
from dicomlab.errors import ConfigError
from dicomlab.net.tls import server_context
from dicomlab.net.transport import DicomlabAE, finished
from dicomlab.server.gate import PendingLimits
from dicomlab.server.listener import (
    Listener,
    reject,
    tune_connection,
    wake,
    wake_unassociated,
    weak,
)

__all__ = ["ServerThread", "VerificationServer", "running_servers"]

log = logging.getLogger(__name__)

_RUNNING: weakref.WeakSet[ServerThread] = weakref.WeakSet()
_RUNNING_LOCK = threading.Lock()


def running_servers() -> list[ServerThread]:
    """The servers of this process that are running now."""
    with _RUNNING_LOCK:
        return list(_RUNNING)


def _stop_all() -> None:
    for server in running_servers():
        server.stop()


atexit.register(_stop_all)


DICOM_TLS_PORT = 2762
"""The port IANA registered for DICOM over TLS (``dicom-tls``), the default ``tls_port``."""


class ServerThread:
    """A pynetdicom association server owned by this object.

    Subclasses fill :meth:`_configure` (contexts) and :meth:`_handlers`. With
    ``tls`` (a :class:`~dicomlab.core.nodes.TLS` holding our certificate and key)
    the same services are also served over TLS on ``tls_port``.
    """

    def __init__(
        self,
        ae_title: str,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TLS | None = None,
        tls_port: int | None = None,
        pending: PendingLimits | None = None,
        idle_timeout: float = 60.0,
    ) -> None:
        self.ae_title = validate_ae_title(ae_title)
        if not 1 <= idle_timeout <= 86_400:
            raise ConfigError(f"idle_timeout {idle_timeout!r} must be in 1-86400 seconds")
        self.idle_timeout = float(idle_timeout)
        if pending is not None and not isinstance(pending, PendingLimits):
            raise ConfigError(f"pending must be a dl.PendingLimits or None, got {pending!r}")
        self.pending_limits = pending or PendingLimits()
        self.host = validate_host(host)
        self._requested_port = validate_port(port, allow_zero=True)
        if tls is not None and not isinstance(tls, TLS):
            raise ConfigError(f"tls must be a dl.TLS or None, got {tls!r}")
        if tls is None and tls_port is not None:
            raise ConfigError(
                f"tls_port={tls_port} needs tls=dl.TLS(cert=..., key=...)",
                hint="dl.tls.make_demo_certificates(folder).server() gives a demo set",
            )
        self.tls = tls
        self._requested_tls_port = (
            validate_port(DICOM_TLS_PORT if tls_port is None else tls_port, allow_zero=True)
            if tls is not None
            else None
        )
        self._listeners: list[Listener] = []
        self._bound: dict[str, int] = {}
        self._ae: AE | None = None
        self._lock = threading.RLock()
        self._admitted: weakref.WeakSet[Any] = weakref.WeakSet()
        self._dropped = 0  # by the gates of listeners already stopped
        self._admit_lock = threading.Lock()

    # -- to override ----------------------------------------------------------
    def _configure(self, ae: AE) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _handlers(self) -> list[Any]:
        return []

    def _max_associations(self) -> int:
        """Associations served at once; a request past it is rejected (local limit exceeded)."""
        return 10

    def _calling_allowed(self, assoc: Any) -> bool:
        """Whether this association's calling AE may associate at all (a whitelist)."""
        return True

    def _serving_here(self) -> int:
        """Associations admitted here and still being served (hold ``_admit_lock``)."""
        return sum(1 for a in self._admitted if a.is_alive() and not finished(a))

    def _served_elsewhere(self) -> int:
        """Associations of this server's being served by its worker processes now."""
        return 0

    def _dispatcher(self) -> Any:
        """What may take the plain port's connections (:attr:`Listener.dispatch`), or None."""
        return None

    accepts = True
    """Whether it listens itself; a worker process's server (False) binds no port and serves
    only the connections handed to it (:meth:`serve_handed`)."""

    # -- admission: once the A-ASSOCIATE-RQ is in ----------------------------------------
    def _admit(self, event: Any) -> None:
        """Accept or reject an association request (EVT_REQUESTED, before negotiation).

        Only associations whose request arrived count against the limit: a connection
        still waiting to send its request is the gate's, and costs no slot.
        """
        assoc = event.assoc
        # pynetdicom sets this when it negotiates, after this handler: set it now.
        assoc.requestor.ae_title = assoc.requestor.primitive.calling_ae_title
        if not self._calling_allowed(assoc):
            reject(assoc, 0x01, 0x01, 0x03)  # permanent: calling AE title not recognised
            return
        with self._admit_lock:
            if self._serving_here() + self._served_elsewhere() >= self._max_associations():
                full = True
            else:
                full = False
                self._admitted.add(assoc)
        if full:
            reject(assoc, 0x02, 0x03, 0x02)  # transient: local limit exceeded

    @property
    def connection_counters(self) -> dict[str, int]:
        """Connections waiting for their first PDU now (``pending``), and dropped so far
        (``dropped``: idle too long, or crowded out by a flood), over every port."""
        gates = [listener.gate for listener in self._listeners if listener.gate is not None]
        pending = sum(g.pending for g in gates)
        dropped = self._dropped + sum(g.counters["dropped"] for g in gates)
        return {"pending": pending, "dropped": dropped}

    # -- lifecycle --------------------------------------------------------------
    @property
    def running(self) -> bool:
        return bool(self._listeners)

    @property
    def port(self) -> int:
        """The bound port (the free one picked with ``port=0``; kept after ``stop()``)."""
        return self._bound.get("plain", self._requested_port)

    @property
    def tls_port(self) -> int | None:
        """The bound TLS port (``None`` without ``tls``)."""
        return self._bound.get("tls", self._requested_tls_port)

    @property
    def active_associations(self) -> list[Any]:
        """Associations being served now, on every port."""
        return [a for listener in list(self._listeners) for a in listener.active_associations]

    @property
    def node(self) -> Node:
        """A :class:`Node` pointing at this server's plain port."""
        if not self.running:
            raise ConfigError(f"server {self.ae_title} is not running", hint="call start() first")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return Node("local", ae_title=self.ae_title, host=host, port=self.port, timeout=30)

    @property
    def tls_node(self) -> Node:
        """A :class:`Node` pointing at the TLS port, trusting our ``ca``.

        Add a client certificate with ``.replace(tls=...)`` when clients must have one.
        """
        if self.tls is None:
            raise ConfigError(
                f"server {self.ae_title} serves no TLS", hint="start it with tls=dl.TLS(...)"
            )
        tls_port = self.tls_port
        assert tls_port is not None
        return self.node.replace(port=tls_port, tls=TLS(ca=self.tls.ca))

    def start(self) -> Self:
        """Start listening; a second call is a no-op."""
        with self._lock:
            if self._listeners:
                return self
            context = server_context(self.tls) if self.tls is not None else None
            # DicomlabAE, as the clients': the associations the server opens itself (C-MOVE
            # sub-operations) get the fast path, TCP_NODELAY, the network log and closed
            # sockets too.
            ae = DicomlabAE(ae_title=self.ae_title)
            ae.network_timeout = self.idle_timeout
            ae.acse_timeout = 10  # a silent connection is dropped after this
            ae.dimse_timeout = 60
            self._configure(ae)
            # Admission (limit, whitelist) is ours, in EVT_REQUESTED: pynetdicom's own checks
            # would count connections that have not asked for anything yet.
            ae.maximum_associations = 100_000
            ae.require_calling_aet = []
            handlers = [
                (evt.EVT_CONN_OPEN, tune_connection),
                (evt.EVT_CONN_CLOSE, wake_unassociated),
                (evt.EVT_REQUESTED, weak(self._admit)),
                *((h[0], weak(h[1]), *h[2:]) for h in self._handlers()),
            ]
            listeners: list[tuple[str, int, ssl.SSLContext | None]] = [
                ("plain", self._requested_port, None)
            ]
            if context is not None:
                assert self._requested_tls_port is not None
                listeners.append(("tls", self._requested_tls_port, context))
            started: list[Listener] = []
            try:
                for kind, port, ctx in listeners:
                    started.append(self._listen(ae, port, ctx, handlers))
                    self._bound[kind] = int(started[-1].server_address[1])
            except BaseException:
                for listener in started:
                    listener.close()
                    if listener.gate is not None:
                        listener.gate.stop()
                raise
            self._ae, self._listeners = ae, started
            with _RUNNING_LOCK:
                _RUNNING.add(self)
            tls = f", TLS on {self.tls_port}" if context is not None else ""
            log.info("%s listening on %s:%d%s", self.ae_title, self.host, self.port, tls)
            return self

    def _listen(
        self, ae: AE, port: int, context: ssl.SSLContext | None, handlers: list[Any]
    ) -> Listener:
        try:
            listener = ae.make_server(
                (self.host, port), evt_handlers=handlers, server_class=Listener
            )
        except OSError as exc:
            raise listen_error(exc, self.host, port) from None
        assert isinstance(listener, Listener)
        ae._servers.append(listener)
        if not self.accepts:
            listener.server_close()  # the port it bound is given back: it is handed connections
            return listener
        listener.open_gate(self.pending_limits, context)
        if context is None:
            listener.dispatch = self._dispatcher()
        listener.serving = True
        thread = threading.Thread(
            target=listener.serve_forever,
            name=f"dicomlab-{self.ae_title}-{'tls' if context else 'plain'}",
            daemon=True,
        )
        thread.start()
        return listener

    def serve_handed(self, sock: socket.socket, address: Any) -> None:
        """Serve a connection another process accepted (its A-ASSOCIATE-RQ not yet read)."""
        listeners = self._listeners
        if not listeners:
            sock.close()
            raise ConfigError(f"server {self.ae_title} is not running")
        listeners[0].serve_handed(sock, address)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and abort open associations; safe to call twice."""
        with self._lock:
            listeners, ae = self._listeners, self._ae
            self._listeners, self._ae = [], None
        if not listeners or ae is None:
            return
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        deadline = time.monotonic() + timeout
        for listener in listeners:
            listener.close()  # stops accepting and closes the listening socket
            if listener.gate is not None:
                listener.gate.stop(max(0.1, deadline - time.monotonic()))
                self._dropped += listener.gate.counters["dropped"]
            for assoc in list(listener.active_associations):
                if assoc.is_established:
                    assoc.abort()
                else:
                    # Not associated yet (aborting there upsets pynetdicom's state machine):
                    # close the connection, then wake the thread waiting for the request.
                    _close_connection(assoc)
        for listener in listeners:
            for assoc in list(listener.active_associations):
                assoc.join(max(0.0, min(1.0, deadline - time.monotonic())))
                if assoc.is_alive():
                    # The abort did not end it (its reader was busy or parked, and the
                    # A-ABORT never left): close the connection, so that the peer is not
                    # left waiting on it until its own timeout.
                    _close_connection(assoc)
                    assoc.join(max(0.0, deadline - time.monotonic()))
        log.info("%s stopped", self.ae_title)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # a dropped, still-running server must not hold its port
        try:
            self.stop(timeout=1.0)
        except Exception:  # pragma: no cover - interpreter teardown
            pass


def listen_error(exc: OSError, host: str, port: int, what: str = "port") -> ConfigError:
    """Why a server cannot listen on ``host:port``, in words (a taken port named as such)."""
    if exc.errno == errno.EADDRINUSE:
        setting = what.replace(" ", "_")
        return ConfigError(
            f"{what} {port} on {host} is already in use",
            hint=f"stop the other server (another LocalPACS or program), or use {setting}=0",
        )
    return ConfigError(f"cannot listen on {host}:{port}: {exc}")


def _close_connection(assoc: Any) -> None:
    """Shut an association's connection down both ways and wake the thread waiting on it."""
    raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)
    wake(assoc)


class VerificationServer(ServerThread):
    """The smallest useful SCP: answers C-ECHO (a stand-in until LocalPACS)."""

    def __init__(self, ae_title: str = "DICOMLAB", host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(ae_title, host, port)
        self.echoes = 0

    def _configure(self, ae: AE) -> None:
        ae.add_supported_context(Verification)

    def _handlers(self) -> list[Any]:
        return [(evt.EVT_C_ECHO, self._on_echo)]

    def _on_echo(self, event: Any) -> int:
        self.echoes += 1
        return 0x0000
