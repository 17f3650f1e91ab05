"""The network log's Parquet schema (versioned) and the pure conversions of its rows.

Two tables, each a Parquet dataset partitioned by UTC date
(``<folder>/<table>/date=YYYY-MM-DD/part-*.parquet``):

* ``associations``: one row per association (or failed connection), both roles;
* ``operations``: one row per DIMSE operation, both roles, and one per DICOMweb
  request.

Schema version 2 added the DICOMweb services (``QIDO-RS``, ``WADO-RS``, ``STOW-RS``)
to ``service``; their ``status`` is the HTTP status, their association is the HTTP
client session (``peer_host``/``peer_port`` of the service). Version 3 added storage
commitment's ``N-ACTION`` and ``N-EVENT-REPORT`` (``sop_class_uid`` the Push Model).
Version 4 (this one) added a LocalPACS's web port: role ``SCP`` rows for its DICOMweb
services and for ``ZIP`` downloads and ``VIEW`` (the viewer opened), one associations
row per web server run (written with its first request: no end, no outcome), and the
column ``principal`` (the web user or ``token:<id>`` answered; null for DIMSE). Older
files read as they are (``principal`` null).

Timestamps are timezone-aware UTC (microseconds). No patient identifiers are ever
logged: UIDs, AE titles, hosts, statuses, counts, bytes and timings only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

__all__ = [
    "ASSOCIATIONS",
    "DICOMWEB_SERVICES",
    "DIMSE_SERVICES",
    "HTTP_SERVICES",
    "OPERATIONS",
    "OUTCOMES",
    "ROLES",
    "SCHEMA_VERSION",
    "SERVICES",
    "TABLES",
    "http_category",
    "to_table",
]

SCHEMA_VERSION = "4"

ROLES = ("SCU", "SCP")
DIMSE_SERVICES = ("C-ECHO", "C-FIND", "C-MOVE", "C-GET", "C-STORE", "N-ACTION", "N-EVENT-REPORT")
DICOMWEB_SERVICES = ("QIDO-RS", "WADO-RS", "STOW-RS")
HTTP_SERVICES = (*DICOMWEB_SERVICES, "ZIP", "VIEW")
"""Services whose ``status`` is an HTTP status."""
SERVICES = (*DIMSE_SERVICES, *HTTP_SERVICES)
OUTCOMES = ("released", "aborted", "rejected", "failed")

_TS = pa.timestamp("us", tz="UTC")
_META = {b"dicomlab.log.schema_version": SCHEMA_VERSION.encode()}

ASSOCIATIONS = pa.schema(
    [
        pa.field("association_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("local_ae", pa.string()),
        pa.field("peer_ae", pa.string()),
        pa.field("peer_host", pa.string()),
        pa.field("peer_port", pa.int32()),
        pa.field("tls", pa.bool_()),
        pa.field("requested_at", _TS, nullable=False),
        pa.field("established_at", _TS),
        pa.field("ended_at", _TS),
        pa.field("outcome", pa.string()),
        pa.field("reject_reason", pa.string()),
        pa.field("max_pdu", pa.int64()),
        pa.field("contexts_proposed", pa.int32()),
        pa.field("contexts_accepted", pa.int32()),
        pa.field("bytes_sent", pa.int64()),
        pa.field("bytes_received", pa.int64()),
        pa.field("job_id", pa.string()),
        pa.field("error", pa.string()),
    ],
    metadata=_META,
)

OPERATIONS = pa.schema(
    [
        pa.field("association_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("message_id", pa.int32()),
        pa.field("sop_class_uid", pa.string()),
        pa.field("sop_instance_uid", pa.string()),
        pa.field("study_instance_uid", pa.string()),
        pa.field("transfer_syntax", pa.string()),
        pa.field("started_at", _TS, nullable=False),
        pa.field("ended_at", _TS),
        pa.field("duration_s", pa.float64()),
        pa.field("status", pa.int32()),
        pa.field("status_category", pa.string()),
        pa.field("n_matches", pa.int32()),
        pa.field("n_completed", pa.int32()),
        pa.field("n_failed", pa.int32()),
        pa.field("n_warning", pa.int32()),
        pa.field("bytes", pa.int64()),
        pa.field("job_id", pa.string()),
        pa.field("error", pa.string()),
        pa.field("principal", pa.string()),
    ],
    metadata=_META,
)

TABLES: dict[str, pa.Schema] = {"associations": ASSOCIATIONS, "operations": OPERATIONS}


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(f"naive timestamp {value!r}: the log takes UTC-aware datetimes only")
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts, missing keys null) as a table of exactly ``schema``; unknown keys refused."""
    names = schema.names
    rows = list(rows)
    for row in rows:
        extra = set(row) - set(names)
        if extra:
            raise ValueError(f"unknown log columns {sorted(extra)}")
    columns = {}
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if pa.types.is_timestamp(field.type):
            values = [_utc(v) for v in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=schema)


def http_category(status: int) -> str:
    """An HTTP status as a status category: 2xx success (206 Partial Content a warning:
    the answer was cut short), anything else failure."""
    if status == 206:
        return "warning"
    return "success" if 200 <= status < 300 else "failure"
