"""DICOMweb behind the protocol interface: QIDO-RS searches, WADO-RS retrieves, STOW-RS
stores and a capability probe for ``echo``, for every node with a
:class:`~dicomlab.core.dicomweb.DICOMweb` service (:mod:`dicomlab.web`, over
dicomweb-client).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd

from dicomlab.core.call import Call
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query
from dicomlab.core.results import ResultBuilder
from dicomlab.errors import DicomlabError
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

    def find_many(
        self,
        call: Call,
        base: Query,
        keyword: str,
        values: Sequence[str],
        today: date | None,
        warn: bool,
    ) -> pd.DataFrame:
        """One QIDO-RS search per value, one after the other (``dl.find_many`` says what
        the result holds)."""
        t0 = time.perf_counter()
        frames, failed, first_error = [], {}, None
        undecodable: list[tuple[int, str]] = []
        rows = 0
        for value in values:
            try:
                df = qido.find(call, base.with_filters(**{keyword: value}), today, warn=False)
            except DicomlabError as exc:
                failed[value] = str(exc)
                first_error = first_error or exc
                continue
            if not df.attrs["complete"]:
                failed[value] = str(df.attrs["error"])
            undecodable += [(rows + r, kw) for r, kw in df.attrs.get("undecodable", [])]
            rows += len(df)
            frames.append(df.assign(query_value=pd.array([value] * len(df), dtype="string")))
        nothing = not any(len(f) for f in frames)
        if first_error is not None and len(failed) == len(values) and nothing:
            raise first_error  # every query failed and nothing came: never an empty frame
        if frames:
            out = pd.concat(frames, ignore_index=True)
        else:
            empty = ResultBuilder(base.with_filters(**{keyword: ""}).keys, extra=["query_value"])
            out = empty.frame(extra_dtypes={"query_value": "string"})
        out.attrs.clear()  # (concat keeps the first frame's attrs)
        out.attrs["undecodable"] = undecodable
        elapsed = time.perf_counter() - t0
        findmany.conclude_batch(out, call, "dicomweb", base, keyword, values, failed, elapsed)
        if warn:
            findmany.warn_batch(out, call)
        return out

    def retrieve(self, call: Call, request: _retrieve.Request) -> pd.DataFrame | Job:
        return _retrieve.run_retrieve(
            call, request, fetchers=Wado, find=lambda c, q: find_any(self, c, q)
        )

    def store(
        self, call: Call, what: Any, max_connections: int | None, wait: bool
    ) -> pd.DataFrame | Job:
        return stow.store(call, what, max_connections, wait)


DICOMWEB = DicomWeb()
