"""Retrieve studies, series or instances from a node into a LocalPACS, whatever the
protocol: the queue, skipping, retries and the outcome row's verdict.

A protocol brings one item in (:class:`dicomlab.transfer.fetch.Fetcher`: C-GET and
C-MOVE in :mod:`dicomlab.transfer.getmove`); everything else a user sees of a
retrieve is the same for every protocol and is here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dicomlab.core.call import Call
from dicomlab.core.items import Item, items_from_frame, items_from_uids
from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import RETRIEVE
from dicomlab.core.query import Query
from dicomlab.core.status import decode_status
from dicomlab.deid import Deidentifier
from dicomlab.errors import AssociationRejected, DicomlabError, ValidationError
from dicomlab.log.record import redacting
from dicomlab.server.localpacs import LocalPACS
from dicomlab.transfer.fetch import Cancelled, Fetcher, FetcherFactory
from dicomlab.transfer.job import Durable, Job, run_items
from dicomlab.transfer.journal import JobSpec, Journal
from dicomlab.transfer.pace import Pace, Schedule, is_busy

__all__ = ["OUTCOME_COLUMNS", "Request", "run_retrieve"]

log = logging.getLogger(__name__)

OUTCOME_COLUMNS = RETRIEVE.names
"""The retrieve outcome table's columns (dtypes: :data:`dicomlab.core.outcomes.RETRIEVE`)."""
_RETRY_DELAYS_S = (0.5, 1.0, 2.0)
"""Waits before the second, third and fourth attempt of an item that failed transiently
(longer when the peer said how long: an HTTP Retry-After, up to :data:`_MAX_RETRY_AFTER_S`)."""
_MAX_RETRY_AFTER_S = 60.0
_BUSY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
"""Waits after the peer said it is busy (beside the connection given back, and at least
its Retry-After): four more chances over 7.5 s before the item fails."""

Finder = Callable[[Call, Query], pd.DataFrame]
"""Runs a query (for ``what`` given as a :class:`Query`) with the retrieve's protocol."""


class _Context:
    """What the workers of one retrieve call share (the job cancels through ``cancel``)."""

    def __init__(
        self,
        fetcher: Fetcher,
        into: LocalPACS,
        node: Node,
        progress: Callable[[int], None],
        cancel: threading.Event,
        deid: Deidentifier | None = None,
        lookup: Callable[[Query], pd.DataFrame] | None = None,
        durable: Durable | None = None,
        pace: Pace | None = None,
    ) -> None:
        self.fetcher, self.into, self.node, self.progress = fetcher, into, node, progress
        self.method = fetcher.method
        self.cancel = cancel
        self.deid = deid
        self.lookup = lookup  # an image-level query on the node (for a partly held item)
        self.durable = durable  # the job as written down (its claims on items)
        self.pace = pace  # the job's connections now (fewer while the peer is busy)

    def idle(self) -> None:
        """This worker waits: its kept association goes back to the peer."""
        self.fetcher.idle()

    def held(self, item: Item) -> tuple[int, int]:
        """Instances and bytes of ``item`` in the archive (by its new UIDs when the
        retrieve de-identifies)."""
        filters = item.filters()
        if self.deid is not None:
            filters = {k: self.deid.new_uid(v) for k, v in filters.items()}
        return self.into.archive.index.count_matching(filters)


def _subops(n: int) -> str:
    return f"{n} sub-operation{'s' if n != 1 else ''}"


def _retrieve_one(ctx: _Context, item: Item) -> dict[str, Any]:
    """One item, claimed first (another job pulling the same item into the same archive,
    in this kernel or another, is waited for: then it is here and skipped)."""
    durable = ctx.durable
    if durable is None:
        return _retrieve_any(ctx, item)
    archive = str(ctx.into.archive.root)
    told = False
    while (holder := durable.journal.claim(archive, item.uid, durable.job_id)) is not None:
        if not told:
            log.info("%s is being pulled by job %s: waiting for it", item.uid, holder)
            told = True
        if ctx.cancel.wait(0.25):
            row = _retrieve_row(ctx, item)
            row.update(complete=False, error="cancelled")
            return row
    try:
        return _retrieve_any(ctx, item)
    finally:
        durable.journal.release(archive, item.uid, durable.job_id)


def _retrieve_any(ctx: _Context, item: Item) -> dict[str, Any]:
    """One item: skipped when the archive has it all, else fetched (retried while the
    error is transient), then judged against what the archive holds. A de-identifying
    retrieve logs and reports the new UIDs only."""
    if ctx.deid is None:
        return _retrieve(ctx, item)
    with redacting(ctx.deid.new_uid):
        row = _retrieve(ctx, item)
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if row.get(key):
            row[key] = ctx.deid.new_uid(str(row[key]))
    row["error"] = _without(row.get("error"), item, ctx.deid)
    return row


def _without(error: Any, item: Item, deid: Deidentifier) -> Any:
    """An error text with the item's source UIDs replaced by the new ones."""
    if not isinstance(error, str):
        return error
    for uid in item.filters().values():
        error = error.replace(uid, deid.new_uid(uid))
    return error


def _retrieve_row(ctx: _Context, item: Item) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(OUTCOME_COLUMNS)
    row.update(
        node=ctx.node.name,
        method=ctx.method,
        level=item.level,
        StudyInstanceUID=item.study,
        SeriesInstanceUID=item.series,
        SOPInstanceUID=item.sop,
        skipped=False,
        attempts=0,
    )
    return row


def _retrieve(ctx: _Context, item: Item) -> dict[str, Any]:
    row = _retrieve_row(ctx, item)
    t0 = time.perf_counter()
    have0, bytes0 = ctx.held(item)
    try:
        expected = ctx.fetcher.plan(item)
    except DicomlabError as exc:
        expected = item.expected
        row["error"] = f"could not count the instances first: {exc}"
        if ctx.pace is not None and is_busy(exc):
            ctx.pace.busy()
    row["expected_instances"] = expected
    if expected is not None and expected > 0 and have0 >= expected:
        row.update(
            skipped=True,
            status=0,
            status_text="already in the archive",
            received_instances=have0,
            complete=True,
            duration_s=0.0,
            bytes=0,
        )
        ctx.progress(expected)
        return row
    parts = _missing(ctx, item) if expected is not None and 0 < have0 < expected else None
    if parts is None:
        _fetch(ctx, item, row)
    else:  # only what is not here yet: nothing that arrived is transferred twice
        log.info(
            "%s %s: %d of %d here, fetching %d part(s)",
            item.level,
            item.uid,
            have0,
            expected,
            len(parts),
        )
        row["status"], row["status_text"] = 0, "the rest of a partly held item"
        for part in parts:
            sub: dict[str, Any] = {**row, "attempts": 0, "completed": None, "failed": None}
            _fetch(ctx, part, sub)
            _merge(row, sub)
            if row["error"] == "cancelled":
                break
    ctx.into.archive.settle(item.study, ctx.node.timeout)
    have, size = ctx.held(item)
    duration = time.perf_counter() - t0
    row.update(
        received_instances=have,
        bytes=size - bytes0,
        duration_s=duration,
        mb_per_s=(size - bytes0) / 2**20 / duration if duration > 0 else None,
    )
    ok_status = row["status"] is not None and decode_status(int(row["status"])).category in (
        "success",
        "warning",
    )
    refused = row.pop("refused", None) or []
    no_scp_role = bool(row.pop("no_scp_role", False))
    row["complete"] = bool(ok_status and not refused and (expected is None or have >= expected))
    if ok_status and not refused and not have and (expected == 0 or not int(row["completed"] or 0)):
        # Nothing there is not "all of it arrived": the peer holds nothing that matches.
        row["complete"] = False
        row["error"] = row["error"] or (
            f"{ctx.node.ae_title} holds no instance of this {item.level} (it matched nothing): "
            "nothing was retrieved"
        )
        return row
    if refused:
        uid, status, reason = refused[0]
        row["error"] = (
            f"we refused {len(refused)} instance{'s' if len(refused) != 1 else ''} "
            f"{ctx.node.ae_title} sent (0x{status:04X}: {reason}; first SOP Instance UID "
            f"{uid!r}); {have} of {expected if expected is not None else '?'} instances are "
            "here: incomplete"
        )
        return row
    failed_subops = int(row["failed"] or 0)
    some_failed = row["status"] is not None and int(row["status"]) == 0xB000
    if ok_status and (failed_subops or some_failed) and not row["error"]:
        # 0xB000: "sub-operations complete, one or more failures" (peers do not always
        # count them in NumberOfFailedSuboperations)
        n = failed_subops or (expected - have if expected is not None and expected > have else 0)
        row["error"] = (
            f"{_subops(n) if n else 'some sub-operations'} failed at the peer "
            f"({row['status_text']}); "
            f"{have} of {expected if expected is not None else '?'} instances are here: "
            "incomplete"
        )
    elif failed_subops and not row["complete"] and "sub-operation" not in str(row["error"]):
        row["error"] = (
            f"{row['error'] or 'incomplete'} ({_subops(failed_subops)} had failed at "
            f"the peer; {have} of {expected if expected is not None else '?'} instances are here)"
        )
    if no_scp_role and not row["complete"]:
        row["error"] = (
            f"{row['error'] or 'incomplete'}. {ctx.node.ae_title} accepted none of our storage "
            "contexts in the SCP role, so it cannot send anything back on a C-GET "
            "association: retrieve with method='move' instead"
        )
    elif ok_status and expected is not None and have < expected and not row["error"]:
        row["error"] = (
            f"the peer reported success but only {have} of {expected} instances "
            "are here: incomplete"
        )
    return row


def _fetch(ctx: _Context, item: Item, row: dict[str, Any]) -> None:
    """Fetch ``item`` into the archive, again while the failure is transient (the peer's
    Retry-After respected, a cancel ending the wait); ``row`` gets its status."""
    delays = list(_RETRY_DELAYS_S)
    busy_delays = list(_BUSY_DELAYS_S)
    note = row["error"]  # from planning; an earlier attempt's error does not outlive it
    while True:
        row["attempts"] += 1
        row["error"] = note
        try:
            ctx.fetcher.fetch(item, row, ctx.progress)
            if ctx.pace is not None:
                ctx.pace.ok()
            return
        except Cancelled:
            row["error"] = "cancelled"
            return
        except DicomlabError as exc:  # transient ones are tried again; refusals, bad input not
            row["error"] = str(exc)
            if ctx.pace is not None and is_busy(exc):
                ctx.pace.busy()  # fewer connections, and this one waits on its own terms
                ctx.idle()
                waits = busy_delays
            else:
                if not exc.transient:
                    return
                gone = ctx.fetcher.gone()
                if gone is not None and not isinstance(exc, AssociationRejected):
                    row["error"] = f"{exc}; {gone}"  # another attempt cannot succeed
                    return
                waits = delays
            if not waits:
                return  # tried as often as it gets
            asked = getattr(exc, "retry_after_s", None)  # how long the peer asked us to wait
        wait = waits.pop(0)
        if asked is not None:
            wait = max(wait, min(float(asked), _MAX_RETRY_AFTER_S))
        if ctx.cancel.wait(wait):  # a cancel ends the wait at once
            row["error"] = "cancelled"
            return


def _missing(ctx: _Context, item: Item) -> list[Item] | None:
    """What of a partly held study or series is not here yet: each series the archive
    lacks whole, each missing instance of a series it holds in part. None when that
    cannot be told (the node's image-level answer was not whole; a de-identifying
    retrieve, whose archive holds other UIDs): the item is then fetched whole."""
    if ctx.lookup is None or ctx.deid is not None or item.level == "image":
        return None
    query = Query.instances().with_filters(**item.filters())
    try:
        listed = ctx.lookup(query)
    except DicomlabError as exc:
        log.info("could not list %s %s: fetching it whole (%s)", item.level, item.uid, exc)
        return None
    if not listed.attrs.get("complete") or not len(listed):
        return None
    keys = listed.reindex(columns=["SeriesInstanceUID", "SOPInstanceUID"])
    if keys.isna().any().any():
        return None  # the node did not say which series each instance is in
    held = {m["SOPInstanceUID"] for m in ctx.into.archive.index.find("IMAGE", item.filters())}
    parts: list[Item] = []
    for series, group in listed.groupby("SeriesInstanceUID", sort=True):
        sops = {str(u) for u in group["SOPInstanceUID"].dropna()}
        lacking = sorted(sops - held)
        if len(lacking) == len(sops):
            parts.append(Item("series", item.study, str(series), None, len(sops)))
        else:
            parts.extend(Item("image", item.study, str(series), sop, 1) for sop in lacking)
    return parts or None  # nothing lacking by its list, yet fewer here: fetch it whole


def _merge(row: dict[str, Any], sub: dict[str, Any]) -> None:
    """A part's fetch into the item's row: counts added, the first failure kept."""
    row["attempts"] = max(int(row["attempts"] or 0), int(sub["attempts"] or 0))
    for key in ("completed", "failed", "warning"):
        if sub.get(key) is not None:
            row[key] = int(row.get(key) or 0) + int(sub[key])
    for key in ("refused",):
        if sub.get(key):
            row[key] = [*(row.get(key) or []), *sub[key]]
    if sub.get("no_scp_role"):
        row["no_scp_role"] = True
    ok = sub["status"] is not None and decode_status(int(sub["status"])).category == "success"
    if not ok and (row["status"] == 0 or row["status"] is None):
        row["status"], row["status_text"] = sub["status"], sub.get("status_text")
    if sub.get("error") and not row.get("error"):
        row["error"] = sub["error"]


def _items(call: Call, what: Any, level: str | None, find: Finder) -> list[Item]:
    if isinstance(what, list) and what and all(isinstance(i, Item) for i in what):
        return list(what)  # a resumed job's items
    if isinstance(what, Query):
        what = find(call.quiet(), what)
        if not what.attrs.get("complete"):
            raise DicomlabError(
                f"the query was incomplete ({what.attrs.get('error')}): "
                "not retrieving a partial list",
                node=call.node,
            )
    if isinstance(what, pd.DataFrame):
        return items_from_frame(what, level)  # type: ignore[arg-type]
    if isinstance(what, str):
        what = [what]
    if level not in (None, "study"):
        raise ValidationError(
            "a list of UIDs is retrieved by study; pass a DataFrame "
            "from dl.find for series or image level"
        )
    return items_from_uids(what)


@dataclass(frozen=True, slots=True)
class Request:
    """What to retrieve, where to, and how (the public :func:`dicomlab.retrieve` says
    what each field means); ``method`` is the protocol's (``move``, ``get``)."""

    what: Any
    into: LocalPACS | str | os.PathLike[str] | None
    method: str
    level: str | None = None
    max_connections: int | None = None
    wait: bool = True
    deidentify: Deidentifier | None = None
    schedule: Schedule | None = None  # no item starts outside this daily window
    job_id: str | None = None  # taking up this kept job (dl.resume)
    prior: dict[int, Any] | None = None  # its items' rows that are kept, by index


def run_retrieve(
    call: Call, request: Request, *, fetchers: FetcherFactory, find: Finder
) -> pd.DataFrame | Job:
    """Retrieve ``request.what`` from ``call.node`` into a LocalPACS with the protocol's
    ``fetchers``; one outcome row per item."""
    target, ours, book, into, method = call.node, call.ours, call.book, request.into, request.method
    owned: LocalPACS | None = None
    if into is None:
        local = LocalPACS.default(book)
    elif isinstance(into, LocalPACS):
        local = into
        if not local.running:
            raise ValidationError(f"{local!r} is not running: call start() first")
    else:
        b = book if book is not None else NodeBook.load()
        owned = local = LocalPACS(
            Path(into), ae_title=b.local.ae_title, port=b.local.port, host=b.local.host, book=b
        ).start()
    try:
        items = _items(call, request.what, request.level, find)
    except BaseException:
        if owned is not None:
            owned.stop()
        raise
    deid = request.deidentify
    marking = contextlib.ExitStack()
    if deid is not None and local.deidentify is not deid:
        if local.deidentify is not None:
            if owned is not None:
                owned.stop()
            raise ValidationError(
                f"{local!r} de-identifies with another Deidentifier: give it this one, "
                "or leave deidentify= out"
            )
        marking.enter_context(local.archive.deidentifying({i.study for i in items}, deid))
    if method == "move":
        local.policy.trusted_senders.add(target.ae_title)
    contexts: list[_Context] = []
    durable = _durable(call, request, local, items)
    pace = Pace(request.max_connections or target.max_connections, request.schedule)

    def make_context(ctx_progress: Callable[[int], None]) -> _Context:
        cancel = threading.Event()
        fetcher = fetchers(target, local, method, ours, cancel)
        lookup = lambda q: find(call.quiet(), q)  # noqa: E731
        ctx = _Context(fetcher, local, target, ctx_progress, cancel, deid, lookup, durable, pace)
        contexts.append(ctx)
        return contexts[-1]

    def finish() -> None:
        for c in contexts:
            c.fetcher.close()
        marking.close()
        if deid is not None:
            deid.flush()
        if method == "move":
            local.policy.trusted_senders.discard(target.ae_title)
        if owned is not None:
            owned.stop()

    job = run_items(
        items,
        make_context,
        _retrieve_one,
        RETRIEVE,
        workers=request.max_connections or target.max_connections,
        total=sum(i.expected or 1 for n, i in enumerate(items) if n not in durable.prior),
        desc=f"{method} from {target.name}",
        progress=call.progress,
        on_finish=finish,
        durable=durable,
        pace=pace,
    )
    return job.result() if request.wait else job


def _in_book(call: Call, node: Node) -> bool:
    """Whether ``node`` is the book's entry of its name (a resume finds it there)."""
    try:
        book = call.book if call.book is not None else NodeBook.load()
    except DicomlabError:
        return False
    return node.name in book and book[node.name] == node


def _durable(call: Call, request: Request, local: LocalPACS, items: list[Item]) -> Durable:
    """The job written down in the jobs file before its first item runs (see
    :mod:`dicomlab.transfer.journal`)."""
    node = call.node
    named = (call.book is not None and node.name in call.book) or node.name in NodeBook.load()
    spec = JobSpec(
        node=node.name if named else node.address,
        address=node.address,
        into=str(local.archive.root),
        ae_title=local.ae_title,
        method=request.method,
        level=request.level,
        max_connections=request.max_connections,
        protocol="dicomweb" if request.method == "wado" else "dimse",
        deidentified=request.deidentify is not None,
    )
    journal = Journal()
    job_id = request.job_id or uuid.uuid4().hex
    journal.begin(job_id, "retrieve", spec, items)
    return Durable(journal, job_id, dict(request.prior or {}))
