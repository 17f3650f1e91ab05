"""The outcome tables' schemas: what ``dl.retrieve`` and ``dl.store`` return, and a job's
progress, with their dtypes (the network log's schema is in :mod:`logschema`).

* ``RETRIEVE``: one row per retrieved item (a study, series or instance);
* ``STORE``: one row per instance sent;
* ``COMMITTED``: one row per instance of a storage commitment request (``dl.commit``);
* ``QUERIES``: one row per value of a ``find_many`` (``dl.reconcile``);
* ``FindAttrs``: what ``df.attrs`` of every ``dl.find`` result says (``find_many``
  adds :data:`BATCH_ATTRS`);
* ``progress_columns(schema)``: a running job's table, ``item`` and ``state`` first.

Every table has nullable dtypes that never change with the data (an integer column
with a missing value stays ``Int64``, not float), and no patient identifiers: UIDs,
AE titles, statuses, counts, bytes and timings only. ``schema.frame(rows)`` and
``schema.empty()`` are pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pandas.api.extensions import ExtensionDtype

__all__ = [
    "BATCH_ATTRS",
    "COMMITTED",
    "FIND_ATTRS",
    "JOB_STATES",
    "QUERIES",
    "RETRIEVE",
    "STORE",
    "FindAttrs",
    "OutcomeSchema",
    "progress_columns",
    "progress_frame",
]

JOB_STATES = ("queued", "running", "done", "cancelled")

Dtype = Literal["string", "Int64", "Float64", "boolean"]
"""The nullable pandas dtypes an outcome column may have."""
_DTYPES: dict[str, ExtensionDtype] = {
    "string": pd.StringDtype(),
    "Int64": pd.Int64Dtype(),
    "Float64": pd.Float64Dtype(),
    "boolean": pd.BooleanDtype(),
}


@dataclass(frozen=True, slots=True)
class OutcomeSchema:
    """A table's columns in order, each with its pandas dtype."""

    name: str
    columns: tuple[tuple[str, Dtype], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def dtypes(self) -> dict[str, Dtype]:
        return dict(self.columns)

    def row(self, **values: Any) -> dict[str, Any]:
        """A blank row (every column ``None``) with ``values`` filled in."""
        unknown = set(values) - set(self.dtypes)
        if unknown:
            raise KeyError(f"{self.name} outcome rows have no column {sorted(unknown)}")
        return {**dict.fromkeys(self.names), **values}

    def frame(self, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """The rows as a table of exactly these columns and dtypes."""
        df = pd.DataFrame(list(rows), columns=self.names)
        return typed(df, self.dtypes)

    def empty(self) -> pd.DataFrame:
        return self.frame([])


def typed(df: pd.DataFrame, dtypes: Mapping[str, Dtype]) -> pd.DataFrame:
    """``df`` with each column of ``dtypes`` converted (numbers coerced, text as string)."""
    out = df.copy()
    for col, dtype in dtypes.items():
        if col not in out.columns:
            continue
        values = out[col]
        if dtype in ("Int64", "Float64"):
            values = pd.to_numeric(values, errors="coerce")
        out[col] = values.astype(_DTYPES[dtype])
    return out


_PROGRESS: tuple[tuple[str, Dtype], ...] = (("item", "string"), ("state", "string"))


def progress_columns(schema: OutcomeSchema) -> list[str]:
    """A job's progress table: the item, its state (one of JOB_STATES), its row so far."""
    return [name for name, _ in _PROGRESS] + schema.names


def progress_frame(schema: OutcomeSchema, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A job's progress rows as a table of :func:`progress_columns`, typed."""
    df = pd.DataFrame(list(rows), columns=progress_columns(schema))
    return typed(df, {**dict(_PROGRESS), **schema.dtypes})


_UIDS: tuple[tuple[str, Dtype], ...] = (
    ("StudyInstanceUID", "string"),
    ("SeriesInstanceUID", "string"),
    ("SOPInstanceUID", "string"),
)

RETRIEVE = OutcomeSchema(
    "retrieve",
    (
        ("node", "string"),
        ("method", "string"),  # "get" or "move"
        ("level", "string"),  # "study", "series" or "instance"
        *_UIDS,
        ("status", "Int64"),  # the final DIMSE status
        ("status_text", "string"),
        ("completed", "Int64"),  # sub-operation counts of the final (or last) response
        ("failed", "Int64"),
        ("warning", "Int64"),
        ("expected_instances", "Int64"),  # counted by a C-FIND first (None: unknown)
        ("received_instances", "Int64"),  # in the LocalPACS afterwards
        ("complete", "boolean"),  # every expected instance is here
        ("skipped", "boolean"),  # all of it was here already: nothing was asked
        ("bytes", "Int64"),
        ("duration_s", "Float64"),
        ("mb_per_s", "Float64"),
        ("attempts", "Int64"),
        ("error", "string"),  # why it is not complete, with what to try next
    ),
)

STORE = OutcomeSchema(
    "store",
    (
        ("node", "string"),
        ("path", "string"),  # the file sent (None for an in-memory data set)
        ("SOPInstanceUID", "string"),
        ("SOPClassUID", "string"),
        ("transfer_syntax", "string"),  # as held
        ("sent_as", "string"),  # as sent (after any conversion)
        ("status", "Int64"),
        ("status_text", "string"),
        ("bytes", "Int64"),
        ("duration_s", "Float64"),
        ("attempts", "Int64"),
        ("error", "string"),
        ("committed", "boolean"),  # storage commitment asked: did the PACS take it on
        ("commit_error", "string"),  # why not (Failure Reason, refusal, no report in time)
    ),
)

COMMITTED = OutcomeSchema(
    "committed",
    (
        ("node", "string"),
        ("SOPClassUID", "string"),
        ("SOPInstanceUID", "string"),
        ("committed", "boolean"),
        ("commit_error", "string"),
    ),
)

DEIDENTIFIED = OutcomeSchema(
    "deidentified",
    (
        ("source", "string"),  # the file read (None for a data set or received bytes)
        ("path", "string"),  # the de-identified file written (None: not written)
        ("PatientID", "string"),  # the pseudonym
        *_UIDS,  # the new UIDs
        ("Modality", "string"),
        ("removed", "Int64"),  # attributes removed (X), private ones included
        ("emptied", "Int64"),  # Z
        ("replaced", "Int64"),  # D: dummies, pseudonyms
        ("remapped", "Int64"),  # U: new UIDs
        ("cleaned", "Int64"),  # C: dates shifted, descriptors scrubbed
        ("kept", "Int64"),  # K, and attributes the table does not list
        ("private_removed", "Int64"),
        ("burned_in_risk", "string"),  # "yes", "possible" or "no" (see Deidentifier)
        ("status", "string"),  # "ok" or "failed"
        ("error", "string"),
    ),
)

QUERIES = OutcomeSchema(
    "queries",
    (
        ("query_value", "string"),  # the value of the batch's keyword
        ("n_matches", "Int64"),
        ("outcome", "string"),  # matched, none, several or failed
        ("error", "string"),
    ),
)


@dataclass(frozen=True, slots=True)
class FindAttrs:
    """How a query ended, as every protocol reports it in the result's ``df.attrs``.

    ``complete`` is False when the peer stopped early, failed, capped the result or the
    connection broke: the rows are then partial. ``status`` is the final status (DIMSE)
    or None; ``error_comment`` the peer's own words; ``timed_out`` and ``peer_ended``
    say why there is no final status.
    """

    node: str
    protocol: str  # "dimse" (DICOMweb results will say "dicomweb")
    query: str  # the query, described
    status: int | None
    complete: bool
    elapsed_s: float
    error: str | None = None
    error_comment: str | None = None
    timed_out: bool = False
    peer_ended: bool = False

    def as_attrs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


FIND_ATTRS: tuple[str, ...] = (*FindAttrs.__slots__, "undecodable")
"""The keys of every ``dl.find`` result's ``df.attrs`` (``undecodable``: (row, keyword)
pairs whose text did not decode)."""
BATCH_ATTRS: tuple[str, ...] = ("failed", "requested", "keyword")
"""What a ``find_many`` result's ``df.attrs`` adds: the values whose query failed (with
the error), the values asked for, and their keyword."""
