"""C-FIND as a client: ``find`` and ``find_many`` returning typed DataFrames."""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from datetime import date
from typing import Any, NoReturn

import pandas as pd
from pynetdicom.association import Association

from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query, to_identifier
from dicomlab.core.results import ResultBuilder
from dicomlab.core.status import decode_status, is_refusal
from dicomlab.errors import (
    AssociationAborted,
    DicomlabError,
    DimseError,
    DimseTimeout,
    OperationRefused,
    PartialResultWarning,
    ValidationError,
)
from dicomlab.net.association import calling_ae_title, open_association, resolve_node
from dicomlab.net.cfind import (
    Outcome,
    find_contexts,
    find_on,
    model_order,
    pick_model,
    run_find,
)

__all__ = ["conclude", "fail", "find", "find_many", "reconcile", "refusal_hint"]

log = logging.getLogger(__name__)


def find(
    node: Node | str,
    query: Query,
    *,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
    today: date | None = None,
    warn: bool = True,
) -> pd.DataFrame:
    """Query ``node`` and return one typed row per match.

    A filter holding several values (a list or a DataFrame column) fans out into
    one query per value (see :func:`find_many`).

    ``df.attrs``: ``node`` (name), ``query`` (description), ``status`` (final
    DIMSE status or None), ``complete`` (False when the peer stopped early,
    failed or the association broke: the rows are then partial), ``elapsed_s``,
    ``error``, ``error_comment`` (the peer's), and ``undecodable`` ((row, keyword)
    pairs whose text did not decode).

    A refusal or a failure is never an empty result: with no row it raises; after some
    rows it returns them and warns (:class:`dl.PartialResultWarning`; ``warn=False``
    leaves only ``df.attrs`` to say so, for callers that show it themselves).

    Raises
    ------
    ValidationError
        A bad query (before anything is sent).
    NetworkError
        No association (refused, rejected...): nothing was queried; also
        AssociationAborted when the peer aborted before the first match.
    OperationRefused
        The peer refused the query (not authorised, out of resources...): its status,
        its Error Comment and a hint (which AE title to register where).
    DimseError
        Another failure status, or a response we could not take, before any match
        (DimseTimeout: no response in time).
    KeyboardInterrupt
        Propagated after aborting the association; nothing half-built is returned.
    """
    if not isinstance(query, Query):
        raise ValidationError(f"expected a dl.Query, got {query!r}")
    many = query.fan_out()
    if many is not None:
        keyword, values = many
        base = Query(
            query.level,
            tuple((k, v) for k, v in query.filters if k != keyword),
            query.return_keys,
            query.date,
            query.model,
        )
        return find_many(
            node,
            base,
            progress=False,
            calling_ae=calling_ae,
            book=book,
            today=today,
            warn=warn,
            **{keyword: values},
        )
    target = resolve_node(node, book)
    ours = calling_ae_title(calling_ae, book)
    identifier = to_identifier(query, today=today, charset=target.charset)
    t0 = time.perf_counter()
    with open_association(target, find_contexts(target, query), calling_ae=ours) as opened:
        df = find_on(opened.assoc, target, query, identifier=identifier)
    df.attrs["elapsed_s"] = time.perf_counter() - t0
    conclude(df, target, ours, "C-FIND", warn)
    return df


def conclude(df: pd.DataFrame, node: Node, ours: str, service: str, warn: bool = True) -> None:
    """Raise for an operation that failed with nothing delivered; warn for a partial one.

    ``df`` is the result of :func:`find_on` (its ``attrs`` say how it ended).
    """
    if df.attrs.get("complete"):
        return
    status, error = df.attrs.get("status"), df.attrs.get("error")
    if len(df):
        if not warn:
            return
        warnings.warn(
            PartialResultWarning(
                f"{service} on {node.address}: partial result, {len(df)} rows, then "
                f"{error or status} (df.attrs['complete'] is False)"
            ),
            stacklevel=3,
        )
        return
    fail(df.attrs, node, ours, service)


def fail(
    attrs: Mapping[Any, Any], node: Node, ours: str, service: str, batch: str = ""
) -> NoReturn:
    """Raise the error for an operation that ended as ``attrs`` say (``status``, ``error``,
    ``error_comment``, ``timed_out``, ``peer_ended``) with nothing delivered (``batch``:
    what a batch of them came to, for the message)."""
    status, error, comment = attrs.get("status"), attrs.get("error"), attrs.get("error_comment")
    if attrs.get("timed_out"):
        raise DimseTimeout(str(error), node=node, status=status)
    if attrs.get("peer_ended"):
        raise AssociationAborted(str(error), node=node)
    if status is None:  # we broke it off (a message we cannot take): never reused
        raise DimseError(str(error), node=node)
    if is_refusal(int(status)):
        raise OperationRefused(
            f"{node.address} refused the {service}{batch}: {decode_status(int(status))}"
            + (f" ({comment})" if comment else ""),
            node=node,
            status=int(status),
            comment=comment,
            hint=refusal_hint(int(status), node, ours, service),
        )
    raise DimseError(str(error), node=node, status=int(status), comment=comment)


def refusal_hint(status: int, node: Node, ours: str, service: str) -> str:
    """What to try after ``node`` refused ``service`` to our AE title ``ours``."""
    if status == 0x0124:
        allow = {"C-FIND": "allow_query", "C-STORE": "allow_store"}.get(service, "allow_retrieve")
        return (
            f"{node.ae_title} does not let AE title {ours!r} use {service}: register {ours!r} "
            f"(with this machine's address) on {node.ae_title} with that permission; for a "
            f"dl.LocalPACS in another process, add dl.Node(..., ae_title={ours!r}, "
            f"{allow}=True) to its book"
        )
    if 0xA700 <= status <= 0xA7FF:
        return f"{node.ae_title} is out of resources: narrow the query or try again later"
    if status == 0xA801:
        return f"register our AE title {ours!r} on {node.ae_title} as a move destination"
    return f"{node.ae_title} does not support this {service}: check the node's configuration"


def find_many(
    node: Node | str,
    base: Query,
    *,
    progress: bool = True,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
    today: date | None = None,
    warn: bool = True,
    **values: Iterable[Any],
) -> pd.DataFrame:
    """Run ``base`` once per value of one keyword, over at most ``max_connections`` associations.

    >>> # dl.find_many(pacs, dl.Query.studies(), AccessionNumber=accessions)  # doctest: +SKIP

    Returns one DataFrame with a ``query_value`` column. ``df.attrs`` holds
    ``complete`` (every value answered with Success), ``failed`` (values whose
    query failed, with the error), and what :func:`reconcile` summarises:
    values that matched nothing or several rows. When any value failed it warns
    (:class:`dl.PartialResultWarning`; not with ``warn=False``); when every value
    failed and nothing came, it raises as :func:`find` does.
    """
    if len(values) != 1:
        raise ValidationError(f"find_many takes exactly one keyword of values, got {list(values)}")
    ((keyword, raw),) = values.items()
    items = list(dict.fromkeys(str(v) for v in raw if v is not None and str(v) != ""))
    probe = base.with_filters(**{keyword: items[0] if items else ""})  # validates the keyword
    target = resolve_node(node, book)
    ours = calling_ae_title(calling_ae, book)
    builder = ResultBuilder(probe.keys, extra=["query_value"])
    lock = threading.Lock()
    failed: dict[str, str] = {}
    raised: dict[str, DicomlabError] = {}
    outcomes: dict[str, Outcome] = {}
    statuses: dict[str, int | None] = {}
    work: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    for item in items:
        work.put(item)
    n_workers = max(1, min(target.max_connections, len(items)))
    for _ in range(n_workers):
        work.put(None)
    bar = _progress(len(items), f"C-FIND {target.name}", progress)
    order = model_order(target, probe)
    contexts = find_contexts(target, probe)
    stop = threading.Event()

    def worker() -> None:
        # One association per worker, reused for value after value; after any
        # failure it is aborted (never reused) and the next value opens a new one.
        stack: ExitStack | None = None
        assoc: Association | None = None
        model: Any = None
        try:
            while not stop.is_set():
                value = work.get()
                if value is None:
                    return
                error: str | None = None
                status: int | None = None
                local = ResultBuilder(probe.keys, extra=["query_value"])
                try:
                    if assoc is None:
                        stack = ExitStack()
                        op = stack.enter_context(
                            open_association(target, contexts, calling_ae=ours)
                        )
                        assoc, model = op.assoc, pick_model(op.assoc, order, target)
                    identifier = to_identifier(
                        base.with_filters(**{keyword: value}), today=today, charset=target.charset
                    )
                    outcome = run_find(assoc, model, identifier, local, target, query_value=value)
                    status, error = outcome.status, outcome.error
                    with lock:
                        outcomes[value] = outcome
                except DicomlabError as exc:
                    error = str(exc)
                    with lock:
                        raised[value] = exc
                if error is not None and stack is not None:
                    if assoc is not None:
                        assoc.abort()
                    stack.close()
                    stack, assoc = None, None
                _merge(builder, local, lock)
                with lock:
                    statuses[value] = status
                    if error is not None:
                        failed[value] = error
                bar.update(1)
        finally:
            if stack is not None:
                stack.close()

    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=worker, name=f"dicomlab-find-{i}", daemon=True)
        for i in range(n_workers)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except BaseException:
        stop.set()
        for t in threads:
            t.join(target.timeout + 5)
        raise
    finally:
        bar.close()
    df = builder.frame(extra_dtypes={"query_value": "string"})
    elapsed = time.perf_counter() - t0
    df.attrs.update(
        node=target.name,
        protocol="dimse",
        query=f"{base.describe()} x {len(items)} {keyword}",
        elapsed_s=elapsed,
        status=0 if not failed else None,
        complete=not failed,
        failed=dict(failed),
        error=None if not failed else f"{len(failed)} of {len(items)} queries failed",
        requested=items,
        keyword=keyword,
    )
    if failed:
        log.warning(
            "find_many on %s: %d of %d queries failed", target.address, len(failed), len(items)
        )
    if items and len(failed) == len(items) and not len(df):
        _all_failed(target, ours, items, outcomes, raised)
    if failed and warn:
        first = next(iter(failed.items()))
        warnings.warn(
            PartialResultWarning(
                f"find_many on {target.address}: {len(failed)} of {len(items)} queries failed "
                f"(first: {first[0]!r}: {first[1]}); df.attrs['failed'] lists them, "
                "dl.reconcile(df) shows each value's outcome"
            ),
            stacklevel=2,
        )
    return df


def _all_failed(
    node: Node,
    ours: str,
    items: list[str],
    outcomes: dict[str, Outcome],
    raised: dict[str, DicomlabError],
) -> NoReturn:
    """Every query of a batch failed and nothing came: raise as :func:`find` does (the
    first value's error), never an empty frame."""
    first = items[0]
    if first in raised:
        raise raised[first]
    out = outcomes[first]
    attrs = {
        "status": out.status,
        "error": f"all {len(items)} queries failed; the first ({first!r}): {out.error}",
        "error_comment": out.comment,
        "timed_out": out.timed_out,
        "peer_ended": out.peer_ended,
    }
    fail(attrs, node, ours, "C-FIND", batch=f" (all {len(items)} queries failed)")


def _merge(into: ResultBuilder, part: ResultBuilder, lock: threading.Lock) -> None:
    with lock:
        offset = len(into)
        for kw, column in part._cols.items():
            into._cols[kw].extend(column)
        into.undecodable.extend((offset + r, kw) for r, kw in part.undecodable)


def reconcile(df: pd.DataFrame) -> pd.DataFrame:
    """Per requested value of a :func:`find_many` result: how many rows matched, and status.

    Columns: ``query_value``, ``n_matches``, ``outcome`` (``matched``, ``none``,
    ``several``, ``failed``), ``error``.
    """
    requested = df.attrs.get("requested")
    if requested is None:
        raise ValidationError("reconcile() needs a DataFrame returned by find_many")
    counts = df["query_value"].value_counts()
    failed = df.attrs.get("failed", {})
    rows = []
    for value in requested:
        n = int(counts.get(value, 0))
        if value in failed:
            outcome = "failed"
        elif n == 0:
            outcome = "none"
        elif n == 1:
            outcome = "matched"
        else:
            outcome = "several"
        rows.append(
            {"query_value": value, "n_matches": n, "outcome": outcome, "error": failed.get(value)}
        )
    out = pd.DataFrame(rows, columns=["query_value", "n_matches", "outcome", "error"])
    return out.astype(
        {"query_value": "string", "n_matches": "int64", "outcome": "string", "error": "string"}
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, desc=desc, unit="query")
