"""A fast structural check of an encoded data set: does it parse to its end?

An archive must not answer success for a data set that ends inside an element (a
sender that broke off, a fragment lost): the file would be indexed and later served,
and only fail when someone decodes its pixels. :func:`structure_error` walks every
element header without decoding any value (a CT instance of 512 x 512 takes about
50 us) and checks that

* every element's value lies within the data set (or within its sequence or item);
* every undefined-length sequence and item is closed by its delimiter;
* encapsulated pixel data is a run of items closed by a sequence delimiter;
* nothing but whole elements follows the last one.

It handles the three uncompressed encodings and Deflated Explicit VR Little Endian
(inflated first). It returns ``None`` for a data set that is whole, else one
sentence saying where it breaks; it never raises for bad bytes.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR

__all__ = [
    "CANNOT_UNDERSTAND",
    "DATASET_MISMATCH",
    "Walked",
    "announced_mismatch",
    "instance_problem",
    "structure_error",
    "walk",
    "walk_parts",
]

CANNOT_UNDERSTAND = 0xC000
"""C-STORE status for a data set that does not parse (PS3.4 B.2.3: "Cannot understand")."""
DATASET_MISMATCH = 0xA900
"""C-STORE status for UIDs that contradict the request (PS3.4 B.2.3: "Data Set does not
match SOP Class")."""

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")

_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_LONG_VRS = frozenset(
    b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split()  # 4-byte length after 2 reserved bytes
)
_SHORT_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split()
)  # 2-byte length
_MAX_DEPTH = 64
"""Nested sequences deeper than this are refused (real objects nest a handful deep)."""


class _Broken(Exception):
    """Where the walk found the data set broken (the message is the sentence)."""


class _PastFirstPart(Exception):
    """The walk needs bytes of a part it was not given (:func:`walk_parts` joins them)."""


class _Walker:
    """One walk over one data set's bytes."""

    def __init__(self, data: bytes | memoryview, little: bool, implicit: bool) -> None:
        self.buf = memoryview(data)
        self.implicit = implicit
        order = "<" if little else ">"
        # unpack_from bound once: the walk calls them for every element
        self.head = struct.Struct(order + "HHI").unpack_from  # tag, a 4-byte length
        self.explicit_head = struct.Struct(order + "HH2sH").unpack_from
        self.u32 = struct.Struct(order + "I").unpack_from
        self.depth = 0

    def header(self, pos: int, end: int) -> tuple[int, bytes, int, int]:
        """(tag, VR bytes or b"", value length, value start) of the element at ``pos``."""
        if pos + 8 > end:
            raise _Broken(f"it ends inside an element header (byte {pos})")
        if self.implicit:
            group, elem, length = self.head(self.buf, pos)
            return (group << 16) | elem, b"", length, pos + 8
        group, elem, vr, short = self.explicit_head(self.buf, pos)
        tag = (group << 16) | elem
        if vr in _SHORT_VRS and group != 0xFFFE:  # the common case first
            return tag, vr, short, pos + 8
        if group == 0xFFFE:  # item and delimiter tags carry no VR: a 4-byte length follows
            return tag, b"", self.u32(self.buf, pos + 4)[0], pos + 8
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise _Broken(f"it ends inside the header of {_name(tag)}")
            return tag, vr, self.u32(self.buf, pos + 8)[0], pos + 12
        if not (vr.isalpha() and vr.isupper()):  # a VR this walk does not know: 2 capitals
            raise _Broken(f"{_name(tag)} has no valid VR ({vr!r})")
        return tag, vr, short, pos + 8

    def elements(
        self,
        pos: int,
        end: int,
        until: int | None,
        wanted: Container[int] = (),
        found: dict[int, tuple[str, bytes]] | None = None,
    ) -> int:
        """Walk elements from ``pos``; stop at ``end`` or after the delimiter ``until``.
        The raw values of the ``wanted`` tags among them (not inside their sequences)
        go into ``found``.

        Returns the position after the last byte walked.
        """
        buf = self.buf
        explicit = None if self.implicit else self.explicit_head
        while pos < end:
            if explicit is not None and pos + 8 <= end:
                # The common element, inline: explicit VR with a 2-byte length (never a
                # sequence, an item or a delimiter, never of undefined length).
                group, elem, vr, length = explicit(buf, pos)
                if vr in _SHORT_VRS and group != 0xFFFE:
                    start = pos + 8
                    stop = start + length
                    if stop > end:
                        tag = (group << 16) | elem
                        raise _Broken(f"{_name(tag)} declares {length} bytes, {end - start} follow")
                    if found is not None:
                        tag = (group << 16) | elem
                        if tag in wanted:
                            if stop > len(buf):  # in a part not given (walk_parts)
                                raise _PastFirstPart
                            found[tag] = (vr.decode("ascii"), bytes(buf[start:stop]))
                    pos = stop
                    continue
            tag, vr, length, start = self.header(pos, end)
            if found is not None and tag in wanted and start + length <= end:  # not undefined
                if start + length > len(buf):  # in a part not given (walk_parts)
                    raise _PastFirstPart
                name = vr.decode("ascii") if vr else _dictionary_vr(tag)
                found[tag] = (name, bytes(buf[start : start + length]))
            if tag == until:
                if length != 0:
                    raise _Broken(f"a delimiter has length {length}, not 0 (byte {pos})")
                return start
            if tag in (_ITEM, _ITEM_END, _SEQUENCE_END):
                raise _Broken(f"an item or delimiter out of place (byte {pos})")
            if length == _UNDEFINED:
                pos = self.undefined(tag, vr, start, end)
                continue
            stop = start + length
            if stop > end:
                raise _Broken(f"{_name(tag)} declares {length} bytes, {end - start} follow")
            if vr == b"SQ" or (self.implicit and _is_sequence(tag)):
                self.items(start, stop)
            pos = stop
        if until is not None:
            raise _Broken("an item of undefined length is never closed")
        return pos

    def undefined(self, tag: int, vr: bytes, start: int, end: int) -> int:
        """Walk an undefined-length value: a sequence, or encapsulated pixel data."""
        if vr in (b"OB", b"OW"):
            return self.fragments(start, end, tag)
        if vr not in (b"SQ", b"UN", b""):
            raise _Broken(f"{_name(tag)} has an undefined length but VR {vr.decode('latin-1')}")
        if vr == b"UN":  # PS3.5 6.2.2: its value is an implicit VR little endian sequence
            saved = self.implicit
            self.implicit = True
            try:
                return self.items(start, end, undefined=True)
            finally:
                self.implicit = saved
        return self.items(start, end, undefined=True)

    def items(self, pos: int, end: int, undefined: bool = False) -> int:
        """Walk the items of a sequence (its value is ``[pos, end)`` unless ``undefined``)."""
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Broken(f"sequences nested more than {_MAX_DEPTH} deep")
        try:
            while pos < end:
                tag, _, length, start = self.header(pos, end)
                if undefined and tag == _SEQUENCE_END:
                    if length != 0:
                        raise _Broken(f"a sequence delimiter has length {length} (byte {pos})")
                    return start
                if tag != _ITEM:
                    raise _Broken(f"a sequence holds a non-item (byte {pos})")
                if length == _UNDEFINED:
                    pos = self.elements(start, end, until=_ITEM_END)
                    continue
                stop = start + length
                if stop > end:
                    raise _Broken(f"an item declares {length} bytes, {end - start} follow")
                self.elements(start, stop, until=None)
                pos = stop
            if undefined:
                raise _Broken("a sequence of undefined length is never closed")
            return pos
        finally:
            self.depth -= 1

    def fragments(self, pos: int, end: int, tag: int) -> int:
        """Walk encapsulated pixel data: items of defined length, then a delimiter."""
        while pos < end:
            item, _, length, start = self.header(pos, end)
            if item == _SEQUENCE_END:
                return start
            if item != _ITEM or length == _UNDEFINED:
                raise _Broken(f"{_name(tag)} holds a non-fragment (byte {pos})")
            if start + length > end:
                raise _Broken(
                    f"a fragment of {_name(tag)} declares {length} bytes, {end - start} follow"
                )
            pos = start + length
        raise _Broken(f"encapsulated {_name(tag)} is never closed")


def _name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@functools.lru_cache(maxsize=4096)  # pure; looked up for every element in implicit VR
def _dictionary_vr(tag: int) -> str:
    """A tag's VR from the data dictionary (implicit VR), "UN" for one it lacks."""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


@functools.lru_cache(maxsize=4096)
def _is_sequence(tag: int) -> bool:
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:  # private or unknown: its value is walked as opaque bytes
        return False


def structure_error(data: bytes | memoryview, transfer_syntax: str) -> str | None:
    """``None`` when the encoded data set ``data`` parses to its end, else where it breaks
    (a short sentence: it fits a DIMSE Error Comment where it can).

    Parameters
    ----------
    data
        The data set as received (no preamble or file meta).
    transfer_syntax
        Its transfer syntax UID; compressed pixel syntaxes are explicit VR little endian.
    """
    return walk(data, transfer_syntax).error


@dataclass(frozen=True, slots=True)
class Walked:
    """What one walk over a data set found."""

    error: str | None
    """Where the data set breaks (:func:`structure_error`); None when it is whole."""
    found: dict[int, tuple[str, bytes]]
    """The raw ``(VR, value bytes)`` of the wanted top-level tags present (read only)."""


def walk(data: bytes | memoryview, transfer_syntax: str, wanted: Container[int] = ()) -> Walked:
    """:func:`structure_error` and, in the same walk, the raw values of the ``wanted``
    top-level tags (what :func:`dicomlab.core.header.scan_elements` reads, without a
    second walk over the header). In implicit VR a value's VR comes from the dictionary.
    """
    return walk_parts((data,), transfer_syntax, wanted)


def walk_parts(
    parts: Sequence[bytes | memoryview], transfer_syntax: str, wanted: Container[int] = ()
) -> Walked:
    """:func:`walk` over a data set that arrived in ``parts`` (a C-STORE's fragments),
    without joining them where it can: most data sets end with one long element (the
    pixel data) whose header lies in the first part, and the walk reads nothing else of
    the rest. Where it would (a header or a wanted value past the first part, a
    sequence or fragments that cross it, a deflated data set), the parts are joined
    once and walked as one: the answer is always that of the joined data set."""
    found: dict[int, tuple[str, bytes]] = {}
    if len(parts) > 1 and transfer_syntax in DEFLATED:
        parts = (b"".join(parts),)
    data = parts[0]
    if transfer_syntax in DEFLATED:
        try:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflater.decompress(data)
            if not inflater.eof:
                return Walked("the deflated data set is cut short", found)
        except zlib.error as exc:
            return Walked(f"the deflated data set does not inflate ({exc})", found)
    size = len(data) if len(parts) == 1 else sum(memoryview(p).nbytes for p in parts)
    if size == 0:
        return Walked("the data set is empty", found)
    walker = _Walker(
        data,
        little=transfer_syntax != EXPLICIT_BE,
        implicit=transfer_syntax == IMPLICIT_LE,
    )
    try:
        walker.elements(0, size, None, wanted, found)
    except _Broken as exc:
        return Walked(str(exc), found)
    except (struct.error, _PastFirstPart) as exc:
        if len(parts) > 1:  # it needed bytes past the first part: walk them joined
            return walk(b"".join(parts), transfer_syntax, wanted)
        return Walked(f"malformed: {exc}", found)  # pragma: no cover - bounds checked first
    finally:
        walker.buf.release()
    return Walked(None, found)


def instance_problem(
    body: bytes | memoryview,
    transfer_syntax: str,
    row: Mapping[str, Any],
    sop_class: str | None = None,
    sop_instance: str | None = None,
    context_class: str | None = None,
    announced_by: str = "the command",
) -> tuple[int, str] | None:
    """Why an instance must not be stored, as (C-STORE status, reason), or None if it may.

    The data set ``body`` must parse to its end (:func:`structure_error`), and the SOP
    Class and Instance UIDs of its index ``row`` must be those announced for it: by a
    C-STORE command (``sop_class``, ``sop_instance``) and its presentation context
    (``context_class``), or by a file's meta information (``announced_by`` names which,
    for the reason).
    """
    broken = structure_error(body, transfer_syntax)
    if broken is not None:
        return CANNOT_UNDERSTAND, broken
    return announced_mismatch(row, sop_class, sop_instance, context_class, announced_by)


def announced_mismatch(
    row: Mapping[str, Any],
    sop_class: str | None = None,
    sop_instance: str | None = None,
    context_class: str | None = None,
    announced_by: str = "the command",
) -> tuple[int, str] | None:
    """The second half of :func:`instance_problem`: the index ``row``'s SOP Class and
    Instance UIDs against those announced for it, as (C-STORE status, reason)."""
    checks = (
        ("SOP Class UID", row.get("SOPClassUID"), sop_class, f"{announced_by}'s"),
        ("SOP Class UID", row.get("SOPClassUID"), context_class, "the presentation context's"),
        ("SOP Instance UID", row.get("SOPInstanceUID"), sop_instance, f"{announced_by}'s"),
    )
    for what, held, announced, whose in checks:
        if announced is not None and str(announced).strip() != held:
            return (
                DATASET_MISMATCH,
                f"the data set's {what} {held} is not {whose} {str(announced).strip()}",
            )
    return None
