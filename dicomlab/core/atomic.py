"""Files replaced whole: written beside their place under a temporary name, then renamed
(a reader never sees half a file; a crash leaves at worst a ``.*.tmp`` beside it)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["replace_file", "replace_text"]


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def replace_text(path: Path, text: str) -> None:
    """``path`` replaced by ``text`` (UTF-8)."""
    replace_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
