"""One C-FIND on an open association, into a typed DataFrame: the model to use, the
matches read as they come (only the wanted attributes), and how it ended in ``attrs``.

:mod:`dicomlab.net.find` builds ``find`` and ``find_many`` on it; the operation itself
goes through the seam (:func:`dicomlab.net.dimse.find`).
"""

from __future__ import annotations

import io
import logging
import time
from datetime import date
from typing import Any

import pandas as pd
from pynetdicom.association import Association
from pynetdicom.dsutils import decode

from dicomlab.core.header import CHARSET_TAG, IMPLICIT_LE, encodings_of, scan_elements
from dicomlab.core.models import MODELS
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query, to_identifier
from dicomlab.core.results import ResultBuilder
from dicomlab.core.status import decode_status
from dicomlab.errors import NoAcceptedContext
from dicomlab.net import dimse

__all__ = ["Outcome", "find_contexts", "find_on", "model_order", "pick_model", "run_find"]

log = logging.getLogger(__name__)

_MODELS = MODELS["find"]


def model_order(node: Node, query: Query) -> list[str]:
    """Models to try, preferred first: the query's, else Study Root (Patient Root for patients)."""
    if query.level == "patient":
        return ["patient"]
    first = query.model or node.query_model
    return [first, "patient" if first == "study" else "study"]


def pick_model(assoc: Association, order: list[str], node: Node) -> Any:
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    for name in order:
        if str(_MODELS[name]) in accepted:
            return _MODELS[name]
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
    reader = _IdentifierReader(builder, extra)

    def dataset(ds: Any) -> None:
        builder.add(ds, **extra)
        reader.n += 1

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
        values = scan_elements(data, syntax, self.wanted, self.last)
        if values is None:
            ds = decode(io.BytesIO(data), syntax == IMPLICIT_LE, True)
            self.builder.add(ds, **self.extra)
        else:
            charset = values.get(CHARSET_TAG, ("CS", b""))[1]
            encodings = self._encodings.get(charset)
            if encodings is None:
                encodings = self._encodings[charset] = encodings_of(values)
            self.builder.add_raw(values, encodings, **self.extra)
        self.n += 1


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
    df.attrs.update(
        node=node.name,
        protocol="dimse",  # where the rows came from (DICOMweb results will say "dicomweb")
        query=what,
        status=status,
        complete=complete,
        elapsed_s=elapsed,
        error=error,
        error_comment=outcome.comment,
        timed_out=outcome.timed_out,
        peer_ended=outcome.peer_ended,
    )
    if not complete:
        log.warning("C-FIND %s on %s incomplete: %s", what, node.address, error or status)
