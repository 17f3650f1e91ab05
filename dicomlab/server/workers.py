"""Worker processes of a LocalPACS: storage associations received on every core.

One Python process receives on one core (the GIL). With ``LocalPACS(..., workers=N)``
the LocalPACS still accepts every connection and admits every association itself
(its gate, its limits, its access rules), and hands a connection whose
A-ASSOCIATE-RQ asks only for storage (and verification) to the least busy of N worker
processes (:mod:`dicomlab.server.worker`). The socket itself is passed (SCM_RIGHTS
over a Unix socket pair): the request is still unread in it (the gate only peeked),
so the worker's pynetdicom reads it as if it had accepted the connection. Workers
write into the same archive folder and SQLite index (WAL, a busy timeout; the SOP
Instance UID is the key, so an instance sent to two workers at once is indexed once)
and into their own network log parts.

Everything else stays in the owning process: queries, retrieves, the worklist,
storage commitment, TLS, the web side, this process's own connections, and anything
that must be de-identified. A connection is also served there while no worker is
ready (just after start) or when every slot is taken.

Lifecycle: the LocalPACS owns its workers. :meth:`Workers.stop` asks each to stop (its
associations aborted), waits within the deadline, then kills what is left and reaps
it. A worker whose owner dies sees its end of the socket pair close and exits. A worker
that dies on its own (killed, out of memory) is reaped and replaced, at most
:data:`RESTARTS` times a minute; past that the rest serve (or the owner does) and the
log says why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pynetdicom import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomlab.errors import ConfigError
from dicomlab.net import wire

__all__ = ["STORAGE_ONLY", "WorkerConfig", "Workers", "storage_request"]

log = logging.getLogger(__name__)

VERIFICATION = str(Verification)
STORAGE_ONLY = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts) | {
    VERIFICATION
}
"""The abstract syntaxes of an association a worker may serve."""

_PEEK = 64 * 1024
_MESSAGE = 64 * 1024
RESTARTS = 3
"""Dead workers replaced per :data:`_RESTART_WINDOW_S` at most (a worker that dies at
once, every time, is not started for ever)."""
_RESTART_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a worker process needs to serve storage like its owner (JSON on its command line)."""

    root: str
    ae_title: str
    fsync: bool
    idle_timeout: float
    log_folder: str | None
    """Where the owner's network log goes now (None: not kept)."""


def storage_request(sock: socket.socket) -> wire.AssociateRequest | None:
    """The A-ASSOCIATE-RQ waiting in ``sock`` (peeked, not read) when it asks only for
    storage and verification, with no role selection; else None."""
    try:
        head = sock.recv(_PEEK, socket.MSG_PEEK)
    except OSError:
        return None
    rq = wire.associate_request(head)
    if rq is None or rq.role_selection or not rq.abstract_syntaxes:
        return None
    if not set(rq.abstract_syntaxes) <= STORAGE_ONLY:
        return None
    return rq


@dataclass(slots=True)
class _Worker:
    proc: subprocess.Popen[bytes]
    ctl: socket.socket
    ready: threading.Event = field(default_factory=threading.Event)
    busy: int = 0
    alive: bool = True
    reader: threading.Thread | None = None


class Workers:
    """N worker processes receiving storage associations for one archive.

    ``report`` is called (in a reader thread) with each worker's message about a
    connection it ended: the calling AE, the address, how it ended, what was stored
    (``stats``, deltas) and the accession numbers that arrived.
    """

    def __init__(self, n: int, config: WorkerConfig, report: Callable[[dict[str, Any]], None]):
        if not 1 <= n <= 64:
            raise ConfigError(f"workers={n!r} must be in 0-64")
        self.n = n
        self.config = config
        self._report = report
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._restarts: list[float] = []  # when dead workers were replaced (monotonic)
        self.restarted = 0
        """Dead workers replaced so far."""

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the processes (without waiting for them: until one is ready, its owner
        serves every connection)."""
        with self._lock:
            self._stopping = False
        for _ in range(self.n):
            try:
                self._spawn()
            except OSError:
                self.stop(1.0)
                raise

    def _spawn(self) -> _Worker | None:
        """Start one worker process and its reader thread; None when the pool is being
        stopped meanwhile (the process is then stopped at once, never left running)."""
        argv = json.dumps(asdict(self.config))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dicomlab.server.worker", str(theirs.fileno()), argv],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = _Worker(proc, ours)
        worker.reader = threading.Thread(
            target=self._read,
            args=(worker,),
            name=f"dicomlab-{self.config.ae_title}-worker-{proc.pid}",
            daemon=True,
        )
        with self._lock:  # started under the lock: stop() may join any reader it sees
            stopping = self._stopping
            if not stopping:
                self._workers.append(worker)
                worker.reader.start()
        if stopping:
            ours.close()  # it sees its owner's end close and exits
            proc.kill()
            proc.wait(2.0)
            return None
        return worker

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until every worker is ready; whether they all are (False at once when one
        ended before it was ready)."""
        deadline = time.monotonic() + timeout
        for worker in list(self._workers):
            while not worker.ready.wait(0.05):
                if worker.proc.poll() is not None or time.monotonic() >= deadline:
                    return False  # it ended before it was ready, or is too slow
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every worker (aborting its associations) within ``timeout``; kill the rest."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            workers, self._workers = self._workers, []
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.ctl.send(b'{"stop": true}')
        for worker in workers:
            try:
                worker.proc.wait(max(0.05, deadline - time.monotonic() - 0.3))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in time: killed", worker.proc.pid)
                worker.proc.kill()
                worker.proc.wait(2.0)
            worker.ctl.close()
            if worker.reader is not None:
                worker.reader.join(max(0.05, deadline - time.monotonic()))

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (running or not yet reaped)."""
        return [w.proc.pid for w in self._workers]

    @property
    def ready(self) -> int:
        """Workers ready to take a connection now."""
        return sum(1 for w in self._workers if w.alive and w.ready.is_set())

    @property
    def busy(self) -> int:
        """Connections handed to the workers and not ended yet."""
        with self._lock:
            return sum(w.busy for w in self._workers if w.alive)

    # -- handing connections over -----------------------------------------------------
    def offer(self, sock: socket.socket, address: Any) -> bool:
        """Hand ``sock`` to the least busy ready worker; False when none took it (then
        the caller serves it). On True the socket is the worker's (closed here)."""
        with self._lock:
            ready = [w for w in self._workers if w.alive and w.ready.is_set()]
            if not ready:
                return False
            worker = min(ready, key=lambda w: w.busy)
            worker.busy += 1
        host, port = (address[0], address[1]) if isinstance(address, tuple) else (str(address), 0)
        message = json.dumps({"address": [host, port]}).encode()
        try:
            socket.send_fds(worker.ctl, [message], [sock.fileno()])
        except OSError as exc:
            log.warning("cannot hand a connection to worker %d: %s", worker.proc.pid, exc)
            with self._lock:
                worker.busy -= 1
            return False
        sock.close()  # the worker holds its own descriptor of the connection
        return True

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                data = worker.ctl.recv(_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            try:
                message = json.loads(data)
            except ValueError:
                log.warning("worker %d sent an unreadable message", worker.proc.pid)
                continue
            if "ready" in message:
                worker.ready.set()
                continue
            with self._lock:
                worker.busy = max(0, worker.busy - 1)
            try:
                self._report(message)
            except Exception:  # a report's failure never stops the reader
                log.exception("worker %d's report failed", worker.proc.pid)
        with self._lock:
            worker.alive, worker.busy = False, 0
            died = worker in self._workers  # not being stopped: it died
            if died:
                self._workers.remove(worker)
        if died:
            self._replace(worker)

    def _replace(self, dead: _Worker) -> None:
        """Reap a worker that died on its own and start another in its place, unless
        :data:`RESTARTS` were replaced within the last minute."""
        code = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = dead.proc.wait(2.0)
        dead.ctl.close()
        now = time.monotonic()
        with self._lock:
            self._restarts = [t for t in self._restarts if now - t < _RESTART_WINDOW_S]
            allowed = len(self._restarts) < RESTARTS and not self._stopping
            if allowed:
                self._restarts.append(now)
        name = self.config.ae_title
        if not allowed:
            log.error(
                "LocalPACS %s: worker process %d ended (exit code %s), its connections with "
                "it; not replaced (%d replaced in the last minute)",
                name,
                dead.proc.pid,
                code,
                RESTARTS,
            )
            return
        try:
            new = self._spawn()
        except OSError as exc:
            log.error("LocalPACS %s: cannot replace worker %d: %s", name, dead.proc.pid, exc)
            return
        if new is not None:
            self.restarted += 1
            log.error(
                "LocalPACS %s: worker process %d ended (exit code %s), its connections with "
                "it; replaced by process %d",
                name,
                dead.proc.pid,
                code,
                new.proc.pid,
            )
