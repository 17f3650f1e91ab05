"""Buffered Parquet writer for the network log: background flushes, atomic files, never in the way.

Rows are kept in memory and written every ``interval_s`` seconds by a daemon thread,
and on :func:`flush`, :func:`close` and interpreter exit. Each flush writes one file
per table and UTC date, under a temporary name (ignored by Parquet readers: it starts
with ``.``) that is renamed when complete, so a crash or kill never leaves a file that
cannot be read. A failing flush (disk full, permission) is reported once; its rows are
kept for the next try and the transfers that produced them are not affected.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from dicomlab.core.logschema import TABLES, to_table
from dicomlab.core.nodebook import home

__all__ = ["LogWriter", "configure", "folder", "write_rows", "writer"]

log = logging.getLogger(__name__)

_TIME_COLUMN = {"associations": "requested_at", "operations": "started_at"}
_MAX_BUFFERED = 1_000_000
"""Rows kept while flushes keep failing; beyond this the oldest are dropped (and said so)."""


class LogWriter:
    """Collects log rows per (folder, table) and writes them as Parquet partitions."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self._rows: dict[tuple[Path, str], list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.dropped = 0

    def add(self, table: str, row: dict[str, Any], where: Path) -> None:
        with self._lock:
            buf = self._rows[(where, table)]
            buf.append(row)
            if len(buf) > _MAX_BUFFERED:
                del buf[0]
                self.dropped += 1
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="dicomlab-log-writer", daemon=True
                )
                self._thread.start()

    def pending(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._rows.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now; returns the number of rows written."""
        with self._flush_lock:
            with self._lock:
                batches, self._rows = self._rows, defaultdict(list)
            written = 0
            for (where, table), rows in batches.items():
                if not rows:
                    continue
                try:
                    write_rows(where, table, rows)
                    written += len(rows)
                except OSError as exc:
                    if not self._failing:
                        log.warning(
                            "network log: cannot write %s under %s (%s); rows kept for the "
                            "next try",
                            table,
                            where,
                            exc,
                        )
                    self._failing = True
                    with self._lock:
                        self._rows[(where, table)][:0] = rows
                    continue
            if written and self._failing:
                log.info("network log: writing again")
                self._failing = False
            return written

    def close(self) -> None:
        """Stop the background thread and write what is left (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self.flush()


def write_rows(where: Path, table: str, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` of ``table`` under ``where`` now (one atomic file per UTC date)."""
    by_date: dict[str, list[dict[str, Any]]] = defaultdict(list)
    column = _TIME_COLUMN[table]
    for row in rows:
        stamp: datetime = row[column]
        by_date[stamp.astimezone(UTC).strftime("%Y-%m-%d")].append(row)
    for day, day_rows in by_date.items():
        part = where / table / f"date={day}"
        part.mkdir(parents=True, exist_ok=True)
        name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = part / f".{name}.tmp"
        try:
            pq.write_table(to_table(day_rows, TABLES[table]), tmp)
            os.replace(tmp, part / name)
        finally:
            if tmp.exists():
                tmp.unlink()


# pyarrow imports its pandas shim on first use, and at interpreter exit that import
# fails ("can't register atexit after shutdown"): use it once now, not in the exit flush.
to_table([], TABLES["operations"])

_WRITER = LogWriter()
_CONFIG: dict[str, Any] = {"folder": None, "enabled": True}
atexit.register(_WRITER.close)


def writer() -> LogWriter:
    return _WRITER


def configure(
    folder: str | os.PathLike[str] | None = None,
    enabled: bool = True,
    interval_s: float | None = None,
) -> None:
    """Where the log goes (default ``DICOMLAB_HOME/logs``), whether it is kept, how often written.

    ``DICOMLAB_LOG=0`` in the environment also turns it off.
    """
    _WRITER.flush()
    _CONFIG["folder"] = Path(folder) if folder is not None else None
    _CONFIG["enabled"] = enabled
    if interval_s is not None:
        _WRITER.interval_s = interval_s


def folder() -> Path | None:
    """The log folder now, or ``None`` when logging is off."""
    if not _CONFIG["enabled"] or os.environ.get("DICOMLAB_LOG", "1") in ("0", "false", "off"):
        return None
    configured: Path | None = _CONFIG["folder"]
    return configured if configured is not None else home() / "logs"
