"""Modality worklist items (pure): a DataFrame checked into items, an item as DICOM,
and the matching a Modality Worklist FIND asks for (PS3.4 K.6, C.2.2.2).

>>> import pandas as pd
>>> items = items_from_frame(pd.DataFrame([{
...     "PatientName": "DOE^JANE", "PatientID": "P1", "AccessionNumber": "A1",
...     "Modality": "CT", "ScheduledProcedureStepStartDate": "2026-12-02",
...     "StudyInstanceUID": "1.2.3"}]))
>>> items[0].get("ScheduledProcedureStepStartDate"), items[0].get("ScheduledProcedureStepID")
('20261202', 'A1')
>>> key = Dataset(); key.PatientName = "DOE*"; key.ScheduledProcedureStepSequence = [Dataset()]
>>> key.ScheduledProcedureStepSequence[0].Modality = "CT"
>>> matches(to_dataset(items[0]), key)
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import pandas as pd
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from dicomlab.core.indexrow import is_valid_uid
from dicomlab.core.nodes import validate_ae_title
from dicomlab.core.results import ResultBuilder
from dicomlab.core.worklist_match import SPS_KEYS, answer, matches
from dicomlab.errors import ValidationError

__all__ = [
    "COMPLETE",
    "ITEM_KEYS",
    "REQUIRED",
    "SPS",
    "SPS_KEYS",
    "TOP_KEYS",
    "WorklistItem",
    "answer",
    "flat",
    "frame_of",
    "items_from_frame",
    "matches",
    "to_dataset",
]

SPS = "ScheduledProcedureStepSequence"

TOP_KEYS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientWeight",
    "AdmissionID",
    "CurrentPatientLocation",
    "AccessionNumber",
    "ReferringPhysicianName",
    "RequestingPhysician",
    "RequestingService",
    "StudyInstanceUID",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "RequestedProcedurePriority",
)
"""Worklist attributes at the top level of an item (PS3.4 Table K.6-1: patient, visit,
imaging service request and requested procedure)."""


ITEM_KEYS: tuple[str, ...] = TOP_KEYS + SPS_KEYS
REQUIRED: tuple[str, ...] = ("PatientID", "Modality", "ScheduledProcedureStepStartDate")
COMPLETE: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "StudyInstanceUID",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
)
"""What a complete item holds (the model's Type 1 return keys, and the accession): dcmtk's
wlmscpfs ignores a worklist file without one of them; LocalPACS serves it anyway."""

_LIMIT = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "DS": 16, "UI": 64}
_CS_RE = re.compile(r"^[A-Z0-9 _]*$")
_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")


@dataclass(frozen=True, slots=True)
class WorklistItem:
    """One scheduled procedure step: DICOM texts by keyword (only those with a value),
    and whether it is done (no longer served)."""

    values: tuple[tuple[str, str], ...]
    done: bool = False
    mapping: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mapping", dict(self.values))

    def get(self, keyword: str) -> str:
        return self.mapping.get(keyword, "")

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the item: (AccessionNumber, ScheduledProcedureStepID)."""
        return self.get("AccessionNumber"), self.get("ScheduledProcedureStepID")

    def missing(self) -> list[str]:
        """The attributes of :data:`COMPLETE` this item lacks."""
        return [kw for kw in COMPLETE if kw not in self.mapping]


# -- DataFrame -> items ---------------------------------------------------------------
def items_from_frame(df: pd.DataFrame) -> list[WorklistItem]:
    """Check a worklist DataFrame (one row per scheduled procedure step, columns named
    by DICOM keyword from :data:`ITEM_KEYS`) into items; the first bad value raises a
    ValidationError quoting it, its row and its column.

    Dates may be dates, Timestamps, ``YYYYMMDD`` or ``YYYY-MM-DD``; times may be times,
    Timedeltas, ``HHMM[SS]`` or ``HH:MM[:SS]``. A missing StudyInstanceUID is made (a
    ``2.25.`` UID, the same for the steps of one accession number), missing Requested
    Procedure and Scheduled Procedure Step IDs are the accession number, and the step
    status is ``SCHEDULED``.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValidationError(f"a worklist is a pandas DataFrame, got {type(df).__name__}")
    unknown = [str(c) for c in df.columns if c not in ITEM_KEYS]
    if unknown:
        raise ValidationError(
            f"unknown worklist column(s) {unknown!r}",
            hint=f"columns are DICOM keywords among: {', '.join(ITEM_KEYS)}",
        )
    missing = [k for k in REQUIRED if k not in df.columns]
    if missing:
        raise ValidationError(f"a worklist needs the column(s) {missing!r}")
    out: list[WorklistItem] = []
    seen: set[tuple[str, str]] = set()
    studies: dict[str, str] = {}  # accession -> the Study Instance UID made for it
    for n, (_, row) in enumerate(df.iterrows()):
        values: dict[str, str] = {}
        for kw in df.columns:
            text = _text(str(kw), row[kw], n)
            if text:
                values[str(kw)] = text
        for kw in REQUIRED:
            if not values.get(kw):
                raise ValidationError(f"worklist row {n}: {kw} is empty")
        accession = values.get("AccessionNumber", "")
        if "StudyInstanceUID" not in values:  # the steps of one accession: one study
            made = studies.get(accession) if accession else None
            values["StudyInstanceUID"] = made or str(generate_uid(prefix=None))
            if accession:
                studies[accession] = values["StudyInstanceUID"]
        if accession:
            values.setdefault("RequestedProcedureID", accession)
            values.setdefault("ScheduledProcedureStepID", accession)
        values.setdefault("ScheduledProcedureStepStatus", "SCHEDULED")
        item = WorklistItem(tuple((k, values[k]) for k in ITEM_KEYS if k in values))
        if accession and item.key in seen:
            raise ValidationError(
                f"worklist row {n}: AccessionNumber {accession!r} with step "
                f"{item.key[1]!r} is given twice"
            )
        seen.add(item.key)
        out.append(item)
    return out


def _missing(value: Any) -> bool:
    """None, NaN, NaT or NA (a list's or array's ``isna`` is not one truth: not missing)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(keyword: str, value: Any, row: int) -> str:
    """``value`` of ``keyword`` as DICOM text, or a ValidationError quoting it."""
    if _missing(value):
        return ""
    vr = str(dictionary_VR(keyword))
    where = f"worklist row {row}: {keyword}"
    if vr == "DA":
        return _da(value, where)
    if vr == "TM":
        return _tm(value, where)
    if vr == "DS" and isinstance(value, int | float) and not isinstance(value, bool):
        value = f"{float(value):g}"
    if not isinstance(value, str):
        raise ValidationError(f"{where} {value!r} must be text")
    text = value.strip()
    if "\\" in text:
        raise ValidationError(f"{where} {value!r} holds a backslash (one value per cell)")
    if vr == "UI":
        if not is_valid_uid(text):
            raise ValidationError(
                f"{where} {value!r} is not a UID (digits and dots, at most 64 characters)"
            )
        return text
    if vr == "AE":
        return validate_ae_title(text, where)
    if vr == "CS" and not _CS_RE.match(text):
        raise ValidationError(f"{where} {value!r}: CS allows upper-case letters, digits, _")
    if vr == "PN":
        long = [g for g in text.split("=") if len(g) > 64]
        if long:
            raise ValidationError(f"{where} {value!r}: a name group holds at most 64 characters")
    limit = _LIMIT.get(vr)
    if limit is not None and len(text) > limit:
        raise ValidationError(f"{where} {value!r} is longer than {vr} allows ({limit})")
    return text


def _da(value: Any, where: str) -> str:
    if isinstance(value, datetime | date):  # pd.Timestamp too
        return f"{value.year:04d}{value.month:02d}{value.day:02d}"
    if isinstance(value, str):
        text = value.strip()
        for fmt in ("%Y%m%d", "%Y-%m-%d"):
            try:
                day = datetime.strptime(text, fmt).date()
            except ValueError:
                continue
            return f"{day.year:04d}{day.month:02d}{day.day:02d}"
    raise ValidationError(f"{where} {value!r} is not a date (YYYYMMDD or YYYY-MM-DD)")


def _tm(value: Any, where: str) -> str:
    if isinstance(value, time):
        return value.strftime("%H%M%S")
    if isinstance(value, pd.Timedelta):
        seconds = int(value.total_seconds())
        if 0 <= seconds < 86400:
            return f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}"
    if isinstance(value, str):
        text = value.strip().replace(":", "")
        m = _TM_RE.match(text)
        if m and int(m.group(1)) < 24 and int(m.group(2) or 0) < 60 and int(m.group(3) or 0) < 60:
            return text
    raise ValidationError(f"{where} {value!r} is not a time (HHMM[SS] or HH:MM[:SS])")


# -- items as DICOM ------------------------------------------------------------------
def _with_charset(item: WorklistItem) -> Dataset:
    """An empty data set saying UTF-8 when any of ``item``'s texts is not ASCII."""
    ds = Dataset()
    if any(not v.isascii() for _, v in item.values):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def to_dataset(item: WorklistItem) -> Dataset:
    """``item`` as a worklist data set: its top-level attributes and one Scheduled
    Procedure Step Sequence item (UTF-8 when any text is not ASCII)."""
    ds = _with_charset(item)
    step = Dataset()
    for kw, value in item.values:
        setattr(step if kw in SPS_KEYS else ds, kw, value)
    ds.ScheduledProcedureStepSequence = Sequence([step])
    # Type 2 in the worklist model: present, empty (wlmscpfs adds them otherwise).
    ds.ReferencedStudySequence = Sequence()
    ds.ReferencedPatientSequence = Sequence()
    return ds


def _copy(ds: Dataset) -> Dataset:
    out = Dataset()
    for elem in ds:
        out[elem.tag] = DataElement(elem.tag, elem.VR, elem.value)
    return out


def flat(ds: Dataset) -> Dataset:
    """A worklist data set with its first Scheduled Procedure Step item's attributes
    lifted to the top level: one row of a worklist table."""
    out = _copy(ds)
    steps = ds[SPS].value if SPS in ds else None
    if steps:
        del out[SPS]
        for elem in steps[0]:
            if elem.VR != "SQ":
                out[elem.tag] = DataElement(elem.tag, elem.VR, elem.value)
    return out


def frame_of(items: Iterable[WorklistItem]) -> pd.DataFrame:
    """Items as a typed DataFrame (as ``dl.find`` types a worklist query's answer:
    columns :data:`ITEM_KEYS`, then ``done``)."""
    items = list(items)
    builder = ResultBuilder(ITEM_KEYS)
    for item in items:
        row = _with_charset(item)  # one row: the step's attributes beside the others
        for kw, value in item.values:
            setattr(row, kw, value)
        builder.add(row)
    df = builder.frame()
    df["done"] = pd.array([item.done for item in items], dtype="boolean")
    return df
