"""Jobs that survive a kernel restart: every retrieve is written down as it runs.

One SQLite file, ``jobs.sqlite`` in :func:`dicomlab.core.nodebook.home` (WAL, so that
several kernels share it). A job's row says what was asked (the node by name and
address, the archive folder, the method, level and connections) and how it stands;
one row per item holds its state and, once it ended, its outcome row. A worker's
item is written ``running`` before it starts and ``done`` with its outcome when it
ends; a cancel is written at once. A kernel killed mid-job leaves the job
``running`` under a process that is gone: :func:`jobs` shows it ``interrupted`` and
``dl.resume(job_id)`` takes it up.

Nothing identifying is written: UIDs, counts, statuses and error texts (which name
UIDs and AE titles, never a patient).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dicomlab.core.items import Item
from dicomlab.core.nodebook import home
from dicomlab.errors import ValidationError

__all__ = ["JOB_COLUMNS", "JobSpec", "Journal", "jobs"]

log = logging.getLogger(__name__)

_FILE = "jobs.sqlite"
_HOST = os.uname().nodename
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    archive TEXT NOT NULL,
    uid TEXT NOT NULL,
    job TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    PRIMARY KEY (archive, uid)
);
CREATE TABLE IF NOT EXISTS items (
    job TEXT NOT NULL,
    idx INTEGER NOT NULL,
    item TEXT NOT NULL,
    state TEXT NOT NULL,
    row TEXT,
    PRIMARY KEY (job, idx)
);
"""
JOB_COLUMNS: tuple[tuple[str, str], ...] = (
    ("job_id", "string"),
    ("kind", "string"),
    ("node", "string"),
    ("into", "string"),
    ("method", "string"),
    ("state", "string"),  # running, done, cancelled, interrupted
    ("items", "Int64"),
    ("done", "Int64"),
    ("complete", "Int64"),
    ("created", "datetime64[ns, UTC]"),
    ("updated", "datetime64[ns, UTC]"),
)
"""``dl.jobs()``'s columns and dtypes."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a retrieve job was asked, enough to take it up again (no secret, no PHI)."""

    node: str  # the node's name in the book, or its address
    address: str
    into: str  # the LocalPACS archive folder
    ae_title: str  # the LocalPACS's AE title (a C-MOVE destination)
    method: str
    level: str | None
    max_connections: int | None
    protocol: str
    deidentified: bool


def _now() -> float:
    return time.time()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """The jobs file: one connection, shared by a job's threads under a lock; closed by
    :meth:`close` (reopened on the next call). ``synchronous=NORMAL`` in WAL mode: a
    killed kernel loses nothing that was committed (a power cut may lose the last
    items, which a resume then checks against the archive)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else home() / _FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                self._conn = conn
            with self._conn:
                yield self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- writing, as a job runs -----------------------------------------------------
    def begin(self, job_id: str, kind: str, spec: JobSpec, items: Sequence[Item]) -> None:
        """A new job and its items, all queued (or the same job taken up again)."""
        now = _now()
        with self._kept("job"), self._db() as db:
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, 'running', ?, ?, ?, ?) ON CONFLICT(id) DO "
                "UPDATE SET state='running', pid=excluded.pid, updated=excluded.updated",
                (
                    job_id,
                    kind,
                    json.dumps(asdict(spec)),
                    os.getpid(),
                    os.uname().nodename,
                    now,
                    now,
                ),
            )
            db.executemany(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, 'queued', NULL)",
                [(job_id, i, json.dumps(asdict(it))) for i, it in enumerate(items)],
            )

    def started(self, job_id: str, idx: int) -> None:
        with self._kept("item started"), self._db() as db:
            db.execute("UPDATE items SET state='running' WHERE job=? AND idx=?", (job_id, idx))

    def finished(self, job_id: str, idx: int, row: dict[str, Any] | list[Any], state: str) -> None:
        text = json.dumps(row, default=_plain)
        with self._kept("item outcome"), self._db() as db:
            db.execute(
                "UPDATE items SET state=?, row=? WHERE job=? AND idx=?", (state, text, job_id, idx)
            )
            db.execute("UPDATE jobs SET updated=? WHERE id=?", (_now(), job_id))

    @contextmanager
    def _kept(self, what: str) -> Iterator[None]:
        """A journal write that fails (disk full, locked too long) is logged: the
        transfer goes on (a resume then checks against the archive)."""
        try:
            yield
        except sqlite3.Error as exc:
            log.warning("jobs file %s: %s not written (%s)", self.path, what, exc)

    def end(self, job_id: str, state: str) -> None:
        """The job ended ``done`` or ``cancelled`` (a cancel is kept: it is not resumed
        on its own)."""
        with self._kept("job end"), self._db() as db:
            db.execute("UPDATE jobs SET state=?, updated=? WHERE id=?", (state, _now(), job_id))
            if state == "cancelled":
                db.execute(
                    "UPDATE items SET state='cancelled' WHERE job=? AND state IN "
                    "('queued', 'running')",
                    (job_id,),
                )

    # -- claims: two jobs never pull the same item into the same archive at once ------
    def claim(self, archive: str, uid: str, job_id: str) -> str | None:
        """Claim ``uid`` for ``job_id`` in ``archive``: None when it is ours now, else the
        job that holds it (a job whose process is gone loses its claims). A jobs file
        that cannot be written claims nothing: the item is fetched (and logged)."""
        try:
            return self._claim(archive, uid, job_id)
        except sqlite3.Error as exc:
            log.warning("jobs file %s: claim of %s not written (%s)", self.path, uid, exc)
            return None

    def _claim(self, archive: str, uid: str, job_id: str) -> str | None:
        # The INSERT is the claim (the primary key makes it atomic between kernels); a
        # dead holder's claim is taken with a compare-and-swap on its job id.
        mine = (archive, uid, job_id, os.getpid(), _HOST)
        with self._db() as db:
            try:
                db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", mine)
                return None
            except sqlite3.IntegrityError:
                pass
            got = db.execute(
                "SELECT job, pid, host FROM claims WHERE archive=? AND uid=?", (archive, uid)
            ).fetchone()
            if got is None:  # released in between: ask again
                return self._claim_again(db, mine)
            job, pid, host = got
            if job == job_id:
                return None
            if host != _HOST or _alive(pid):
                return str(job)
            taken = db.execute(
                "UPDATE claims SET job=?, pid=?, host=? WHERE archive=? AND uid=? AND job=?",
                (job_id, os.getpid(), _HOST, archive, uid, job),
            )
            return None if taken.rowcount == 1 else str(job)

    @staticmethod
    def _claim_again(db: sqlite3.Connection, mine: tuple[Any, ...]) -> str | None:
        try:
            db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", mine)
        except sqlite3.IntegrityError:
            return "another job"
        return None

    def release(self, archive: str, uid: str, job_id: str) -> None:
        with self._kept("claim release"), self._db() as db:
            db.execute(
                "DELETE FROM claims WHERE archive=? AND uid=? AND job=?", (archive, uid, job_id)
            )

    # -- reading, after a restart -----------------------------------------------------
    def spec(self, job_id: str) -> tuple[str, JobSpec, str]:
        """A job's kind, what it was asked, and its state as :func:`jobs` says it."""
        with self._db() as db:
            got = db.execute(
                "SELECT kind, spec, state, pid, host FROM jobs WHERE id=?", (job_id,)
            ).fetchone()
        if got is None:
            raise ValidationError(
                f"no job {job_id!r} in {self.path}", hint="dl.jobs() lists the jobs kept there"
            )
        kind, spec, state, pid, host = got
        return kind, JobSpec(**json.loads(spec)), _state(state, pid, host)

    def items(self, job_id: str) -> list[tuple[Item, str, Any]]:
        """Each item, its state, and its outcome row (None while not ended)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT item, state, row FROM items WHERE job=? ORDER BY idx", (job_id,)
            ).fetchall()
        return [
            (Item(**json.loads(it)), state, None if row is None else json.loads(row))
            for it, state, row in rows
        ]

    def table(self) -> pd.DataFrame:
        """Every job kept, newest first (see :data:`JOB_COLUMNS`)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT j.id, j.kind, j.spec, j.state, j.pid, j.host, j.created, j.updated, "
                "COUNT(i.idx), SUM(i.state = 'done'), "
                "SUM(i.state = 'done' AND json_extract(i.row, '$.complete') = 1) "
                "FROM jobs j LEFT JOIN items i ON i.job = j.id GROUP BY j.id "
                "ORDER BY j.created DESC"
            ).fetchall()
        records = []
        for jid, kind, spec, state, pid, host, created, updated, n, done, ok in rows:
            s = json.loads(spec)
            records.append(
                {
                    "job_id": jid,
                    "kind": kind,
                    "node": s.get("node"),
                    "into": s.get("into"),
                    "method": s.get("method"),
                    "state": _state(state, pid, host),
                    "items": n,
                    "done": done or 0,
                    "complete": ok or 0,
                    "created": pd.Timestamp(created, unit="s", tz=UTC),
                    "updated": pd.Timestamp(updated, unit="s", tz=UTC),
                }
            )
        df = pd.DataFrame(records, columns=[c for c, _ in JOB_COLUMNS])
        return df.astype(dict(JOB_COLUMNS))


def _state(state: str, pid: int, host: str) -> str:
    """``running`` under a process that is gone (on this machine) is ``interrupted``."""
    if state == "running" and host == _HOST and not _alive(pid):
        return "interrupted"
    return state


def _plain(value: Any) -> Any:
    """JSON for an outcome row's values (numpy and pandas scalars, NA, datetimes)."""
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def jobs() -> pd.DataFrame:
    """The retrieve jobs kept in ``DICOMLAB_HOME``, newest first: ``job_id``, ``kind``,
    ``node``, ``into``, ``method``, ``state`` (``running``, ``done``, ``cancelled``, or
    ``interrupted`` when the kernel that ran it is gone), ``items``, ``done``,
    ``complete``, ``created``, ``updated``. ``dl.resume(job_id)`` takes one up."""
    journal = Journal()
    try:
        return journal.table()
    finally:
        journal.close()
