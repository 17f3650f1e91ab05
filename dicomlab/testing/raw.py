"""A hand-built DICOM upper layer client for tests: the misbehaving peer no real one is.

Real peers (dcmtk, Orthanc) are for interoperability; some faults need a peer that
sends exactly the wrong bytes on demand: a command set without its Command Field, a
data set cut inside an element, a connection that never asks for an association.
:class:`RawAssociation` speaks just enough PS3.8 to do that: an A-ASSOCIATE-RQ with
the contexts asked for, P-DATA-TF PDUs with any fragments, and PDU reads.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from dicomlab.net import wire

__all__ = [
    "A_ABORT",
    "A_ASSOCIATE_AC",
    "A_ASSOCIATE_RJ",
    "A_RELEASE_RP",
    "P_DATA_TF",
    "RawAssociation",
    "associate_rq",
    "command_set",
    "read_message",
]

A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RP, A_ABORT = 0x02, 0x03, 0x04, 0x06, 0x07
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def associate_rq(calling: str, called: str, contexts: Sequence[tuple[str, Sequence[str]]]) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing ``contexts`` ((abstract syntax, transfer syntaxes),
    given IDs 1, 3, 5...)."""
    items = b""
    for i, (abstract, syntaxes) in enumerate(contexts):
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, t.encode()) for t in syntaxes)
        items += _item(0x20, bytes([2 * i + 1, 0, 0, 0]) + sub)
    user = _item(
        0x50,
        _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.826.0.1.3680043.9.3811.3.0.4"),
    )
    body = (
        struct.pack(">HH", 1, 0)
        + called.encode().ljust(16)
        + calling.encode().ljust(16)
        + bytes(32)
        + _item(0x10, b"1.2.840.10008.3.1.1.1")
        + items
        + user
    )
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def command_set(elements: dict[int, bytes]) -> bytes:
    """A command set (implicit VR little endian) of exactly these elements (tag: value),
    with its group length: leave one out to build a malformed command."""
    body = b"".join(
        struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value
        for tag, value in sorted(elements.items())
    )
    return struct.pack("<HHI", 0, 0, 4) + struct.pack("<I", len(body)) + body


def read_message(sock: socket.socket, wanted: tuple[int, ...]) -> wire.MessageScan | None:
    """Read from ``sock`` until one whole DIMSE message of a ``wanted`` command field is in
    (the scan holds its command, context and data spans); None if the peer closed first."""
    scan, buf = wire.MessageScan(1 << 20, wanted=wanted), bytearray()
    while scan.feed(buf) != 0:
        piece = sock.recv(65536)
        if not piece:
            return None
        buf += piece
    return scan


class RawAssociation:
    """A TCP connection on which the test writes PDUs by hand (a context manager)."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, source: str = ""
    ) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.accepted: dict[int, str] = {}  # context ID -> transfer syntax

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.sock.close()

    def associate(
        self, calling: str, called: str, contexts: Sequence[tuple[str, Sequence[str]]]
    ) -> int:
        """Send an A-ASSOCIATE-RQ; the reply's PDU type (accepted contexts are kept)."""
        self.sock.sendall(associate_rq(calling, called, contexts))
        kind, pdu = self.read_pdu()
        if kind == A_ASSOCIATE_AC:
            pos = 6 + 68
            while pos < len(pdu):
                item, _, length = struct.unpack_from(">BBH", pdu, pos)
                if item == 0x21 and pdu[pos + 6] == 0:  # presentation context: acceptance
                    ts_len = struct.unpack_from(">H", pdu, pos + 10)[0]
                    syntax = pdu[pos + 12 : pos + 12 + ts_len].decode().rstrip("\0")
                    self.accepted[pdu[pos + 4]] = syntax
                pos += 4 + length
        return kind

    def send_message(
        self, context_id: int, command: bytes, data: bytes | None = None, max_pdu: int = 16384
    ) -> None:
        """One DIMSE message: the command fragment, then the data set's fragments."""
        blob = wire.command_pdu(context_id, command, max_pdu)
        if data is not None:
            blob += b"".join(wire.data_pdus(context_id, data, max_pdu))
        self.sock.sendall(blob)

    def read_pdu(self) -> tuple[int, bytes]:
        """The next PDU as (type, whole PDU); (0, b"") when the connection closed."""
        head = self._exact(6)
        if head is None:
            return 0, b""
        kind, _, length = struct.unpack(">BBL", head)
        body = self._exact(length)
        return (0, b"") if body is None else (kind, head + body)

    def read_response(self) -> wire.Command | None:
        """The next DIMSE response's command set (None if another PDU or a close came)."""
        fragments = b""
        while True:
            kind, pdu = self.read_pdu()
            if kind != P_DATA_TF:
                return None
            fragments += pdu[12:]
            if pdu[11] & 0x03 == 0x03:  # command, last fragment
                return wire.decode_command(fragments)

    def release(self) -> int:
        """Send an A-RELEASE-RQ; the reply's PDU type."""
        self.sock.sendall(struct.pack(">BBLL", 0x05, 0, 4, 0))
        return self.read_pdu()[0]

    def _exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, TimeoutError):
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)
