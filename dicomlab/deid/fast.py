"""One whole DICOM file de-identified from its bytes, without building a pydicom data set.

The header is walked element by element. What the profile leaves alone, removes or
empties is copied, dropped or emptied as bytes; a UID is remapped and a date shifted
on its text; whatever needs more (a sequence, a free text that holds the patient's
name, a dummy value) is read by pydicom on its own and rewritten by the same code
as :mod:`dicomlab.deid.rewrite` (``_walk`` on a one-element data set), so both paths
give the same bytes (``tests/test_deid.py`` checks it). The pixel data and what
follows it are kept as they came.

:func:`rewrite_file` returns ``None`` where only the pydicom path can say what to do:
big endian or deflated data, a character set whose bytes a byte search does not
read, a patient text outside ASCII, an undefined length outside a sequence, or a
file meta without the elements pydicom's writer would add.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO, cast

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element
from pydicom.uid import UID

from dicomlab.deid.rewrite import (
    _DUMMY,
    _MARKERS,
    _PATIENT_ID,
    _PATIENT_NAME,
    _TEXT_VRS,
    Identity,
    Outcome,
    Plan,
    _dummy,
    _mark,
    _pattern,
    _remap,
    _scrubber,
    _shifted,
    _walk,
)
from dicomlab.deid.scan import in_bytes, words

__all__ = ["Rewritten", "rewrite_file"]

_LONG = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"})
_LONG |= {b"UT", b"UV"}
_IMPLICIT = "1.2.840.10008.1.2"
_SLOW = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_CHARSET = 0x00080005
_BYTE_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})
_META_DROPPED = frozenset({0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102})
_META_NEEDED = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)
_META_SOP = 0x00020003
_SOP_INSTANCE = 0x00080018

_IDENTITY = {
    0x00100010: "PatientName",
    0x00101001: "OtherPatientNames",
    0x00101005: "PatientBirthName",
    0x00101060: "PatientMotherBirthName",
    0x00100020: "PatientID",
    0x00101000: "OtherPatientIDs",
    0x00100030: "PatientBirthDate",
    0x00101090: "MedicalRecordLocator",
}
_OTHER_IDS_SEQUENCE = 0x00101002
_FACTS = {
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080060: "Modality",
    0x00280301: "BurnedInAnnotation",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
}


@dataclass(frozen=True, slots=True)
class Rewritten:
    """A de-identified file: its header (preamble, meta, data set up to the pixel data),
    the pixel data and what follows, what was done, who it was, and the values its
    outcome row needs (already de-identified)."""

    head: bytes
    tail: memoryview
    outcome: Outcome
    identity: Identity
    facts: dict[str, str]
    codec: str  # how its texts read (UTF-8 or Latin-1)

    def survivors(self) -> bool:
        """Whether a text of the source patient is still in the header (as bytes, and
        case-blind as text where a name is not ASCII)."""
        texts = self.identity.texts
        if not texts:
            return False
        if in_bytes(self.identity, self.head):
            return True
        if all(t.isascii() for t in texts):
            return False
        return bool(words(texts).search(self.head.decode(self.codec, "replace")))


@dataclass(slots=True)
class _Element:
    tag: int
    vr: str
    start: int  # where its tag begins
    value: int  # where its value begins
    end: int


def rewrite_file(data: bytes, plan: Plan, whole: bool = True) -> Rewritten | None:
    """``data`` (a whole DICOM file) de-identified by ``plan``, or ``None`` where the
    pydicom path is needed. ``whole=False``: ``data`` is the start of a file, and
    ``None`` also when its pixel data does not begin inside it."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    meta, pos = _meta(data)
    if meta is None:
        return None
    syntax = _text(data, meta.get(0x00020010))
    if not syntax or syntax in _SLOW or not _little_endian(syntax):
        return None
    implicit = syntax == _IMPLICIT
    elements, tail_at = _top_level(data, pos, implicit)
    if elements is None or (not whole and tail_at >= len(data)):
        return None
    found = {e.tag: e for e in elements}
    if _OTHER_IDS_SEQUENCE in found:
        return None
    charset = _text(data, found.get(_CHARSET))
    terms = [t.strip() for t in charset.split("\\")]
    if not all(t in _BYTE_CHARSETS for t in terms):
        return None
    encodings = convert_encodings([t for t in terms if t] or [""])
    codec = "utf-8" if "ISO_IR 192" in terms else "latin-1"
    identity = _identity(data, found, codec)
    return _rewrite(data, meta, elements, tail_at, implicit, encodings, codec, identity, plan)


def _rewrite(
    data: bytes,
    meta: dict[int, _Element],
    elements: list[_Element],
    tail_at: int,
    implicit: bool,
    encodings: list[str],
    codec: str,
    identity: Identity,
    plan: Plan,
) -> Rewritten:
    out = Outcome()
    pseudonym = plan.pseudonym_of(identity.patient_id)
    out.patient = (identity.patient_id, pseudonym)
    shift = None
    if "retain_longitudinal_modified_dates" in plan.options:
        shift = out.shift_days = plan.keys.shift_days(identity.patient_id)
    scrub = _scrubber(identity)
    pattern = _pattern(identity.texts) if identity.texts else None
    pieces: list[tuple[int, bytes]] = []
    facts: dict[str, str] = {}
    creators: dict[tuple[int, int], str] = {}
    keep_creators = {c for c, _ in plan.keep_private}
    for e in elements:
        tag = e.tag
        if tag in _MARKERS:
            continue
        group, elem = tag >> 16, tag & 0xFFFF
        if group & 1:  # private
            if 0x0010 <= elem <= 0x00FF:
                creator = _text(data, e)
                creators[(group, elem)] = creator
                if creator in keep_creators:
                    pieces.append((tag, data[e.start : e.end]))
                else:
                    out.counts["private_removed"] += 1
                continue
            owner = creators.get((group, elem >> 8), "")
            if (owner, elem & 0xFF) in plan.keep_private:
                out.counts["kept"] += 1
                pieces.append((tag, data[e.start : e.end]))
            else:
                out.counts["private_removed"] += 1
                out.counts["removed"] += 1
            continue
        action = plan.action(tag)
        if tag in (_PATIENT_ID, _PATIENT_NAME):
            continue  # the pseudonym, set after
        new = _one(data, e, action, plan, out, shift, scrub, pattern, implicit, encodings, codec)
        if new is not None:
            pieces.append((tag, new))
            if tag in _FACTS:
                facts[_FACTS[tag]] = _value_text(new, implicit)
    for tag, value in ((_PATIENT_ID, pseudonym), (_PATIENT_NAME, pseudonym)):
        pieces.append((tag, _element(tag, "LO" if tag == _PATIENT_ID else "PN", value, implicit)))
    out.counts["replaced"] += 2
    if tail_at < len(data):
        out.counts["kept"] += 1  # the pixel data, as it came
    facts["PatientID"] = pseudonym
    pieces += _markers(plan, shift, implicit)
    pieces.sort(key=lambda p: p[0])
    body = b"".join(p for _, p in pieces)
    new_sop = facts.get("SOPInstanceUID")
    head = data[:128] + b"DICM" + _meta_bytes(data, meta, new_sop) + body
    return Rewritten(head, memoryview(data)[tail_at:], out, identity, facts, codec)


def _one(
    data: bytes,
    e: _Element,
    action: str | None,
    plan: Plan,
    out: Outcome,
    shift: int | None,
    scrub: Callable[[str], str],
    pattern: re.Pattern[str] | None,
    implicit: bool,
    encodings: list[str],
    codec: str,
) -> bytes | None:
    """The encoded element ``e`` becomes (``None``: removed)."""
    vr = e.vr
    raw = data[e.start : e.end]
    if vr not in ("SQ", "UN"):  # (pydicom reads a standard UN element by its dictionary VR)
        if action is None or action == "K":
            out.counts["kept"] += 1
            return raw
        if action == "X":
            out.counts["removed"] += 1
            return None
        if action == "Z":
            out.counts["emptied"] += 1
            return _element(e.tag, vr, "", implicit)
        if action in ("U", "D") and vr == "UI":
            values = _values(data, e)
            if action == "U" and not values:
                return raw
            out.counts["remapped" if action == "U" else "replaced"] += 1
            new = _remap(_many(values) if values else "", plan.keys, out)
            return _element(e.tag, vr, _as_text(new), implicit)
        if action == "U":
            return raw
        if action == "D" and (vr in _DUMMY or vr in _TEXT_VRS):
            out.counts["replaced"] += 1
            return _element(e.tag, vr, str(_dummy(vr)), implicit)
        if action == "C" and vr in ("DA", "DT"):
            out.counts["cleaned"] += 1
            values = _values(data, e)
            if not values or not shift:
                return raw
            return _element(e.tag, vr, _as_text(_shifted(_many(values), vr, shift)), implicit)
        if action == "C" and vr in _TEXT_VRS:
            text = data[e.value : e.end].decode(codec, "replace")
            if pattern is None or not pattern.search(text):
                out.counts["cleaned"] += 1
                return raw
    # everything else: pydicom reads the element alone and rewrite's own code acts on it
    return _by_pydicom(raw, plan, out, shift, scrub, implicit, encodings)


def _by_pydicom(
    raw: bytes,
    plan: Plan,
    out: Outcome,
    shift: int | None,
    scrub: Callable[[str], str],
    implicit: bool,
    encodings: list[str],
) -> bytes | None:
    mini = read_dataset(
        cast(BinaryIO, DicomBytesIO(raw)), implicit, True, parent_encoding=encodings
    )
    _walk(mini, plan, out, shift, scrub)
    if not len(mini):
        return None
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    for elem in mini:
        write_data_element(fp, elem, encodings)
    return bytes(fp.getvalue())


def _many(values: list[str]) -> str | list[str]:
    return values if len(values) > 1 else values[0]


def _as_text(value: object) -> str | list[str]:
    return value if isinstance(value, str) else [str(v) for v in value]  # type: ignore[attr-defined]


# -- reading -----------------------------------------------------------------------------
def _meta(data: bytes) -> tuple[dict[int, _Element] | None, int]:
    """The file meta elements (explicit VR little endian after the preamble) and where
    the data set begins; ``None`` when one does not end inside ``data`` or an element
    pydicom's writer would add is missing."""
    pos = 132
    found: dict[int, _Element] = {}
    while pos + 8 <= len(data) and _tag(data, pos) >> 16 == 0x0002:
        e = _next(data, pos, False)
        if e is None:
            return None, pos
        found[e.tag] = e
        pos = e.end
    if any(t not in found for t in _META_NEEDED):
        return None, pos
    return found, pos


def _top_level(data: bytes, pos: int, implicit: bool) -> tuple[list[_Element] | None, int]:
    """The data set's elements up to its pixel data, and where the pixel data begins."""
    out: list[_Element] = []
    while pos + 8 <= len(data):
        tag = _tag(data, pos)
        if tag == _PIXEL_DATA:
            return out, pos
        if tag >> 16 in (0xFFFE, 0x0002):
            return None, pos
        e = _next(data, pos, implicit)
        if e is None:
            return None, pos
        out.append(e)
        pos = e.end
    return out, pos


def _tag(data: bytes, pos: int) -> int:
    group, elem = struct.unpack_from("<HH", data, pos)
    return int((group << 16) | elem)


def _next(data: bytes, pos: int, implicit: bool) -> _Element | None:
    """The element whose tag begins at ``pos`` (``None``: it does not end inside
    ``data``, or has an undefined length without being a sequence)."""
    tag = _tag(data, pos)
    if implicit:
        (length,) = struct.unpack_from("<L", data, pos + 4)
        at = pos + 8
        vr = _implicit_vr(tag)
    else:
        code = data[pos + 4 : pos + 6]
        if code in _LONG:
            (length,) = struct.unpack_from("<L", data, pos + 8)
            at = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            at = pos + 8
        vr = code.decode("ascii", "replace")
    if length != _UNDEFINED:
        end: int | None = at + length
    elif vr == "SQ":
        end = _sequence_end(data, at, implicit)
    else:
        return None
    if end is None or end > len(data):
        return None
    return _Element(tag, vr, pos, at, end)


def _sequence_end(data: bytes, pos: int, implicit: bool) -> int | None:
    """Where an undefined-length sequence whose items begin at ``pos`` ends."""
    while pos + 8 <= len(data):
        tag = _tag(data, pos)
        (length,) = struct.unpack_from("<L", data, pos + 4)
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            return None
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # the elements of an undefined-length item, up to its end
            if pos + 8 > len(data):
                return None
            if _tag(data, pos) == _ITEM_END:
                pos += 8
                break
            e = _next(data, pos, implicit)
            if e is None:
                return None
            pos = e.end
    return None


@lru_cache(maxsize=4096)
def _implicit_vr(tag: int) -> str:
    if (tag >> 16) & 1:
        return "LO" if 0x0010 <= (tag & 0xFFFF) <= 0x00FF else "UN"
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


@lru_cache(maxsize=64)
def _little_endian(syntax: str) -> bool:
    return bool(UID(syntax).is_little_endian)


def _text(data: bytes, e: _Element | None) -> str:
    if e is None:
        return ""
    return data[e.value : e.end].decode("latin-1").strip(" \x00")


def _values(data: bytes, e: _Element, codec: str = "latin-1") -> list[str]:
    text = data[e.value : e.end].decode(codec, "replace").rstrip(" \x00")
    return [v.strip(" \x00") for v in text.split("\\")] if text else []


def _value_text(encoded: bytes, implicit: bool) -> str:
    """The value of one encoded element as text (an element this module wrote or kept)."""
    at = 8 if implicit or encoded[4:6] not in _LONG else 12
    return encoded[at:].decode("latin-1").strip(" \x00")


def _identity(data: bytes, found: dict[int, _Element], codec: str) -> Identity:
    values = {k: _values(data, found[t], codec) for t, k in _IDENTITY.items() if t in found}
    return Identity.of_values(values, [])


# -- writing -----------------------------------------------------------------------------
def _element(tag: int, vr: str, value: str | list[str], implicit: bool) -> bytes:
    """One text element encoded as pydicom writes it (padded to an even length)."""
    text = "\\".join(value) if isinstance(value, list) else value
    body = text.encode("latin-1")
    if len(body) % 2:
        body += b"\x00" if vr == "UI" else b" "
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack("<HHL", group, elem, len(body)) + body
    if vr.encode() in _LONG:
        return struct.pack("<HH2sHL", group, elem, vr.encode(), 0, len(body)) + body
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(body)) + body


def _meta_bytes(data: bytes, meta: dict[int, _Element], sop: str | None) -> bytes:
    parts = []
    for tag in sorted(meta):
        e = meta[tag]
        if tag == 0x00020000 or tag in _META_DROPPED:
            continue
        if tag == _META_SOP and sop:
            parts.append(_element(tag, "UI", sop, False))
        else:
            parts.append(data[e.start : e.end])
    body = b"".join(parts)
    return struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(body)) + body


def _markers(plan: Plan, shift: int | None, implicit: bool) -> list[tuple[int, bytes]]:
    """The encoded markers (PatientIdentityRemoved, DeidentificationMethod and its code
    sequence, LongitudinalTemporalInformationModified), made once per plan."""
    key = (shift is not None, implicit)
    made = plan._encoded_markers.get(key)
    if made is None:
        made = plan._encoded_markers[key] = _encode_markers(plan, shift is not None, implicit)
    return list(made)


def _encode_markers(plan: Plan, shifted: bool, implicit: bool) -> tuple[tuple[int, bytes], ...]:
    ds = Dataset()
    _mark(ds, plan, 1 if shifted else None)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    pieces = []
    for elem in ds:
        start = fp.tell()
        write_data_element(fp, elem, ["iso8859"])
        pieces.append((int(elem.tag), bytes(fp.getvalue()[start:])))
    return tuple(pieces)
