"""The seam: the DIMSE operations dicomlab runs on an open association.

``find``, ``retrieve`` (C-GET or C-MOVE), ``Storer.store`` and ``echo`` each take an
association opened by :mod:`dicomlab.net.association` and return one :class:`Reply`:
the final status and its Error Comment with the sub-operation counts, or why there is
no final status. Here, and only here:

* the choice between the direct path (:mod:`dicomlab.net._fast`: the calling thread
  reads the responses) and pynetdicom's
  ``send_c_*`` when the direct path cannot take the operation;
* the ``quiesce`` before pynetdicom sends (pynetdicom issue #875);
* the turning of a missing final status into the one error (:meth:`Reply.exception`,
  :meth:`Reply.problem`).

Callers handle the rows (``on_match``) and the progress (``on_response``); an
exception they raise from those callbacks aborts the association and propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydicom.dataset import Dataset

from dicomlab.core.nodes import Node
from dicomlab.core.status import status_category
from dicomlab.errors import AssociationAborted, DicomlabError, DimseTimeout
from dicomlab.net import _fast, diagnose, wire
from dicomlab.net.transport import quiesce

__all__ = [
    "DIRECT_BEGIN",
    "DIRECT_STORE",
    "Received",
    "Reply",
    "Storer",
    "echo",
    "find",
    "retrieve",
]

Retrieval = Literal["C-GET", "C-MOVE"]

Received = _fast.store.Received
"""A C-STORE-RQ the direct path read whole, its data set still in the socket's buffer."""
DIRECT_STORE = _fast.store.DIRECT
"""An ``EVT_C_STORE`` handler's attribute naming its direct form, which takes a
:data:`Received` (:mod:`dicomlab.net._fast.store`)."""
DIRECT_BEGIN = _fast.store.DIRECT_BEGIN
"""An ``EVT_C_STORE`` handler's attribute naming its early form, which begins the file of
a C-STORE whose data set is still arriving (:class:`dicomlab.net._fast.store.Streaming`)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """How one operation ended: a final ``status``, or why there is none (``timed_out``:
    no response in time, the association was aborted; ``peer_ended``: the peer aborted
    or closed it; else it broke off for the reason in ``why``)."""

    service: str
    status: int | None = None
    comment: str | None = None  # the peer's Error Comment
    completed: int = 0
    failed: int = 0
    warning: int = 0
    timed_out: bool = False
    peer_ended: bool = False
    why: str | None = None

    def problem(self, node: Node) -> str | None:
        """Why there is no final status, in the one wording (None when there is one)."""
        if self.status is not None:
            return None
        if self.timed_out:
            return DimseTimeout.sentence(
                self.service, node, self.why or "timed out; the association was aborted"
            )
        if self.peer_ended:  # why: aborted, or closed the connection (when known)
            text = f"{node.address} ended the association during {self.service}"
            return f"{text}: {self.why}" if self.why else text
        return (
            f"{self.service} on {node.address} broke off: {self.why or 'no final status'}; "
            "the association was aborted"
        )

    def exception(self, node: Node) -> DicomlabError | None:
        """The error of a missing final status (None when there is one)."""
        text = self.problem(node)
        if text is None:
            return None
        if self.timed_out:
            return DimseTimeout(text, node=node)
        return AssociationAborted(text, node=node)


def _comment(status: Dataset) -> str | None:
    return str(status.get("ErrorComment") or "").strip() or None


def _counts(status: Dataset) -> tuple[int, int, int]:
    return (
        int(status.get("NumberOfCompletedSuboperations") or 0),
        int(status.get("NumberOfFailedSuboperations") or 0),
        int(status.get("NumberOfWarningSuboperations") or 0),
    )


# -- C-FIND ------------------------------------------------------------------------------

RawMatch = Callable[[bytes, str], None]
"""Called with a pending response's identifier as encoded, and its transfer syntax."""
DatasetMatch = Callable[[Dataset], None]
"""Called with a pending response's identifier as pynetdicom decoded it."""


def find(
    assoc: Any,
    node: Node,
    model: Any,
    identifier: Dataset,
    on_raw: RawMatch,
    on_dataset: DatasetMatch,
) -> Reply:
    """One C-FIND; each match goes to ``on_raw`` (direct path) or ``on_dataset``."""
    request = _fast.prepare(assoc, str(model), identifier)
    if request is not None:
        with _fast.Querier(assoc) as querier:
            got = querier.find(
                request.context_id,
                request.sop_class,
                request.identifier,
                lambda data: on_raw(data, request.transfer_syntax),
                assoc.dimse_timeout,
            )
        if got is not None:
            return _from_direct("C-FIND", got)
    quiesce(assoc)
    last = time.monotonic()
    for status, rsp in assoc.send_c_find(identifier, model):
        if "Status" not in status:
            # pynetdicom aborts the association itself when its DIMSE timeout expires:
            # tell that from the peer aborting by the time we waited.
            timed_out = diagnose.waited_out(node, time.monotonic() - last)
            return Reply("C-FIND", timed_out=timed_out, peer_ended=not timed_out)
        last = time.monotonic()
        code = int(status.Status)
        if status_category(code) == "pending":
            if rsp is not None:
                on_dataset(rsp)
            continue
        return Reply("C-FIND", code, _comment(status))
    return Reply("C-FIND", why="the responses ended without a final status")


def _from_direct(service: str, got: _fast.Reply, counts: tuple[int, int, int] = (0, 0, 0)) -> Reply:
    return Reply(
        service,
        got.status,
        got.error_comment,
        *counts,
        timed_out=got.timed_out,
        peer_ended=got.peer_ended,
        # the one wording says "timed out"; how the peer ended it, or why it broke, is kept
        why=None if got.timed_out or got.status is not None else got.error,
    )


# -- C-GET and C-MOVE --------------------------------------------------------------------

Progress = Callable[[int, int, int, int, str | None], object]
"""Called with every response: status, completed, failed, warning, Error Comment."""


def retrieve(
    assoc: Any,
    node: Node,
    service: Retrieval,
    model: Any,
    identifier: Dataset,
    on_response: Progress,
    destination: str | None = None,
) -> Reply:
    """One C-GET (sub-operations arrive on this association) or C-MOVE to ``destination``."""
    request = _fast.prepare(assoc, str(model), identifier)
    if request is not None:
        seen: list[tuple[int, int, int]] = [(0, 0, 0)]

        def each(command: wire.Command) -> None:
            counts = (command.completed or 0, command.failed or 0, command.warning or 0)
            seen[0] = counts
            on_response(int(command.status or 0), *counts, command.error_comment)

        with _fast.Querier(assoc) as querier:
            got = querier.retrieve(
                request.context_id,
                wire.C_GET_RQ if service == "C-GET" else wire.C_MOVE_RQ,
                request.sop_class,
                request.identifier,
                each,
                assoc.dimse_timeout,
                destination,
            )
        if got is not None:
            return _from_direct(service, got, seen[0])
    quiesce(assoc)
    responses = (
        assoc.send_c_get(identifier, model)
        if service == "C-GET"
        else assoc.send_c_move(identifier, destination, model)
    )
    for status, _ in responses:
        if "Status" not in status:
            return Reply(service, timed_out=True, why="or the association broke")
        code, counts, comment = int(status.Status), _counts(status), _comment(status)
        on_response(code, *counts, comment)
        if status_category(code) != "pending":
            return Reply(service, code, comment, *counts)
    return Reply(service, timed_out=True, why="the responses ended without a final status")


# -- C-STORE -----------------------------------------------------------------------------


class Storer:
    """C-STOREs on one association: files in their own transfer syntax by the direct
    path, anything else by pynetdicom. Use as a context manager around the sends."""

    def __init__(self, assoc: Any, node: Node) -> None:
        self.assoc = assoc
        self.node = node
        self._sender = _fast.Sender(assoc)

    def __enter__(self) -> Storer:
        self._sender.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sender.__exit__(*exc)

    @property
    def broken(self) -> bool:
        """The association cannot carry another C-STORE (it was aborted or broke)."""
        return bool(self._sender.broken) or not self.assoc.is_established

    @staticmethod
    def read(path: str) -> _fast.FileRead | None:
        """Read a file ahead, for :meth:`store` (``read=``); None if it cannot be read."""
        return _fast.read_file(path)

    def store(
        self,
        data: str | Dataset,
        sop_class: str,
        sop_instance: str,
        context_id: int | None,
        read: _fast.FileRead | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> Reply:
        """Send a file's path (as stored) or a data set on ``context_id``'s context.

        ``read``: the file, read ahead by :meth:`read`. ``meanwhile``: work of the
        caller's (the previous outcome, the next file read) done while the peer works
        on this request, instead of between requests; it runs once, whatever happens.
        """
        once = _Once(meanwhile)
        if isinstance(data, str) and context_id is not None:
            got = self._sender.store_file(
                data, sop_class, sop_instance, context_id, self.node.timeout, read, once
            )
            once()  # the response was there before any wait, or nothing was sent
            if got is not None:
                return _from_direct("C-STORE", got)
        once()
        self._sender.release()
        quiesce(self.assoc)
        rsp = self.assoc.send_c_store(data)
        if "Status" in rsp:
            return Reply("C-STORE", int(rsp.Status), _comment(rsp))
        return Reply("C-STORE", timed_out=True, why="or the association broke")


class _Once:
    """``fn`` called at most once, however often this is."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None] | None) -> None:
        self.fn = fn

    def __call__(self) -> None:
        fn, self.fn = self.fn, None
        if fn is not None:
            fn()


# -- C-ECHO ------------------------------------------------------------------------------


def echo(assoc: Any) -> Reply:
    """One C-ECHO (pynetdicom's: one message each way, nothing to gain elsewhere)."""
    quiesce(assoc)
    rsp = assoc.send_c_echo()
    if "Status" not in rsp:
        return Reply("C-ECHO", timed_out=not assoc.is_aborted, peer_ended=assoc.is_aborted)
    return Reply("C-ECHO", int(rsp.Status), _comment(rsp))
