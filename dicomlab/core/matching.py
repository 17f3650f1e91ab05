"""C-FIND attribute matching (PS3.4 C.2.2.2) as SQL conditions (pure).

One function, :func:`condition`, turns a keyword and the value a query sent
into an SQL fragment and its parameters, following the standard's rules:

- empty value: universal matching (no condition);
- ``*`` and ``?``: wild card matching (``GLOB``; case-insensitive for PN);
- ``A-B``, ``A-``, ``-B`` on DA, TM and DT: range matching (inclusive);
- ``A\\B\\C`` on UI: list of UID matching;
- anything else: single value matching (case-insensitive for PN).
"""

from __future__ import annotations

import re

__all__ = ["condition", "glob_pattern", "is_wildcard", "range_bounds"]

_RANGE_VRS = {"DA", "TM", "DT"}


def is_wildcard(value: str) -> bool:
    """True when ``value`` uses ``*`` or ``?``."""
    return "*" in value or "?" in value


def glob_pattern(value: str) -> str:
    """A SQLite GLOB pattern for a DICOM wildcard value (``[`` escaped)."""
    return re.sub(r"\[", "[[]", value)


def _pad_upper(vr: str, value: str) -> str:
    """Make an upper bound inclusive of everything it prefixes (``12`` -> ``12:59:59``)."""
    if vr == "TM":
        return value.ljust(13, "9")  # "12" -> "1299999999999" >= any 12hhmm.ffffff
    if vr == "DT":
        return value + "~"  # '~' sorts after digits, '.', '+' and '-'
    return value


def range_bounds(vr: str, value: str) -> tuple[str | None, str | None]:
    """``(low, high)`` of a range value; either may be ``None`` (open)."""
    low, _, high = value.partition("-")
    return (low or None, _pad_upper(vr, high) if high else None)


def condition(
    keyword: str, vr: str, value: str, column: str | None = None
) -> tuple[str, list[str]]:
    """SQL condition and parameters matching ``column`` against a query value.

    Returns ``("", [])`` for universal matching.
    """
    col = column or keyword
    value = value.strip(" ") if vr != "UI" else value.strip("\x00 ")
    if value in ("", "*"):
        return "", []
    if vr == "UI" and "\\" in value:
        uids = [u for u in value.split("\\") if u]
        return f"{col} IN ({', '.join('?' * len(uids))})", uids
    if vr in _RANGE_VRS and "-" in value and not is_wildcard(value):
        if vr == "DT" and re.fullmatch(r"\d+[+-]\d{4}", value):
            return f"{col} = ?", [value]  # a timezone offset, not a range
        low, high = range_bounds(vr, value)
        parts, params = [], []
        if low is not None:
            parts.append(f"{col} >= ?")
            params.append(low)
        if high is not None:
            parts.append(f"{col} <= ?")
            params.append(high)
        parts.append(f"{col} != ''")
        return " AND ".join(parts), params
    if vr == "PN":
        if is_wildcard(value):
            return f"lower({col}) GLOB ?", [glob_pattern(value.lower())]
        return f"lower({col}) = ?", [value.lower()]
    if is_wildcard(value):
        return f"{col} GLOB ?", [glob_pattern(value)]
    if vr == "TM":
        # "101500" matches "101500.123"; precision beyond the query is ignored.
        return f"({col} = ? OR {col} GLOB ?)", [value, glob_pattern(value) + "*"]
    return f"{col} = ?", [value]
