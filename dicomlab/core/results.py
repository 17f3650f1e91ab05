"""C-FIND responses to typed DataFrames (pure).

Each response identifier is turned into a row of plain Python values as it
arrives (:meth:`ResultBuilder.add`), so no list of pydicom Datasets is kept;
:meth:`ResultBuilder.frame` converts the columns once, by VR:

=============  ==============================================================
VR             dtype
=============  ==============================================================
DA             ``datetime64[ns]`` (NaT when empty or invalid)
TM             ``timedelta64[ns]`` since midnight
DT             ``datetime64[ns, UTC]`` when any value carries an offset, else naive
IS, US, UL...  ``Int64`` (nullable integers)
DS, FL, FD     ``Float64``
everything     ``string``; multi-valued attributes are joined with a backslash
else           (``"CT\\MR"``), as on the wire
=============  ==============================================================

Text is decoded with the response's Specific Character Set. A value that does
not decode is replaced (U+FFFD) and flagged in ``df.attrs["undecodable"]``.
"""

from __future__ import annotations

import re
import struct
import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta, timezone
from typing import Any

import pandas as pd
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.valuerep import PN_DELIMS

__all__ = ["ResultBuilder", "dtype_for"]

_INT_VRS = {"IS", "US", "UL", "SS", "SL", "UV", "SV"}
_FLOAT_VRS = {"DS", "FL", "FD"}
_TEXT_VRS = {"SH", "LO", "ST", "LT", "UC", "UT", "PN"}
_UNTRIMMED = {"LT", "ST", "UT"}
_TRIMMED = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UC", "UI", "UR"}
"""VRs whose text is the decoded value without trailing spaces/NULs or leading spaces."""
_BINARY = {
    vr: struct.Struct(fmt)
    for vr, fmt in (
        ("US", "<H"),
        ("SS", "<h"),
        ("UL", "<I"),
        ("SL", "<l"),
        ("UV", "<Q"),
        ("SV", "<q"),
        ("FL", "<f"),
        ("FD", "<d"),
    )
}
_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$", re.ASCII)
_DT_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)


def dtype_for(keyword: str) -> str:
    """The pandas dtype of a result column."""
    vr = dictionary_VR(keyword)
    if vr == "DA":
        return "datetime64[ns]"
    if vr == "TM":
        return "timedelta64[ns]"
    if vr == "DT":
        return "datetime64[ns]"
    if vr in _INT_VRS:
        return "Int64"
    if vr in _FLOAT_VRS:
        return "Float64"
    return "string"


def _decode(raw: bytes, vr: str, encodings: list[str]) -> tuple[str, bool]:
    """Decode text strictly; on failure give a best guess and report it (``ok=False``)."""
    if raw.isascii() and (len(encodings) == 1 or b"\x1b" not in raw):
        # (ISO 2022 code extensions switch character sets with 7-bit escapes)
        return raw.decode("ascii"), True
    if encodings == ["iso8859"]:
        # No Specific Character Set: the default repertoire is ASCII, so these
        # bytes break the standard. UTF-8 is the likeliest intent.
        return raw.decode("utf-8", "replace"), False
    if len(encodings) == 1:
        try:
            return raw.decode(encodings[0]), True
        except (UnicodeDecodeError, LookupError):
            return raw.decode("utf-8", "replace"), False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return decode_bytes(raw, encodings, PN_DELIMS if vr == "PN" else set()), True
        except (UserWarning, ValueError, LookupError):
            return raw.decode("utf-8", "replace"), False


def _text(raw: bytes, vr: str, encodings: list[str]) -> tuple[str, bool]:
    """An element's text from its raw (little endian) value bytes; ``ok=False`` if it
    did not decode."""
    if vr in _BINARY:
        fmt = _BINARY[vr]
        whole = len(raw) - len(raw) % fmt.size
        return "\\".join(str(v[0]) for v in fmt.iter_unpack(raw[:whole])), True
    text, ok = (
        _decode(raw, vr, encodings) if vr in _TEXT_VRS else (raw.decode("ascii", "replace"), True)
    )
    text = text.rstrip(" \x00") if vr != "UI" else text.rstrip("\x00 ")
    return text.lstrip(" ") if vr not in _UNTRIMMED else text, ok


def _json_text(element: Any, vr: str) -> str | None:
    """An element of the DICOM JSON model as C-FIND text: values joined by backslashes,
    a person name's groups by ``=``; an element without a value is empty."""
    if element is None:
        return None
    values = element.get("Value") if isinstance(element, Mapping) else None
    if not values:
        return ""
    if vr == "PN":
        parts = []
        for name in values:
            if not isinstance(name, Mapping):
                parts.append(str(name))
                continue
            groups = [str(name.get(g) or "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
            while groups and not groups[-1]:
                groups.pop()
            parts.append("=".join(groups))
        return "\\".join(parts)
    return "\\".join("" if v is None else _json_scalar(v) for v in values)


def _json_scalar(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _raw_text(ds: Dataset, tag: int, vr: str, encodings: list[str]) -> tuple[str | None, bool]:
    """The text of an element from its raw bytes where possible (no lossy pydicom decode)."""
    if tag not in ds:
        return None, True
    raw_elem = ds.get_item(tag)
    value = getattr(raw_elem, "value", None)
    if isinstance(value, bytes) and vr not in _BINARY:  # binary: pydicom knows the byte order
        return _text(value, vr, encodings)
    elem = ds[tag]
    if elem.value is None or elem.value == "":
        return "", True
    if elem.VM > 1:
        return "\\".join(str(v) for v in elem.value), True
    return str(elem.value), True


class ResultBuilder:
    """Accumulates C-FIND responses as columns of plain values."""

    def __init__(self, keys: Sequence[str], extra: Sequence[str] = ()) -> None:
        self.keys = list(keys)
        self.extra = list(extra)
        self._tags = [
            (kw, int(tag_for_keyword(kw) or 0), str(dictionary_VR(kw))) for kw in self.keys
        ]
        self._cols: dict[str, list[Any]] = {kw: [] for kw in [*self.keys, *self.extra]}
        self.undecodable: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._cols[self.keys[0]]) if self.keys else 0

    def add(self, identifier: Dataset, **extra: Any) -> None:
        """Add one response identifier (consumed at once: the Dataset can be dropped)."""
        charset = identifier.get("SpecificCharacterSet")
        terms: Any = list(charset) if charset and not isinstance(charset, str) else charset
        encodings = convert_encodings(terms or None)
        row = len(self)
        for kw, tag, vr in self._tags:
            text, ok = _raw_text(identifier, tag, vr, encodings)
            if not ok:
                self.undecodable.append((row, kw))
            self._cols[kw].append(text)
        for kw in self.extra:
            self._cols[kw].append(extra.get(kw))

    def add_json(self, item: Mapping[str, Any], **extra: Any) -> None:
        """Add one match given in the DICOM JSON model (PS3.18 F.2, a QIDO-RS answer):
        the same texts :meth:`add` reads from a C-FIND identifier, without building a
        Dataset."""
        for kw, tag, vr in self._tags:
            self._cols[kw].append(_json_text(item.get(f"{tag:08X}"), vr))
        for kw in self.extra:
            self._cols[kw].append(extra.get(kw))

    def extend(self, other: ResultBuilder) -> None:
        """Append ``other``'s rows (same keys and extras) after this builder's."""
        offset = len(self)
        for kw, column in other._cols.items():
            self._cols[kw].extend(column)
        self.undecodable.extend((offset + r, kw) for r, kw in other.undecodable)

    @property
    def tags(self) -> list[int]:
        """The tags of the result columns."""
        return [tag for _, tag, _ in self._tags]

    def add_raw(
        self, values: Mapping[int, tuple[str, bytes]], encodings: list[str], **extra: Any
    ) -> None:
        """Add one identifier given as raw little-endian ``(VR, value bytes)`` by tag (as
        :func:`dicomlab.core.header.scan_elements` reads them); ``encodings`` are the
        codecs of its Specific Character Set. Same rows as :meth:`add`."""
        row = len(self)
        single = len(encodings) == 1
        cols = self._cols
        for kw, tag, vr in self._tags:
            found = values.get(tag)
            if found is None:
                cols[kw].append(None)
                continue
            wire_vr, raw = found
            if wire_vr and wire_vr != "UN":
                vr = wire_vr
            if vr in _TRIMMED and raw.isascii() and (single or b"\x1b" not in raw):
                cols[kw].append(raw.decode("ascii").rstrip(" \x00").lstrip(" "))  # as _text
                continue
            text, ok = _text(raw, vr, encodings)
            if not ok:
                self.undecodable.append((row, kw))
            cols[kw].append(text)
        for kw in self.extra:
            cols[kw].append(extra.get(kw))

    def frame(self, extra_dtypes: dict[str, str] | None = None) -> pd.DataFrame:
        """The typed DataFrame (same columns and dtypes when empty)."""
        data: dict[str, pd.Series] = {}
        for kw in self.keys:
            data[kw] = _convert(self._cols[kw], str(dictionary_VR(kw)))
        for kw in self.extra:
            data[kw] = pd.Series(self._cols[kw], dtype=(extra_dtypes or {}).get(kw, "object"))
        df = pd.DataFrame(data, columns=[*self.keys, *self.extra])
        df.attrs["undecodable"] = list(self.undecodable)
        return df


def _convert(values: list[str | None], vr: str) -> pd.Series:
    if vr == "DA":
        return pd.to_datetime(pd.Series(values, dtype="object"), format="%Y%m%d", errors="coerce")
    if vr == "TM":
        return _tm_series(values)
    if vr == "DT":
        parsed = [_dt(v) for v in values]
        if any(p is not None and p.tzinfo is not None for p in parsed):
            return pd.to_datetime(pd.Series(parsed, dtype="object"), utc=True)
        return pd.Series(pd.to_datetime(pd.Series(parsed, dtype="object")), dtype="datetime64[ns]")
    if vr in _INT_VRS:
        return pd.to_numeric(
            pd.Series([_first(v) for v in values], dtype="object"), errors="coerce"
        ).astype("Int64")
    if vr in _FLOAT_VRS:
        return pd.to_numeric(
            pd.Series([_first(v) for v in values], dtype="object"), errors="coerce"
        ).astype("Float64")
    return pd.Series([v if v is not None else pd.NA for v in values], dtype="string")


def _first(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return value.split("\\")[0].strip()


def _tm_series(values: list[str | None]) -> pd.Series:
    """TM values as time since midnight, parsed column-wise (NaT when empty or invalid)."""
    text = pd.Series(values, dtype="string").str.strip().str.replace(":", "", regex=False)
    parts = text.str.extract(_TM_RE)
    h, mi, sec = (pd.to_numeric(parts[i]).fillna(0) for i in (0, 1, 2))
    micro = pd.to_numeric(parts[3].fillna("0").str.ljust(6, "0"))
    valid = parts[0].notna() & (h <= 23) & (mi <= 59) & (sec <= 60)  # 60: a leap second
    ns = (((h * 60 + mi) * 60 + sec) * 1_000_000 + micro) * 1_000
    return pd.Series(pd.to_timedelta(ns.where(valid), unit="ns"), dtype="timedelta64[ns]")


def _dt(value: str | None) -> pd.Timestamp | None:
    if not value:
        return None
    m = _DT_RE.match(value.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        ts = pd.Timestamp(
            year=int(y),
            month=int(mo or 1),
            day=int(d or 1),
            hour=int(h or 0),
            minute=int(mi or 0),
            second=int(s or 0),
            microsecond=int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        return None
    if off:
        sign = 1 if off[0] == "+" else -1
        minutes = sign * (int(off[1:3]) * 60 + int(off[3:5]))
        ts = ts.tz_localize(timezone(timedelta(minutes=minutes)))
    return ts
