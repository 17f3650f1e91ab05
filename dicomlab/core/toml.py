"""A tiny TOML writer for the node book, and line lookup for error messages.

Reading uses the standard library's ``tomllib``. Writing needs only tables of
strings, integers, floats and booleans, so a dependency is not worth it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps", "line_of", "parse_error_line"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write non-finite float {v!r} to TOML")
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are valid TOML basic-string escapes.
        # TOML forbids DEL and control characters unescaped; json leaves DEL as is.
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} to TOML")


def dumps(doc: Mapping[str, Any], header: str = "") -> str:
    """Serialise nested mappings of scalars to TOML text (tables after plain keys)."""
    lines: list[str] = [f"# {line}".rstrip() for line in header.splitlines()]

    def emit(table: Mapping[str, Any], path: tuple[str, ...]) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
        if path and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        for k, v in scalars:
            if v is not None:
                lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in tables:
            emit(v, (*path, k))

    emit(doc, ())
    return "\n".join(lines) + "\n"


_ERR_LINE = re.compile(r"line (\d+)")


def parse_error_line(message: str, text: str = "") -> int | None:
    """The line number in a ``tomllib.TOMLDecodeError`` message, if any.

    Errors "at end of document" are placed on the last line of ``text``.
    """
    m = _ERR_LINE.search(message)
    if m:
        return int(m.group(1))
    if "end of document" in message and text:
        return max(1, len(text.splitlines()))
    return None


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*(\"[^\"]*\"|[A-Za-z0-9_-]+)\s*=")


def _split_header(h: str) -> tuple[str, ...]:
    parts = re.findall(r'"[^"]*"|[^.\s]+', h)
    return tuple(p.strip('"') for p in parts)


def line_of(text: str, table: tuple[str, ...], key: str | None = None) -> int | None:
    """1-based line of ``key`` inside ``[table]`` (or of the table header), if found."""
    current: tuple[str, ...] = ()
    header_line: int | None = 1 if not table else None
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            current = _split_header(m.group(1))
            if current == table:
                header_line = number
            continue
        if key is not None and current == table:
            a = _ASSIGN.match(line)
            if a and a.group(1).strip('"') == key:
                return number
    if key is not None:
        # The key may be a table of its own ([key] or [key.sub]): name its header.
        for number, line in enumerate(text.splitlines(), start=1):
            m = _HEADER.match(line)
            if m and _split_header(m.group(1))[: len(table) + 1] == (*table, key):
                return number
    return header_line
