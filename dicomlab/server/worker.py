"""One worker process of a LocalPACS (``python -m dicomlab.server.worker FD CONFIG``):
serves the storage associations its owner hands it (:mod:`dicomlab.server.workers`).

It binds no port. It reads its owner's messages on the socket ``FD``: a connection
(its descriptor passed along, the A-ASSOCIATE-RQ still unread in it) to serve, or
``stop``. When a connection ends it tells its owner who called, how it ended, what
was stored and which accession numbers arrived (its owner keeps the counters and
the worklist). It stops, aborting what it serves, on ``stop``, on SIGTERM, or when
the socket closes (its owner is gone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import sys
import threading
from typing import Any

from pynetdicom import evt

from dicomlab.log.writer import configure as configure_log
from dicomlab.server.localpacs import LocalPACS
from dicomlab.server.workers import WorkerConfig

__all__ = ["Receiver", "main"]

log = logging.getLogger("dicomlab.server.worker")


class Receiver(LocalPACS):
    """A LocalPACS that listens on nothing: it serves the connections it is handed, whose
    admission its owner has decided (every one may store and echo)."""

    accepts = False

    def __init__(self, config: WorkerConfig, ctl: socket.socket) -> None:
        super().__init__(
            config.root,
            ae_title=config.ae_title,
            port=0,
            allow_unknown=("echo", "store"),
            max_associations=1000,  # the owner's limit was applied before the hand-over
            fsync=config.fsync,
            idle_timeout=config.idle_timeout,
            worklist_on_arrival="keep",  # the owner's worklist is told instead
        )
        self._ctl = ctl
        self._send_lock = threading.Lock()
        self._sent = dict(self.archive.stats)
        self._accessions: set[str] = set()
        self._ends: dict[tuple[str, int], dict[str, str]] = {}
        self.archive.on_stored.append(self._arrived)

    def _handlers(self) -> list[Any]:
        return [*super()._handlers(), (evt.EVT_CONN_CLOSE, self._closed)]

    def _arrived(self, row: dict[str, Any]) -> None:
        accession = str(row.get("AccessionNumber") or "").strip()
        if accession:
            with self._send_lock:
                self._accessions.add(accession)

    def _on_established(self, event: Any) -> None:
        super()._on_established(event)
        self._end(event, "released")

    def _on_aborted(self, event: Any) -> None:
        super()._on_aborted(event)
        self._end(event, "aborted")

    def _on_rejected(self, event: Any) -> None:
        super()._on_rejected(event)
        self._end(event, "rejected")

    def _end(self, event: Any, outcome: str) -> None:
        requestor = event.assoc.requestor  # its AE title: set on admission (lifecycle._admit)
        self._ends[_key(requestor)] = {"ae": str(requestor.ae_title).strip(), "outcome": outcome}

    def _closed(self, event: Any) -> None:
        """A connection ended: tell the owner (what it stored since the last message)."""
        end = self._ends.pop(_key(event.assoc.requestor), {"ae": "", "outcome": "closed"})
        with self._send_lock:
            now = dict(self.archive.stats)
            delta = {k: now[k] - self._sent.get(k, 0) for k in now}
            self._sent = now
            accessions, self._accessions = sorted(self._accessions), set()
            address = event.assoc.requestor.address_info
            message = {
                "closed": True,
                **end,
                "address": [str(address.address), int(address.port)] if address else None,
                "stats": delta,
                "accessions": accessions,
            }
            with contextlib.suppress(OSError):
                self._ctl.send(json.dumps(message).encode())


def _key(requestor: Any) -> tuple[str, int]:
    info = requestor.address_info
    return (str(info.address), int(info.port)) if info is not None else ("", 0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    ctl = socket.socket(fileno=int(args[0]))
    config = WorkerConfig(**json.loads(args[1]))
    if config.log_folder is None:
        configure_log(enabled=False)
    else:
        configure_log(config.log_folder)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C in the owner's terminal: the owner stops us
    receiver = Receiver(config, ctl)
    receiver.start()
    ctl.settimeout(0.2)
    try:
        ctl.send(json.dumps({"ready": True}).encode())
        while not stopping.is_set():
            try:
                data, fds, _, _ = socket.recv_fds(ctl, 4096, 8)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break  # the owner is gone
            message = json.loads(data)
            if message.get("stop"):
                break
            address = tuple(message.get("address") or ("", 0))
            for fd in fds:
                sock = socket.socket(fileno=fd)
                sock.settimeout(None)
                try:
                    receiver.serve_handed(sock, address)
                except Exception:
                    log.exception("cannot serve the connection from %s", address)
                    sock.close()
    finally:
        receiver.stop(timeout=2.0)
        receiver.archive.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
