"""DIMSE behind the protocol interface: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE.

Thin on purpose: each operation is the DIMSE module that does it (:mod:`dicomlab.net.echo`,
:mod:`dicomlab.net.find`, :mod:`dicomlab.transfer.findmany`,
:mod:`dicomlab.transfer.getmove` on the retrieve queue, :mod:`dicomlab.transfer.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd

from dicomlab.core.call import Call
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query
from dicomlab.errors import ValidationError
from dicomlab.net import echo as _echo
from dicomlab.net import find as _find
from dicomlab.protocols.base import find_any
from dicomlab.transfer import findmany, getmove
from dicomlab.transfer import retrieve as _retrieve
from dicomlab.transfer import store as _store
from dicomlab.transfer.job import Job

__all__ = ["DIMSE", "Dimse"]


class Dimse:
    """DIMSE, for every node with an AE title (a host and a port are all else it needs)."""

    name: str = "dimse"
    retrieve_methods: tuple[str, ...] = ("move", "get")
    operations: frozenset[str] = frozenset({"echo", "find", "find_many", "retrieve", "store"})

    def speaks(self, node: Node) -> bool:
        return node.speaks_dimse

    def echo(self, call: Call) -> _echo.EchoResult:
        return _echo.echo(call)

    def find(self, call: Call, query: Query, today: date | None, warn: bool) -> pd.DataFrame:
        _literal(query, call)
        return _find.find(call, query, today, warn)

    def finder(self, call: Call, today: date | None) -> _find.Finder:
        return _find.Finder(call, today)

    def find_many(
        self,
        call: Call,
        base: Query,
        keyword: str,
        values: Sequence[str],
        today: date | None,
        warn: bool,
    ) -> pd.DataFrame:
        _literal(base, call)
        return findmany.find_many(call, base, keyword, values, today, warn)

    def retrieve(self, call: Call, request: _retrieve.Request) -> pd.DataFrame | Job:
        return _retrieve.run_retrieve(
            call, request, fetchers=getmove.GetMove, find=lambda c, q: find_any(self, c, q)
        )

    def store(
        self,
        call: Call,
        what: Any,
        max_connections: int | None,
        wait: bool,
        transcode: bool = True,
        commit: float | None = None,
    ) -> pd.DataFrame | Job:
        return _store.store(call, what, max_connections, wait, transcode, commit)


def _literal(query: Query, call: Call) -> None:
    """C-FIND matches literally here (fuzzy person-name matching would need an extended
    negotiation few archives offer)."""
    if query.fuzzy:
        raise ValidationError(
            "fuzzy matching is a QIDO-RS option: use a node with a DICOMweb service "
            "and protocol='dicomweb'",
            node=call.node,
        )


DIMSE = Dimse()
