"""A zip archive written as a stream of bytes (flat memory: one chunk at a time), from
files on disk, each optionally replaced by a converted copy."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable, Iterator

from dicomlab.server.web.multipart import CHUNK

__all__ = ["zip_stream"]


class _Sink(io.RawIOBase):
    """A write-only, unseekable buffer that is emptied after each chunk (zipfile then
    writes data descriptors, as it does to a pipe)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.buffer += b
        return len(b)

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


Convert = Callable[[str], bytes | None]


def zip_stream(
    entries: Iterable[tuple[str, str]], convert: Convert | None = None
) -> Iterator[bytes]:
    """The bytes of a zip holding each (name in the zip, path on disk), stored (DICOM
    pixel data barely deflates); ``convert(path)`` may give other bytes for a file."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, path in entries:
            data = convert(path) if convert is not None else None
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=True) as out:
                if data is not None:
                    out.write(data)
                else:
                    with open(path, "rb") as fh:
                        while block := fh.read(CHUNK):
                            out.write(block)
                            if len(sink.buffer) >= CHUNK:
                                yield sink.take()
            if sink.buffer:
                yield sink.take()
    if sink.buffer:
        yield sink.take()
