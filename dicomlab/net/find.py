"""C-FIND as a client: one query into a typed DataFrame, and what its end means.

``find`` opens an association (:mod:`dicomlab.net.association`) and runs the query on
it; ``find_on`` runs one on an association already open (a retrieve's planning query,
a batch's worker): the model the peer accepted, the matches read as they come (only
the wanted attributes), and how it ended in ``attrs``. The operation itself goes
through the seam (:func:`dicomlab.net.dimse.find`). ``conclude`` and ``fail`` turn an
incomplete result into a warning or the one error, with a hint naming which AE title
to register where.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import date
from typing import Any, NoReturn

import pandas as pd
from pynetdicom.association import Association
from pynetdicom.dsutils import decode

from dicomlab.core import worklist
from dicomlab.core.call import Call
from dicomlab.core.header import CHARSET_TAG, IMPLICIT_LE, encodings_of, scan_elements
from dicomlab.core.models import MODELS
from dicomlab.core.nested import scan_with_item
from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import FindAttrs
from dicomlab.core.query import Query, to_identifier
from dicomlab.core.results import ResultBuilder
from dicomlab.core.status import decode_status, is_refusal
from dicomlab.errors import (
    AssociationAborted,
    DimseError,
    DimseTimeout,
    NoAcceptedContext,
    OperationRefused,
    ValidationError,
    warn_partial,
)
from dicomlab.net import diagnose, dimse
from dicomlab.net.association import open_association

__all__ = [
    "Finder",
    "Outcome",
    "conclude",
    "fail",
    "find",
    "find_contexts",
    "find_on",
    "model_order",
    "pick_model",
    "refusal_hint",
    "run_find",
]

log = logging.getLogger(__name__)


def find(call: Call, query: Query, today: date | None = None, warn: bool = True) -> pd.DataFrame:
    """One C-FIND of ``query`` on ``call.node`` (on its own association): one typed row
    per match, ``df.attrs`` saying how it ended; raises or warns as ``dl.find`` says."""
    if not isinstance(query, Query):
        raise ValidationError(f"expected a dl.Query, got {query!r}")
    t0 = time.perf_counter()
    with Finder(call, today) as run:
        df = run(query, warn)
    df.attrs["elapsed_s"] = time.perf_counter() - t0  # the association's setup and release too
    return df


class Finder:
    """Queries one after another on one kept association (a planned find's pieces):
    ``finder(query)`` answers as :func:`find` does (``warn=False`` unless asked). After
    an operation that did not end well the association is aborted (:func:`find_on`) and
    the next query opens a new one; leaving the ``with`` block releases it."""

    def __init__(self, call: Call, today: date | None = None) -> None:
        self.call, self.today = call, today
        self._stack = ExitStack()
        self._assoc: Association | None = None

    def __enter__(self) -> Finder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._assoc = None

    def __call__(self, query: Query, warn: bool = False) -> pd.DataFrame:
        node = self.call.node
        identifier = to_identifier(query, today=self.today, charset=node.charset)
        t0 = time.perf_counter()
        if self._assoc is None or not self._assoc.is_established:
            self._stack.close()
            self._stack = ExitStack()
            contexts = find_contexts(node, query)
            opened = self._stack.enter_context(
                open_association(node, contexts, calling_ae=self.call.ours)
            )
            self._assoc = opened.assoc
        df = find_on(self._assoc, node, query, identifier=identifier)
        df.attrs["elapsed_s"] = time.perf_counter() - t0
        conclude(df, node, self.call.ours, "C-FIND", warn)
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
        warn_partial(
            f"{service} on {node.address}: partial result, {len(df)} rows, then "
            f"{error or status} (df.attrs['complete'] is False)"
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


_MODELS = MODELS["find"]


def model_order(node: Node, query: Query) -> list[str]:
    """Models to try, preferred first: the query's, else Study Root (Patient Root for
    patients; the Modality Worklist model for a worklist query)."""
    if query.level == "worklist":
        return ["worklist"]
    if query.level == "patient":
        return ["patient"]
    first = query.model or node.query_model
    return [first, "patient" if first == "study" else "study"]


def pick_model(assoc: Association, order: list[str], node: Node) -> Any:
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    for name in order:
        if str(_MODELS[name]) in accepted:
            return _MODELS[name]
    if order == ["worklist"]:
        raise diagnose.no_context_error(node, [str(_MODELS["worklist"])])
    raise NoAcceptedContext(
        f"{node.address} accepted neither Query/Retrieve model "
        f"({', '.join(order)} root) for C-FIND",
        node=node,
        hint="the peer does not let us query it: check its configuration for our AE title",
    )


class Outcome:
    """What one C-FIND ended with."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.error: str | None = None
        self.comment: str | None = None  # the peer's Error Comment
        self.timed_out = False
        self.peer_ended = False  # the peer aborted or closed the connection mid-query
        self.n = 0


def run_find(
    assoc: Association,
    model: Any,
    identifier: Any,
    builder: ResultBuilder,
    node: Node,
    **extra: Any,
) -> Outcome:
    """Send one C-FIND on an open association, streaming matches into ``builder``."""
    reader: _IdentifierReader = (
        _WorklistReader(builder, extra)
        if str(model) == str(_MODELS["worklist"])
        else _IdentifierReader(builder, extra)
    )

    def dataset(ds: Any) -> None:
        reader.add(ds)

    reply = dimse.find(assoc, node, model, identifier, reader, dataset)
    out = Outcome()
    out.n = reader.n
    out.comment = reply.comment
    out.timed_out, out.peer_ended = reply.timed_out, reply.peer_ended
    if reply.status is None:
        out.error = reply.problem(node)
    else:
        _final(out, reply.status)
    return out


def _final(out: Outcome, code: int) -> None:
    """Record the final status ``code`` of a C-FIND that returned ``out.n`` matches."""
    info = decode_status(code)
    out.status = code
    if info.category == "cancel":
        out.error = (
            f"the peer stopped after {out.n} matches with {info} "
            "(often a result cap, such as Orthanc's LimitFindResults): the result is partial"
        )
    elif info.category != "success":
        out.error = f"C-FIND ended with {info} after {out.n} matches"
        if out.comment:
            out.error += f" ({out.comment})"


class _IdentifierReader:
    """Turns each response identifier's bytes into a row of ``builder``: only the wanted
    attributes are read (pydicom decodes the rare identifier the scan cannot walk)."""

    def __init__(self, builder: ResultBuilder, extra: dict[str, Any]) -> None:
        self.builder = builder
        self.extra = extra
        self.wanted = frozenset([*builder.tags, CHARSET_TAG])
        self.last = max(self.wanted)
        self.n = 0
        self._encodings: dict[bytes, list[str]] = {}

    def __call__(self, data: bytes, syntax: str) -> None:
        values = self._scan(data, syntax)
        if values is None:  # not walkable here: pydicom decodes it
            self.add(decode(io.BytesIO(data), syntax == IMPLICIT_LE, True))
            return
        charset = values.get(CHARSET_TAG, ("CS", b""))[1]
        encodings = self._encodings.get(charset)
        if encodings is None:
            encodings = self._encodings[charset] = encodings_of(values)
        self.builder.add_raw(values, encodings, **self.extra)
        self.n += 1

    def _scan(self, data: bytes, syntax: str) -> dict[int, tuple[str, bytes]] | None:
        return scan_elements(data, syntax, self.wanted, self.last)

    def add(self, ds: Any) -> None:
        """A match pynetdicom decoded."""
        self.builder.add(ds, **self.extra)
        self.n += 1


class _WorklistReader(_IdentifierReader):
    """A Modality Worklist match: the Scheduled Procedure Step item's attributes become
    columns of the row (:func:`dicomlab.core.worklist.flat`)."""

    def _scan(self, data: bytes, syntax: str) -> dict[int, tuple[str, bytes]] | None:
        return scan_with_item(data, syntax, self.wanted, _SPS_TAG)

    def add(self, ds: Any) -> None:
        super().add(worklist.flat(ds))


_SPS_TAG = 0x00400100  # Scheduled Procedure Step Sequence


def find_contexts(node: Node, query: Query) -> list[Any]:
    """The Query/Retrieve FIND models a query may use on ``node``, preferred first."""
    return [_MODELS[m] for m in model_order(node, query)]


def find_on(
    assoc: Association,
    node: Node,
    query: Query,
    *,
    identifier: Any = None,
    today: date | None = None,
) -> pd.DataFrame:
    """Run ``query`` on an open association (see :func:`find`; the same ``attrs``).

    An operation that does not end with a final status aborts the association:
    it is never reused after a broken operation.
    """
    if identifier is None:
        identifier = to_identifier(query, today=today, charset=node.charset)
    builder = ResultBuilder(query.keys)
    t0 = time.perf_counter()
    model = pick_model(assoc, model_order(node, query), node)
    outcome = run_find(assoc, model, identifier, builder, node)
    if outcome.error and assoc.is_established:
        assoc.abort()
    df = builder.frame()
    _finish(df, node, query.describe(), outcome, time.perf_counter() - t0)
    return df


def _finish(df: pd.DataFrame, node: Node, what: str, outcome: Outcome, elapsed: float) -> None:
    status, error = outcome.status, outcome.error
    complete = status == 0x0000 and error is None
    attrs = FindAttrs(
        node.name,
        "dimse",
        what,
        status,
        complete,
        elapsed,
        error,
        outcome.comment,
        outcome.timed_out,
        outcome.peer_ended,
    )
    df.attrs.update(attrs.as_attrs())
    if not complete:
        log.warning("C-FIND %s on %s incomplete: %s", what, node.address, error or status)
