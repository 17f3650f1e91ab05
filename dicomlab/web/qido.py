"""QIDO-RS as a client: a :class:`~dicomlab.core.query.Query` into the same typed
DataFrame a C-FIND gives.

The query becomes the same identifier a C-FIND sends (:func:`core.query.to_identifier`:
presets, ranges, wildcards, UID lists), and that identifier becomes QIDO-RS parameters
(PS3.18 8.3.4): each filter a ``keyword=value`` (a list of UIDs comma-separated), each
other key an ``includefield``. The answers are read into the C-FIND path's
:class:`~dicomlab.core.results.ResultBuilder`, so the columns and dtypes are the same.
Results are paged (``limit``/``offset``) until the server has no more; a server that
answers 206 Partial Content, or stops short of a page it promised, gives a partial
result that says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

import pandas as pd
from pydicom.dataset import Dataset

from dicomlab.core.call import Call
from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import FindAttrs
from dicomlab.core.query import Query, to_identifier
from dicomlab.core.results import ResultBuilder
from dicomlab.errors import DICOMwebError, ValidationError, warn_partial
from dicomlab.web.session import WebClient, client_for

__all__ = ["PAGE", "find", "qido_params"]

log = logging.getLogger(__name__)

PAGE = 1000
"""Matches asked for per request (the server may give fewer: then it says so, or not)."""

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


def find(call: Call, query: Query, today: date | None = None, warn: bool = True) -> pd.DataFrame:
    """QIDO-RS search of ``query`` on ``call.node``: one typed row per match; raises or
    warns as ``dl.find`` says."""
    if not isinstance(query, Query):
        raise ValidationError(f"expected a dl.Query, got {query!r}")
    node = call.node
    if query.level == "patient":
        raise ValidationError(
            "QIDO-RS has no patient level: query studies (their rows carry the patient)",
            node=node,
        )
    identifier = to_identifier(query, today=today, charset=node.charset)
    filters, fields = qido_params(identifier)
    web = client_for(node)
    searches: dict[str, Callable[..., Any]] = {
        "study": web.api.search_for_studies,
        "series": web.api.search_for_series,
        "image": web.api.search_for_instances,
    }
    builder = ResultBuilder(query.keys)
    t0 = time.perf_counter()
    try:
        complete, error = _read_pages(node, web, searches[query.level], filters, fields, builder)
    finally:
        web.close()
    df = builder.frame()
    attrs = FindAttrs(
        node.name,
        "dicomweb",
        query.describe(),
        0 if complete else None,
        complete,
        time.perf_counter() - t0,
        error,
    )
    df.attrs.update(attrs.as_attrs())
    if not complete:
        log.warning("QIDO-RS %s on %s incomplete: %s", query.describe(), node.address, error)
        if warn:
            warn_partial(
                f"QIDO-RS on {node.address}: partial result, {len(df)} rows, then {error} "
                "(df.attrs['complete'] is False)"
            )
    return df


def _read_pages(
    node: Node,
    web: WebClient,
    search: Callable[..., Any],
    filters: dict[str, str],
    fields: list[str],
    builder: ResultBuilder,
) -> tuple[bool, str | None]:
    """Every page of one search into ``builder``; whether it is complete, and why not.

    A failure before any match raises; after some, the rows so far are kept."""
    offset = 0
    while True:
        request = partial(
            search, search_filters=filters, fields=fields or None, limit=PAGE, offset=offset
        )
        try:
            page = web.request("QIDO-RS", request, lambda found: {"n_matches": len(found)})
        except DICOMwebError as exc:
            if not len(builder):
                raise
            return False, str(exc)
        for item in page:
            builder.add_json(item)
        warning = web.seen.warning
        if web.seen.status == 206 or (warning and "299" in warning):
            return False, f"the server answered part of the result ({warning or 'HTTP 206'})"
        if len(page) < PAGE:
            return True, None
        offset += len(page)
