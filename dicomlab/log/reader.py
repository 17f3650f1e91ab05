"""Reading the network log: only the partitions and columns needed, typed DataFrames out."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from dicomlab.core.logschema import ASSOCIATIONS, HTTP_SERVICES, OPERATIONS, SERVICES
from dicomlab.core.status import decode_status
from dicomlab.errors import ValidationError
from dicomlab.log import writer as _writer
from dicomlab.log.compact import live_parts

__all__ = ["association", "read_associations", "read_log", "summary"]

_JOINED = ["local_ae", "peer_ae", "peer_host", "peer_port", "tls", "outcome"]


def _folder(folder: str | os.PathLike[str] | None) -> Path:
    if folder is not None:
        return Path(folder)
    _writer.writer().flush()  # what this process logged so far is readable at once
    where = _writer.folder()
    if where is None:
        raise ValidationError("the network log is off (DICOMLAB_LOG=0 or configure(enabled=False))")
    return where


def _when(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str) and value in ("today", "yesterday"):
        # the local calendar day, as the query presets
        day = date.today() - timedelta(days=1 if value == "yesterday" else 0)
        return datetime(day.year, day.month, day.day).astimezone().astimezone(UTC)
    if isinstance(value, str):
        try:
            value = pd.Timestamp(value).to_pydatetime()
        except ValueError:
            raise ValidationError(f"{name}={value!r} is not a date or time") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValidationError(f"{name}={value!r} is not a date or time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dataset(root: Path, table: str, schema: pa.Schema) -> pads.Dataset | None:
    """The table's live part files (none that a compacted part replaces) as a dataset."""
    where = root / table
    if not where.is_dir():
        return None
    files = [str(p) for d in sorted(where.glob("date=*")) for p in live_parts(d)]
    part = pads.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    return pads.dataset(
        files, schema=schema, format="parquet", partitioning=part, partition_base_dir=str(where)
    )


def _read(
    root: Path,
    table: str,
    schema: pa.Schema,
    time_col: str,
    since: datetime | None,
    until: datetime | None,
    extra: Any = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    full = schema.append(pa.field("date", pa.string()))
    for attempt in range(3):
        try:
            return _read_once(root, table, schema, full, time_col, since, until, extra, columns)
        except FileNotFoundError:
            # a compaction replaced parts between our listing and our read: list again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _read_once(
    root: Path,
    table: str,
    schema: pa.Schema,
    full: pa.Schema,
    time_col: str,
    since: datetime | None,
    until: datetime | None,
    extra: Any,
    columns: list[str] | None,
) -> pd.DataFrame:
    ds = _dataset(root, table, full)
    if ds is None:
        return _empty(schema, columns)
    flt = extra
    # Partition pruning first (whole days), then the exact bounds on the time column.
    if since is not None:
        day = pads.field("date") >= since.strftime("%Y-%m-%d")
        exact = pads.field(time_col) >= pa.scalar(since, type=schema.field(time_col).type)
        flt = (day & exact) if flt is None else (flt & day & exact)
    if until is not None:
        day = pads.field("date") <= until.strftime("%Y-%m-%d")
        exact = pads.field(time_col) < pa.scalar(until, type=schema.field(time_col).type)
        flt = (day & exact) if flt is None else (flt & day & exact)
    out = ds.to_table(columns=columns or schema.names, filter=flt)
    frame: pd.DataFrame = out.to_pandas(types_mapper=_types)
    return frame


def _types(t: pa.DataType) -> Any:
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_string(t):
        return pd.StringDtype("pyarrow")  # no Python object per value: a million rows read fast
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def _empty(schema: pa.Schema, columns: list[str] | None) -> pd.DataFrame:
    table = schema.empty_table()
    if columns:
        table = table.select(columns)
    out: pd.DataFrame = table.to_pandas(types_mapper=_types)
    return out


def read_associations(
    folder: str | os.PathLike[str] | None = None,
    since: Any = None,
    until: Any = None,
    peer: str | None = None,
) -> pd.DataFrame:
    """The ``associations`` table: one row per association or failed connection."""
    root = _folder(folder)
    extra = None
    if peer is not None:
        extra = (pads.field("peer_ae") == peer) | (pads.field("peer_host") == peer)
    return _read(
        root,
        "associations",
        ASSOCIATIONS,
        "requested_at",
        _when(since, "since"),
        _when(until, "until"),
        extra,
    )


def read_log(
    folder: str | os.PathLike[str] | None = None,
    since: Any = None,
    until: Any = None,
    peer: str | None = None,
    service: str | None = None,
) -> pd.DataFrame:
    """DICOM operations (both roles), with their association's peer and outcome joined.

    ``since``/``until``: dates or times (naive ones are UTC), or ``"today"`` /
    ``"yesterday"`` (the local calendar day); ``peer``: AE title or
    host; ``service``: ``C-STORE``, ``C-FIND``, ... Only the date partitions in range
    are read. ``status_name`` decodes each status.
    """
    if service is not None and service not in SERVICES:
        err = ValidationError(f"service {service!r} must be one of {', '.join(SERVICES)}")
        err.field = "service"
        raise err
    root = _folder(folder)
    lo, hi = _when(since, "since"), _when(until, "until")
    extra = pads.field("service") == service if service is not None else None
    ops = _read(root, "operations", OPERATIONS, "started_at", lo, hi, extra)
    # Associations can start the day before their operations: widen by a day.
    assoc = _read(
        root,
        "associations",
        ASSOCIATIONS,
        "requested_at",
        lo - timedelta(days=1) if lo is not None else None,
        hi,
        columns=["association_id", *_JOINED],
    )
    out = ops.merge(assoc, on="association_id", how="left")
    if peer is not None:
        out = out[(out.peer_ae == peer) | (out.peer_host == peer)].reset_index(drop=True)
    out["status_name"] = _status_names(out["status"], out["service"])
    out.attrs["folder"] = str(root)
    return out


def _status_names(status: pd.Series, service: pd.Series) -> pd.Series:
    """Each status decoded (``HTTP 404`` for a DICOMweb request), once per distinct value:
    a million rows hold a few dozen statuses."""
    names = pd.Series(pd.NA, index=status.index, dtype=pd.StringDtype())
    web = service.isin(HTTP_SERVICES).to_numpy(dtype=bool)
    known = status.notna().to_numpy(dtype=bool)
    for is_web in (False, True):
        mask = known & (web == is_web)
        if not mask.any():
            continue
        codes = status[mask]
        decoded = {
            code: f"HTTP {int(code)}" if is_web else decode_status(int(code)).name
            for code in codes.unique()
        }
        names[mask] = codes.map(decoded).astype(pd.StringDtype())
    return names


def association(
    association_id: str, folder: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """One association's whole story: its row and its operations in order."""
    root = _folder(folder)
    one = pads.field("association_id") == association_id
    assoc = _read(root, "associations", ASSOCIATIONS, "requested_at", None, None, one)
    if assoc.empty:
        raise ValidationError(f"no association {association_id!r} in {root}")
    ops = _read(root, "operations", OPERATIONS, "started_at", None, None, one)
    return {
        "association": assoc.iloc[0].to_dict(),
        "operations": ops.sort_values("started_at").reset_index(drop=True),
    }


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per our AE title, peer, our role and service: operations, success rate, median/p95
    latency, MB, MB/s. ``local_ae`` and ``role`` say who "we" were (``MINE``, ``SCP``:
    our LocalPACS MINE answered), ``peer`` who the other side was."""
    if df.empty:
        return pd.DataFrame(
            columns=[
                "local_ae",
                "peer",
                "role",
                "service",
                "operations",
                "success_rate",
                "failures",
                "median_s",
                "p95_s",
                "MB",
                "MB_per_s",
                "top_failure",
            ]
        )
    work = df.assign(
        local_ae=df.get("local_ae", pd.Series(index=df.index, dtype="string")).fillna("?"),
        peer=df["peer_ae"].fillna(df.get("peer_host", pd.Series(dtype="string"))).fillna("?"),
        ok=df["status_category"].isin(["success", "warning"]),
        mb=df["bytes"].astype("Float64").fillna(0) / 1e6,
    )
    rows = []
    keys = ["local_ae", "peer", "role", "service"]
    for (local_ae, peer, role, service), g in work.groupby(keys, dropna=False):
        busy = g["duration_s"].astype(float).sum()
        failures = g[~g.ok]
        top = failures["status_name"].dropna().value_counts()
        if top.empty:
            top = failures["error"].dropna().value_counts()
        rows.append(
            {
                "local_ae": local_ae,
                "peer": peer,
                "role": role,
                "service": service,
                "operations": len(g),
                "success_rate": float(g.ok.mean()),
                "failures": len(failures),
                "median_s": float(g["duration_s"].median()),
                "p95_s": float(g["duration_s"].quantile(0.95)),
                "MB": float(g.mb.sum()),
                "MB_per_s": float(g.mb.sum() / busy) if busy > 0 else float("nan"),
                "top_failure": top.index[0] if len(top) else None,
            }
        )
    return pd.DataFrame(rows).sort_values(keys).reset_index(drop=True)
