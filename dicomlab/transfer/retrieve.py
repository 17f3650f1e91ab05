"""Retrieve studies, series or instances from a node into a LocalPACS (C-MOVE or C-GET)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom.dataset import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.presentation import PresentationContext, build_context, build_role

from dicomlab.core.items import Item, identifier_keys, items_from_frame, items_from_uids
from dicomlab.core.models import MODELS, QR_UIDS
from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import RETRIEVE
from dicomlab.core.query import Query
from dicomlab.core.status import decode_status
from dicomlab.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectTimeout,
    DicomlabError,
    DimseTimeout,
    NoAcceptedContext,
    ValidationError,
)
from dicomlab.net import dimse
from dicomlab.net.association import calling_ae_title, resolve_node
from dicomlab.net.cfind import find_contexts, find_on
from dicomlab.net.find import find
from dicomlab.server import handlers
from dicomlab.server.localpacs import LocalPACS
from dicomlab.transfer.job import Job, run_items
from dicomlab.transfer.session import Sessions

__all__ = ["OUTCOME_COLUMNS", "retrieve"]

log = logging.getLogger(__name__)

OUTCOME_COLUMNS = RETRIEVE.names
"""The retrieve outcome table's columns (dtypes: :data:`dicomlab.core.outcomes.RETRIEVE`)."""
_MOVE, _GET = MODELS["move"], MODELS["get"]
_TRANSIENT = (AssociationAborted, ConnectTimeout, DimseTimeout)
_MAX_STORAGE_CONTEXTS = 120

_GET_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian first: what most archives hold
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still found)
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile
]
"""Transfer syntaxes proposed for each storage class of a C-GET when the classes are not
known in advance (120 classes): the ones archives hold, not all 45 pynetdicom knows. Each
association then opens in about a third of the time (0.05 s instead of 0.17 s with
Orthanc), which matters because a retrieve opens one per study. A file in a syntax not
listed is transcoded by the PACS or refused per file (the outcome table says so)."""


class _Stop(Exception):
    """Raised inside a worker when the job was cancelled."""


def _identifier(item: Item) -> Dataset:
    ds = Dataset()
    for k, v in identifier_keys(item).items():
        setattr(ds, k, v)
    return ds


def _plan(ctx: _Context, item: Item, need_classes: bool) -> tuple[int | None, list[str]]:
    """Expected instance count and SOP classes of an item, from an image-level C-FIND
    on the worker's association."""
    if item.expected is not None and (not need_classes or ctx.classes_unreported):
        return item.expected, []
    q = Query("image", tuple(item.filters().items()), ("SOPClassUID",))
    assoc = _session(ctx, [])
    try:
        df = find_on(assoc, ctx.node, q)
    except BaseException:
        ctx.sessions.discard()
        raise
    classes = sorted({str(c) for c in df.SOPClassUID.dropna() if str(c)})
    if len(df) and not classes:
        # The peer does not return SOP Class UIDs (Orthanc by default): the next items
        # skip this query when their instance count is already known.
        ctx.classes_unreported = True
    expected = len(df) if df.attrs.get("complete") else item.expected
    return expected, classes


def _session(ctx: _Context, classes: list[str]) -> Any:
    """The worker's association, able to C-FIND and to retrieve ``classes`` (C-GET:
    storage contexts with our SCP role; unknown classes: the common ones)."""
    is_get = ctx.method == "get"
    models = _GET if is_get else _MOVE
    contexts: list[PresentationContext | str] = [*find_contexts(ctx.node, _PLAN_QUERY)]
    contexts += [models["study"], models["patient"]]
    ext_neg: list[Any] = []
    handlers_: list[Any] = []
    if is_get:
        if len(classes) > _MAX_STORAGE_CONTEXTS:
            raise ValidationError(
                f"{len(classes)} SOP classes: more than one C-GET association can carry; "
                "retrieve by series instead"
            )
        # Peers that do not report SOP Class UIDs in C-FIND (Orthanc by default): propose
        # pynetdicom's 120 common storage classes, within the 128-context limit.
        wanted = sorted(set(classes) | ctx.known_classes) if classes else []
        if len(wanted) > _MAX_STORAGE_CONTEXTS:
            wanted = classes
        syntaxes = ALL_TRANSFER_SYNTAXES if wanted else _GET_SYNTAXES
        for uid in wanted or [str(c.abstract_syntax) for c in StoragePresentationContexts]:
            contexts.append(build_context(uid, syntaxes))
            ext_neg.append(build_role(uid, scp_role=True))
        policy = handlers.Policy(None, frozenset({"store"}))
        handlers_.append(
            (evt.EVT_C_STORE, handlers.handle_store, [ctx.into.archive, policy, ctx.refusals.add])
        )

    def fits(assoc: Any) -> bool:
        if not is_get or not classes:
            return True
        as_scp = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts if cx.as_scp}
        return set(classes) <= as_scp

    assoc = ctx.sessions.open(
        ctx.node,
        contexts,
        calling_ae=ctx.ours,
        fits=fits,
        evt_handlers=handlers_,
        ext_neg=ext_neg or None,
    )
    if is_get and classes:
        ctx.known_classes.update(classes)
    return assoc


_PLAN_QUERY = Query("image", (), ("SOPClassUID",))


class _Refusals:
    """Instances a C-GET peer sent that we refused (bad UIDs, broken data sets), per
    association: the outcome table says we refused them, and why."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_assoc: dict[int, list[tuple[str, int, str]]] = {}

    def add(self, assoc: Any, sop_instance: str, status: int, reason: str) -> None:
        with self._lock:
            self._by_assoc.setdefault(id(assoc), []).append((sop_instance, status, reason))

    def take(self, assoc: Any) -> list[tuple[str, int, str]]:
        with self._lock:
            return self._by_assoc.pop(id(assoc), [])


class _Context:
    """Everything a worker needs for one retrieve call."""

    def __init__(
        self, node: Node, into: LocalPACS, method: str, ours: str, progress: Callable[[int], None]
    ) -> None:
        self.node, self.into, self.method, self.ours = node, into, method, ours
        self.progress = progress
        self.cancel = threading.Event()
        self.sessions = Sessions()
        self.known_classes: set[str] = set()  # learned from planning queries (C-GET)
        self.refusals = _Refusals()
        self.classes_unreported = False  # the peer's C-FIND answers carry no SOP classes


def _run_operation(ctx: _Context, item: Item, classes: list[str], row: dict[str, Any]) -> None:
    """One C-MOVE or C-GET of an item on the worker's association; fills ``row``.

    Anything but a final status (timeout, abort, cancel, an exception) aborts the
    association: it is never reused after an interrupted operation.
    """
    try:
        _operate(ctx, item, classes, row)
    except BaseException:
        ctx.sessions.discard()
        raise


def _operate(ctx: _Context, item: Item, classes: list[str], row: dict[str, Any]) -> None:
    node = ctx.node
    is_get = ctx.method == "get"
    models = _GET if is_get else _MOVE
    assoc = _session(ctx, classes)
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    model = next((models[m] for m in ("study", "patient") if str(models[m]) in accepted), None)
    if model is None:
        raise NoAcceptedContext(
            f"{node.address} does not accept C-{ctx.method.upper()} from us",
            node=node,
            hint="try the other retrieve method (node.retrieve='get' or 'move')",
        )
    if is_get:
        storage = [cx for cx in assoc.accepted_contexts if str(cx.abstract_syntax) not in QR_UIDS]
        # (A peer that refuses the role often rejects the whole context: none accepted.)
        row["no_scp_role"] = not any(cx.as_scp for cx in storage)
    track = _Responses(ctx, row)
    try:
        _exchange(ctx, assoc, model, item, track)
    finally:
        row["refused"] = [*(row.get("refused") or []), *ctx.refusals.take(assoc)]


def _exchange(ctx: _Context, assoc: Any, model: Any, item: Item, track: _Responses) -> None:
    """Send the C-GET or C-MOVE and follow its responses to the final one (a missing
    final status raises: the caller aborts the association)."""
    is_get = ctx.method == "get"
    reply = dimse.retrieve(
        assoc,
        ctx.node,
        "C-GET" if is_get else "C-MOVE",
        model,
        _identifier(item),
        track,
        None if is_get else ctx.into.ae_title,
    )
    error = reply.exception(ctx.node)
    if error is not None:
        raise error


class _Responses:
    """Follows a C-GET/C-MOVE's responses: progress from the sub-operation counts, and
    the final one's status, counts and diagnosis in the outcome row."""

    def __init__(self, ctx: _Context, row: dict[str, Any]) -> None:
        self.ctx = ctx
        self.row = row
        self.done = 0

    def __call__(
        self, code: int, completed: int, failed: int, warning: int, comment: str | None = None
    ) -> bool:
        """One response; True when it was the final one. Raises _Stop when cancelled."""
        if self.ctx.cancel.is_set():
            raise _Stop()
        done = completed + failed + warning
        self.ctx.progress(max(0, done - self.done))
        self.done = done
        info = decode_status(code)
        if info.category == "pending":
            # kept, so an operation that breaks off still shows what had failed by then
            self.row.update(completed=completed, failed=failed, warning=warning)
            return False
        self.row.update(
            status=code, status_text=str(info), completed=completed, failed=failed, warning=warning
        )
        if info.category != "success" and info.category != "warning":
            self.row["error"] = _diagnose(code, self.ctx.node, self.ctx, completed, comment)
        return True


def _subops(n: int) -> str:
    return f"{n} sub-operation{'s' if n != 1 else ''}"


def _destination_gone(ctx: _Context) -> bool:
    """A C-MOVE into our own LocalPACS that has stopped."""
    return ctx.method == "move" and not ctx.into.running


def _destination_stopped(ctx: _Context) -> str:
    return (
        f"our LocalPACS {ctx.into.ae_title} (the destination) is not running: it stopped "
        "during the transfer; start it and run the retrieve again (what arrived is kept "
        "and skipped)"
    )


def _diagnose(
    code: int, node: Node, ctx: _Context, completed: int, comment: str | None = None
) -> str:
    info = decode_status(code)
    if _destination_gone(ctx):
        return f"C-MOVE ended with 0x{code:04X} ({info.category}): {_destination_stopped(ctx)}"
    if comment and code != 0xA801:  # the peer said why: that beats any guess of ours
        return f"{info} ({node.ae_title} says: {comment})"
    # 0xA801 says so; Orthanc answers 0xC000 for an unknown destination, so a C-MOVE
    # failing before any instance arrived gets the same advice.
    if code == 0xA801 or (ctx.method == "move" and completed == 0):
        return (
            f"{info}. {node.address} may not know our AE title {ctx.into.ae_title!r}: register "
            f"it there as AE {ctx.into.ae_title}, host = this machine's address as the PACS "
            f"sees it, port {ctx.into.port}; or retrieve with method='get', which needs no "
            "registration"
        )
    return str(info)


def _retrieve_one(ctx: _Context, item: Item) -> dict[str, Any]:
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
    t0 = time.perf_counter()
    have0, bytes0 = ctx.into.archive.index.count_matching(item.filters())
    try:
        expected, classes = _plan(ctx, item, ctx.method == "get")
    except DicomlabError as exc:
        expected, classes = item.expected, []
        row["error"] = f"could not count the instances first: {exc}"
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
    delays = [0.5, 1.0, 2.0]
    while True:
        row["attempts"] += 1
        try:
            _run_operation(ctx, item, classes, row)
            break
        except _Stop:
            row["error"] = "cancelled"
            break
        except AssociationRejected as exc:
            row["error"] = str(exc)
            if not exc.transient or not delays:
                break
        except _TRANSIENT as exc:
            row["error"] = str(exc)
            if _destination_gone(ctx):  # another attempt cannot succeed
                row["error"] = f"{exc}; {_destination_stopped(ctx)}"
                break
            if not delays:
                break
        except DicomlabError as exc:  # permanent: refused, no context, bad input
            row["error"] = str(exc)
            break
        time.sleep(delays.pop(0))
        if ctx.cancel.is_set():
            row["error"] = "cancelled"
            break
    ctx.into.archive.settle(item.study, ctx.node.timeout)
    have, size = ctx.into.archive.index.count_matching(item.filters())
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


_DEFAULT: dict[str, LocalPACS] = {}
_DEFAULT_LOCK = threading.Lock()


def default_local(book: NodeBook | None = None) -> LocalPACS:
    """The notebook's default LocalPACS (``home()/archive``, our AE and port), started once."""
    with _DEFAULT_LOCK:
        lp = _DEFAULT.get("local")
        if lp is None or not lp.running:
            from dicomlab.core.nodebook import home

            book = book if book is not None else NodeBook.load()
            lp = LocalPACS(
                home() / "archive",
                ae_title=book.local.ae_title,
                port=book.local.port,
                host=book.local.host,
                book=book,
            )
            lp.start()
            _DEFAULT["local"] = lp
        return lp


def _items(node: Node, what: Any, level: str | None, ours: str) -> list[Item]:
    if isinstance(what, Query):
        what = find(node, what, calling_ae=ours)
        if not what.attrs.get("complete"):
            raise DicomlabError(
                f"the query was incomplete ({what.attrs.get('error')}): "
                "not retrieving a partial list",
                node=node,
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


def retrieve(
    node: Node | str,
    what: Any,
    into: LocalPACS | str | os.PathLike[str] | None = None,
    method: str | None = None,
    level: str | None = None,
    max_connections: int | None = None,
    wait: bool = True,
    *,
    progress: bool = True,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
) -> pd.DataFrame | Job:
    """Retrieve ``what`` from ``node`` into a LocalPACS; one outcome row per item.

    Parameters
    ----------
    what
        A DataFrame from :func:`dicomlab.find` (study, series or image rows), a list
        of Study Instance UIDs, or a :class:`Query` (run first).
    into
        A running :class:`LocalPACS`, a folder (a LocalPACS is started there for the
        transfer), or ``None`` for the notebook's default LocalPACS.
    method
        ``"move"`` or ``"get"`` (default: the node's).
    max_connections
        Concurrent associations (default: the node's); the rest wait in a queue.
    wait
        ``False`` returns a :class:`Job` at once (``.progress``, ``.cancel()``,
        ``.done()``, ``.result()``).

    Items already complete in the archive are skipped, so running the same cell
    twice transfers nothing. A study the peer reports as done but of which fewer
    instances arrived than expected is flagged ``complete=False``.
    """
    target = resolve_node(node, book)
    how = method or target.retrieve
    if how not in ("move", "get"):
        raise ValidationError(f"method {how!r} must be 'move' or 'get'")
    ours = calling_ae_title(calling_ae, book)
    owned: LocalPACS | None = None
    if into is None:
        local = default_local(book)
    elif isinstance(into, LocalPACS):
        local = into
        if not local.running:
            raise ValidationError(f"{local!r} is not running: call start() first")
    else:
        b = book if book is not None else NodeBook.load()
        owned = local = LocalPACS(
            Path(into), ae_title=b.local.ae_title, port=b.local.port, host=b.local.host, book=b
        ).start()
    items = _items(target, what, level, ours)
    workers = max_connections or target.max_connections
    if how == "move":
        local.policy.trusted_senders.add(target.ae_title)

    contexts: list[_Context] = []

    def make_context(ctx_progress: Callable[[int], None]) -> _Context:
        contexts.append(_Context(target, local, how, ours, ctx_progress))
        return contexts[-1]

    def finish() -> None:
        for c in contexts:
            c.sessions.close_all()
        if how == "move":
            local.policy.trusted_senders.discard(target.ae_title)
        if owned is not None:
            owned.stop()

    total = sum(i.expected or 1 for i in items)
    job = run_items(
        items,
        make_context,
        _retrieve_one,
        RETRIEVE,
        workers=workers,
        total=total,
        desc=f"{how} from {target.name}",
        progress=progress,
        on_finish=finish,
    )
    return job.result() if wait else job
