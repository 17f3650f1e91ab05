"""DICOM JSON (PS3.18 F.2) from index matches and from files, and QIDO-RS query
parameters as the same filters a C-FIND identifier gives. Pure conversions."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomlab.errors import ValidationError

__all__ = [
    "QidoQuery",
    "instance_json",
    "match_json",
    "qido_query",
    "stow_json",
]

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_COMPUTED_LISTS = frozenset({"ModalitiesInStudy", "SOPClassesInStudy"})
_NUMBERS = frozenset({"IS", "US", "UL", "SS", "SL", "DS", "FL", "FD"})
_CONTROL = frozenset({"limit", "offset", "includefield", "fuzzymatching", "token"})
MAX_LIMIT = 10_000


def is_uid(value: str) -> bool:
    """A UID as a URL may carry it: digits and dots, at most 64 characters."""
    return 0 < len(value) <= 64 and _UID_RE.match(value) is not None


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def _element(keyword: str, value: Any) -> dict[str, Any]:
    vr = dictionary_VR(keyword)
    if value is None or value == "":
        return {"vr": vr}
    if keyword in _COMPUTED_LISTS:
        values: list[Any] = [v for v in str(value).split(",") if v]
    elif isinstance(value, str) and "\\" in value and vr != "PN":
        values = value.split("\\")
    else:
        values = [value]
    if vr == "PN":
        values = [{"Alphabetic": str(v)} for v in values]
    elif vr in ("IS", "US", "UL", "SS", "SL"):
        values = [int(v) for v in values]
    elif vr in ("DS", "FL", "FD"):
        values = [float(v) for v in values]
    else:
        values = [str(v) for v in values]
    return {"vr": vr, "Value": values}


def match_json(match: Mapping[str, Any], retrieve_url: str | None = None) -> dict[str, Any]:
    """One QIDO-RS answer from one index match (keyword -> value), keyed by tag."""
    out: dict[str, Any] = {}
    for keyword, value in match.items():
        if keyword == "SpecificCharacterSet" or tag_for_keyword(keyword) is None:
            continue
        out[_tag(keyword)] = _element(keyword, value)
    if retrieve_url is not None:
        out["00081190"] = {"vr": "UR", "Value": [retrieve_url]}
    return dict(sorted(out.items()))


def instance_json(ds: Dataset, transfer_syntax: str, base: str) -> dict[str, Any]:
    """WADO-RS metadata of one instance read without its pixel data: every attribute,
    binary ones over 1 KB as a BulkDataURI under ``base`` (the instance's URL), pixel
    data as its frames' URL, and the transfer syntax it is stored in."""

    def bulk(elem: DataElement) -> str:
        return f"{base}/bulkdata/{int(elem.tag):08X}"

    out = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)
    vr = "OB" if int(getattr(ds, "BitsAllocated", 8) or 8) <= 8 else "OW"
    out["7FE00010"] = {"vr": vr, "BulkDataURI": f"{base}/frames/1"}
    out["00020010"] = {"vr": "UI", "Value": [transfer_syntax]}
    return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class QidoQuery:
    """A QIDO-RS search as the index matches it."""

    filters: dict[str, str]
    limit: int | None
    offset: int
    unsupported: tuple[str, ...] = ()


def _keyword(name: str) -> str:
    if _TAG_RE.match(name):
        keyword = keyword_for_tag(int(name, 16))
        if not keyword:
            raise ValidationError(f"unknown attribute tag {name!r} in the query")
        return str(keyword)
    if tag_for_keyword(name) is None:
        raise ValidationError(f"unknown query parameter {name!r}: not a DICOM keyword or tag")
    return name


def _count(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise ValidationError(f"{name}={raw!r} must be a whole number")
    return int(raw)


def qido_query(
    items: list[tuple[str, str]], supports: Callable[[str], bool], fixed: Mapping[str, str]
) -> QidoQuery:
    """The filters of a QIDO-RS request's parameters (keywords or tags, matching as
    C-FIND's: ``*``/``?``, date ranges, UID lists with ``,`` or ``\\``), plus ``fixed``
    (the UIDs of the URL's path). Attributes the index cannot match on are listed, not
    matched (PS3.18 8.3.4.3: the answer says so in a Warning header)."""
    params = dict(items)
    filters: dict[str, str] = {}
    unsupported: list[str] = []
    for name, value in items:
        if name in _CONTROL:
            continue
        keyword = _keyword(name)
        if dictionary_VR(keyword) == "UI":
            value = value.replace(",", "\\")
            bad = [v for v in value.split("\\") if v and not is_uid(v)]
            if bad:
                raise ValidationError(f"{keyword}={bad[0]!r} is not a UID")
        if not supports(keyword):
            unsupported.append(keyword)
            continue
        filters[keyword] = value
    filters.update(fixed)
    limit = _count(params, "limit")
    if limit is not None and limit > MAX_LIMIT:
        limit = MAX_LIMIT
    return QidoQuery(filters, limit, _count(params, "offset") or 0, tuple(unsupported))


def stow_json(
    stored: list[tuple[str, str, str]], failed: list[tuple[str, str, int]]
) -> dict[str, Any]:
    """The STOW-RS answer (PS3.18 10.5.3): ``stored`` as (class, instance, URL),
    ``failed`` as (class, instance, failure reason)."""
    out: dict[str, Any] = {}
    if stored:
        out["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [c]},
                    "00081155": {"vr": "UI", "Value": [i]},
                    "00081190": {"vr": "UR", "Value": [url]},
                }
                for c, i, url in stored
            ],
        }
    if failed:
        out["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    **({"00081150": {"vr": "UI", "Value": [c]}} if c else {}),
                    **({"00081155": {"vr": "UI", "Value": [i]}} if i else {}),
                    "00081197": {"vr": "US", "Value": [reason]},
                }
                for c, i, reason in failed
            ],
        }
    return out
