"""Splitting a query an archive caps into pieces under the cap (pure).

Archives stop answering after a set number of matches in three ways: they refuse the
whole query (a failure status, often 0xA700 out of resources), they cancel or fail
after N matches, or they return N matches with Success and say nothing (pynetdicom
#467). :func:`judge` says which of these one answer looks like; :func:`split` cuts a
:class:`Window` of the query into smaller ones: the date range in halves (down to one
day), then the time of day in halves (no piece under 30 minutes, as in ADIT), then one
query per modality when the query names several, then one per first character of the
Patient ID (and one more character each time a piece is still too large).

>>> from datetime import date
>>> q = Query.studies(date=(date(2026, 1, 1), date(2026, 1, 4)))
>>> w = root_window(q, today=date(2026, 3, 1))
>>> [p.describe() for p in split(w, q)]
['20260101-20260102', '20260103-20260104']
>>> window_query(q, split(w, q)[0]).describe()
"study(date=(datetime.date(2026, 1, 1), datetime.date(2026, 1, 2)))"
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from dicomlab.core.models import UNIQUE_KEY
from dicomlab.core.query import Query, date_range
from dicomlab.errors import ValidationError

__all__ = [
    "FIRST_DAY",
    "ID_ALPHABET",
    "LAST_DAY",
    "MIN_SECONDS",
    "Verdict",
    "Window",
    "judge",
    "looks_capped",
    "root_window",
    "split",
    "unique_key",
    "window_query",
]

FIRST_DAY = date(1000, 1, 1)
LAST_DAY = date(9999, 12, 31)
"""The days an open date range is split between (an unbounded query covers them)."""
MIN_SECONDS = 30 * 60
"""The shortest time-of-day piece: a piece is halved while both halves keep at least
this long (ADIT stops halving at 30 minutes); a day ends in pieces of 45 minutes."""
ID_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase + "-_."
"""The first characters a Patient ID split asks for: an ID starting with another
character is not reached by that split (``df.attrs["plan"]`` says when one ran)."""
_MAX_PREFIX = 8
_DAY_S = 86_400
_TIME_KEY = {"study": "StudyTime", "series": "SeriesTime", "image": "ContentTime"}
_DATE_KEY = {"study": "StudyDate", "series": "SeriesDate", "image": "ContentDate"}
_ROUND_CAPS = frozenset({128, 256, 512, 1024, 2048, 4096, 8192})

Verdict = Literal["ok", "refused", "cut", "capped", "suspect", "failed"]
"""How one answer ended: ``ok`` (complete, under any cap), ``refused`` (a refusal that
reads as too many matches: nothing came), ``cut`` (a cancel or failure after some
matches), ``capped`` (Success with exactly the known cap: a silent subset),
``suspect`` (Success with a round count and no known cap: worth one split to find
out), ``failed`` (anything else: not a cap)."""


@dataclass(frozen=True, slots=True)
class Window:
    """One piece of a planned query: days ``first``..``last`` (None at patient level),
    seconds of the day ``start_s``..``end_s`` (inclusive), one ``modality`` of several,
    a Patient ID ``prefix``."""

    first: date | None = None
    last: date | None = None
    start_s: int = 0
    end_s: int = _DAY_S - 1
    modality: str | None = None
    prefix: str | None = None

    def __post_init__(self) -> None:
        if (self.first is None) != (self.last is None):
            raise ValidationError(f"window {self!r} needs both days or neither")
        if self.first is not None and self.last is not None and self.first > self.last:
            raise ValidationError(f"window {self!r} ends before it starts")
        if not 0 <= self.start_s <= self.end_s < _DAY_S:
            raise ValidationError(f"window times {self.start_s}-{self.end_s} are not a day's")

    @property
    def whole_day(self) -> bool:
        return self.start_s == 0 and self.end_s == _DAY_S - 1

    def describe(self) -> str:
        parts = []
        if self.first is not None and self.last is not None:
            parts.append(
                _da(self.first)
                if self.first == self.last
                else f"{_da(self.first)}-{_da(self.last)}"
            )
        if not self.whole_day:
            parts.append(f"{_tm(self.start_s)}-{_tm(self.end_s)}")
        if self.modality is not None:
            parts.append(self.modality)
        if self.prefix is not None:
            parts.append(f"PatientID={self.prefix}*")
        return " ".join(parts) or "all"


def root_window(query: Query, today: date) -> Window:
    """The window the whole of ``query`` covers: its date range (open ends reach
    :data:`FIRST_DAY` and :data:`LAST_DAY`), the whole day, its Patient ID prefix."""
    prefix = _id_prefix(query)
    if query.level == "patient" or query.level == "worklist":
        return Window(prefix=prefix)
    first, last = _days(query, today)
    return Window(first, last, prefix=prefix)


def split(window: Window, query: Query) -> list[Window]:
    """Smaller windows that together cover ``window`` (empty: it cannot be split)."""
    if window.first is not None and window.last is not None and window.first < window.last:
        span = (window.last - window.first).days
        middle = window.first + timedelta(days=span // 2)
        return [
            dataclasses.replace(window, last=middle),
            dataclasses.replace(window, first=middle + timedelta(days=1)),
        ]
    time_key = _TIME_KEY.get(query.level)
    if (
        window.first is not None
        and time_key is not None
        and _filter(query, time_key) is None
        and window.end_s - window.start_s + 1 >= 2 * MIN_SECONDS
    ):
        noon = window.start_s + (window.end_s - window.start_s + 1) // 2
        return [
            dataclasses.replace(window, end_s=noon - 1),
            dataclasses.replace(window, start_s=noon),
        ]
    modalities = _modalities(query)
    if window.modality is None and len(modalities) > 1:
        return [dataclasses.replace(window, modality=m) for m in modalities]
    if _filter(query, "PatientID") is not None and window.prefix is None:
        return []  # an exact Patient ID (or a wildcard in the middle): no prefix to extend
    prefix = window.prefix or ""
    if len(prefix) >= _MAX_PREFIX:
        return []
    return [dataclasses.replace(window, prefix=prefix + c) for c in ID_ALPHABET]


def window_query(query: Query, window: Window) -> Query:
    """``query`` narrowed to ``window``."""
    out = query
    if window.first is not None and window.last is not None and query.level in _DATE_KEY:
        out = dataclasses.replace(
            out.without(_DATE_KEY[query.level]), date=(window.first, window.last)
        )
    if not window.whole_day:
        key = _TIME_KEY[query.level]
        out = out.with_filters(**{key: f"{_tm(window.start_s)}-{_tm(window.end_s)}"})
    if window.modality is not None:
        out = out.with_filters(ModalitiesInStudy=window.modality)
    if window.prefix is not None:
        out = out.with_filters(PatientID=window.prefix + "*")
    return out


def judge(
    count: int,
    complete: bool,
    status: int | None,
    cap: int | None,
    *,
    refused: bool = False,
    comment: str | None = None,
) -> Verdict:
    """How one answer of ``count`` matches ended, given the cap known so far.

    ``refused``: the query raised a refusal or failure with nothing delivered
    (``status``, ``comment``: the peer's).
    """
    if refused:
        return "refused" if _reads_as_too_many(status, comment) else "failed"
    if not complete:
        if status is not None and count and _reads_as_cut(status):
            return "cut"
        return "failed"
    if cap is not None:
        return "capped" if count >= cap else "ok"
    return "suspect" if looks_capped(count) else "ok"


def looks_capped(count: int) -> bool:
    """A count an archive's cap is likely to be (100, 500, 1000, ..., 128, 256, ...)."""
    return count >= 100 and (count % 100 == 0 or count in _ROUND_CAPS)


def unique_key(level: str) -> str:
    """The attribute that tells one match from another at ``level``."""
    return "PatientID" if level == "patient" else UNIQUE_KEY[level]


def _reads_as_too_many(status: int | None, comment: str | None) -> bool:
    """A refusal that means "too many matches": out of resources (0xA7xx), a C-FIND
    "unable to process" (0xCxxx) or a comment that says so."""
    text = (comment or "").lower()
    if any(w in text for w in ("too many", "limit", "exceed", "maximum", "cap")):
        return True
    return status is not None and (0xA700 <= status <= 0xA7FF or 0xC000 <= status <= 0xCFFF)


def _reads_as_cut(status: int) -> bool:
    """An end after some matches that a cap explains: a cancel, out of resources or
    unable to process (not a timeout or an abort: those are not caps)."""
    return status == 0xFE00 or 0xA700 <= status <= 0xA7FF or 0xC000 <= status <= 0xCFFF


def _days(query: Query, today: date) -> tuple[date, date]:
    key = _DATE_KEY[query.level]
    span = date_range(query.date, today)
    if span is not None:
        return span
    text = _filter(query, key)
    if not isinstance(text, str) or not text:
        return FIRST_DAY, LAST_DAY
    low, sep, high = text.partition("-")
    first = _day(low) if low else FIRST_DAY
    last = (_day(high) if high else LAST_DAY) if sep else first
    return first, last


def _day(text: str) -> date:
    span = date_range(text, date.today())
    assert span is not None
    return span[0]


def _filter(query: Query, keyword: str) -> object:
    return dict(query.filters).get(keyword)


def _modalities(query: Query) -> list[str]:
    value = _filter(query, "ModalitiesInStudy")
    if not isinstance(value, str):
        return []
    return [m for m in value.split("\\") if m]


def _id_prefix(query: Query) -> str | None:
    """The Patient ID filter as a prefix to extend (``"AB*"`` -> ``"AB"``), or None."""
    value = _filter(query, "PatientID")
    if isinstance(value, str) and value.endswith("*") and not any(c in value[:-1] for c in "*?"):
        return value[:-1]
    return None


def _da(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _tm(seconds: int) -> str:
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
