"""The raw values of an encoded data set's top-level elements and of the first item of
one of its sequences, without pydicom (pure): what a Modality Worklist answer is read
from (its step's attributes live in the Scheduled Procedure Step Sequence).

Sequences and items of defined or undefined length are walked; anything else this
cannot walk safely (big endian, deflate, a truncated value) gives ``None`` and the
caller lets pydicom decode it.

>>> item = bytes.fromhex("08006000") + (2).to_bytes(4, "little") + b"CT"
>>> sps = bytes.fromhex("feff00e0") + len(item).to_bytes(4, "little") + item
>>> data = bytes.fromhex("10002000") + (2).to_bytes(4, "little") + b"P1"
>>> data += bytes.fromhex("40000001") + len(sps).to_bytes(4, "little") + sps
>>> scan_with_item(data, "1.2.840.10008.1.2", {0x00100020, 0x00080060}, 0x00400100)
{1048608: ('LO', b'P1'), 524384: ('CS', b'CT')}
"""

from __future__ import annotations

import struct
from collections.abc import Container

from pydicom.datadict import dictionary_VR

__all__ = ["scan_with_item"]

_IMPLICIT = "1.2.840.10008.1.2"
_EXPLICIT = "1.2.840.10008.1.2.1"
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_head = struct.Struct("<HHI").unpack_from
_explicit = struct.Struct("<HH2sH").unpack_from
_u32 = struct.Struct("<I").unpack_from


class _Broken(Exception):
    """The encoding cannot be walked safely."""


def scan_with_item(
    data: bytes | memoryview, transfer_syntax: str, wanted: Container[int], sequence: int
) -> dict[int, tuple[str, bytes]] | None:
    """The raw ``(VR, value bytes)`` of the ``wanted`` tags present at the top level of
    ``data`` and in the first item of the top-level ``sequence``; None when the data set
    cannot be walked here."""
    if transfer_syntax not in (_IMPLICIT, _EXPLICIT):
        return None
    buf = data if isinstance(data, bytes) else bytes(data)
    out: dict[int, tuple[str, bytes]] = {}
    try:
        _walk(buf, 0, len(buf), transfer_syntax == _IMPLICIT, wanted, sequence, out)
    except (_Broken, struct.error, KeyError):
        return None
    return out


def _header(buf: bytes, pos: int, implicit: bool) -> tuple[int, str, int, int]:
    """(tag, VR, value length, value position) of the element at ``pos``."""
    group, element, length = _head(buf, pos)
    tag = (group << 16) | element
    if implicit or group == 0xFFFE:  # items and delimiters carry no VR
        vr = "" if group == 0xFFFE else ("SQ" if length == _UNDEFINED else "")
        return tag, vr, length, pos + 8
    _, _, vr_bytes, short = _explicit(buf, pos)
    if vr_bytes in _LONG:
        return tag, vr_bytes.decode("ascii"), _u32(buf, pos + 8)[0], pos + 12
    return tag, vr_bytes.decode("ascii", "replace"), short, pos + 8


def _walk(
    buf: bytes,
    pos: int,
    end: int,
    implicit: bool,
    wanted: Container[int],
    sequence: int | None,
    out: dict[int, tuple[str, bytes]],
    stop: int | None = None,
) -> int:
    """Read elements from ``pos`` to ``end`` (or to the ``stop`` delimiter); returns the
    position after the last one read."""
    while pos + 8 <= end:
        tag, vr, length, value = _header(buf, pos, implicit)
        if stop is not None and tag == stop:
            return value
        if tag == sequence:
            pos = _items(buf, value, length, end, implicit, wanted, out)
            continue
        if length == _UNDEFINED:  # another sequence (or encapsulated data): skipped
            pos = _items(buf, value, _UNDEFINED, end, implicit, (), out)
            continue
        if value + length > end:
            raise _Broken
        if tag in wanted:
            out[tag] = (vr or str(dictionary_VR(tag)), buf[value : value + length])
        pos = value + length
    if stop is not None:
        raise _Broken  # the delimiter never came
    return pos


def _items(
    buf: bytes,
    pos: int,
    length: int,
    end: int,
    implicit: bool,
    wanted: Container[int],
    out: dict[int, tuple[str, bytes]],
) -> int:
    """Walk a sequence's items (of defined or undefined length, ending at ``length`` or
    at its delimiter), putting the wanted tags of the first item in ``out``; returns
    the position after the sequence."""
    seq_end = end if length == _UNDEFINED else pos + length
    if seq_end > end:
        raise _Broken
    first = True
    while pos + 8 <= seq_end:
        tag, _, item_length, value = _header(buf, pos, True)
        if tag == _SEQUENCE_END:
            return value
        if tag != _ITEM:
            raise _Broken
        look = wanted if first else ()
        if item_length == _UNDEFINED:
            pos = _walk(buf, value, seq_end, implicit, look, None, out, _ITEM_END)
        else:
            if value + item_length > seq_end:
                raise _Broken
            if first:
                _walk(buf, value, value + item_length, implicit, look, None, out)
            pos = value + item_length
        first = False
    if length == _UNDEFINED:
        raise _Broken  # no sequence delimiter
    return seq_end
