"""The network log's folder is read as it is by other engines: DuckDB and Dask see the
same rows as ``dl.read_log``, for a synthetic fortnight and for this process's own log."""

from __future__ import annotations

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
