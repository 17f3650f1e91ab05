"""What dicomlab has learned about a node: the result cap its C-FIND stops at.

One JSON file, ``profiles.json`` in :func:`dicomlab.core.nodebook.home`, keyed by the
node's address (``AE@host:port`` or its DICOMweb URL), so that a cap learned in one
kernel is known to the next. Written to a temporary name, then renamed (never half a
file); a file that cannot be read is treated as empty and logged.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dicomlab.core.atomic import replace_text
from dicomlab.core.nodebook import home
from dicomlab.core.nodes import Node

__all__ = ["CapProfile", "forget_cap", "learned_cap", "remember_cap"]

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_FILE = "profiles.json"


@dataclass(frozen=True, slots=True)
class CapProfile:
    """A learned cap: ``cap`` matches, ``how`` it showed (``"cut"``, ``"capped"``,
    ``"probed"``), ``learned`` (UTC, ISO 8601)."""

    cap: int
    how: str
    learned: str


def _path() -> Path:
    return home() / _FILE


def _read(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("node profiles %s unreadable (%s): starting afresh", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, dict[str, object]]) -> None:
    replace_text(path, json.dumps(data, indent=2, sort_keys=True))


def learned_cap(node: Node) -> CapProfile | None:
    """The cap learned for ``node`` (None: none learned)."""
    entry = _read(_path()).get(node.address)
    cap = entry.get("cap") if isinstance(entry, dict) else None
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        return None
    assert isinstance(entry, dict)
    return CapProfile(cap, str(entry.get("how", "")), str(entry.get("learned", "")))


def remember_cap(node: Node, cap: int, how: str) -> CapProfile:
    """Record that ``node`` caps its answers at ``cap`` matches (kept when lower)."""
    with _LOCK:
        path = _path()
        data = _read(path)
        old = data.get(node.address, {})
        old_cap = old.get("cap") if isinstance(old, dict) else None
        if isinstance(old_cap, int) and 0 < old_cap <= cap:
            return CapProfile(old_cap, str(old.get("how", "")), str(old.get("learned", "")))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        data[node.address] = {"cap": cap, "how": how, "learned": now}
        _write(path, data)
        log.info("%s caps C-FIND answers at %d matches (%s)", node.address, cap, how)
        return CapProfile(cap, how, now)


def forget_cap(node: Node) -> None:
    """Forget what was learned about ``node``'s cap (after the archive changed)."""
    with _LOCK:
        path = _path()
        data = _read(path)
        if data.pop(node.address, None) is not None:
            _write(path, data)
