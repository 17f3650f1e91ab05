"""multipart/related bodies (RFC 2387, PS3.18 8.6.1.2): written as a stream of parts for
WADO-RS, read part by part for STOW-RS with python-multipart's streaming parser, each
part spooled to disk past a few MB, so no body is ever held whole in memory."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header

from dicomlab.errors import ValidationError

__all__ = [
    "Part",
    "RelatedReader",
    "media_type",
    "new_boundary",
    "part_head",
    "part_tail",
    "related_stream",
]

_SPOOL = 8 * 1024 * 1024
CHUNK = 1024 * 1024


def new_boundary() -> str:
    return "dicomlab-" + secrets.token_hex(12)


def media_type(header: str) -> tuple[str, dict[str, str]]:
    """A Content-Type or one Accept entry as (type, parameters), names lower-cased."""
    kind, params = parse_options_header(header)
    decoded = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()}
    return kind.decode("latin-1").strip().lower(), decoded


def part_head(boundary: str, content_type: str) -> bytes:
    """What comes before a part's body."""
    return f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()


def part_tail(boundary: str) -> bytes:
    """What ends the body."""
    return f"--{boundary}--\r\n".encode()


def related_stream(parts: Iterable[tuple[str, Iterable[bytes]]], boundary: str) -> Iterator[bytes]:
    """The body of a multipart/related answer: each (content type, chunks) as one part
    (each part's body ends with CRLF, which RFC 2046 puts before the next boundary)."""
    for content_type, chunks in parts:
        yield part_head(boundary, content_type)
        yield from chunks
        yield b"\r\n"
    yield part_tail(boundary)


def _spool() -> IO[bytes]:
    """A part's body: in memory up to 8 MB, then on disk; closed by :meth:`Part.close`."""
    return tempfile.SpooledTemporaryFile(_SPOOL)


@dataclass
class Part:
    """One received part: its headers and its body (a spooled temporary file)."""

    headers: dict[str, str] = field(default_factory=dict)
    body: IO[bytes] = field(default_factory=lambda: _spool())
    size: int = 0

    @property
    def content_type(self) -> str:
        return media_type(self.headers.get("content-type", "application/octet-stream"))[0]

    def read(self) -> bytes:
        self.body.seek(0)
        return self.body.read()

    def close(self) -> None:
        self.body.close()


class RelatedReader:
    """Feed a multipart/related body chunk by chunk; finished parts come out of
    :meth:`feed` as they complete (the caller stores and closes them)."""

    def __init__(self, content_type: str, max_part: int = 2**31) -> None:
        kind, params = media_type(content_type)
        if kind != "multipart/related":
            raise ValidationError(f"Content-Type {kind or '(none)'!r} is not multipart/related")
        boundary = params.get("boundary")
        if not boundary:
            raise ValidationError("the multipart/related Content-Type has no boundary")
        self.type = params.get("type", "")
        self.max_part = max_part
        self._done: list[Part] = []
        self._part: Part | None = None
        self._field = b""
        self._value = b""
        callbacks: dict[str, Any] = {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": self._on_field,
            "on_header_value": self._on_value,
            "on_header_end": self._header_end,
        }
        self._parser = MultipartParser(boundary.encode("latin-1"), callbacks)  # type: ignore[arg-type]
        self.parts_seen = 0

    def _begin(self) -> None:
        self._part = Part()

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is None:
            return
        part.size += end - start
        if part.size > self.max_part:
            raise ValidationError(f"a part is larger than {self.max_part} bytes")
        part.body.write(data[start:end])

    def _end(self) -> None:
        if self._part is not None:
            self._done.append(self._part)
            self.parts_seen += 1
        self._part = None

    def _on_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._part is not None:
            name = self._field.decode("latin-1").strip().lower()
            self._part.headers[name] = self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def feed(self, chunk: bytes) -> list[Part]:
        """Parse ``chunk``; the parts it completed."""
        try:
            self._parser.write(chunk)
        except ValidationError:
            raise
        except Exception as exc:  # python-multipart's MultipartParseError and kin
            raise ValidationError(f"the multipart body does not parse: {exc}") from exc
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        if self._part is not None:
            self._part.close()
            self._part = None
