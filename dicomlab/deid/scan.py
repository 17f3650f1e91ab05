"""The residual check: does any text of the source patient survive de-identification?

Every text value (nested sequences and private attributes included) is searched for
the patient's name parts, IDs and birth date, and so are the encoded bytes of the
output, so that nothing survives in a value pydicom would not show as text. What is
reported are attribute keywords, never the values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache

from pydicom.dataset import Dataset

from dicomlab.deid.rewrite import Identity

__all__ = ["burned_in_risk", "in_bytes", "residual", "words"]

_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT", "UI"}
)
_OFTEN_BURNED_IN = frozenset({"US", "SC", "OT", "XC", "ES", "GM", "SM", "DOC"})
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_PIXEL_DATA = b"\xe0\x7f\x10\x00"  # (7FE0,0010) in little endian


def _texts(ds: Dataset, path: str = "") -> Iterator[tuple[str, str]]:
    for elem in ds:
        name = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
        where = f"{path}{name}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _texts(item, f"{where}[{i}].")
        elif elem.VR in _TEXT_VRS or elem.tag.is_private:
            value = elem.value
            if isinstance(value, bytes):
                yield where, value.decode("latin-1", "replace")
            elif value is not None:
                yield where, str(value)


def residual(ds: Dataset, identity: Identity, encoded: bytes | None = None) -> list[str]:
    """Where a text of ``identity`` is still found: attribute paths, and ``"(bytes)"``
    when the encoded file (up to its pixel data) holds one that no text value shows."""
    if not identity.texts:
        return []
    if encoded is not None and _bytes_tell(ds) and all(t.isascii() for t in identity.texts):
        # The encoded header holds every text as bytes in ASCII, Latin-1 or UTF-8, and the
        # patient's texts are ASCII (case-blind in bytes): when none is there, none is
        # anywhere, and no value needs decoding to say so.
        if not in_bytes(identity, _before_pixels(encoded)):
            return []
        found = _where(ds, identity)
        return found or ["(bytes)"]
    found = _where(ds, identity)
    if not found and encoded is not None and in_bytes(identity, _before_pixels(encoded)):
        return ["(bytes)"]
    return found


def _where(ds: Dataset, identity: Identity) -> list[str]:
    pattern = words(identity.texts)
    return [where for where, text in _texts(ds) if pattern.search(text)]


_BYTE_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})


def _bytes_tell(ds: Dataset) -> bool:
    """Whether the data set's texts are in bytes the byte search reads (ASCII, Latin-1
    or UTF-8); in another character set each value is decoded and searched."""
    charset = ds.get("SpecificCharacterSet", "") or ""
    terms = [charset] if isinstance(charset, str) else list(charset)
    return all(str(t).strip() in _BYTE_CHARSETS for t in terms)


@lru_cache(maxsize=256)
def words(texts: tuple[str, ...]) -> re.Pattern[str]:
    """The texts as whole words, case-blind (compiled once per patient)."""
    alternatives = "|".join(re.escape(t) for t in texts)
    return re.compile(rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])", re.IGNORECASE)


def _before_pixels(encoded: bytes) -> bytes:
    """The encoded file up to its Pixel Data (the rest is the image, not text)."""
    at = encoded.rfind(_PIXEL_DATA)
    return encoded if at < 0 else encoded[:at]


def in_bytes(identity: Identity, data: bytes) -> bool:
    """Whether a text of ``identity`` is in ``data`` (UTF-8 or Latin-1, case-blind, as a word)."""
    return any(p.search(data) for p in _byte_patterns(identity.texts))


@lru_cache(maxsize=256)
def _byte_patterns(texts: tuple[str, ...]) -> tuple[re.Pattern[bytes], ...]:
    """The texts as whole words in UTF-8 and in Latin-1 bytes, case-blind (compiled once
    per patient; the same pattern once where both encodings agree)."""
    patterns: list[bytes] = []
    for encoding in ("utf-8", "latin-1"):
        needles = []
        for text in texts:
            try:
                needles.append(re.escape(text.encode(encoding)))
            except UnicodeEncodeError:
                continue
        if needles:
            pattern = rb"(?<![0-9A-Za-z])(?:" + b"|".join(needles) + rb")(?![0-9A-Za-z])"
            if pattern not in patterns:
                patterns.append(pattern)
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def burned_in_risk(ds: Dataset | Mapping[str, str]) -> str:
    """``"yes"`` (BurnedInAnnotation YES), ``"possible"`` (not said NO, and a modality or
    a secondary capture that often carries text in its pixels) or ``"no"``."""
    said = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if said == "YES":
        return "yes"
    if said == "NO":
        return "no"
    modality = str(ds.get("Modality", "") or "").upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if modality in _OFTEN_BURNED_IN or sop_class.startswith(_SECONDARY_CAPTURE):
        return "possible"
    return "no"
