"""Start writing a file's pages to disk while more of it is still to come.

A received instance whose file is begun while it arrives (:class:`archive.Incoming`) is
fsynced once whole, before it is acknowledged. Asking the kernel to start writing each
part as it is written (Linux ``sync_file_range(..., SYNC_FILE_RANGE_WRITE)``: it waits
for nothing, and leaves the pages cached) lets the disk work while the rest arrives,
so the fsync waits only for the last part and the file's metadata. Elsewhere (or
without the call) it does nothing: the fsync alone writes everything, as before.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

__all__ = ["PAGE", "available", "start"]

PAGE = 4096
"""Writeback goes by whole pages: a part is started up to its last full page, so the
page the next part continues is written once."""

_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range  # the GIL is released
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _load()


def available() -> bool:
    """Whether :func:`start` does anything here."""
    return _SYNC_FILE_RANGE is not None


def start(fd: int, begin: int, end: int) -> int:
    """Start writing bytes ``begin`` up to the last full page before ``end`` of ``fd``;
    where the next call should begin. A failure is ignored: the fsync that follows
    writes (and reports) everything."""
    stop = end - end % PAGE
    if _SYNC_FILE_RANGE is None or stop <= begin:
        return begin
    _SYNC_FILE_RANGE(fd, begin, stop - begin, _SYNC_FILE_RANGE_WRITE)
    return stop
