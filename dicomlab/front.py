"""The public operations, whatever the protocol: ``echo``, ``find``, ``find_many``,
``retrieve``, ``store``.

Each resolves the node (a :class:`Node`, a name in the node book, or ``AE@HOST:PORT``)
and our AE title, picks the protocol (:func:`dicomlab.protocols.base.choose`) and runs
the operation with it. Everything a user sees is the same for every protocol: the
DataFrames, the outcome tables (:mod:`dicomlab.core.outcomes`), jobs, progress bars,
retries and the network log. The widgets and the CLI call only these.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date
from typing import Any, Literal

import pandas as pd
from pydicom.dataset import Dataset

from dicomlab.core.call import Call
from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query
from dicomlab.deid import Deidentifier
from dicomlab.errors import ValidationError
from dicomlab.net.association import calling_ae_title, resolve_node
from dicomlab.net.echo import EchoResult
from dicomlab.protocols import dicomweb, dimse
from dicomlab.protocols.base import (
    ProtocolName,
    choose,
    find_any,
    register,
    retrieve_method,
    values_of,
)
from dicomlab.server.lifecycle import running_servers
from dicomlab.server.localpacs import LocalPACS
from dicomlab.transfer.checkmove import MoveCheck
from dicomlab.transfer.checkmove import check_move as _check_move
from dicomlab.transfer.commit import commit as _commit
from dicomlab.transfer.commit import references
from dicomlab.transfer.findmany import reconcile
from dicomlab.transfer.job import Job
from dicomlab.transfer.journal import Journal, jobs
from dicomlab.transfer.outbox import deidentified_store
from dicomlab.transfer.pace import Schedule
from dicomlab.transfer.planner import planned_find, replan, warn_if_capped
from dicomlab.transfer.retrieve import Request

__all__ = ["echo", "find", "find_many", "jobs", "reconcile", "resume", "retrieve", "store"]

register(dimse.DIMSE)
register(dicomweb.DICOMWEB)


def echo(
    node: Node | str,
    *,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
    protocol: ProtocolName = "auto",
) -> EchoResult:
    """Check that ``node`` answers (C-ECHO over DIMSE) and say in plain words whether and
    why it failed.

    Never raises for a network failure: the failure is the result's ``detail``.

    Parameters
    ----------
    node
        A :class:`Node`, the name of a node in the book, or ``AE@HOST:PORT``.
    calling_ae
        Our AE title (default: the node book's local AE title).
    book
        The node book to look names and our identity up in (default: the saved one).
    protocol
        ``"auto"`` (the first the node is configured for) or ``"dimse"``.
    """
    call = _call(node, calling_ae, book)
    return choose(call.node, protocol, operation="echo").echo(call)


def find(
    node: Node | str,
    query: Query,
    *,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
    today: date | None = None,
    warn: bool = True,
    protocol: ProtocolName = "auto",
    plan: Literal["auto"] | None = None,
) -> pd.DataFrame:
    """Query ``node`` and return one typed row per match.

    A filter holding several values (a list or a DataFrame column) fans out into
    one query per value (see :func:`find_many`).

    ``protocol``: ``"auto"`` (the first the node is configured for; DICOMweb for a
    ``fuzzy`` query when the node has it), ``"dimse"`` or ``"dicomweb"``.

    ``plan="auto"``: for archives that cap their answers. The query is asked as it is;
    when the archive refuses it as too large, cancels it after N matches, or answers
    Success with exactly its cap (``Node.find_cap``, or the cap learned from an earlier
    answer and kept in the node's profile), it is split by date range, then time of
    day (down to 30 minutes), then modality (when several are asked), then Patient ID
    prefix, until every piece is under the cap; each match comes once.
    ``df.attrs["plan"]`` lists every query asked (``window``, ``count``, ``verdict``,
    ``split``, ``complete``), ``df.attrs["cap"]`` the cap known and
    ``df.attrs["queries"]`` how many were asked. A study without a StudyDate is not
    reached by a date split (nor one without a StudyTime by a time split). Without a
    plan, an answer of exactly the known cap is flagged incomplete and warned about.

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
    if plan not in (None, "auto"):
        raise ValidationError(f"plan={plan!r} must be 'auto' or None")
    call = _call(node, calling_ae, book, progress=False)
    speaker = choose(call.node, _for(query, protocol))
    if plan is None:
        df = find_any(speaker, call, query, today, warn)
        if query.fan_out() is None:
            warn_if_capped(df, call.node, warn)
        return df
    if query.fan_out() is not None:
        df = find_any(speaker, call, query, today, False)
        with speaker.finder(call, today) as run:
            return replan(call.node, query, df, run, today)
    with speaker.finder(call, today) as run:
        return planned_find(call.node, query, run, today or date.today(), warn=warn)


def _for(query: Query, protocol: ProtocolName) -> ProtocolName:
    """``protocol``, or DICOMweb for a fuzzy query on ``"auto"`` (only QIDO-RS offers
    fuzzy matching)."""
    return "dicomweb" if protocol == "auto" and query.fuzzy else protocol


def find_many(
    node: Node | str,
    base: Query,
    *,
    progress: bool = True,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
    today: date | None = None,
    warn: bool = True,
    protocol: ProtocolName = "auto",
    **values: Iterable[Any],
) -> pd.DataFrame:
    """Run ``base`` once per value of one keyword, over at most ``max_connections``
    connections (one progress bar; each connection reused from value to value).

    >>> # dl.find_many(pacs, dl.Query.studies(), AccessionNumber=accessions)  # doctest: +SKIP

    Returns one DataFrame with a ``query_value`` column. ``df.attrs`` holds
    ``complete`` (every value answered with Success), ``failed`` (values whose
    query failed, with the error), and what :func:`reconcile` summarises:
    values that matched nothing or several rows. When any value failed it warns
    (:class:`dl.PartialResultWarning`; not with ``warn=False``); when every value
    failed and nothing came, it raises as :func:`find` does.
    """
    if not isinstance(base, Query):
        raise ValidationError(f"expected a dl.Query, got {base!r}")
    if len(values) != 1:
        raise ValidationError(f"find_many takes exactly one keyword of values, got {list(values)}")
    ((keyword, raw),) = values.items()
    base.with_filters(**{keyword: ""})  # validates the keyword before anything is sent
    call = _call(node, calling_ae, book, progress)
    speaker = choose(call.node, _for(base, protocol), operation="find_many")
    return speaker.find_many(call, base, keyword, values_of(raw), today, warn)


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
    protocol: ProtocolName = "auto",
    deidentify: Deidentifier | None = None,
    schedule: tuple[str, str] | None = None,
) -> pd.DataFrame | Job:
    """Retrieve ``what`` from ``node`` into a LocalPACS; one outcome row per item.

    Parameters
    ----------
    what
        A DataFrame from :func:`dicomlab.find` (study, series or image rows), a list
        of Study Instance UIDs, or a :class:`Query` (run first).
    into
        A running :class:`LocalPACS`, a folder (a LocalPACS is started there for the
        transfer), or ``None`` for the kernel's default LocalPACS
        (:meth:`LocalPACS.default`).
    method
        ``"move"`` or ``"get"`` (default: the node's).
    max_connections
        Concurrent connections (default: the node's); the rest wait in a queue.
    wait
        ``False`` returns a :class:`Job` at once (``.progress``, ``.cancel()``,
        ``.done()``, ``.result()``).
    protocol
        ``"auto"`` (the first the node is configured for that offers ``method``),
        ``"dimse"`` or ``"dicomweb"``.
    deidentify
        A :class:`dl.Deidentifier`: what arrives is de-identified in memory before
        anything is written (no identified byte reaches the archive's disk); the
        outcome table, the index and the network log hold the new UIDs only.

    schedule
        A daily window, ``("19:00", "07:00")`` (local time): no item starts outside
        it (the job waits; one running when it closes finishes).

    Politeness: the job starts at ``max_connections`` and uses one fewer each time the
    peer says it is busy (an association rejected for a local limit or congestion,
    0xA7xx out of resources, HTTP 429/503), waiting longer before trying that item
    again, and one more after ten items in a row went well
    (``df.attrs["connections"]``: ``max`` and ``lowest``). ``Job.eta_s`` estimates
    the time left from the rate so far.

    The job is written down as it runs (``dl.jobs()``; ``dl.resume(job_id)`` after a
    restart). Items already complete in the archive are skipped, and a study that
    arrived in part fetches only the instances it lacks, so running the same cell
    twice transfers nothing. A study the peer reports as done but of which fewer
    instances arrived than expected is flagged ``complete=False``.
    """
    call = _call(node, calling_ae, book, progress)
    speaker = choose(call.node, protocol, method, "retrieve")
    how = retrieve_method(speaker, call.node, method)
    if deidentify is not None and not isinstance(deidentify, Deidentifier):
        raise ValidationError(f"deidentify={deidentify!r} must be a dl.Deidentifier")
    request = Request(
        what, into, how, level, max_connections, wait, deidentify, Schedule.of(schedule)
    )
    return speaker.retrieve(call, request)


def resume(
    job_id: str,
    *,
    into: LocalPACS | None = None,
    wait: bool = True,
    progress: bool = True,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
    deidentify: Deidentifier | None = None,
) -> pd.DataFrame | Job:
    """Take up a retrieve job kept in ``DICOMLAB_HOME`` (:func:`jobs` lists them): after a
    kernel restart or a crash, or a cancel. Items that ended complete keep their rows
    and are not asked again; the rest run as the job was asked (node, method, level,
    connections), skipping what the archive already holds. The outcome table covers
    the whole job, under the same ``job_id``.

    ``into``: the LocalPACS the job filled (default: one running in this process on the
    job's archive folder, else one started there for the transfer). A de-identifying
    job needs the same ``deidentify`` again (its secret is never written down).
    """
    journal = Journal()
    try:
        kind, spec, state = journal.spec(job_id)
        entries = journal.items(job_id)
    finally:
        journal.close()
    if kind != "retrieve":
        raise ValidationError(f"job {job_id} is a {kind} job: only retrieve jobs resume")
    if state == "running":
        raise ValidationError(
            f"job {job_id} is running in another kernel: cancel it there, or wait for it"
        )
    if spec.deidentified and deidentify is None:
        raise ValidationError(
            f"job {job_id} de-identified what it retrieved: pass the same deidentify= again"
        )
    if into is not None and str(into.archive.root) != spec.into:
        raise ValidationError(f"job {job_id} filled {spec.into}, not {into.archive.root}")
    target: LocalPACS | str = into or _running_on(spec.into) or spec.into
    prior = {
        n: row
        for n, (_, st, row) in enumerate(entries)
        if st == "done" and isinstance(row, dict) and row.get("complete") is True
    }
    call = _call(spec.node, calling_ae, book, progress)
    speaker = choose(call.node, spec.protocol, spec.method, "retrieve")
    items = [item for item, _, _ in entries]
    request = Request(
        items,
        target,
        spec.method,
        spec.level,
        spec.max_connections,
        wait,
        deidentify,
        job_id=job_id,
        prior=prior,
    )
    return speaker.retrieve(call, request)


def _running_on(root: str) -> LocalPACS | None:
    for server in running_servers():
        if isinstance(server, LocalPACS) and str(server.archive.root) == root:
            return server
    return None


def check_move(
    node: Node | str,
    *,
    into: LocalPACS | None = None,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
) -> MoveCheck:
    """Can ``node`` C-MOVE to us? It is asked to move one small instance it holds (one
    the LocalPACS lacks) to ``into`` (default: the kernel's LocalPACS); the answer says
    what to register where when it cannot (:class:`MoveCheck`: ``ok``, ``cause``,
    ``detail``, ``seen_from``). Never raises for what the PACS does; the instance stays
    in the LocalPACS."""
    call = _call(node, calling_ae, book, progress=False)
    choose(call.node, "dimse", "move", "retrieve")
    local = into if into is not None else LocalPACS.default(call.book)
    if not local.running:
        raise ValidationError(f"{local!r} is not running: call start() first")
    return _check_move(call, local)


def commit(
    node: Node | str,
    what: Any,
    *,
    timeout: float = 60.0,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
) -> pd.DataFrame:
    """Ask ``node`` whether it has taken responsibility for instances (storage
    commitment, Push Model), whoever sent them: ``what`` is a DataFrame with
    SOPClassUID and SOPInstanceUID columns (``local.instances()``, a ``dl.store``
    outcome, an image-level ``dl.find``), (class, instance) pairs, files or folders.

    One row per instance: ``committed``, and ``commit_error`` (the PACS's Failure
    Reason, such as ``0x0112 no such object instance``, a refusal, or no report within
    ``timeout`` seconds, which ``df.attrs["error"]`` also says). The report may come on
    a new association to our AE title: this process's LocalPACS receives it (started
    as :meth:`dl.LocalPACS.default` when none is running)."""
    call = _call(node, calling_ae, book, progress=False)
    choose(call.node, "dimse", operation="store")
    seconds = _commit_timeout(timeout)
    assert seconds is not None
    return _commit(call, references(what), seconds)


def store(
    node: Node | str,
    what: str | os.PathLike[str] | Dataset | pd.DataFrame | Iterable[Any],
    max_connections: int | None = None,
    wait: bool = True,
    *,
    progress: bool = True,
    calling_ae: str | None = None,
    book: NodeBook | None = None,
    protocol: ProtocolName = "auto",
    deidentify: Deidentifier | None = None,
    transcode: bool = True,
    commit: bool | float = False,
) -> pd.DataFrame | Job:
    """Send DICOM files (folders recursively), datasets, or ``local.instances()`` rows.

    One outcome row per file: non-DICOM files get a row saying so; each instance
    is sent in its own transfer syntax when the peer accepts it, else (over DIMSE)
    converted losslessly to one it accepted: decompressed (JPEG 2000, JPEG-LS, RLE,
    JPEG), or compressed to JPEG 2000, JPEG-LS or RLE lossless when the peer takes no
    uncompressed syntax; ``sent_as`` says which. ``transcode=False``: sent as it is or
    refused with a clear row. Files are spread over ``max_connections`` connections.

    ``deidentify`` (a :class:`dl.Deidentifier`): what is sent is de-identified first
    (files into a private temporary folder, removed after); the table names the source
    files and holds the new UIDs, and a file de-identification refuses is not sent.
    It needs ``wait=True``.

    ``commit``: ask for storage commitment (Push Model) once the instances are stored,
    and wait for the report (``True``: up to 60 s; a number: that many seconds). The
    ``committed`` column says, per instance stored, whether the PACS took responsibility
    for it, and ``commit_error`` why not (its Failure Reason, a refusal, or no report in
    time). A PACS that reports on a new association (Orthanc does) reaches this
    process's running LocalPACS (started as :meth:`dl.LocalPACS.default` when none is
    running), which must be registered on the PACS under our AE title.
    """
    call = _call(node, calling_ae, book, progress)
    speaker = choose(call.node, protocol, operation="store")
    if not isinstance(transcode, bool):
        raise ValidationError(f"transcode={transcode!r} must be True or False")
    commit_s = _commit_timeout(commit)
    if deidentify is None:
        return speaker.store(call, what, max_connections, wait, transcode, commit_s)
    if not isinstance(deidentify, Deidentifier):
        raise ValidationError(f"deidentify={deidentify!r} must be a dl.Deidentifier")
    if not wait:
        raise ValidationError("store(deidentify=...) needs wait=True")

    def send(ready: list[Any]) -> pd.DataFrame:
        out = speaker.store(call, ready, max_connections, True, transcode, commit_s)
        assert isinstance(out, pd.DataFrame)
        return out

    return deidentified_store(call.node, what, deidentify, send)


def _commit_timeout(commit: bool | float) -> float | None:
    """``dl.store``'s ``commit`` as a timeout in seconds (None: no commitment)."""
    if commit is False:
        return None
    if commit is True:
        return 60.0
    if isinstance(commit, int | float) and not isinstance(commit, bool) and 0 < commit <= 3600:
        return float(commit)
    raise ValidationError(f"commit={commit!r} must be True, False or seconds in (0, 3600]")


def _call(
    node: Node | str, calling_ae: str | None, book: NodeBook | None, progress: bool = True
) -> Call:
    """The node resolved (by name, ``AE@HOST:PORT`` or as given) and our AE title."""
    return Call(resolve_node(node, book), calling_ae_title(calling_ae, book), book, progress)
