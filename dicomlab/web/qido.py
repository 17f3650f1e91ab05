"""QIDO-RS as a client: a :class:`~dicomlab.core.query.Query` into the same typed
DataFrame a C-FIND gives.

The query becomes the same identifier a C-FIND sends (:func:`core.query.to_identifier`:
presets, ranges, wildcards, UID lists), and that identifier becomes QIDO-RS parameters
(PS3.18 8.3.4): each filter a ``keyword=value`` (a list of UIDs comma-separated), each
other key an ``includefield``; ``Query(fuzzy=True)`` adds ``fuzzymatching=true``. The
answers are read into the C-FIND path's :class:`~dicomlab.core.results.ResultBuilder`,
so the columns and dtypes are the same.

Paging (:func:`search`): ``limit``/``offset`` pages of :data:`PAGE` matches, asked for
until a page is empty, as dicomweb-client's ``get_remaining`` does, with two
economies and three guards:

* a page shorter than asked, of fewer than :data:`SMALLEST_CAP` matches, is the last
  one (no archive caps a page that small, so a small answer costs one request);
* a server that refuses our page size (HTTP 400 on the first page: Azure's DICOM
  service allows at most 200) is asked again with no ``limit``, at its own page size;
* HTTP 206 or a ``Warning: 299`` of "additional results" (PS3.18 8.3.4.3) means more
  may follow: paging goes on;
* a server that answers the same page again (it ignores ``offset``) ends the search
  with ``complete=False``, as does a failure after some matches came.

A server that truncates silently and does not page (Orthanc's ``LimitFindResults``
over DICOMweb) cannot be told from a complete answer; over DIMSE Orthanc says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any, NoReturn

import pandas as pd
from pydicom.dataset import Dataset

from dicomlab.core.call import Call
from dicomlab.core.outcomes import FindAttrs
from dicomlab.core.query import Query, to_identifier
from dicomlab.core.results import ResultBuilder
from dicomlab.errors import DicomlabError, DICOMwebError, ValidationError, warn_partial
from dicomlab.web.session import Clients, WebClient, client_for

__all__ = ["PAGE", "SMALLEST_CAP", "Batch", "Pages", "find", "qido_params", "search"]

log = logging.getLogger(__name__)

PAGE = 5000
"""Matches asked for per request (Google's Healthcare API allows 5,000 studies a page;
a server that allows fewer is asked at its own size)."""

SMALLEST_CAP = 100
"""A page shorter than asked with at least this many matches may be a server's cap
(Google's and Azure's default page is 100): the next page is asked for."""

_SKIP = ("QueryRetrieveLevel", "SpecificCharacterSet")


def qido_params(identifier: Dataset) -> tuple[dict[str, str], list[str]]:
    """The QIDO-RS ``{keyword: value}`` filters and ``includefield`` keywords of a C-FIND
    identifier (pure)."""
    filters: dict[str, str] = {}
    fields: list[str] = []
    for elem in identifier:
        kw = elem.keyword
        if not kw or kw in _SKIP:
            continue
        value = elem.value
        if value is None or value == "" or elem.VR == "SQ":
            fields.append(kw)
            continue
        if isinstance(value, list | tuple) or elem.VM > 1:
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        filters[kw] = text
    return filters, fields


@dataclass(frozen=True, slots=True)
class Pages:
    """How one paged search went."""

    complete: bool
    error: str | None
    warnings: tuple[str, ...]
    requests: int


def _check(query: Query, call: Call) -> None:
    if not isinstance(query, Query):
        raise ValidationError(f"expected a dl.Query, got {query!r}")
    if query.level == "patient":
        raise ValidationError(
            "QIDO-RS has no patient level: query studies (their rows carry the patient)",
            node=call.node,
        )


def _params(call: Call, query: Query, today: date | None) -> dict[str, Any]:
    """dicomweb-client's search arguments for ``query`` (all but ``limit``/``offset``)."""
    filters, fields = qido_params(to_identifier(query, today=today, charset=call.node.charset))
    return {
        "search_filters": filters,
        "fields": fields or None,
        "fuzzymatching": True if query.fuzzy else None,
    }


def _searcher(web: WebClient, level: str) -> Callable[..., list[dict[str, Any]]]:
    searches: dict[str, Callable[..., list[dict[str, Any]]]] = {
        "study": web.api.search_for_studies,
        "series": web.api.search_for_series,
        "image": web.api.search_for_instances,
    }
    return searches[level]


def search(
    web: WebClient,
    level: str,
    params: dict[str, Any],
    builder: ResultBuilder,
    **extra: Any,
) -> Pages:
    """Every page of one search at ``level`` (``params`` from :func:`_params`) into
    ``builder``, ``extra`` columns on each row. A failure before any match raises;
    after some, the rows so far are kept."""
    run = _searcher(web, level)
    offset, requests = 0, 0
    limit: int | None = PAGE
    warnings: list[str] = []
    first_of_last: Any = None
    start = len(builder)
    while True:
        requests += 1
        try:
            page = web.request(
                "QIDO-RS",
                partial(run, **params, limit=limit, offset=offset),
                lambda found: {"n_matches": len(found)},
            )
        except DICOMwebError as exc:
            if exc.http_status == 400 and offset == 0 and limit is not None:
                log.info(
                    "%s refused limit=%d: asking at its own page size", web.node.address, limit
                )
                limit = None
                continue
            if len(builder) == start:
                raise
            return Pages(False, str(exc), tuple(warnings), requests)
        warning = web.seen.warning
        if warning and warning not in warnings:
            warnings.append(warning)
        if not page:
            return Pages(True, None, tuple(warnings), requests)
        if page[0] == first_of_last:
            return Pages(
                False,
                f"the server answered the same page again at offset {offset} (it does not "
                "page): the result may be cut short",
                tuple(warnings),
                requests,
            )
        first_of_last = page[0]
        for item in page:
            builder.add_json(item, **extra)
        more = web.seen.status == 206 or bool(warning and "additional" in warning.lower())
        n = len(page)
        if not (more or limit is None or n >= limit or n >= SMALLEST_CAP):
            return Pages(True, None, tuple(warnings), requests)
        offset += n


def find(call: Call, query: Query, today: date | None = None, warn: bool = True) -> pd.DataFrame:
    """QIDO-RS search of ``query`` on ``call.node``: one typed row per match; raises or
    warns as ``dl.find`` says."""
    _check(query, call)
    node = call.node
    params = _params(call, query, today)
    builder = ResultBuilder(query.keys)
    t0 = time.perf_counter()
    web = client_for(node)
    try:
        pages = search(web, query.level, params, builder)
    finally:
        web.close()
    df = builder.frame()
    attrs = FindAttrs(
        node.name,
        "dicomweb",
        query.describe(),
        0 if pages.complete else None,
        pages.complete,
        time.perf_counter() - t0,
        pages.error,
    )
    df.attrs.update(attrs.as_attrs(), server_warnings=list(pages.warnings))
    if not pages.complete:
        log.warning("QIDO-RS %s on %s incomplete: %s", query.describe(), node.address, pages.error)
        if warn:
            warn_partial(
                f"QIDO-RS on {node.address}: partial result, {len(df)} rows, then "
                f"{pages.error} (df.attrs['complete'] is False)"
            )
    return df


class Batch:
    """The QIDO-RS side of ``find_many`` (:class:`dicomlab.transfer.findmany.Asker`):
    one search per value, each worker thread on its own HTTP session."""

    protocol = "dicomweb"
    service = "QIDO-RS"

    def __init__(self, call: Call, base: Query, keyword: str, today: date | None) -> None:
        _check(base, call)
        self.call, self.base, self.keyword, self.today = call, base, keyword, today
        self.clients = Clients(call.node)

    def ask(self, value: str, into: ResultBuilder) -> str | None:
        query = self.base.with_filters(**{self.keyword: value})
        pages = search(
            self.clients.get(),
            query.level,
            _params(self.call, query, self.today),
            into,
            query_value=value,
        )
        return pages.error

    def failed(self) -> None:
        """(An HTTP session is reused after a failed request: requests drops a broken
        connection from its pool itself.)"""

    def close(self) -> None:
        self.clients.close()

    def fail_all(self, first: str, error: str | None, n: int) -> NoReturn:
        raise DicomlabError(
            f"all {n} QIDO-RS queries on {self.call.node.address} failed; the first "
            f"({first!r}): {error}",
            node=self.call.node,
        )
