"""What to transfer: rows of a find result, lists of UIDs, into transfer items (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from dicomlab.core.models import DICOM_LEVEL
from dicomlab.errors import ValidationError

__all__ = [
    "Item",
    "RetrieveLevel",
    "count_of",
    "identifier_keys",
    "items_from_frame",
    "items_from_uids",
]

RetrieveLevel = Literal["study", "series", "image"]
_DICOM = {lv: DICOM_LEVEL[lv] for lv in ("study", "series", "image")}
_COUNT = {"study": "NumberOfStudyRelatedInstances", "series": "NumberOfSeriesRelatedInstances"}


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to retrieve: a study, a series or an instance, with what we expect of it."""

    level: RetrieveLevel
    study: str
    series: str | None = None
    sop: str | None = None
    expected: int | None = None

    @property
    def uid(self) -> str:
        return self.sop or self.series or self.study

    def filters(self) -> dict[str, str]:
        """Unique keys identifying the item (for the archive and for C-MOVE/C-GET)."""
        keys = {"StudyInstanceUID": self.study}
        if self.series:
            keys["SeriesInstanceUID"] = self.series
        if self.sop:
            keys["SOPInstanceUID"] = self.sop
        return keys


def identifier_keys(item: Item) -> dict[str, str]:
    """Keys of a C-MOVE/C-GET identifier (Study Root, hierarchical)."""
    return {"QueryRetrieveLevel": _DICOM[item.level], **item.filters()}


def _infer_level(df: pd.DataFrame) -> RetrieveLevel:
    if "SOPInstanceUID" in df.columns:
        return "image"
    if "SeriesInstanceUID" in df.columns:
        return "series"
    if "StudyInstanceUID" in df.columns:
        return "study"
    raise ValidationError(
        "the DataFrame has no StudyInstanceUID column: pass the result of dl.find"
    )


def count_of(value: Any) -> int | None:
    """A count from a table cell (None for a missing one: None, NaN, NA)."""
    if value is None or pd.isna(value):
        return None
    return int(value)


def items_from_frame(df: pd.DataFrame, level: RetrieveLevel | None = None) -> list[Item]:
    """Items from a find result (study, series or image rows), duplicates removed."""
    lv = level or _infer_level(df)
    if lv not in _DICOM:
        raise ValidationError(f"retrieve level {lv!r} must be 'study', 'series' or 'image'")
    need = {
        "study": ["StudyInstanceUID"],
        "series": ["StudyInstanceUID", "SeriesInstanceUID"],
        "image": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
    }[lv]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValidationError(f"a {lv}-level retrieve needs the columns {missing}")
    out: dict[tuple[str, ...], Item] = {}
    cols = need + ([_COUNT[lv]] if lv in _COUNT and _COUNT[lv] in df.columns else [])
    for rec in df[cols].to_dict("records"):
        key = tuple(str(rec[c]) for c in need)
        if any(k in ("", "<NA>", "nan", "None") for k in key):
            raise ValidationError(f"a row has an empty UID among {need}: {key!r}")
        expected = 1 if lv == "image" else count_of(rec.get(_COUNT[lv]))
        out[key] = Item(
            lv,
            key[0],
            key[1] if lv != "study" else None,
            key[2] if lv == "image" else None,
            expected,
        )
    return list(out.values())


def items_from_uids(uids: Iterable[str]) -> list[Item]:
    """Study items from Study Instance UIDs."""
    out = []
    for uid in dict.fromkeys(str(u) for u in uids):
        if not uid or any(c not in "0123456789." for c in uid):
            raise ValidationError(f"{uid!r} is not a Study Instance UID")
        out.append(Item("study", uid))
    return out
