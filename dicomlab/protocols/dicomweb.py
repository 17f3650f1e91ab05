"""DICOMweb behind the protocol interface: QIDO-RS searches, WADO-RS retrieves, STOW-RS
stores and a capability probe for ``echo``, for every node with a
:class:`~dicomlab.core.dicomweb.DICOMweb` service (:mod:`dicomlab.web`, over
dicomweb-client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import date
from typing import Any

import pandas as pd

from dicomlab.core.call import Call
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query
from dicomlab.errors import ValidationError
from dicomlab.net.echo import EchoResult
from dicomlab.protocols.base import find_any
from dicomlab.transfer import findmany, stow
from dicomlab.transfer import retrieve as _retrieve
from dicomlab.transfer.job import Job
from dicomlab.transfer.wado import Wado
from dicomlab.web import probe, qido

__all__ = ["DICOMWEB", "DicomWeb"]


class DicomWeb:
    """DICOMweb, for every node with a DICOMweb service."""

    name: str = "dicomweb"
    retrieve_methods: tuple[str, ...] = ("wado",)
    operations: frozenset[str] = frozenset({"echo", "find", "find_many", "retrieve", "store"})

    def speaks(self, node: Node) -> bool:
        return node.dicomweb is not None

    def echo(self, call: Call) -> EchoResult:
        return probe.echo(call)

    def find(self, call: Call, query: Query, today: date | None, warn: bool) -> pd.DataFrame:
        return qido.find(call, query, today, warn)

    def finder(
        self, call: Call, today: date | None
    ) -> AbstractContextManager[Callable[[Query], pd.DataFrame]]:
        return nullcontext(lambda q: qido.find(call, q, today, False))

    def find_many(
        self,
        call: Call,
        base: Query,
        keyword: str,
        values: Sequence[str],
        today: date | None,
        warn: bool,
    ) -> pd.DataFrame:
        """One QIDO-RS search per value on the transfer queue (``dl.find_many`` says
        what the result holds)."""
        asker = qido.Batch(call, base, keyword, today)
        return findmany.find_many(call, base, keyword, values, today, warn, asker=asker)

    def retrieve(self, call: Call, request: _retrieve.Request) -> pd.DataFrame | Job:
        return _retrieve.run_retrieve(
            call, request, fetchers=Wado, find=lambda c, q: find_any(self, c, q)
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
        if commit is not None:
            raise ValidationError(
                "storage commitment is a DIMSE service: store with protocol='dimse' to a "
                "node with a DIMSE port",
                node=call.node,
            )
        return stow.store(call, what, max_connections, wait)  # STOW-RS sends files as they are


DICOMWEB = DicomWeb()
