"""LocalPACS event handlers. Dependencies arrive as arguments; exceptions become statuses.

Each handler checks the caller's permission (:class:`Policy`), does its work on
the :class:`~dicomlab.server.archive.Archive`, and never lets an exception
escape without a failure status (pynetdicom would otherwise answer a generic one).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import dsutils, evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomlab.core import transcode
from dicomlab.core.findlimit import FindLimit
from dicomlab.core.header import (
    IMPLEMENTATION_UID,
    IMPLEMENTATION_VERSION,
    decode_values,
    encode_file_meta,
)
from dicomlab.core.indexrow import WANTED, header_row
from dicomlab.core.models import MODELS
from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node
from dicomlab.core.structure import announced_mismatch, walk_parts
from dicomlab.errors import DeidentificationError
from dicomlab.net.dimse import DIRECT_BEGIN, DIRECT_STORE, Received
from dicomlab.net.trust import is_own_connection
from dicomlab.server.archive import Archive, Incoming
from dicomlab.server.worklist import Worklist

__all__ = [
    "SERVICES",
    "Policy",
    "handle_echo",
    "handle_find",
    "handle_get",
    "handle_move",
    "handle_store",
]

log = logging.getLogger(__name__)

SERVICES = ("echo", "store", "find", "move", "get")

STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
STATUS_PENDING_OPTIONAL = 0xFF01
STATUS_CANCEL = 0xFE00
STATUS_NOT_AUTHORIZED = 0x0124
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_SUBOPERATIONS_IMPOSSIBLE = 0xA702  # PS3.4 C.4.2/C.4.3: out of resources, sub-operations
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_PROCESSING_FAILURE = 0x0110  # PS3.7 C.4: "Processing failure", general
STATUS_FIND_UNABLE = 0xC001

_PATIENT_ROOT_PREFIX = "1.2.840.10008.5.1.4.1.2.1."
_COMPUTED_LISTS = {"ModalitiesInStudy", "SOPClassesInStudy"}


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may do what: known nodes from the book, and what unknown callers may do."""

    book: NodeBook | None
    allow_unknown: frozenset[str]
    # AE titles we are retrieving from right now: they may store into us (C-MOVE).
    trusted_senders: set[str] = field(default_factory=set)
    find_limit: FindLimit | None = None

    def node_for(self, ae_title: str) -> Node | None:
        return self.book.find_ae(ae_title) if self.book is not None else None

    def permits(self, ae_title: str, service: str, assoc: Any = None) -> bool:
        """Whether the caller may use ``service``: a connection this process opened itself
        (``assoc``'s socket, never its AE title) may do anything."""
        if assoc is not None and own_connection(assoc):
            return True
        if service == "store" and ae_title in self.trusted_senders:
            return True
        node = self.node_for(ae_title)
        if node is None:
            return service in self.allow_unknown
        return {
            "echo": True,
            "store": node.allow_store,
            "find": node.allow_query,
            "move": node.allow_retrieve,
            "get": node.allow_retrieve,
        }[service]


_OWN: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
"""Associations found to be on (or not on) a connection of this process: an
association keeps its connection, and every C-STORE on it asks (two system calls)."""


def own_connection(assoc: Any) -> bool:
    """Whether the association came in on a connection that this process opened."""
    try:
        return _OWN[assoc]
    except (KeyError, TypeError):
        pass
    transport = getattr(getattr(assoc, "dul", None), "socket", None)
    sock = getattr(transport, "socket", None)
    own = is_own_connection(sock)
    if sock is not None:
        with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced
            _OWN[assoc] = own
    return own


def _calling(event: Any) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _peer_ae(assoc: Any) -> str:
    """The AE title of whoever sent a C-STORE: the caller, or on an association we
    requested (a C-GET's sub-operations) the peer we called."""
    peer = assoc.acceptor if assoc.is_requestor else assoc.requestor
    return str(peer.ae_title).strip()


Refused = Callable[[Any, str, int, str], None]
"""Told of each instance refused: (association, SOP Instance UID, status, reason)."""


def handle_echo(event: Any, policy: Policy) -> int:
    if not policy.permits(_calling(event), "echo", event.assoc):
        return STATUS_NOT_AUTHORIZED
    return STATUS_SUCCESS


def _refusal(status: int, comment: str) -> Dataset:
    """A failure response carrying its reason (Error Comment holds at most 64 characters)."""
    rsp = Dataset()
    rsp.Status = status
    rsp.ErrorComment = comment[:64]
    return rsp


def handle_store(
    event: Any, archive: Archive, policy: Policy, refused: Refused | None = None
) -> int | Dataset:
    """Check the received bytes (never decoded), write them as they are, then index them.

    Nothing is written for a data set that does not parse to its end or whose UIDs are
    not the ones announced: the sender gets a failure status with the reason (and
    ``refused``, if given, is told). The direct path (:mod:`dicomlab.net._fast.store`)
    calls :func:`handle_received` instead, with the data set still in the socket's
    buffer.
    """
    request = event.request
    return handle_received(
        Received(
            event.assoc,
            str(request.AffectedSOPClassUID),
            str(request.AffectedSOPInstanceUID),
            str(event.context.transfer_syntax),
            str(event.context.abstract_syntax),
            # The data set exactly as received: a view, not a copy, and never decoded.
            (request.DataSet.getbuffer(),),
        ),
        archive,
        policy,
        refused,
    )


def handle_received(
    received: Received, archive: Archive, policy: Policy, refused: Refused | None = None
) -> int | Dataset:
    """:func:`handle_store` for a C-STORE the direct path read: the same checks, and the
    data set's fragments written from the socket's buffer, never copied in between."""
    assoc = received.assoc
    calling = _peer_ae(assoc)
    if not policy.permits(calling, "store", assoc):
        log.warning("C-STORE from %s refused: not authorised", calling)
        return STATUS_NOT_AUTHORIZED
    ts, parts = received.transfer_syntax, received.parts
    try:
        walked = walk_parts(parts, ts, WANTED)  # one walk: whole, and the index's values
        if walked.error is not None:
            row: dict[str, Any] = {}
            refusal: tuple[int, str] | None = (STATUS_CANNOT_UNDERSTAND, walked.error)
        else:
            row = header_row(decode_values(walked.found, WANTED))
            refusal = announced_mismatch(
                row,
                sop_class=received.sop_class,
                sop_instance=received.sop_instance,
                context_class=received.context_class,
            )
        meta = encode_file_meta(
            received.sop_class,
            received.sop_instance,
            ts,
            IMPLEMENTATION_UID,
            IMPLEMENTATION_VERSION,
        )
    except Exception as exc:  # HeaderError (UIDs), or a header nobody can decode
        refusal = (STATUS_CANNOT_UNDERSTAND, str(exc))
    if refusal is not None:
        status, reason = refusal
        log.warning("C-STORE from %s refused (0x%04X): %s", calling, status, reason)
        archive.stats["failed"] += 1
        if refused is not None:
            refused(assoc, received.sop_instance, status, reason)
        return _refusal(status, reason)
    try:
        with archive.receiving(str(row.get("StudyInstanceUID") or "")):
            archive.add(row, ts, (meta, *parts), calling, received.incoming)
    except DeidentificationError as exc:
        log.warning("C-STORE from %s refused by de-identification: %s", calling, exc)
        archive.stats["failed"] += 1
        where = ", ".join(exc.attributes) or "the data set could not be rewritten"
        return _refusal(STATUS_CANNOT_UNDERSTAND, f"not de-identified: {where}")
    except OSError as exc:
        log.error("C-STORE from %s: cannot write %s: %s", calling, row["SOPInstanceUID"], exc)
        archive.stats["failed"] += 1
        return _refusal(STATUS_OUT_OF_RESOURCES, f"cannot write the file: {exc.strerror or exc}")
    except Exception:  # a bug or an unexpected state: fail this instance, serve the next
        log.exception("C-STORE from %s: storing %s failed", calling, row["SOPInstanceUID"])
        archive.stats["failed"] += 1
        return STATUS_PROCESSING_FAILURE
    return STATUS_SUCCESS


def begin_received(
    assoc: Any,
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    archive: Archive,
    policy: Policy,
    refused: Refused | None = None,
) -> Incoming | None:
    """The early form of :func:`handle_received`, for a C-STORE-RQ whose data set is
    still arriving: its file begun in the archive (the file meta :func:`handle_received`
    writes), so that what arrives is written while the rest is awaited. None when it
    must wait for the whole instance (a caller not allowed to store, the archive
    de-identifying): :func:`handle_received` decides then, as without this form."""
    if archive.deidentifies or not policy.permits(_peer_ae(assoc), "store", assoc):
        return None
    try:
        meta = encode_file_meta(
            sop_class, sop_instance, transfer_syntax, IMPLEMENTATION_UID, IMPLEMENTATION_VERSION
        )
    except Exception:  # HeaderError (UIDs): handle_received refuses it, with the reason
        return None
    return archive.incoming(meta)


setattr(handle_store, DIRECT_STORE, handle_received)  # read by the direct path
setattr(handle_store, DIRECT_BEGIN, begin_received)


def _filters(identifier: Dataset) -> dict[str, str]:
    out: dict[str, str] = {}
    for elem in identifier:
        kw = elem.keyword
        if not kw or kw in ("QueryRetrieveLevel", "SpecificCharacterSet") or elem.VR == "SQ":
            continue
        value = elem.value
        if value is None:
            out[kw] = ""
        elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            out[kw] = "\\".join(str(v) for v in value)
        else:
            out[kw] = str(value)
    return out


def _root(event: Any) -> str:
    return (
        "PATIENT"
        if str(event.context.abstract_syntax).startswith(_PATIENT_ROOT_PREFIX)
        else "STUDY"
    )


def _answer(identifier: Dataset, level: str, match: Mapping[str, Any]) -> Dataset:
    rsp = Dataset()
    non_ascii = False
    for elem in identifier:
        kw = elem.keyword
        if not kw or kw in ("SpecificCharacterSet", "QueryRetrieveLevel") or elem.VR == "SQ":
            continue
        value = match.get(kw)
        if value is None or value == "":
            setattr(rsp, kw, None)
            continue
        if kw in _COMPUTED_LISTS:
            value = str(value).split(",")
        elif dictionary_VR(kw) in ("IS", "US", "UL") and isinstance(value, int):
            value = int(value)
        elif isinstance(value, str) and "\\" in value and dictionary_VR(kw) != "PN":
            value = value.split("\\")
        if isinstance(value, str) and not value.isascii():
            non_ascii = True
        setattr(rsp, kw, value)
    rsp.QueryRetrieveLevel = level
    if non_ascii:
        rsp.SpecificCharacterSet = "ISO_IR 192"
    return rsp


def handle_find(
    event: Any, archive: Archive, policy: Policy, worklist: Worklist | None = None
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    calling = _calling(event)
    if not policy.permits(calling, "find", event.assoc):
        yield STATUS_NOT_AUTHORIZED, None
        return
    identifier: Dataset = event.identifier
    if str(event.request.AffectedSOPClassUID) == str(MODELS["find"]["worklist"]):
        yield from _worklist_find(event, identifier, worklist, calling)
        return
    level = str(identifier.get("QueryRetrieveLevel", "")).upper()
    if level not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
        yield 0xA900, None  # identifier does not match SOP class
        return
    filters = _filters(identifier)
    root = _root(event)
    limit = policy.find_limit
    try:
        matches = iter(archive.index.find(level, filters, root=root))
        unsupported = [k for k, v in filters.items() if v and not archive.index.supports(k)]
        pending = STATUS_PENDING_OPTIONAL if unsupported else STATUS_PENDING
        if limit is not None and limit.how == "refuse":
            first = list(itertools.islice(matches, limit.matches + 1))
            if len(first) > limit.matches:
                comment = f"more than {limit.matches} matches: narrow the query"
                yield _refusal(STATUS_OUT_OF_RESOURCES, comment), None
                return
            matches = iter(first)
        for n, match in enumerate(matches):
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            if limit is not None and n >= limit.matches:
                if limit.how == "cancel":
                    yield STATUS_CANCEL, None
                    return
                break  # "silent": Success, as if that were all
            yield pending, _answer(identifier, level, match)
    except Exception:
        log.exception("C-FIND from %s failed", calling)
        yield STATUS_FIND_UNABLE, None
        return
    yield STATUS_SUCCESS, None


def _worklist_find(
    event: Any, identifier: Dataset, worklist: Worklist | None, calling: str
) -> Iterator[tuple[int, Dataset | None]]:
    """A Modality Worklist FIND: one pending response per matching open item."""
    if worklist is None:
        yield STATUS_FIND_UNABLE, None
        return
    syntax = str(event.context.transfer_syntax)
    implicit = syntax == ImplicitVRLittleEndian
    try:
        for answer in worklist.find(identifier, implicit):
            if syntax not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
                answer = _plain(answer)  # a big endian context: let pydicom re-encode it
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            yield STATUS_PENDING, answer
    except Exception:
        log.exception("worklist C-FIND from %s failed", calling)
        yield STATUS_FIND_UNABLE, None
        return
    yield STATUS_SUCCESS, None


def _plain(ds: Dataset) -> Dataset:
    """A data set of raw little endian elements as ordinary elements."""
    data = dsutils.encode(ds, False, True)
    assert data is not None
    return dsutils.decode(io.BytesIO(data), False, True)


def _retrieve_filters(identifier: Dataset) -> dict[str, str]:
    keys = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    return {k: v for k, v in _filters(identifier).items() if k in keys and v}


def storage_contexts(pairs: list[tuple[str, str]]) -> list[PresentationContext]:
    """Contexts to send these (SOP class, transfer syntax) pairs: one per class with the
    stored syntaxes and the uncompressed ones; and, while the 128 contexts allow, one
    with the lossless compressed ones, apart, so that a destination that prefers
    compression (storescp +xa) still takes the files as they are where it can."""
    by_class: dict[str, list[str | bytes | UID]] = {}
    for sop_class, ts in pairs:
        syntaxes = by_class.setdefault(sop_class, [])
        for t in (ts, *transcode.UNCOMPRESSED):
            if t and t not in syntaxes:
                syntaxes.append(t)
    classes = list(by_class.items())[:MAX_CONTEXTS]
    contexts = [_context(sop_class, syntaxes) for sop_class, syntaxes in classes]
    if 2 * len(classes) <= MAX_CONTEXTS:
        contexts += [_context(c, list(transcode.LOSSLESS)) for c, _ in classes]
    return contexts


def _context(sop_class: str, syntaxes: list[str | bytes | UID]) -> PresentationContext:
    cx = PresentationContext()
    cx.abstract_syntax = sop_class
    cx.transfer_syntax = syntaxes
    return cx


def _send(
    event: Any,
    archive: Archive,
    items: list[tuple[str, str, str]],
    accepted: Callable[[], dict[str, set[str]] | None],
) -> Iterator[Any]:
    """The C-STORE sub-operations of a retrieve. ``accepted()``: the storage contexts
    the receiving side accepted, by SOP class (``None``: not known); an instance in a
    syntax it did not accept is converted losslessly to one it did
    (:mod:`dicomlab.core.transcode`); one that cannot be is offered as it is, and its
    sub-operation fails."""
    known: dict[str, set[str]] | None = None
    for rel, sop_class, syntax in items:
        if event.is_cancelled:
            yield STATUS_CANCEL, None
            return
        try:
            ds: Dataset = dcmread(archive.absolute(rel))
        except Exception as exc:  # a file gone missing or damaged on disk
            log.error("cannot read %s for retrieve: %s", rel, exc)
            yield STATUS_SUBOPERATIONS_IMPOSSIBLE, None
            return
        if known is None:
            known = accepted()
        if known is not None:
            got = transcode.payload(ds, syntax, known.get(sop_class, set()), True, sop_class)
            if isinstance(got, str):
                log.warning("C-GET sub-operation for %s: %s", rel, got)
            elif isinstance(got[0], Dataset):
                ds = got[0]
        yield STATUS_PENDING, ds


def _accepted(assoc: Any) -> dict[str, set[str]]:
    """The accepted presentation contexts of ``assoc``: SOP class -> transfer syntaxes."""
    out: dict[str, set[str]] = {}
    for cx in assoc.accepted_contexts:
        out.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
    return out


MAX_CONTEXTS = 128
"""Presentation contexts one association can carry (PS3.8: odd IDs 1-255)."""


def _refuse_retrieve(status: int = STATUS_NOT_AUTHORIZED, comment: str = "") -> Iterator[Any]:
    """The sub-operation count and final status of a refused C-GET/C-MOVE: pynetdicom only
    sends a handler's status after a count of at least one (0 reads as "nothing to send,
    success"), so the count is 1 and the status ``status`` (0x0124 Refused: Not
    Authorised by default), with ``comment`` as its Error Comment."""
    yield 1
    yield (_refusal(status, comment) if comment else status), None


def handle_move(event: Any, archive: Archive, policy: Policy) -> Iterator[Any]:
    calling = _calling(event)
    destination = str(
        event.move_destination.decode()
        if isinstance(event.move_destination, bytes)
        else event.move_destination
    ).strip()
    node = policy.node_for(destination)
    if node is None:
        log.warning("C-MOVE from %s to unknown destination %r", calling, destination)
        yield None, None
        return
    if not policy.permits(calling, "move", event.assoc):
        log.warning("C-MOVE from %s refused: not authorised", calling)
        yield node.host, node.port, {"contexts": [build_context(Verification)]}
        yield from _refuse_retrieve()
        return
    items = archive.index.paths(_retrieve_filters(event.identifier))
    classes = {c for _, c, _ in items}
    if len(classes) > MAX_CONTEXTS:
        # One sub-association carries at most 128 contexts: refuse the whole move rather
        # than silently fail the instances of the classes past the 128th.
        log.warning("C-MOVE from %s refused: %d SOP classes", calling, len(classes))
        yield node.host, node.port, {"contexts": [build_context(Verification)]}
        yield from _refuse_retrieve(
            STATUS_SUBOPERATIONS_IMPOSSIBLE,
            f"{len(classes)} SOP classes, over {MAX_CONTEXTS}: move by series",
        )
        return
    contexts = storage_contexts([(c, t) for _, c, t in items])
    sub: list[Any] = []  # the association to the destination, once it is accepted
    # An empty move still needs one context to associate (and answer 0 sub-operations).
    yield (
        node.host,
        node.port,
        {
            "contexts": contexts or [build_context(Verification)],
            "evt_handlers": [(evt.EVT_ACCEPTED, lambda e: sub.append(e.assoc))],
        },
    )
    yield len(items)
    yield from _send(event, archive, items, lambda: _accepted(sub[0]) if sub else None)


def handle_get(event: Any, archive: Archive, policy: Policy) -> Iterator[Any]:
    calling = _calling(event)
    if not policy.permits(calling, "get", event.assoc):
        log.warning("C-GET from %s refused: not authorised", calling)
        yield from _refuse_retrieve()
        return
    items = archive.index.paths(_retrieve_filters(event.identifier))
    yield len(items)
    yield from _send(event, archive, items, lambda: _accepted(event.assoc))
