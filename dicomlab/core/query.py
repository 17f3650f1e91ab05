"""Queries: what to ask a PACS, validated before anything is sent (pure).

>>> from datetime import date
>>> q = Query.studies(date="yesterday", PatientName="DOE*", ModalitiesInStudy="CT")
>>> ds = to_identifier(q, today=date(2026, 3, 10))
>>> ds.StudyDate, ds.QueryRetrieveLevel
('20260309', 'STUDY')
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.dataset import Dataset

from dicomlab.core import worklist as _wl
from dicomlab.core.models import DICOM_LEVEL, UNIQUE_KEY
from dicomlab.errors import ValidationError

__all__ = [
    "DEFAULT_KEYS",
    "Level",
    "Query",
    "QueryModel",
    "date_range",
    "to_identifier",
]

Level = Literal["patient", "study", "series", "image", "worklist"]
QueryModel = Literal["study", "patient"]
DateSpec = str | date | datetime | tuple[Any, Any] | None

LEVELS: tuple[Level, ...] = ("patient", "study", "series", "image")
"""The Query/Retrieve levels, top down (``"worklist"``, the Modality Worklist model's
one level, stands apart)."""
_DICOM_LEVEL = DICOM_LEVEL

DEFAULT_KEYS: dict[Level, tuple[str, ...]] = {
    "patient": (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    "study": (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "InstitutionName",
        "StudyInstanceUID",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "series": (
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
    ),
    "image": (
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "ContentDate",
        "ContentTime",
    ),
    "worklist": _wl.ITEM_KEYS,
}

# The date attribute a ``date=`` preset filters at each level.
_DATE_KEY: dict[Level, str] = {
    "study": "StudyDate",
    "series": "SeriesDate",
    "image": "ContentDate",
    "worklist": "ScheduledProcedureStepStartDate",
}
# Unique keys of each level: a query may not filter on those of a lower level.
_UNIQUE = {lv: key for lv, key in UNIQUE_KEY.items() if lv != "patient"}
_CONSTRUCTOR = {"patient": "patients", "study": "studies", "series": "series", "image": "instances"}
_PRESET_N = re.compile(r"^last(\d{1,4})days$")
_DA = re.compile(r"^\d{8}$")


def _as_date(value: Any, what: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DA.match(value):
        try:
            return datetime.strptime(value, "%Y%m%d").date()
        except ValueError:
            pass
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError(
        f"{what} {value!r} is not a date (use a date, 'YYYYMMDD' or 'YYYY-MM-DD')"
    )


def date_range(spec: DateSpec, today: date) -> tuple[date, date] | None:
    """``(first, last)`` days of a date preset or range (inclusive); ``None`` for no filter.

    Presets use the local calendar: ``today``, ``yesterday``, ``last7days`` (today
    and the six days before), ``lastNdays``, ``all``; or ``(start, end)``, each a
    date, datetime or ``YYYYMMDD``; or one day.
    """
    if spec is None or spec == "all":
        return None
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValidationError(f"date range {spec!r} must be (start, end)")
        start, end = (_as_date(v, "date") for v in spec)
        if start > end:
            raise ValidationError(f"date range {spec!r} ends before it starts")
        return start, end
    if isinstance(spec, str):
        if spec == "today":
            return today, today
        if spec == "yesterday":
            y = today - timedelta(days=1)
            return y, y
        m = _PRESET_N.match(spec)
        if m:
            n = int(m.group(1))
            if n < 1:
                raise ValidationError(f"date preset {spec!r} needs at least one day")
            return today - timedelta(days=n - 1), today
    try:
        day = _as_date(spec, "date")
    except ValidationError:
        raise ValidationError(
            f"date {spec!r} is not a preset (today, yesterday, last7days, lastNdays, all), "
            "a date or a (start, end) range"
        ) from None
    return day, day


def _da(day: date) -> str:
    """YYYYMMDD with a four-digit year (strftime does not pad years before 1000)."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _format_value(keyword: str, vr: str, value: Any) -> str:
    """A filter value in DICOM query syntax; lists become ``A\\B`` (or fan out, see find)."""
    if value is None:
        return ""
    if isinstance(value, tuple) and len(value) == 2 and vr in ("DA", "TM", "DT"):
        low, high = value
        return f"{_format_value(keyword, vr, low) if low is not None else ''}-" + (
            _format_value(keyword, vr, high) if high is not None else ""
        )
    if vr == "DA" and isinstance(value, date | datetime):
        return _da(value)
    if vr == "TM" and isinstance(value, time):
        return value.strftime("%H%M%S")
    if vr == "DT" and isinstance(value, datetime):
        return _da(value) + value.strftime("%H%M%S")
    if isinstance(value, bool):
        raise ValidationError(f"{keyword}={value!r}: a filter value must be text, not a bool")
    if isinstance(value, numbers.Real):  # also numpy integers from Int64 columns
        return str(value)
    if isinstance(value, str):
        if vr == "DA" and value and "*" not in value and "?" not in value:
            _check_da(keyword, value)
        limit = _MAX_LENGTH.get(vr)
        if limit is not None and any(len(v) > limit for v in value.split("\\")):
            raise ValidationError(
                f"{keyword}={value!r} is longer than {vr} allows ({limit} characters)"
            )
        return value
    if isinstance(value, Iterable):
        items = [_format_value(keyword, vr, v) for v in value]
        return "\\".join(items)
    raise ValidationError(f"{keyword}={value!r}: unsupported filter value type")


_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "UI": 64, "PN": 324, "LT": 10240}
"""PS3.5 6.2 maximum value lengths, checked before a query is sent (wildcards included)."""


def _check_da(keyword: str, value: str) -> None:
    """A DA query value: a date or a range of real dates (``A-B``, ``A-``, ``-B``)."""
    parts = value.split("-")
    if len(parts) > 2 or not any(parts):
        raise ValidationError(f"{keyword}={value!r} is not a DICOM date or range (A-B)")
    for part in parts:
        if part and (not _DA.match(part) or _valid_day(part) is None):
            raise ValidationError(f"{keyword}={value!r}: {part!r} is not a real date (YYYYMMDD)")


def _valid_day(text: str) -> date | None:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def _check_keyword(keyword: str) -> str:
    if keyword not in keyword_dict:
        raise ValidationError(
            f"unknown DICOM keyword {keyword!r}",
            hint="keywords are CamelCase, as in pydicom: PatientName, StudyDate, AccessionNumber",
        )
    vr = dictionary_VR(keyword)
    if vr == "SQ":
        raise ValidationError(
            f"keyword {keyword!r} is a sequence: sequence matching is not supported"
        )
    return str(vr)


@dataclass(frozen=True, slots=True)
class Query:
    """A C-FIND query: a level, filters by DICOM keyword, return keys and a date spec.

    Build it with :meth:`patients`, :meth:`studies`, :meth:`series` or
    :meth:`instances`. Values follow the standard's matching: exact, ``*``/``?``
    wildcards, ranges ``A-B`` on dates and times, lists (of UIDs) as Python lists.
    A list of values of another keyword is fanned out into one query per value
    by :func:`dicomlab.find`.
    """

    level: Level
    filters: tuple[tuple[str, Any], ...] = ()
    return_keys: tuple[str, ...] = ()
    date: DateSpec = None
    model: QueryModel | None = None
    fuzzy: bool = False
    """Ask for fuzzy matching of person names (QIDO-RS ``fuzzymatching=true``, where the
    server supports it; a DIMSE query refuses it)."""

    def __post_init__(self) -> None:
        if not isinstance(self.fuzzy, bool):
            raise ValidationError(f"fuzzy={self.fuzzy!r} must be True or False")
        if self.level not in (*LEVELS, "worklist"):
            raise ValidationError(
                f"query level {self.level!r} is not one of {[*LEVELS, 'worklist']}"
            )
        if self.level == "worklist" and (self.model is not None or self.fuzzy):
            raise ValidationError(
                "a worklist query has its own model (Modality Worklist) and no fuzzy matching"
            )
        if self.model not in (None, "study", "patient"):
            raise ValidationError(f"query model {self.model!r} must be 'study' or 'patient'")
        if self.model == "study" and self.level == "patient":
            raise ValidationError("the Study Root model has no patient level: use model='patient'")
        seen = set()
        for kw, value in self.filters:
            vr = _check_keyword(kw)
            if kw in seen:
                raise ValidationError(f"filter {kw!r} given twice")
            seen.add(kw)
            self._check_level(kw)
            if not _is_many(value):
                _format_value(kw, vr, value)
            else:
                for v in value:
                    _format_value(kw, vr, v)
        for kw in self.return_keys:
            _check_keyword(kw)
        if self.date is not None:
            if self.level != "patient" and _DATE_KEY[self.level] in seen:
                raise ValidationError(
                    f"both date={self.date!r} and {_DATE_KEY[self.level]} given: use one of them"
                )
            if self.level == "patient":
                raise ValidationError("a patient-level query has no date; query studies instead")
            date_range(self.date, date.today())

    def _check_level(self, keyword: str) -> None:
        if self.level == "worklist":
            return  # one level: every worklist attribute may be matched
        here = LEVELS.index(self.level)
        for lv, key in _UNIQUE.items():
            if keyword == key and LEVELS.index(lv) > here:
                raise ValidationError(
                    f"{keyword} is a {lv}-level key: "
                    f"a {self.level}-level query cannot filter on it",
                    hint=f"use Query.{_CONSTRUCTOR[lv]}(...) instead",
                )
        if keyword == "Modality" and self.level in ("patient", "study"):
            raise ValidationError(
                f"Modality is a series attribute; at {self.level} level use ModalitiesInStudy"
            )

    # -- constructors --------------------------------------------------------------
    @classmethod
    def _make(
        cls,
        level: Level,
        date: DateSpec,
        return_keys: Iterable[str],
        model: QueryModel | None,
        filters: dict[str, Any],
        fuzzy: bool = False,
    ) -> Query:
        return cls(level, tuple(filters.items()), tuple(return_keys), date, model, fuzzy)

    @classmethod
    def patients(
        cls, *, return_keys: Iterable[str] = (), model: QueryModel | None = None, **filters: Any
    ) -> Query:
        """Patient-level query (Patient Root model)."""
        return cls._make("patient", None, return_keys, model, filters)

    @classmethod
    def studies(
        cls,
        *,
        date: DateSpec = None,
        return_keys: Iterable[str] = (),
        model: QueryModel | None = None,
        fuzzy: bool = False,
        **filters: Any,
    ) -> Query:
        """Study-level query; ``date`` is a preset or range on StudyDate."""
        return cls._make("study", date, return_keys, model, filters, fuzzy)

    @classmethod
    def series(
        cls,
        *,
        date: DateSpec = None,
        return_keys: Iterable[str] = (),
        model: QueryModel | None = None,
        fuzzy: bool = False,
        **filters: Any,
    ) -> Query:
        """Series-level query (give StudyInstanceUID: a value, a list or a DataFrame column)."""
        return cls._make("series", date, return_keys, model, filters, fuzzy)

    @classmethod
    def instances(
        cls,
        *,
        date: DateSpec = None,
        return_keys: Iterable[str] = (),
        model: QueryModel | None = None,
        fuzzy: bool = False,
        **filters: Any,
    ) -> Query:
        """Image-level query."""
        return cls._make("image", date, return_keys, model, filters, fuzzy)

    @classmethod
    def worklist(
        cls, *, date: DateSpec = None, return_keys: Iterable[str] = (), **filters: Any
    ) -> Query:
        """Modality Worklist query: scheduled procedure steps. ``date`` is a preset or
        range on ScheduledProcedureStepStartDate; Modality, ScheduledStationAETitle and
        the other step attributes are matched inside the Scheduled Procedure Step
        Sequence (one row per step, its attributes as columns)."""
        return cls._make("worklist", date, return_keys, None, filters)

    # -- derived ------------------------------------------------------------------
    @property
    def keys(self) -> tuple[str, ...]:
        """Return keys in result column order: defaults, then extra keys, then filters."""
        out = list(DEFAULT_KEYS[self.level])
        for kw in (*self.return_keys, *(k for k, _ in self.filters)):
            if kw not in out:
                out.append(kw)
        return tuple(out)

    def with_filters(self, **filters: Any) -> Query:
        """A copy with filters added or replaced."""
        merged = dict(self.filters)
        merged.update(filters)
        return dataclasses.replace(self, filters=tuple(merged.items()))

    def without(self, keyword: str) -> Query:
        """A copy without the filter on ``keyword``."""
        return dataclasses.replace(
            self, filters=tuple((k, v) for k, v in self.filters if k != keyword)
        )

    def fan_out(self) -> tuple[str, list[Any]] | None:
        """``(keyword, values)`` of the one filter holding several values, if any."""
        many = [(k, list(v)) for k, v in self.filters if _is_many(v)]
        if not many:
            return None
        if len(many) > 1:
            raise ValidationError(
                f"only one filter may hold a list of values, got {[k for k, _ in many]}"
            )
        return many[0]

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.filters if not _is_many(v)]
        parts += [f"{k}=[{len(list(v))} values]" for k, v in self.filters if _is_many(v)]
        if self.date is not None:
            parts.insert(0, f"date={self.date!r}")
        if self.fuzzy:
            parts.append("fuzzy")
        return f"{self.level}({', '.join(parts)})"


def _is_many(value: Any) -> bool:
    return not isinstance(value, str | bytes | tuple) and isinstance(value, Iterable)


def to_identifier(
    query: Query, *, today: date | None = None, charset: str | None = None
) -> Dataset:
    """The C-FIND identifier for ``query`` (pure; ``today`` fixes the presets).

    Filters holding several values must have been fanned out first.
    """
    today = today or date.today()
    ds = Dataset()
    if charset is None and any(isinstance(v, str) and not v.isascii() for _, v in query.filters):
        charset = "ISO_IR 192"  # non-ASCII filter values are sent in UTF-8
    if charset:
        ds.SpecificCharacterSet = charset
    step = Dataset()  # a worklist query's Scheduled Procedure Step item

    def target(kw: str) -> Dataset:
        return step if query.level == "worklist" and kw in _wl.SPS_KEYS else ds

    if query.level != "worklist":  # the Modality Worklist model has no levels
        ds.QueryRetrieveLevel = _DICOM_LEVEL[query.level]
    for kw in query.keys:
        setattr(target(kw), kw, None)
    for kw, value in query.filters:
        if _is_many(value):
            raise ValidationError(f"{kw} holds several values: fan the query out first")
        text = _format_value(kw, _check_keyword(kw), value)
        setattr(target(kw), kw, text if text else None)
    span = date_range(query.date, today)
    if span is not None:
        first, last = span
        text = _da(first) if first == last else (f"{_da(first)}-{_da(last)}")
        setattr(target(_DATE_KEY[query.level]), _DATE_KEY[query.level], text)
    if query.level == "worklist":
        ds.ScheduledProcedureStepSequence = [step]
    return ds
