"""A TLS front for a plain-HTTP peer, for tests of HTTPS and client certificates.

Orthanc 1.10.1 as Debian bookworm ships it crashes on the first request over HTTPS
(its civetweb worker segfaults; the handshake alone succeeds), so a real Orthanc is
put behind this: OpenSSL (Python's :mod:`ssl`) does the handshake, the certificate
checks and, with ``require_client_cert``, refuses clients without a certificate
signed by the CA; the bytes inside go to and from the peer unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from types import TracebackType
from typing import Self

__all__ = ["TLSProxy"]

log = logging.getLogger(__name__)


class TLSProxy:
    """HTTPS on a free loopback port, forwarded to ``127.0.0.1:target_port``.

    Use it in a ``with`` block; leaving it closes the listener and every connection
    and joins its threads.
    """

    def __init__(
        self,
        target_port: int,
        cert: str,
        key: str,
        ca: str | None = None,
        require_client_cert: bool = False,
    ) -> None:
        self.target_port = target_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        if require_client_cert:
            if ca is None:
                raise ValueError("require_client_cert needs the CA that signs the clients")
            self.context.load_verify_locations(ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.refused = 0
        """Handshakes that failed (an untrusted client, or one without a certificate)."""

    def url(self, path: str = "") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Self:
        self._spawn(self._accept)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in threads:
            t.join(5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._sockets.append(s)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            self._track(raw)
            self._spawn(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake refused: %s", exc)
            with self._lock:
                self.refused += 1
            raw.close()
            return
        self._track(client)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        self._spawn(self._pipe, upstream, client)
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
