"""Owning a pynetdicom server: start on a port (0 = any free one), stop for sure.

:class:`ServerThread` owns one listening server and its association threads.
``stop()`` is idempotent, aborts open associations within a bounded time and
frees the port; servers still running at interpreter exit are stopped.
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

from dicomlab.core.nodes import Node, validate_ae_title, validate_host, validate_port
from dicomlab.errors import ConfigError
from dicomlab.log import capture
from dicomlab.net import fastpath
from dicomlab.net.transport import set_nodelay

__all__ = ["ServerThread", "VerificationServer"]

log = logging.getLogger(__name__)

_RUNNING: weakref.WeakSet[ServerThread] = weakref.WeakSet()
_RUNNING_LOCK = threading.Lock()


def _stop_all() -> None:
    with _RUNNING_LOCK:
        servers = list(_RUNNING)
    for server in servers:
        server.stop()


atexit.register(_stop_all)


def _weak(method: Any) -> Any:
    """Call a bound method without keeping its object alive.

    pynetdicom keeps handlers for as long as the server runs. Holding the owner
    weakly lets a server whose owner is dropped (a notebook cell run again) be
    collected, and its ``__del__`` free the port.
    """
    if not hasattr(method, "__self__"):
        return method  # a plain function holds no owner
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = ref()
        if bound is None:
            return 0xC000  # owner gone: the server is being stopped
        return bound(*args, **kwargs)

    return call


def _wake(assoc: Any) -> None:
    """End an acceptor still waiting for its A-ASSOCIATE-RQ now, not after acse_timeout.

    pynetdicom's acceptor thread blocks on the DUL queue until a request or
    the timeout; an empty item reads as a timeout, so the thread ends at once
    (and stops counting against ``max_associations``).
    """
    queue = getattr(getattr(assoc, "dul", None), "to_user_queue", None)
    if queue is not None:
        queue.put(None)


def _tune_connection(event: Any) -> None:
    """A new connection: TCP_NODELAY, and the event-driven reactors (before it starts)."""
    raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        set_nodelay(raw)
    fastpath.install(event.assoc)
    capture.attach(event.assoc, "SCP", tls=isinstance(raw, ssl.SSLSocket))


def _wake_unassociated(event: Any) -> None:
    # Sta2: transport open, awaiting A-ASSOCIATE-RQ. A port probe or garbage that
    # closes here would otherwise hold a thread and an association slot for
    # acse_timeout.
    assoc = event.assoc
    if assoc.is_acceptor and assoc.dul.state_machine.current_state == "Sta2":
        _wake(assoc)


class ServerThread:
    """A pynetdicom association server owned by this object.

    Subclasses fill :meth:`_configure` (contexts) and :meth:`_handlers`.
    """

    def __init__(self, ae_title: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.ae_title = validate_ae_title(ae_title)
        self.host = validate_host(host)
        self._requested_port = validate_port(port, allow_zero=True)
        self._server: Any = None
        self._bound_port: int | None = None
        self._ae: AE | None = None
        self._lock = threading.RLock()

    # -- to override ----------------------------------------------------------
    def _configure(self, ae: AE) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _handlers(self) -> list[Any]:
        return []

    # -- lifecycle --------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (the free one picked with ``port=0``; kept after ``stop()``)."""
        if self._bound_port is not None:
            return self._bound_port
        return self._requested_port

    @property
    def node(self) -> Node:
        """A :class:`Node` pointing at this server."""
        if not self.running:
            raise ConfigError(f"server {self.ae_title} is not running", hint="call start() first")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return Node("local", ae_title=self.ae_title, host=host, port=self.port, timeout=30)

    def start(self) -> Self:
        """Start listening; a second call is a no-op."""
        with self._lock:
            if self._server is not None:
                return self
            ae = AE(ae_title=self.ae_title)
            ae.network_timeout = 60
            ae.acse_timeout = 10  # a silent connection is dropped after this
            ae.dimse_timeout = 60
            self._configure(ae)
            try:
                server = ae.start_server(
                    (self.host, self._requested_port),
                    block=False,
                    evt_handlers=[
                        (evt.EVT_CONN_OPEN, _tune_connection),
                        (evt.EVT_CONN_CLOSE, _wake_unassociated),
                        *((h[0], _weak(h[1]), *h[2:]) for h in self._handlers()),
                    ],
                )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"port {self._requested_port} on {self.host} is already in use",
                        hint="stop the other server (another LocalPACS or program), or use port=0",
                    ) from None
                raise ConfigError(
                    f"cannot listen on {self.host}:{self._requested_port}: {exc}"
                ) from None
            assert server is not None  # block=False returns the server
            self._ae, self._server = ae, server
            self._bound_port = int(server.server_address[1])
            with _RUNNING_LOCK:
                _RUNNING.add(self)
            log.info("%s listening on %s:%d", self.ae_title, self.host, self.port)
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and abort open associations; safe to call twice."""
        with self._lock:
            server, ae = self._server, self._ae
            self._server = self._ae = None
        if server is None or ae is None:
            return
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        server.shutdown()  # stops accepting and closes the listening socket
        deadline = time.monotonic() + timeout
        for assoc in list(server.active_associations):
            if assoc.is_established:
                assoc.abort()
            else:
                # Not associated yet (aborting there upsets pynetdicom's state machine):
                # close the connection, then wake the thread waiting for the request.
                raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
                if raw is not None:
                    with contextlib.suppress(OSError):
                        raw.shutdown(socket.SHUT_RDWR)
                _wake(assoc)
        for assoc in list(server.active_associations):
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
