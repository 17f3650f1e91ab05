"""Compaction: a date partition's many small part files merged into one, while the log
is being written, losing no row and counting none twice.

Parts are never changed once written (each write is a new file, renamed into place
whole), so a compaction takes a snapshot of a partition's parts, writes their rows
into one new part under a temporary name, renames it into place, then deletes the
parts it replaced. A part written meanwhile is not in the snapshot: it stays. The new
part names the parts it replaces in its Parquet metadata, and ``dl.read_log`` reads
past any that are still there (between the rename and the deletes, or after a crash
between them; the next compaction deletes them). One compaction per partition at a
time: a lock file, held with ``flock``, makes a second one skip the partition.

Engines reading the folder on their own (DuckDB, Dask, Spark) see each row once except
during the moment between that rename and those deletes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dicomlab.core.logschema import TABLES

__all__ = ["REPLACES", "compact", "live_parts"]

log = logging.getLogger(__name__)

REPLACES = b"dicomlab.log.replaces"
"""Parquet metadata key of a compacted part: the JSON list of the parts it replaces."""
_COMPACTED = "-compacted-"


def _parts(partition: Path) -> list[Path]:
    return sorted(p for p in partition.glob("part-*.parquet") if p.is_file())


def _replaced(parts: list[Path]) -> set[str]:
    """Names of the parts that the compacted parts among ``parts`` replace."""
    out: set[str] = set()
    for part in parts:
        if _COMPACTED not in part.name:
            continue
        try:
            meta = pq.read_schema(part).metadata or {}
        except (OSError, pa.ArrowInvalid):
            continue  # unreadable: not trusted to replace anything
        out.update(json.loads(meta.get(REPLACES, b"[]")))
    return out


def live_parts(partition: Path) -> list[Path]:
    """A partition's part files, without those a compacted part replaces."""
    parts = _parts(partition)
    gone = _replaced(parts)
    return [p for p in parts if p.name not in gone]


@contextlib.contextmanager
def _locked(partition: Path) -> Iterator[bool]:
    """Whether this process holds the partition's compaction lock (never waits)."""
    with open(partition / ".compact.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def compact(folder: str | os.PathLike[str] | None = None, min_parts: int = 2) -> pd.DataFrame:
    """Merge each date partition with ``min_parts`` or more part files into one part.

    ``folder``: the log folder (default: where this process writes its log). Returns
    one row per partition compacted: ``table``, ``date``, ``parts`` (how many were
    merged), ``rows``. Safe while the log is written, here or by another process.
    """
    from dicomlab.log.reader import _folder

    root = _folder(folder)
    done = []
    for table, schema in TABLES.items():
        where = root / table
        if not where.is_dir():
            continue
        for partition in sorted(where.glob("date=*")):
            if not partition.is_dir():
                continue
            with _locked(partition) as mine:
                if not mine:
                    log.info("%s is being compacted elsewhere: skipped", partition)
                    continue
                merged = _compact_partition(partition, schema, min_parts)
            if merged is not None:
                done.append(
                    {
                        "table": table,
                        "date": partition.name[5:],
                        "parts": merged[0],
                        "rows": merged[1],
                    }
                )
    return pd.DataFrame(done, columns=["table", "date", "parts", "rows"])


def _compact_partition(
    partition: Path, schema: pa.Schema, min_parts: int
) -> tuple[int, int] | None:
    parts = _parts(partition)
    gone = _replaced(parts)
    for stale in (p for p in parts if p.name in gone):  # left by an interrupted compaction
        stale.unlink(missing_ok=True)
    snapshot = [p for p in parts if p.name not in gone]
    if len(snapshot) < min_parts:
        return None
    merged = pa.concat_tables([pq.read_table(p, schema=schema) for p in snapshot])
    meta = dict(schema.metadata or {})
    meta[REPLACES] = json.dumps([p.name for p in snapshot]).encode()
    merged = merged.replace_schema_metadata(meta)
    name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}{_COMPACTED}{uuid.uuid4().hex[:8]}.parquet"
    tmp = partition / f".{name}.tmp"
    try:
        pq.write_table(merged, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, partition / name)
    finally:
        tmp.unlink(missing_ok=True)
    for part in snapshot:
        part.unlink(missing_ok=True)
    log.info("compacted %d parts of %s into %s", len(snapshot), partition, name)
    return len(snapshot), merged.num_rows
