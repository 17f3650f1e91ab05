"""Gathered writes: many buffers in one system call (``os.writev``, ``socket.sendmsg``),
without joining them first (a received data set written from the socket's buffer, a
file's data set sent from where it was read), continued after a partial write.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence

__all__ = ["IOV_MAX", "write_all"]

IOV_MAX = 512
"""Buffers per call (POSIX guarantees at least 16; Linux takes 1,024)."""


def write_all(write: Callable[[list[memoryview]], int], parts: Sequence[memoryview]) -> int:
    """Give every byte of ``parts`` to ``write`` (which takes a list of buffers and answers
    how many bytes it took); the total. A write that takes nothing raises OSError.

    The views it makes of ``parts`` are released before it returns or raises: ``parts``
    may be views of a buffer that cannot be resized while one lives on (in a traceback
    kept by a log record, for one)."""
    total = 0
    pending = [p for p in parts if p.nbytes]
    made: list[memoryview] = []
    try:
        while pending:
            n = write(pending[:IOV_MAX])
            if n <= 0:
                raise OSError(errno.EIO, "the write took no bytes")
            total += n
            while pending and n >= pending[0].nbytes:
                n -= pending.pop(0).nbytes
            if n:
                pending[0] = pending[0][n:]
                made.append(pending[0])
        return total
    finally:
        for view in made:
            view.release()
