"""The network log's folder is read as it is by other engines: DuckDB and Dask see the
same rows as ``dl.read_log``, for a synthetic fortnight and for this process's own log."""

from __future__ import annotations

import fcntl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dask.dataframe as dd
import duckdb
import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.log import writer as log_writer


def _duckdb_counts(folder: Path, table: str, column: str) -> dict[str, int]:
    pattern = str(folder / table / "**" / "*.parquet")
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT {column}, count(*) FROM read_parquet(?, hive_partitioning = true) "
            f"GROUP BY {column}",
            [pattern],
        ).fetchall()
    return {str(k): int(v) for k, v in rows}


def _dask_counts(folder: Path, table: str, column: str) -> dict[str, int]:
    frame = dd.read_parquet(str(folder / table), columns=[column])
    counts = frame[column].value_counts().compute()
    return {str(k): int(v) for k, v in counts.items()}


def test_duckdb_and_dask_read_a_fortnight_of_log_as_dl_read_log_does(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    n = dl.log.write_synthetic_log(folder, days=14, seed=4)
    ops = dl.read_log(folder)
    assocs = dl.log.read_associations(folder)
    assert len(ops) == n > 1000
    by_service = {str(k): int(v) for k, v in ops.service.value_counts().items()}
    by_outcome = {str(k): int(v) for k, v in assocs.outcome.value_counts().items()}
    assert _duckdb_counts(folder, "operations", "service") == by_service
    assert _duckdb_counts(folder, "associations", "outcome") == by_outcome
    assert _dask_counts(folder, "operations", "service") == by_service
    assert _dask_counts(folder, "associations", "outcome") == by_outcome
    # the date partitions and the timestamps agree (UTC), in DuckDB as in pandas
    with duckdb.connect() as con:
        days = con.execute(
            "SELECT count(*) FROM read_parquet(?, hive_partitioning = true) "
            "WHERE strftime(started_at AT TIME ZONE 'UTC', '%Y-%m-%d') <> CAST(date AS VARCHAR)",
            [str(folder / "operations" / "**" / "*.parquet")],
        ).fetchone()
    assert days == (0,)
    assert ops.started_at.dt.tz is not None


@pytest.mark.peers
def test_this_processs_own_log_is_read_alike(tmp_path: Path) -> None:
    dl.synth.write_studies(tmp_path / "src", n_studies=2, seed=8, max_series=1)
    with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
        dl.store(lp.node, tmp_path / "src", progress=False)
        dl.find(lp.node, dl.Query.studies())
        dl.echo(lp.node)
    log_writer.writer().flush()
    folder = log_writer.folder()
    assert folder is not None
    ops = dl.read_log(folder)
    assert {"C-STORE", "C-FIND", "C-ECHO"} <= set(ops.service)
    by_service = {str(k): int(v) for k, v in ops.service.value_counts().items()}
    assert _duckdb_counts(folder, "operations", "service") == by_service
    assert _dask_counts(folder, "operations", "service") == by_service
    roles = pd.Series(_duckdb_counts(folder, "operations", "role"))
    assert set(roles.index) == {"SCU", "SCP"} and roles.sum() == len(ops)


# -- compaction ---------------------------------------------------------------------------


def _op(i: int, day: datetime) -> dict[str, object]:
    return {
        "association_id": f"assoc-{i // 10}",
        "role": "SCU",
        "service": "C-ECHO",
        "message_id": i,
        "started_at": day + timedelta(microseconds=i),
        "status": 0,
        "status_category": "success",
    }


def test_compaction_merges_parts_while_rows_are_written(tmp_path: Path) -> None:
    """A writer keeps adding parts to the partition being compacted: every row is read
    once, before, during and after, and the folder ends with few parts."""
    folder = tmp_path / "logs"
    day = datetime(2026, 3, 9, 8, tzinfo=UTC)
    written = 0
    for batch in range(40):  # forty small parts, as a day of flushes leaves
        rows = [_op(batch * 25 + i, day) for i in range(25)]
        log_writer.write_rows(folder, "operations", rows)
        written += len(rows)
    partition = folder / "operations" / "date=2026-03-09"
    assert len(list(partition.glob("part-*.parquet"))) == 40
    stop = threading.Event()
    lock = threading.Lock()

    def keep_writing() -> None:
        nonlocal written
        i = 10_000
        while not stop.is_set():
            log_writer.write_rows(folder, "operations", [_op(i + k, day) for k in range(5)])
            with lock:
                written += 5
            i += 5

    seen: list[int] = []
    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        for _ in range(5):
            done = dl.log.compact(folder)
            assert set(done.table) <= {"operations"}
            with lock:
                at_least = written
            got = dl.read_log(folder)
            assert got.message_id.is_unique, "a row counted twice"
            seen.append(len(got))
            assert len(got) >= at_least - 5  # a part may be landing right now
    finally:
        stop.set()
        writer.join()
    final = dl.read_log(folder)
    assert len(final) == written and final.message_id.is_unique
    dl.log.compact(folder)
    assert len(dl.read_log(folder)) == written
    assert len(list(partition.glob("part-*.parquet"))) == 1
    with duckdb.connect() as con:
        (count,) = con.execute(
            "SELECT count(*) FROM read_parquet(?)", [str(partition / "*.parquet")]
        ).fetchone() or (0,)
    assert count == written  # the folder as it is: each row once
    assert seen == sorted(seen)


def test_an_interrupted_compaction_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merged part is in place but the parts it replaces are not deleted yet (a crash
    between the two): dl.read_log reads each row once, and the next compaction finishes
    the job. The crash is simulated (no real failure happens there on demand)."""
    folder = tmp_path / "logs"
    day = datetime(2026, 3, 10, 8, tzinfo=UTC)
    for batch in range(6):
        log_writer.write_rows(folder, "operations", [_op(batch * 10 + i, day) for i in range(10)])
    partition = folder / "operations" / "date=2026-03-10"
    real_unlink = Path.unlink

    def crash(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith("part-") and "-compacted-" not in self.name:
            raise KeyboardInterrupt  # killed before the first delete
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        dl.log.compact(folder)
    monkeypatch.undo()
    assert len(list(partition.glob("part-*.parquet"))) == 7  # the six and the merged one
    got = dl.read_log(folder)
    assert len(got) == 60 and got.message_id.is_unique
    dl.log.compact(folder)
    assert len(list(partition.glob("part-*.parquet"))) == 1
    assert len(dl.read_log(folder)) == 60


def test_a_second_compaction_of_the_same_partition_waits_its_turn(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    day = datetime(2026, 3, 11, 8, tzinfo=UTC)
    for batch in range(3):
        log_writer.write_rows(folder, "operations", [_op(batch * 10 + i, day) for i in range(10)])
    partition = folder / "operations" / "date=2026-03-11"
    with open(partition / ".compact.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another process compacting it would
        assert dl.log.compact(folder).empty
    assert list(dl.log.compact(folder).parts) == [3]
