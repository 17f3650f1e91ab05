"""Batch queries: one query per value of one keyword, on the transfer queue, over
C-FIND or QIDO-RS.

The values are a :class:`~dicomlab.transfer.job.Job`'s items: at most
``max_connections`` workers, one progress bar. Over DIMSE each worker's association is
kept from value to value (:class:`~dicomlab.transfer.session.Sessions`; after any
failure it is aborted, never reused, and the next value opens a new one), as for a
retrieve; over QIDO-RS each worker keeps its HTTP session (an :class:`Asker` is what
differs).
The matches of every value go into one DataFrame with a ``query_value`` column; the
job's rows (one per value, :data:`~dicomlab.core.outcomes.QUERIES`) are what
``dl.reconcile`` shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, NoReturn, Protocol

import pandas as pd

from dicomlab.core.call import Call
from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import QUERIES, FindAttrs
from dicomlab.core.query import Query, to_identifier
from dicomlab.core.results import ResultBuilder
from dicomlab.errors import DicomlabError, ValidationError, warn_partial
from dicomlab.net.find import Outcome, fail, find_contexts, model_order, pick_model, run_find
from dicomlab.transfer.job import run_items
from dicomlab.transfer.session import Sessions

__all__ = ["Asker", "conclude_batch", "find_many", "matched", "reconcile", "warn_batch"]

log = logging.getLogger(__name__)


def matched(n: int) -> str:
    """A value's outcome from its number of matches (``failed`` is said by the caller)."""
    return "none" if n == 0 else "matched" if n == 1 else "several"


class Asker(Protocol):
    """One protocol's side of a batch: how one value is asked (each worker thread calls
    ``ask``; DIMSE: :class:`_Dimse`; QIDO-RS: :class:`dicomlab.web.qido.Batch`)."""

    protocol: str
    service: str

    def ask(self, value: str, into: ResultBuilder) -> str | None:
        """Put ``value``'s matches into ``into``; the error of a partial answer (None:
        complete). Raises DicomlabError when nothing could be asked."""
        ...

    def failed(self) -> None:
        """After a value that did not end well (DIMSE: drop this worker's association)."""
        ...

    def close(self) -> None: ...

    def fail_all(self, first: str, error: str | None, n: int) -> NoReturn:
        """Raise for a batch whose every value failed without raising (``first``'s
        ``error``)."""
        ...


class _Dimse:
    """C-FIND per value, each worker's association kept from value to value."""

    protocol = "dimse"
    service = "C-FIND"

    def __init__(
        self, node: Node, base: Query, keyword: str, ours: str, today: date | None
    ) -> None:
        self.node, self.base, self.keyword, self.ours, self.today = node, base, keyword, ours, today
        probe = base.with_filters(**{keyword: ""})
        self.order = model_order(node, probe)
        self.contexts = find_contexts(node, probe)
        self.sessions = Sessions()
        self.outcomes: dict[str, Outcome] = {}

    def ask(self, value: str, into: ResultBuilder) -> str | None:
        assoc = self.sessions.open(self.node, self.contexts, calling_ae=self.ours)
        model = pick_model(assoc, self.order, self.node)
        identifier = to_identifier(
            self.base.with_filters(**{self.keyword: value}),
            today=self.today,
            charset=self.node.charset,
        )
        outcome = run_find(assoc, model, identifier, into, self.node, query_value=value)
        self.outcomes[value] = outcome
        return outcome.error

    def failed(self) -> None:
        self.sessions.discard()  # never reused after an operation that did not end well

    def close(self) -> None:
        self.sessions.close_all()

    def fail_all(self, first: str, error: str | None, n: int) -> NoReturn:
        out = self.outcomes[first]
        attrs = {
            "status": out.status,
            "error": f"all {n} queries failed; the first ({first!r}): {out.error}",
            "error_comment": out.comment,
            "timed_out": out.timed_out,
            "peer_ended": out.peer_ended,
        }
        fail(attrs, self.node, self.ours, "C-FIND", batch=f" (all {n} queries failed)")


class _Batch:
    """What the workers of one find_many share."""

    def __init__(self, asker: Asker, keys: Sequence[str]) -> None:
        self.asker = asker
        self.keys = keys
        self.builder = ResultBuilder(keys, extra=["query_value"])
        self.progress: Callable[[int], None] = lambda n: None
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        self.errors: dict[str, str] = {}
        self.raised: dict[str, DicomlabError] = {}

    def query(self, value: str) -> dict[str, Any]:
        """One value's query; its QUERIES row."""
        local = ResultBuilder(self.keys, extra=["query_value"])
        error: str | None = None
        try:
            error = self.asker.ask(value, local)
        except DicomlabError as exc:
            error = str(exc)
            with self.lock:
                self.raised[value] = exc
        except BaseException:
            self.asker.failed()
            raise
        if error is not None:
            self.asker.failed()
            with self.lock:
                self.errors[value] = error
        with self.lock:
            self.builder.extend(local)
        self.progress(1)
        n = len(local)
        return QUERIES.row(
            query_value=value, n_matches=n, outcome="failed" if error else matched(n), error=error
        )


def find_many(
    call: Call,
    base: Query,
    keyword: str,
    values: Sequence[str],
    today: date | None = None,
    warn: bool = True,
    asker: Asker | None = None,
) -> pd.DataFrame:
    """``base`` once per value of ``keyword`` over at most ``node.max_connections``
    connections (``dl.find_many`` says what the result holds); C-FIND unless another
    protocol's ``asker`` is given."""
    node, progress = call.node, call.progress
    if asker is None:
        asker = _Dimse(node, base, keyword, call.ours, today)
    batch = _Batch(asker, base.with_filters(**{keyword: ""}).keys)

    def make_context(advance: Callable[[int], None]) -> _Batch:
        batch.progress = advance
        return batch

    t0 = time.perf_counter()
    job = run_items(
        list(values),
        make_context,
        lambda b, value: b.query(value),
        QUERIES,
        workers=node.max_connections,
        total=len(values),
        desc=f"{asker.service} {node.name}",
        unit="query",
        progress=progress,
        on_finish=asker.close,
    )
    rows = job.result(on_interrupt="raise")
    bad = rows[~rows.outcome.isin(["matched", "none", "several"])]  # failed, or never ran
    failed = {
        str(value): str(error) if isinstance(error, str) else "cancelled before it started"
        for value, error in zip(bad.query_value, bad.error, strict=True)
    }
    df = batch.builder.frame(extra_dtypes={"query_value": "string"})
    elapsed = time.perf_counter() - t0
    conclude_batch(df, call, asker.protocol, base, keyword, values, failed, elapsed)
    if values and len(failed) == len(values) and not len(df):
        first = values[0]
        if first in batch.raised:
            raise batch.raised[first]  # every query failed and nothing came: never empty
        asker.fail_all(first, batch.errors.get(first), len(values))
    if warn:
        warn_batch(df, call)
    return df


def conclude_batch(
    df: pd.DataFrame,
    call: Call,
    protocol: str,
    base: Query,
    keyword: str,
    values: Sequence[str],
    failed: dict[str, str],
    elapsed: float,
) -> None:
    """What a batch of queries says about itself, whatever the protocol: ``df.attrs``
    (:class:`FindAttrs` and :data:`~dicomlab.core.outcomes.BATCH_ATTRS`) and a log line
    when values failed."""
    error = None if not failed else f"{len(failed)} of {len(values)} queries failed"
    attrs = FindAttrs(
        call.node.name,
        protocol,
        f"{base.describe()} x {len(values)} {keyword}",
        0 if not failed else None,
        not failed,
        elapsed,
        error,
    )
    df.attrs.update(attrs.as_attrs(), failed=failed, requested=list(values), keyword=keyword)
    if failed:
        log.warning(
            "find_many on %s: %d of %d queries failed", call.node.address, len(failed), len(values)
        )


def warn_batch(df: pd.DataFrame, call: Call) -> None:
    """Warn (:class:`dl.PartialResultWarning`) when some values of a batch failed."""
    failed: dict[str, str] = df.attrs["failed"]
    if not failed:
        return
    value, why = next(iter(failed.items()))
    warn_partial(
        f"find_many on {call.node.address}: {df.attrs['error']} (first: {value!r}: {why}); "
        "df.attrs['failed'] lists them, dl.reconcile(df) shows each value's outcome"
    )


def reconcile(df: pd.DataFrame) -> pd.DataFrame:
    """Per requested value of a ``find_many`` result: how many rows matched, and how it
    went (the :data:`~dicomlab.core.outcomes.QUERIES` table: ``query_value``,
    ``n_matches``, ``outcome`` of ``matched``, ``none``, ``several`` or ``failed``,
    ``error``)."""
    requested = df.attrs.get("requested")
    if requested is None:
        raise ValidationError("reconcile() needs a DataFrame returned by find_many")
    counts = df["query_value"].value_counts()
    failed = df.attrs.get("failed", {})
    rows = []
    for value in requested:
        n = int(counts.get(value, 0))
        outcome = "failed" if value in failed else matched(n)
        rows.append(
            QUERIES.row(query_value=value, n_matches=n, outcome=outcome, error=failed.get(value))
        )
    return QUERIES.frame(rows)
