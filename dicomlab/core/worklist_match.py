"""Modality Worklist matching (PS3.4 C.2.2.2, K.6) and answers, pure.

A FIND identifier is compiled once per query into a :class:`Plan`: the matching keys
with a value, and the attributes to return, at the top level and inside the Scheduled
Procedure Step Sequence. An item (its DICOM texts by keyword) is then matched with
string operations only, and answered with a data set of raw, already encoded elements
(pydicom writes them as they are): a worklist of thousands of steps is answered
without building a pydicom element per attribute.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

__all__ = ["SPS_KEYS", "Plan", "answer", "matches", "plan", "values_of"]

SPS_TAG = 0x00400100  # Scheduled Procedure Step Sequence
_SKIP_TAGS = {0x00080005, 0x00080052}  # Specific Character Set, Query/Retrieve Level
_ITEM = struct.Struct("<HHI")
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_UTF8 = b"ISO_IR 192"

Attribute = tuple[int, str, str]
"""(tag, keyword, VR)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled worklist identifier: what to match, what to return."""

    checks: tuple[tuple[str, str, str], ...]  # (keyword, VR, wanted text)
    top: tuple[Attribute, ...]  # top-level attributes returned
    step: tuple[Attribute, ...] | None  # step attributes returned (None: all held)
    with_step: bool  # the Scheduled Procedure Step Sequence is asked for
    empty_sequences: tuple[int, ...]  # other sequences asked for: returned empty
    impossible: bool = False  # a key no item can match (on a sequence we do not hold)

    def matches(self, values: Mapping[str, str]) -> bool:
        if self.impossible:
            return False
        return all(_match(want, values.get(kw, ""), vr) for kw, vr, want in self.checks)

    def answer(self, values: Mapping[str, str], implicit: bool = True) -> Dataset:
        """The response identifier for a matching item, as raw elements encoded for
        Implicit (or Explicit) VR Little Endian."""
        utf8 = any(not v.isascii() for v in values.values())
        out: dict[BaseTag, DataElement | RawDataElement] = {}
        if utf8:
            out[BaseTag(0x00080005)] = _raw(0x00080005, "CS", _UTF8, implicit)
        for tag, kw, vr in self.top:
            out[BaseTag(tag)] = _raw(tag, vr, _bytes(values.get(kw, ""), vr), implicit)
        for tag in self.empty_sequences:
            out[BaseTag(tag)] = _raw(tag, "SQ", b"", implicit)
        if self.with_step:
            chosen = self.step if self.step is not None else _held_step(values)
            body = b"".join(
                _element(tag, vr, _bytes(values.get(kw, ""), vr), implicit)
                for tag, kw, vr in chosen
            )
            item = _ITEM.pack(0xFFFE, 0xE000, len(body)) + body
            out[BaseTag(SPS_TAG)] = _raw(SPS_TAG, "SQ", item, implicit)
        ds = Dataset(out)
        # the elements are written as they are only when the data set says how they are
        # encoded (else pydicom decodes each one and encodes it again)
        ds.set_original_encoding(implicit, True, ds._character_set)
        return ds


def plan(key: Dataset) -> Plan:
    """Compile a Modality Worklist FIND identifier."""
    checks: list[tuple[str, str, str]] = []
    top: list[Attribute] = []
    empty: list[int] = []
    step: tuple[Attribute, ...] | None = None
    with_step = impossible = False
    for elem in key:
        tag = int(elem.tag)
        if tag in _SKIP_TAGS or elem.tag.group == 0x0002 or not elem.keyword:
            continue
        if elem.VR == "SQ":
            item = elem.value[0] if elem.value else None
            if tag != SPS_TAG:
                empty.append(tag)
                impossible |= item is not None and not _universal(item)
                continue
            with_step = True
            if item is None or not len(item):
                continue  # the whole step
            chosen: list[Attribute] = []
            for sub in item:
                if sub.VR == "SQ":
                    impossible |= not _universal_element(sub)
                    continue
                chosen.append((int(sub.tag), sub.keyword, sub.VR))
                want = _value_text(sub)
                if want:
                    checks.append((sub.keyword, sub.VR, want))
            step = tuple(chosen)
            continue
        top.append((tag, elem.keyword, elem.VR))
        want = _value_text(elem)
        if want:
            checks.append((elem.keyword, elem.VR, want))
    return Plan(tuple(checks), tuple(top), step, with_step, tuple(empty), impossible)


def values_of(ds: Dataset) -> dict[str, str]:
    """A worklist data set's texts by keyword (its first step's attributes included)."""
    out: dict[str, str] = {}
    for elem in ds:
        if elem.VR == "SQ":
            if int(elem.tag) == SPS_TAG and elem.value:
                out.update(values_of(elem.value[0]))
            continue
        text = _value_text(elem)
        if text and elem.keyword:
            out[elem.keyword] = text
    return out


def matches(ds: Dataset, key: Dataset) -> bool:
    """Whether the worklist data set ``ds`` matches ``key``: universal (empty), single
    value, wildcards ``*``/``?`` (case-insensitive for person names), UID lists, ranges
    of dates and times, and sequence matching inside the Scheduled Procedure Step
    Sequence."""
    return plan(key).matches(values_of(ds))


def answer(ds: Dataset, key: Dataset) -> Dataset:
    """The response to ``key`` for a matching ``ds``: every key attribute, with ``ds``'s
    value or empty; the step with the key item's attributes (all of them for an empty
    key item or sequence)."""
    return plan(key).answer(values_of(ds))


# -- encoding -------------------------------------------------------------------------
def _bytes(text: str, vr: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return data


def _raw(tag: int, vr: str, value: bytes, implicit: bool) -> RawDataElement:
    return RawDataElement(BaseTag(tag), vr, len(value), value, 0, implicit, True)


def _element(tag: int, vr: str, value: bytes, implicit: bool) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return _ITEM.pack(group, element, len(value)) + value
    if vr in _LONG_VRS:
        return _LONG.pack(group, element, vr.encode(), len(value)) + value
    return _SHORT.pack(group, element, vr.encode(), len(value)) + value


SPS_KEYS: tuple[str, ...] = (
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledStationName",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepStatus",
)
"""The attributes of a Scheduled Procedure Step Sequence item (the ones a table holds)."""

_STEP: tuple[Attribute, ...] = tuple(
    sorted(
        (int(tag), kw, str(dictionary_VR(tag)))
        for kw in SPS_KEYS
        if (tag := tag_for_keyword(kw)) is not None
    )
)


def _held_step(values: Mapping[str, str]) -> tuple[Attribute, ...]:
    """The step attributes an item holds, in tag order (an empty key item asks for all)."""
    return tuple(a for a in _STEP if values.get(a[1]))


# -- matching -------------------------------------------------------------------------
def _universal(item: Dataset) -> bool:
    return all(_universal_element(e) for e in item)


def _universal_element(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return not elem.value or _universal(elem.value[0])
    return not _value_text(elem)


def _value_text(elem: DataElement) -> str:
    value = elem.value
    if value is None or value == "":
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


_PATTERNS: dict[tuple[str, bool], re.Pattern[str]] = {}


def _wildcard(want: str, person_name: bool) -> re.Pattern[str]:
    found = _PATTERNS.get((want, person_name))
    if found is None:
        if len(_PATTERNS) > 1024:
            _PATTERNS.clear()
        found = _PATTERNS[(want, person_name)] = re.compile(
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in want),
            re.IGNORECASE | re.DOTALL if person_name else re.DOTALL,
        )
    return found


def _match(want: str, got: str, vr: str) -> bool:
    if vr == "UI":
        return got in want.split("\\")
    values = got.split("\\") if got else [""]
    if vr in ("DA", "TM", "DT") and "-" in want:
        low, _, high = want.partition("-")
        return any(_in_range(v, low, high, vr) for v in values if v)
    if "*" in want or "?" in want:
        pattern = _wildcard(want, vr == "PN")
        return any(pattern.fullmatch(v) for v in values)
    if vr == "PN":
        return any(v.casefold() == want.casefold() for v in values)
    if vr == "TM":
        return any(_padded(v, vr) == _padded(want, vr) for v in values)
    return want in values


def _padded(text: str, vr: str, fill: str = "0") -> str:
    """A date, time or date-time as a fixed-width string that compares in order (the
    upper bound of a range is filled with 9s: ``-1200`` includes 12:00:30)."""
    digits = text.replace(":", "").split(".")[0].split("+")[0]
    width = {"DA": 8, "TM": 6, "DT": 14}[vr]
    return (digits + fill * width)[:width]


def _in_range(value: str, low: str, high: str, vr: str) -> bool:
    v = _padded(value, vr)
    if low and v < _padded(low, vr):
        return False
    return not (high and v > _padded(high, vr, "9"))
