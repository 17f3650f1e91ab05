"""Fast, pure reading of the few header attributes an archive index needs, and file meta.

Receiving an instance should not cost a full pydicom parse. :func:`scan_header`
walks the encoded data set element by element, keeps the raw values of the
wanted tags and stops at the first tag past the last wanted one (data sets are
sorted by tag). It handles explicit and implicit VR little endian; anything it
cannot walk safely (big endian, deflate, an undefined-length sequence before
the wanted tags) returns ``None`` and the caller falls back to pydicom.

:func:`encode_file_meta` writes a PS3.10 file meta group (with preamble) directly.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Container, Mapping

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.valuerep import PN_DELIMS

__all__ = [
    "CHARSET_TAG",
    "IMPLEMENTATION_UID",
    "IMPLEMENTATION_VERSION",
    "decode_values",
    "encode_file_meta",
    "encodings_of",
    "scan_elements",
    "scan_header",
    "wanted_tags",
]

# dicomlab's implementation class UID (PS3.7 D.3.3.2), under the UUID-derived root 2.25.
IMPLEMENTATION_UID = "2.25.226918052906498262405914311036853104837"
IMPLEMENTATION_VERSION = "DICOMLAB_010"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_VR_NAMES = {
    name.encode(): name
    for name in [
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FD",
        "FL",
        "IS",
        "LO",
        "LT",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "PN",
        "SH",
        "SL",
        "SQ",
        "SS",
        "ST",
        "SV",
        "TM",
        "UC",
        "UI",
        "UL",
        "UN",
        "UR",
        "US",
        "UT",
        "UV",
    ]
}
_TEXT_VRS = {"SH", "LO", "ST", "LT", "UC", "UT", "PN"}
CHARSET_TAG = 0x00080005
_UNDEFINED = 0xFFFFFFFF
_unpack_implicit = struct.Struct("<HHI").unpack_from
_unpack_explicit = struct.Struct("<HH2sH").unpack_from
_unpack_u32 = struct.Struct("<I").unpack_from


def _decode(raw: bytes, vr: str, encodings: list[str]) -> str:
    if vr in _TEXT_VRS:
        delims = PN_DELIMS if vr == "PN" else set()
        text = decode_bytes(raw, encodings, delims) if not raw.isascii() else raw.decode("ascii")
    else:
        text = raw.decode("ascii", "replace")
    return text.rstrip(" \x00").lstrip(" ") if vr != "UI" else text.rstrip("\x00 ")


def scan_elements(
    data: bytes | memoryview,
    transfer_syntax: str,
    wanted: Container[int],
    last: int,
    whole: bool = True,
) -> dict[int, tuple[str, bytes]] | None:
    """The raw ``(VR, value bytes)`` of the ``wanted`` tags present in an encoded data set,
    or ``None`` when it cannot be walked safely (the caller falls back to pydicom).

    The walk stops at the first tag past ``last``. In implicit VR the VR comes from
    the data dictionary. With ``whole=False`` ``data`` is only the start of the data
    set: ``None`` unless the walk got past ``last`` within it.
    """
    if transfer_syntax in (EXPLICIT_BE, DEFLATED):
        return None
    implicit = transfer_syntax == IMPLICIT_LE
    raw_values: dict[int, tuple[str, bytes]] = {}
    buf = data if isinstance(data, bytes) else memoryview(data)
    pos, end = 0, len(buf)
    try:
        while pos + 8 <= end:
            if implicit:
                group, elem, length = _unpack_implicit(buf, pos)
                tag = (group << 16) | elem
                if tag > last:
                    whole = True  # everything wanted lies before this point
                    break
                vr = dictionary_VR(tag) if tag in wanted else ""
                pos += 8
            else:
                group, elem, vr_bytes, length = _unpack_explicit(buf, pos)
                tag = (group << 16) | elem
                if tag > last:
                    whole = True
                    break
                if vr_bytes in _LONG_VRS:
                    length = _unpack_u32(buf, pos + 8)[0]
                    pos += 12
                else:
                    pos += 8
                vr = _VR_NAMES.get(vr_bytes) or vr_bytes.decode("ascii", "replace")
            if length == _UNDEFINED:
                return None  # an undefined-length item before our tags: let pydicom walk it
            if pos + length > end:
                return None  # truncated
            if tag in wanted:
                raw_values[tag] = (vr, bytes(buf[pos : pos + length]))
            pos += length
    except (struct.error, KeyError):  # KeyError: a wanted tag the dictionary lacks (implicit VR)
        return None
    if not whole:
        return None  # ran out of data before the last wanted tag
    return raw_values


def encodings_of(raw_values: Mapping[int, tuple[str, bytes]]) -> list[str]:
    """Python codecs for the Specific Character Set (0008,0005) among ``raw_values``."""
    raw = raw_values.get(CHARSET_TAG)
    return list(_encodings(raw[1] if raw else b""))


@functools.lru_cache(maxsize=64)
def _encodings(charset_value: bytes) -> tuple[str, ...]:
    """Once per character set: a receive asks for every instance."""
    charset = charset_value.decode("ascii", "replace")
    terms = [t.strip() for t in charset.split("\\")] if charset.strip() else None
    return tuple(convert_encodings(terms))


@functools.lru_cache(maxsize=64)
def wanted_tags(keywords: tuple[str, ...]) -> dict[int, str]:
    """Tag -> keyword for ``keywords`` and the character set, once per list of keywords
    (the dictionary lookups were a tenth of a small instance's receive). Read only."""
    wanted: dict[int, str] = {}
    for kw in keywords:
        tag = tag_for_keyword(kw)
        if tag is None:
            raise ValueError(f"unknown DICOM keyword {kw!r}")
        wanted[tag] = kw
    wanted[CHARSET_TAG] = "SpecificCharacterSet"
    return wanted


def scan_header(
    data: bytes | memoryview,
    transfer_syntax: str,
    keywords: Mapping[str, str] | list[str],
    whole: bool = True,
) -> dict[str, str] | None:
    """Decoded values of ``keywords`` from an encoded data set, or ``None`` to fall back.

    Missing attributes come back as ``""``. Multi-valued values keep their
    backslashes. With ``whole=False`` ``data`` is only the start of the data set:
    ``None`` unless the scan got past the last wanted tag within it.
    """
    wanted = wanted_tags(tuple(keywords))
    raw_values = scan_elements(data, transfer_syntax, wanted, max(wanted), whole)
    if raw_values is None:
        return None
    return decode_values(raw_values, wanted)


def decode_values(
    raw_values: Mapping[int, tuple[str, bytes]], wanted: Mapping[int, str]
) -> dict[str, str]:
    """Keyword -> decoded value for every tag of ``wanted`` (from :func:`wanted_tags`),
    ``""`` for one missing from ``raw_values`` (what :func:`scan_elements` or
    :func:`dicomlab.core.structure.walk` found)."""
    encodings: list[str] | None = None  # looked up for the first value not in ASCII
    out: dict[str, str] = {}
    for tag, kw in wanted.items():
        found = raw_values.get(tag)
        if found is None:
            out[kw] = ""
            continue
        vr, raw = found
        if raw.isascii():  # as _decode, without the codecs
            text = raw.decode("ascii")
            out[kw] = text.rstrip("\x00 ") if vr == "UI" else text.rstrip(" \x00").lstrip(" ")
            continue
        if encodings is None:
            encodings = encodings_of(raw_values)
        out[kw] = _decode(raw, vr, encodings)
    return out


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def encode_file_meta(
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    implementation_uid: str,
    implementation_version: str = "",
) -> bytes:
    """Preamble, ``DICM`` and the group 0002 elements, explicit VR little endian."""
    body = b"".join(
        (
            _element(0x00020001, b"OB", b"\x00\x01"),
            _element(0x00020002, b"UI", sop_class.encode("ascii")),
            _element(0x00020003, b"UI", sop_instance.encode("ascii")),
            _element(0x00020010, b"UI", transfer_syntax.encode("ascii")),
            _element(0x00020012, b"UI", implementation_uid.encode("ascii")),
            _element(0x00020013, b"SH", implementation_version.encode("ascii"))
            if implementation_version
            else b"",
        )
    )
    length = _element(0x00020000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + length + body
