"""Planned queries: ask, see whether the archive capped the answer, split until every
piece is under the cap (:mod:`dicomlab.core.plan` says how to cut).

``planned_find`` runs the query as asked first: an answer under the cap costs nothing
more. A refusal that reads as "too many matches", a cancel after N matches, or a
Success with exactly the known cap (configured as ``Node.find_cap`` or learned and
kept in the node's profile, :mod:`dicomlab.core.profile`) makes it split that piece
and ask again, piece by piece, until each answer is whole or cannot be split any
further. A Success with a round count (100, 500, 1,000...) and no known cap is split
once to find out; when its pieces hold more, that count is learned as the cap.

The pieces' rows are joined, each match once (by the level's unique key);
``df.attrs["plan"]`` lists every query asked with its window, count, verdict and
whether it was split.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from dicomlab.core.nodes import Node
from dicomlab.core.plan import (
    Verdict,
    Window,
    judge,
    looks_capped,
    root_window,
    split,
    unique_key,
    window_query,
)
from dicomlab.core.profile import learned_cap, remember_cap
from dicomlab.core.query import Query
from dicomlab.errors import DICOMwebError, DimseError, DimseTimeout, warn_partial

__all__ = ["PLAN_ATTRS", "known_cap", "planned_find", "replan", "warn_if_capped"]

log = logging.getLogger(__name__)

PLAN_ATTRS = ("plan", "cap", "queries")
"""What a planned result's ``df.attrs`` adds to a find's: ``plan`` (one dict per query
asked: ``window``, ``count``, ``verdict``, ``split``, ``complete``, ``error``), ``cap``
(the cap known at the end, or None) and ``queries`` (how many were asked)."""
_MAX_QUERIES = 20_000

Runner = Callable[[Query], pd.DataFrame]
"""One query on the node, as ``dl.find(..., warn=False)`` runs it: raises when nothing
came, else the rows with ``attrs`` saying how it ended."""


@dataclass(frozen=True, slots=True)
class _Piece:
    ident: int
    parent: int | None
    window: Window | None  # None: the query as asked
    query: Query


def known_cap(node: Node) -> int | None:
    """The node's configured cap, else the one learned from its answers."""
    if node.find_cap is not None:
        return node.find_cap
    learned = learned_cap(node)
    return learned.cap if learned is not None else None


def warn_if_capped(df: pd.DataFrame, node: Node, warn: bool = True) -> None:
    """Without a plan: when a Success answer holds exactly the node's known cap (likely
    a silent subset), say so in ``df.attrs`` and warn (not with ``warn=False``)."""
    cap = known_cap(node)
    if cap is None or not df.attrs.get("complete") or len(df) < cap:
        return
    df.attrs["complete"] = False
    df.attrs["error"] = f"{len(df)} matches: the cap {node.address} stops at (likely a subset)"
    if warn:
        warn_partial(
            f"C-FIND on {node.address}: {len(df)} matches, exactly the cap it stops at: "
            "the answer is likely a subset; ask with plan='auto' to split it "
            "(df.attrs['complete'] is False)"
        )


def planned_find(
    node: Node, query: Query, run: Runner, today: date, *, warn: bool = True
) -> pd.DataFrame:
    """``query`` on ``node`` split as its cap needs; one row per match (see module)."""
    t0 = time.perf_counter()
    cap = known_cap(node)
    root = root_window(query, today)
    queue: deque[_Piece] = deque([_Piece(0, None, None, query)])
    frames: dict[int, pd.DataFrame] = {}
    plan: list[dict[str, Any]] = []
    parents: dict[int, int | None] = {}
    suspects: dict[int, int] = {}  # piece -> its count, split to find out
    first_attrs: dict[str, Any] | None = None
    first_error: Exception | None = None
    next_id = 1
    while queue:
        piece = queue.popleft()
        parents[piece.ident] = piece.parent
        if len(plan) >= _MAX_QUERIES:
            _note(plan, piece, 0, "failed", False, False, "too many pieces: stopped splitting")
            continue
        df, verdict, error = _ask(run, piece, cap)
        if piece.ident == 0 and df is None and verdict == "failed":
            assert error is not None
            raise error  # the query as asked failed for another reason than a cap
        count = 0 if df is None else len(df)
        if first_error is None and df is None:
            first_error = error
        if first_attrs is None and df is not None:
            first_attrs = {str(k): v for k, v in df.attrs.items()}
        if verdict == "cut":
            cap = _learn(node, cap, count, "cut")
        pieces = split(piece.window or root, query) if verdict not in ("ok", "failed") else []
        if pieces and next_id + len(pieces) <= _MAX_QUERIES:
            if verdict == "suspect":
                suspects[piece.ident] = count
            for w in pieces:
                queue.append(_Piece(next_id, piece.ident, w, window_query(query, w)))
                next_id += 1
            _note(plan, piece, count, verdict, True, True, None)
            continue
        whole = verdict in ("ok", "suspect")
        _note(plan, piece, count, verdict, False, whole, None if error is None else str(error))
        if df is not None:
            frames[piece.ident] = df
    if not frames:  # nothing came from any piece: the first refusal is the answer
        assert first_error is not None
        raise first_error
    out = _join(query, frames)
    cap = _confirm(node, cap, suspects, parents, frames, query.level)
    complete = all(row["complete"] for row in plan if not row["split"])
    out.attrs.update(first_attrs or {})
    out.attrs.update(
        query=query.describe(),
        complete=complete,
        status=0 if complete else _status_of(first_attrs),
        elapsed_s=time.perf_counter() - t0,
        plan=plan,
        cap=cap,
        queries=len(plan),
    )
    if not complete:
        out.attrs["error"] = "; ".join(
            f"{r['window']}: {r['error'] or r['verdict']}"
            for r in plan
            if not r["split"] and not r["complete"]
        )[:2000]
        if warn and len(out):
            warn_partial(
                f"C-FIND on {node.address}: planned over {len(plan)} queries, some pieces "
                f"could not be made whole ({out.attrs['error'][:200]}); "
                "df.attrs['plan'] lists them"
            )
    log.info(
        "planned find on %s: %d queries, %d matches, cap %s, complete %s",
        node.address,
        len(plan),
        len(out),
        cap,
        complete,
    )
    return out


def _ask(
    run: Runner, piece: _Piece, cap: int | None
) -> tuple[pd.DataFrame | None, Verdict, Exception | None]:
    """One piece asked: its rows (None when it raised), its verdict, the error."""
    try:
        df = run(piece.query)
    except DimseTimeout as exc:
        return None, "failed", exc
    except DimseError as exc:
        return None, judge(0, False, exc.status, cap, refused=True, comment=exc.comment), exc
    except DICOMwebError as exc:
        too_many = exc.http_status in (413, 400) and "many" in str(exc).lower()
        return None, "refused" if too_many else "failed", exc
    attrs = df.attrs
    status = attrs.get("status")
    verdict = judge(len(df), bool(attrs.get("complete")), status, cap)
    return df, verdict, None if verdict != "failed" else _ended(attrs)


def _ended(attrs: dict[Any, Any]) -> Exception:
    return RuntimeError(str(attrs.get("error") or attrs.get("status")))


def _learn(node: Node, cap: int | None, count: int, how: str) -> int | None:
    if count < 1 or (cap is not None and cap <= count):
        return cap
    if node.find_cap is not None:
        return min(node.find_cap, count)
    return remember_cap(node, count, how).cap


def _confirm(
    node: Node,
    cap: int | None,
    suspects: dict[int, int],
    parents: dict[int, int | None],
    frames: dict[int, pd.DataFrame],
    level: str,
) -> int | None:
    """A suspect count is a cap when the pieces under it found more matches."""
    key = unique_key(level)
    for ident, count in suspects.items():
        found: set[Any] = set()
        for leaf, df in frames.items():
            if _under(leaf, ident, parents) and key in df.columns:
                found.update(df[key].dropna().tolist())
        if len(found) > count:
            cap = _learn(node, cap, count, "probed")
    return cap


def _under(ident: int, ancestor: int, parents: dict[int, int | None]) -> bool:
    at: int | None = ident
    while at is not None:
        if at == ancestor:
            return True
        at = parents.get(at)
    return False


def _join(query: Query, frames: dict[int, pd.DataFrame]) -> pd.DataFrame:
    parts = [frames[k] for k in sorted(frames)]
    if len(parts) == 1:
        return parts[0].copy()
    nonempty = [p for p in parts if len(p)] or parts[:1]
    out = pd.concat(nonempty, ignore_index=True)
    key = unique_key(query.level)
    if key in out.columns:
        has = out[key].notna()
        out = pd.concat([out[has].drop_duplicates(subset=key), out[~has]], ignore_index=True)
    return out


def _note(
    plan: list[dict[str, Any]],
    piece: _Piece,
    count: int,
    verdict: Verdict,
    was_split: bool,
    complete: bool,
    error: str | None,
) -> None:
    plan.append(
        {
            "window": "as asked" if piece.window is None else piece.window.describe(),
            "count": count,
            "verdict": verdict,
            "split": was_split,
            "complete": complete,
            "error": error,
        }
    )


def _status_of(attrs: dict[str, Any] | None) -> int | None:
    """The failure status the query as asked ended with (None: Success, or none came)."""
    status = (attrs or {}).get("status")
    return status if isinstance(status, int) and status != 0 else None


def replan(
    node: Node, query: Query, df: pd.DataFrame, run: Runner, today: date | None
) -> pd.DataFrame:
    """A fanned-out query's batch result with every value that looks capped (its query
    failed, or it matched exactly the known cap, or a round count) asked again through
    :func:`planned_find`; that value's rows replaced by the planned ones."""
    many = query.fan_out()
    assert many is not None
    keyword, values = many
    cap = known_cap(node)
    counts = df["query_value"].value_counts() if "query_value" in df.columns else pd.Series()
    failed: dict[str, str] = dict(df.attrs.get("failed") or {})
    redo = [
        v
        for v in (str(x) for x in values)
        if v in failed
        or (cap is not None and counts.get(v, 0) >= cap)
        or looks_capped(int(counts.get(v, 0)))
    ]
    if not redo:
        return df
    rest = query.without(keyword)
    keep = df[~df["query_value"].isin(redo)] if len(df) else df
    parts, plans = [keep], {}
    for value in redo:
        try:
            sub = planned_find(
                node, rest.with_filters(**{keyword: value}), run, today or date.today(), warn=False
            )
        except DimseError as exc:
            failed[value] = str(exc)
            continue
        sub["query_value"] = pd.array([value] * len(sub), dtype="string")
        parts.append(sub)
        plans[value] = sub.attrs["plan"]
        if sub.attrs["complete"]:
            failed.pop(value, None)
        else:
            failed[value] = str(sub.attrs.get("error"))
    attrs = dict(df.attrs)
    out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    out.attrs.update(attrs)
    out.attrs.update(
        failed=failed,
        complete=not failed,
        plan=plans,
        cap=known_cap(node),
        status=0 if not failed else None,
    )
    return out
