"""The uvicorn server of a LocalPACS's web port, in a thread of its own, owned by the
LocalPACS that starts and stops it (its socket is bound before the thread starts, so a
taken port fails the start at once and ``port=0`` is known at once)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn

from dicomlab.core.nodes import TLS
from dicomlab.errors import ConfigError
from dicomlab.server.lifecycle import listen_error
from dicomlab.server.web.app import WebContext, build_app

__all__ = ["WebServer"]

log = logging.getLogger(__name__)


class WebServer:
    """One uvicorn server (h11, asyncio) over a :class:`WebContext`."""

    def __init__(self, ctx: WebContext, host: str, port: int, tls: TLS | None = None) -> None:
        self.ctx, self.host, self.tls = ctx, host, tls
        self._requested = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested))
        except OSError as exc:
            sock.close()
            raise listen_error(exc, self.host, self._requested, "web port") from None
        sock.listen(128)
        sock.set_inheritable(False)
        self._port = int(sock.getsockname()[1])
        tls = self.tls
        config = uvicorn.Config(
            build_app(self.ctx),
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
            ssl_certfile=tls.cert if tls is not None else None,
            ssl_keyfile=tls.key if tls is not None else None,
            ssl_ca_certs=tls.ca if tls is not None and tls.require_client_cert else None,
            ssl_cert_reqs=2 if tls is not None and tls.require_client_cert else 0,
        )
        server = uvicorn.Server(config)
        ready = threading.Event()

        def serve() -> None:
            async def main() -> None:
                ready.set()
                try:
                    await server.serve(sockets=[sock])
                finally:
                    _close_connections(server)
                    await asyncio.sleep(0)  # the transports' closing callbacks run

            try:
                asyncio.run(main())
            finally:
                sock.close()

        self._server = server
        self._thread = threading.Thread(
            target=serve, name=f"dicomlab-web-{self._port}", daemon=True
        )
        self._thread.start()
        ready.wait(5)
        deadline = time.monotonic() + 5
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            self.stop()
            raise ConfigError(f"the web server on {self.host}:{self._port} did not start")
        log.info("web port %s serving DICOMweb at %s%s", self._port, self.url, self.ctx.dicomweb)

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(max(0.1, timeout - 1.0))
        if thread.is_alive():
            server.force_exit = True
            thread.join(1.0)
        if thread.is_alive():
            log.warning("the web server thread %s did not stop in %.0f s", thread.name, timeout)
        self.ctx.weblog.close()


def _close_connections(server: uvicorn.Server) -> None:
    """End the connections still open once uvicorn has stopped: a response cut off by the
    stop (its grace period over, its task cancelled) leaves its transport open, and the
    client waiting until the garbage collector closes the socket."""
    for connection in list(server.server_state.connections):
        transport = getattr(connection, "transport", None)
        if transport is not None:  # closing too: one waiting to flush to a stalled client
            transport.abort()
