"""Bytes on the wire for C-STORE, C-FIND and C-GET: command sets and P-DATA-TF framing.
Pure; no sockets.

The direct paths (:mod:`dicomlab.net._fast.store`, :mod:`dicomlab.net._fast.qr`) read
and write these themselves instead of building pynetdicom primitives and pydicom
datasets for every message.
Everything here follows PS3.7 (command sets: group 0000, always Implicit VR Little
Endian, Annex E) and PS3.8 (P-DATA-TF PDUs and their presentation data values,
9.3.5 and Annex E.2). The tests check each encoding against pynetdicom's.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "C_FIND_RQ",
    "C_FIND_RSP",
    "C_GET_RQ",
    "C_GET_RSP",
    "C_MOVE_RQ",
    "C_MOVE_RSP",
    "C_STORE_RQ",
    "C_STORE_RSP",
    "AssociateRequest",
    "Command",
    "MessageScan",
    "associate_request",
    "command_pdu",
    "data_pdu_parts",
    "data_pdus",
    "decode_command",
    "pdu",
    "query_request",
    "store_request",
    "store_response",
]

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_FIND_RQ = 0x0020
C_FIND_RSP = 0x8020
C_GET_RQ = 0x0010
C_GET_RSP = 0x8010
C_MOVE_RQ = 0x0021
C_MOVE_RSP = 0x8021
NO_DATA_SET = 0x0101
"""Command Data Set Type (0000,0800) meaning "no data set follows"."""

# Command elements (PS3.7 E.1) used by C-STORE, C-FIND and C-GET.
_GROUP_LENGTH = 0x0000_0000
_AFFECTED_CLASS = 0x0000_0002
_COMMAND_FIELD = 0x0000_0100
_MESSAGE_ID = 0x0000_0110
_RESPONDED_TO = 0x0000_0120
_MOVE_DESTINATION = 0x0000_0600
_PRIORITY = 0x0000_0700
_DATA_SET_TYPE = 0x0000_0800
_STATUS = 0x0000_0900
_ERROR_COMMENT = 0x0000_0902
_AFFECTED_INSTANCE = 0x0000_1000
_REMAINING = 0x0000_1020
_COMPLETED = 0x0000_1021
_FAILED = 0x0000_1022
_WARNING = 0x0000_1023
_MOVE_ORIGINATOR_AE = 0x0000_1030
_MOVE_ORIGINATOR_ID = 0x0000_1031

_HEAD = struct.Struct("<HHI")  # implicit VR element: group, element, value length
_US = struct.Struct("<H")
_UL = struct.Struct("<I")
_PDU_HEAD = struct.Struct(">BBIIBB")
"""P-DATA-TF PDU with one PDV: type 0x04, reserved, PDU length, item length,
presentation context ID, message control header (the fragment follows)."""

_COMMAND_LAST = 0x03
_DATA = 0x00
_DATA_LAST = 0x02


def _element(tag: int, value: bytes) -> bytes:
    return _HEAD.pack(tag >> 16, tag & 0xFFFF, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw  # UI pads with NUL (PS3.5 6.2)


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set: the elements in tag order, preceded by their group length."""
    body = b"".join(_element(tag, value) for tag, value in sorted(elements))
    return _element(_GROUP_LENGTH, _UL.pack(len(body))) + body


def store_request(
    message_id: int,
    sop_class: str,
    sop_instance: str,
    priority: int = 0,
    move_originator: tuple[str, int] | None = None,
) -> bytes:
    """The command set of a C-STORE-RQ (PS3.7 9.3.1.1) with a data set following."""
    elements = [
        (_AFFECTED_CLASS, _uid(sop_class)),
        (_COMMAND_FIELD, _US.pack(C_STORE_RQ)),
        (_MESSAGE_ID, _US.pack(message_id)),
        (_PRIORITY, _US.pack(priority)),
        (_DATA_SET_TYPE, _US.pack(0x0001)),  # any value but 0x0101: a data set follows
        (_AFFECTED_INSTANCE, _uid(sop_instance)),
    ]
    if move_originator is not None:
        elements += [
            (_MOVE_ORIGINATOR_AE, _text(move_originator[0].strip()[:16])),
            (_MOVE_ORIGINATOR_ID, _US.pack(move_originator[1])),
        ]
    return _command(elements)


def store_response(
    message_id: int,
    sop_class: str,
    sop_instance: str,
    status: int,
    error_comment: str | None = None,
) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2); no data set follows."""
    elements = [
        (_COMMAND_FIELD, _US.pack(C_STORE_RSP)),
        (_RESPONDED_TO, _US.pack(message_id)),
        (_DATA_SET_TYPE, _US.pack(NO_DATA_SET)),
        (_STATUS, _US.pack(status)),
    ]
    if sop_class.isascii():
        elements.append((_AFFECTED_CLASS, _uid(sop_class)))
    if sop_instance.isascii():
        # Optional in a response (U(=), PS3.7 9.3.1.2): a UID that is not even ASCII (which
        # the request decoded with replacement characters) is left out, not echoed.
        elements.append((_AFFECTED_INSTANCE, _uid(sop_instance)))
    if error_comment:
        elements.append((_ERROR_COMMENT, _text(error_comment[:64])))
    return _command(elements)


def query_request(
    command_field: int,
    message_id: int,
    sop_class: str,
    priority: int = 0,
    move_destination: str | None = None,
) -> bytes:
    """The command set of a C-FIND-RQ, C-GET-RQ or C-MOVE-RQ (PS3.7 9.3.2.1, 9.3.3.1,
    9.3.4.1; a C-MOVE names its ``move_destination``); the identifier follows as a data set."""
    elements = [
        (_AFFECTED_CLASS, _uid(sop_class)),
        (_COMMAND_FIELD, _US.pack(command_field)),
        (_MESSAGE_ID, _US.pack(message_id)),
        (_PRIORITY, _US.pack(priority)),
        (_DATA_SET_TYPE, _US.pack(0x0001)),
    ]
    if move_destination is not None:
        elements.append((_MOVE_DESTINATION, _text(move_destination.strip()[:16])))
    return _command(elements)


@dataclass(frozen=True, slots=True)
class Command:
    """The fields of a decoded command set that C-STORE, C-FIND and C-GET use
    (absent: None)."""

    command_field: int | None
    message_id: int | None
    responded_to: int | None
    sop_class: str | None
    sop_instance: str | None
    priority: int | None
    data_set_type: int | None
    status: int | None
    error_comment: str | None
    move_originator_ae: str | None
    move_originator_id: int | None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None

    @property
    def has_data_set(self) -> bool:
        return self.data_set_type is not None and self.data_set_type != NO_DATA_SET


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode a command set (Implicit VR Little Endian); ValueError if it is malformed.

    A command set seen lately is not decoded again: a C-FIND's thousands of pending
    responses, for one, carry the very same bytes (Command is frozen: shared safely)."""
    return _decode_command(bytes(data))


@functools.lru_cache(maxsize=64)
def _decode_command(data: bytes) -> Command:
    values: dict[int, bytes] = {}
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        if pos + 8 > end:
            raise ValueError(f"command set truncated at byte {pos}")
        group, elem, length = _HEAD.unpack_from(view, pos)
        pos += 8
        if length == 0xFFFFFFFF or pos + length > end:
            raise ValueError(f"invalid command element ({group:04X},{elem:04X}) at byte {pos - 8}")
        if group == 0x0000:
            values[elem] = bytes(view[pos : pos + length])
        # else: not a command element. Some peers (dcmtk-based Orthanc's C-GET-RSP) put the
        # Failed SOP Instance UID List (0008,0058) here; like pynetdicom, ignore it.
        pos += length

    def us(elem: int) -> int | None:
        raw = values.get(elem & 0xFFFF)
        return _US.unpack(raw)[0] if raw is not None and len(raw) == 2 else None

    def text(elem: int) -> str | None:
        raw = values.get(elem & 0xFFFF)
        if raw is None:
            return None
        return raw.decode("ascii", "replace").rstrip("\0 ")

    return Command(
        command_field=us(_COMMAND_FIELD),
        message_id=us(_MESSAGE_ID),
        responded_to=us(_RESPONDED_TO),
        sop_class=text(_AFFECTED_CLASS),
        sop_instance=text(_AFFECTED_INSTANCE),
        priority=us(_PRIORITY),
        data_set_type=us(_DATA_SET_TYPE),
        status=us(_STATUS),
        error_comment=text(_ERROR_COMMENT),
        move_originator_ae=text(_MOVE_ORIGINATOR_AE),
        move_originator_id=us(_MOVE_ORIGINATOR_ID),
        remaining=us(_REMAINING),
        completed=us(_COMPLETED),
        failed=us(_FAILED),
        warning=us(_WARNING),
    )


def pdu(context_id: int, control: int, fragment: bytes | memoryview) -> bytes:
    """One P-DATA-TF PDU carrying ``fragment`` as its only PDV (``control``: its message
    control header)."""
    return _pdu_head(context_id, control, len(fragment)) + fragment


def _pdu_head(context_id: int, control: int, n: int) -> bytes:
    """The 12 bytes before a PDV of ``n`` bytes: the PDU's header, then the PDV's."""
    return _PDU_HEAD.pack(0x04, 0, n + 6, n + 2, context_id, control)


def command_pdu(context_id: int, command: bytes, max_pdu: int) -> bytes:
    """The P-DATA-TF PDU(s) carrying a command set (split only if ``max_pdu`` forces it)."""
    piece = max_pdu - 6 if max_pdu else len(command) or 1
    if len(command) <= piece:
        return pdu(context_id, _COMMAND_LAST, command)
    view = memoryview(command)
    starts = range(0, len(command), piece)
    return b"".join(
        pdu(context_id, 0x03 if s + piece >= len(command) else 0x01, view[s : s + piece])
        for s in starts
    )


def data_pdus(
    context_id: int, data: bytes | memoryview, max_pdu: int, last: bool = True
) -> Iterator[bytes]:
    """P-DATA-TF PDUs carrying ``data`` (a data set, or a piece of one when not ``last``).

    ``max_pdu`` is the peer's maximum PDU length (0: no limit). Pieces other than
    the last must be a multiple of the fragment size, so that PDUs stay full.
    """
    parts = data_pdu_parts(context_id, data, max_pdu, last)
    for head, fragment in zip(parts, parts, strict=True):  # pairs: a PDU's head, its PDV
        yield bytes(head) + fragment


def data_pdu_parts(
    context_id: int, data: bytes | memoryview, max_pdu: int, last: bool = True
) -> Iterator[bytes | memoryview]:
    """:func:`data_pdus` as the pieces to write, not joined: each PDU's 12-byte head, then
    its fragment, a view of ``data`` (for a gathered write: nothing copied)."""
    view = memoryview(data)
    piece = max_pdu - 6 if max_pdu else max(len(view), 1)
    if not len(view):
        if last:
            yield _pdu_head(context_id, _DATA_LAST, 0)
            yield b""
        return
    for start in range(0, len(view), piece):
        final = last and start + piece >= len(view)
        fragment = view[start : start + piece]
        yield _pdu_head(context_id, _DATA_LAST if final else _DATA, len(fragment))
        yield fragment


@dataclass(slots=True)
class MessageScan:
    """Finds one complete DIMSE message in a receive buffer, without consuming it.

    :meth:`feed` walks the P-DATA-TF PDUs present in the buffer, from where it
    stopped last time. A "plain" message is: command fragments then data-set
    fragments, all on one presentation context, PDVs well formed, the message
    ending at a PDU boundary, and no larger than ``limit`` bytes. Anything else
    (another PDU type, a malformed item, a second context, a message that is not
    wanted) makes :meth:`feed` answer None: the caller leaves the bytes to
    pynetdicom, which handles (or reports) them as usual.
    """

    limit: int
    wanted: tuple[int, ...] = (C_STORE_RQ,)
    pos: int = 0
    context_id: int | None = None
    command_bytes: bytearray = field(default_factory=bytearray)
    command: Command | None = None
    spans: list[tuple[int, int]] = field(default_factory=list)
    too_large: bool = False
    """Set when the answer None was because the message exceeds ``limit``."""

    def feed(self, buf: bytes | bytearray) -> int | None:
        """0 when a whole message lies in ``buf[:self.pos]``; else how many bytes
        ``buf`` must hold for the next step; None when the bytes are not a plain
        message of the wanted kind."""
        while True:
            pos = self.pos
            if len(buf) < pos + 6:
                return pos + 6
            if buf[pos] != 0x04:
                return None
            end = pos + 6 + int.from_bytes(buf[pos + 2 : pos + 6], "big")
            if end > self.limit:
                self.too_large = True
                return None
            if len(buf) < end:
                return end
            done = self._items(buf, pos + 6, end)
            if done is None:
                return None
            self.pos = end
            if done:
                return 0

    def _items(self, buf: bytes | bytearray, pos: int, end: int) -> bool | None:
        """Walk one PDU's PDVs: True when the message ended with it, None if not plain."""
        if pos >= end:
            return None
        while pos < end:
            if pos + 6 > end:
                return None
            item_end = pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
            if item_end > end or item_end < pos + 6:
                return None
            context_id, control = buf[pos + 4], buf[pos + 5]
            if self.context_id is None:
                self.context_id = context_id
            elif context_id != self.context_id:
                return None
            is_command, last = control & 0x01, control & 0x02
            if self.command is None:
                if not is_command:
                    return None
                self.command_bytes += buf[pos + 6 : item_end]
                if last:
                    try:
                        self.command = decode_command(self.command_bytes)
                    except ValueError:
                        return None
                    if self.command.command_field not in self.wanted:
                        return None
                    if not self.command.has_data_set:
                        return True if item_end == end else None
            else:
                if is_command:
                    return None
                self.spans.append((pos + 6, item_end))
                if last:
                    return True if item_end == end else None
            pos = item_end
        return False


@dataclass(frozen=True, slots=True)
class AssociateRequest:
    """What an A-ASSOCIATE-RQ PDU asks (PS3.8 9.3.2): who calls whom, for which
    abstract syntaxes, and whether it proposes SCP/SCU roles (PS3.7 D.3.3.4)."""

    called_ae: str
    calling_ae: str
    abstract_syntaxes: tuple[str, ...]
    role_selection: bool


def associate_request(data: bytes | bytearray | memoryview) -> AssociateRequest | None:
    """The A-ASSOCIATE-RQ at the start of ``data``, or None when ``data`` does not hold a
    whole, well-formed one (the caller then leaves it to pynetdicom to judge)."""
    buf = bytes(data)
    if len(buf) < 74 or buf[0] != 0x01:
        return None
    end = 6 + int.from_bytes(buf[2:6], "big")
    if end > len(buf):
        return None
    called = buf[10:26].decode("ascii", "replace").strip()
    calling = buf[26:42].decode("ascii", "replace").strip()
    syntaxes: list[str] = []
    roles = False
    for kind, body in _items_of(buf, 74, end):
        if kind == 0x20:  # presentation context: id, 3 reserved, then sub-items
            for sub, value in _items_of(body, 4, len(body)):
                if sub == 0x30:
                    syntaxes.append(value.rstrip(b"\0 ").decode("ascii", "replace"))
        elif kind == 0x50:  # user information
            roles = any(sub == 0x54 for sub, _ in _items_of(body, 0, len(body)))
    return AssociateRequest(called, calling, tuple(syntaxes), roles)


def _items_of(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, bytes]]:
    """The (type, value) items of PS3.8's item layout (type, reserved, 2-byte length);
    stops at the first that overruns ``end``."""
    while pos + 4 <= end:
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        if pos + 4 + length > end:
            return
        yield buf[pos], buf[pos + 4 : pos + 4 + length]
        pos += 4 + length
