"""Socket reads for adapted associations: a read-ahead buffer, and the bulk of a data set
written into its message without pynetdicom's per-PDU work.

:func:`buffered` gives an AssociationSocket a :class:`ReadAhead` buffer (reads of
256 KB serving many PDUs instead of pynetdicom's 4 KB pieces and two reads per PDU);
:func:`read_pdu` is pynetdicom's ``_read_pdu_data`` with a fast branch for P-DATA-TF
PDUs that only continue the data set being received.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

from pynetdicom import evt

__all__ = ["ReadAhead", "buffered", "data_fragments", "read_pdu", "shutdown_and_close"]


_READ_AHEAD = 256 * 1024
"""Bytes asked of the socket per read: a read serves many PDUs (each read releases the GIL,
and getting it back behind the other threads costs more than the read)."""
_MAX_READ = 1 << 20
"""Cap per read, so a hostile declared length (up to 4 GiB) grows memory only as bytes
really arrive."""


class ReadAhead:
    """Mixed into an AssociationSocket's class: buffered reads, and ``ready`` that knows."""

    socket: Any
    read_ahead: bytearray
    tls_error: ssl.SSLError | None = None

    @property
    def ready(self) -> bool:
        if self.read_ahead and self.socket is not None and getattr(self, "_is_connected", False):
            return True
        return bool(super().ready)  # type: ignore[misc]

    def fill(self, nr_bytes: int) -> bool:
        """Read until the buffer holds ``nr_bytes``; False if the connection broke first."""
        buf = self.read_ahead
        while len(buf) < nr_bytes:
            want = min(max(nr_bytes - len(buf), _READ_AHEAD), _MAX_READ)
            try:
                piece = self.socket.recv(want)
            except ssl.SSLError as exc:  # a TLS alert (e.g. "certificate required"): keep it
                self.tls_error = exc
                raise
            if not piece:
                return False
            buf += piece
        return True

    def recv(self, nr_bytes: int) -> bytearray:
        """``AssociationSocket.recv``: ``nr_bytes`` (fewer only if the connection broke)."""
        buf = self.read_ahead
        self.fill(nr_bytes)  # a broken connection returns what arrived, as pynetdicom does
        out = buf[:nr_bytes]
        del buf[:nr_bytes]
        return out

    def _shutdown_socket(self) -> None:
        shutdown_and_close(self.socket)


def shutdown_and_close(sock: Any) -> None:
    """pynetdicom's ``_shutdown_socket``, but the socket is closed even when shutdown fails.

    pynetdicom skips ``close()`` when ``shutdown()`` raises (a connection the peer
    already broke, e.g. after a TLS alert), leaking the file descriptor.
    """
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


_FAST_PDU_MAX = 4 << 20
"""Largest P-DATA-TF PDU read by :func:`_read_pdu`'s fast branch (larger: pynetdicom's path)."""


def data_fragments(buf: bytearray, end: int) -> list[tuple[int, int]] | None:
    """Spans of the PDVs of the P-DATA-TF PDU in ``buf[:end]`` if all are data-set fragments
    that do not end their message (control header xxxxxx00); else None."""
    spans = []
    pos = 6
    while pos < end:
        if pos + 6 > end:
            return None
        item_end = pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
        if item_end > end or item_end < pos + 6 or buf[pos + 5] & 0x03:
            return None
        spans.append((pos + 6, item_end))
        pos = item_end
    return spans or None


def read_pdu(
    dul: Any, original: Callable[[], None], serve_store: Callable[[Any], bool]
) -> Callable[[], None]:
    """pynetdicom's ``_read_pdu_data``, with a fast branch for the bulk of a data set.

    A P-DATA-TF PDU whose fragments all continue the data set of the DIMSE message
    being received (established association, command set already complete, no event
    pending) is written straight into that message's data set: no PDU or primitive
    objects, no state-machine pass (the transition is Sta6 -> Sta6 with nothing else
    to do). Every other PDU, including the one that ends a message, takes
    pynetdicom's path, so message completion, events and errors are pynetdicom's own.
    Peers that cap PDUs at 16 KB (Orthanc's default) send ~35 of these per 512x512
    image.
    """

    def fast_one(sock: Any, buf: bytearray, message: Any) -> bool:
        """Consume the next PDU if it only continues ``message``'s data set."""
        if not sock.fill(6) or buf[0] != 0x04:
            return False
        end = 6 + int.from_bytes(buf[2:6], "big")
        if end > _FAST_PDU_MAX or not sock.fill(end):
            return False
        spans = data_fragments(buf, end)
        if spans is None:
            return False
        target = message._data_set_file or message.data_set
        with memoryview(buf) as view:
            for start, stop in spans:
                target.write(view[start:stop])
            if dul.assoc.get_handlers(evt.EVT_DATA_RECV):
                evt.trigger(dul.assoc, evt.EVT_DATA_RECV, {"data": bytes(view[:end])})
        if message._data_set_file:
            message._data_set_file.file.flush()
        del buf[:end]
        return True

    def read() -> None:
        sock = dul.socket
        if dul.state_machine.current_state == "Sta13":
            # After our A-ABORT we only wait for the peer to close, for the ARTIM time.
            # A peer that stays connected mid-PDU (an HTTP client after "GET / ...")
            # must not block this read forever: the timeout reads as a closed connection.
            raw = getattr(sock, "socket", None)
            if raw is not None:
                try:
                    raw.settimeout(max(0.1, float(dul.artim_timer.remaining)))
                except (OSError, TypeError, ValueError):
                    pass
            original()
            return
        buf = sock.read_ahead if isinstance(sock, ReadAhead) else None
        message = dul.assoc.dimse.message
        if (
            message is None
            and buf is not None
            and dul.state_machine.current_state == "Sta6"
            and dul.event_queue.empty()
            and serve_store(dul)
        ):
            return
        if (
            buf is None
            or message is None
            or getattr(message, "command_set", None) is None
            or dul.state_machine.current_state != "Sta6"
            or not dul.event_queue.empty()
        ):
            original()
            return
        # Consume data fragments while they are next (already buffered or on the socket),
        # then hand the first other PDU to pynetdicom.
        while fast_one(sock, buf, message):
            if not buf and not sock.ready:
                return
            if dul._kill_thread or not dul.to_provider_queue.empty():
                return  # let the reactor send or stop between PDUs
        original()

    return read


_BUFFERED: dict[type, type] = {}


def buffered(sock: Any) -> None:
    """Give ``sock`` (an AssociationSocket, before use) read-ahead, by a per-class subclass."""
    cls = type(sock)
    sub = _BUFFERED.get(cls)
    if sub is None:
        sub = _BUFFERED[cls] = type(f"ReadAhead{cls.__name__}", (ReadAhead, cls), {})
    sock.read_ahead = bytearray()
    sock.__class__ = sub
