"""``dl.store(..., deidentify=d)``: what is sent, de-identified first, whatever the
protocol.

Files are de-identified into a private temporary folder (each written whole) and sent
from there; data sets are de-identified in memory. The outcome table then names the
source files the user gave (not the temporary copies) and holds the new UIDs; a file
de-identification refused gets a row saying why and is not sent. The folder is removed
when the store ends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom.dataset import Dataset

from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import STORE
from dicomlab.deid import Deidentifier
from dicomlab.errors import DeidentificationError, ValidationError

__all__ = ["deidentified_store"]


def _entries(what: Any) -> list[Any]:
    if isinstance(what, pd.DataFrame):
        if "path" not in what.columns:
            raise ValidationError("a DataFrame to store needs a 'path' column (local.instances())")
        return list(what["path"])
    if isinstance(what, Dataset | str | os.PathLike):
        return [what]
    return list(what)


@contextmanager
def _outbox(what: Any, deid: Deidentifier) -> Iterator[tuple[list[Any], dict[str, str], list[Any]]]:
    """(what to send, temporary path -> source path, source rows that were refused)."""
    with tempfile.TemporaryDirectory(prefix="dicomlab-deid-") as tmp:
        send: list[Any] = []
        source_of: dict[str, str] = {}
        refused: list[Any] = []
        files: list[str | os.PathLike[str]] = []
        for entry in _entries(what):
            if isinstance(entry, Dataset):
                try:
                    send.append(deid.dataset(entry)[0])
                except DeidentificationError as exc:
                    refused.append((None, str(exc)))
            else:
                files.append(entry)
        if files:
            rows = deid.apply(files, Path(tmp))
            for row in rows.itertuples():
                if row.status == "ok":
                    send.append(row.path)
                    source_of[str(row.path)] = str(row.source)
                else:
                    refused.append((row.source, row.error))
        deid.flush()
        yield send, source_of, refused


def deidentified_store(
    node: Node,
    what: Any,
    deid: Deidentifier,
    send: Callable[[list[Any]], pd.DataFrame],
) -> pd.DataFrame:
    """``send`` (a protocol's store, waited for) given ``what`` de-identified by ``deid``;
    the outcome table with the source paths and a row per refused file."""
    with _outbox(what, deid) as (ready, source_of, refused):
        out = send(ready) if ready else STORE.empty()
    out = out.copy()
    if len(out):
        out["path"] = out["path"].map(lambda p: source_of.get(str(p), p) if p else p)
    extra = [
        STORE.row(node=node.name, path=source, status=None, error=f"not sent: {why}")
        for source, why in refused
    ]
    frame = pd.concat([out, STORE.frame(extra)], ignore_index=True) if extra else out
    frame.attrs.update(out.attrs)
    if extra:
        frame.attrs["complete"] = False
    return frame
