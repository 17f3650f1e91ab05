"""Same-process trust: which connections to a LocalPACS were opened by this very process.

A notebook that starts ``dl.LocalPACS(root)`` and then calls ``dl.store(local.node,
...)`` should not have to register its own AE title: both ends are the same kernel.
AE titles prove nothing (anyone can send ours), so trust rests on the connection
itself. dicomlab's client socket (:mod:`dicomlab.net.transport`) registers every TCP
connection it opens here, by its two addresses; a LocalPACS looks up each accepted
connection by the same pair, seen from its side. The kernel keeps a (source, destination)
pair unique while a connection is open, so only a socket of this process can match, and a
closed socket no longer counts (its port may then be reused by another process).
"""

from __future__ import annotations

import socket
import threading
import weakref
from typing import Any

__all__ = ["is_own_connection", "register_client"]

Address = tuple[str, int]

_LOCK = threading.Lock()
_OPEN: dict[tuple[Address, Address], weakref.ref[socket.socket]] = {}


def _address(raw: Any) -> Address | None:
    if isinstance(raw, tuple) and len(raw) >= 2:
        return str(raw[0]), int(raw[1])
    return None  # a Unix socket or socketpair: never a LocalPACS client connection


def _is_open(sock: socket.socket | None) -> bool:
    return sock is not None and sock.fileno() != -1


def register_client(sock: socket.socket) -> None:
    """Remember a connected client socket of this process (call right after connect)."""
    try:
        pair = (_address(sock.getsockname()), _address(sock.getpeername()))
    except OSError:
        return
    if pair[0] is None or pair[1] is None:
        return
    with _LOCK:
        # Forget closed sockets as we go: the table holds only open connections.
        for key in [k for k, ref in _OPEN.items() if not _is_open(ref())]:
            del _OPEN[key]
        _OPEN[(pair[0], pair[1])] = weakref.ref(sock)


def is_own_connection(sock: Any) -> bool:
    """Whether the accepted connection ``sock`` comes from an open client socket of this
    process (its peer address is that socket's own address, and the reverse)."""
    if sock is None:
        return False
    try:
        here, there = _address(sock.getsockname()), _address(sock.getpeername())
    except OSError:
        return False
    if here is None or there is None:
        return False
    with _LOCK:
        ref = _OPEN.get((there, here))
    return _is_open(ref() if ref is not None else None)
