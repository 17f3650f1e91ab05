"""A LocalPACS's modality worklist: the table a notebook fills, kept on disk, served to
Modality Worklist FIND, and updated when a scheduled study arrives.

The items live in ``root/worklist.json`` (written whole under a temporary name at
every change, so a kernel restart finds them again). Matching is
:mod:`dicomlab.core.worklist`'s.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydicom.dataset import Dataset

from dicomlab.core import worklist as wl
from dicomlab.core import worklist_match as match
from dicomlab.errors import ValidationError

__all__ = ["OnArrival", "Worklist"]

log = logging.getLogger(__name__)

OnArrival = Literal["done", "remove", "keep"]
_ON_ARRIVAL = ("done", "remove", "keep")


class Worklist:
    """The scheduled procedure steps a LocalPACS serves (``local.worklist``).

    >>> # local.worklist.add(df)      # one row per step, columns by DICOM keyword
    >>> # local.worklist.frame()      # every item, with a ``done`` column
    >>> # local.worklist.mark_done(accession="A1"); local.worklist.remove(accession="A1")

    ``on_arrival``: what happens to the items of an accession number when a study with
    that accession number is stored: ``"done"`` (default: kept in the table, no longer
    served), ``"remove"`` (as Orthanc's worklist plugin can) or ``"keep"``.
    """

    def __init__(self, path: str | os.PathLike[str], on_arrival: OnArrival = "done") -> None:
        if on_arrival not in _ON_ARRIVAL:
            raise ValidationError(f"on_arrival={on_arrival!r} is not one of {list(_ON_ARRIVAL)}")
        self.path = Path(path)
        self.on_arrival: OnArrival = on_arrival
        self._lock = threading.Lock()
        self._items: list[wl.WorklistItem] = []
        self._served: list[wl.WorklistItem] = []  # the open items
        self._scheduled: frozenset[str] = frozenset()  # their accession numbers
        self._keep(self._load())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        open_ = sum(not i.done for i in self._items)
        return f"Worklist({len(self._items)} items, {open_} scheduled, {str(self.path)!r})"

    # -- the table -------------------------------------------------------------------
    def add(self, df: pd.DataFrame) -> pd.DataFrame:
        """Add the steps of ``df`` (checked whole first: a bad value refuses them all,
        quoting it); a step already in the table (same accession number and step ID) is
        refused. Returns the added items as the table shows them."""
        new = wl.items_from_frame(df)
        with self._lock:
            held = {i.key for i in self._items if i.key[0]}
            again = [i.key for i in new if i.key[0] and i.key in held]
            if again:
                raise ValidationError(
                    f"worklist already holds AccessionNumber {again[0][0]!r} step "
                    f"{again[0][1]!r}: remove it first, or use replace()"
                )
            self._set([*self._items, *new])
        return wl.frame_of(new)

    def replace(self, df: pd.DataFrame) -> pd.DataFrame:
        """Make ``df`` the whole table."""
        new = wl.items_from_frame(df)
        with self._lock:
            self._set(new)
        return wl.frame_of(new)

    def frame(self) -> pd.DataFrame:
        """Every item (typed columns by keyword, and ``done``)."""
        with self._lock:
            items = list(self._items)
        return wl.frame_of(items)

    def mark_done(self, accession: str | None = None, step: str | None = None) -> int:
        """Mark the items of ``accession`` (and ``step``, its Scheduled Procedure Step
        ID) done: they stay in the table and are no longer served. Returns how many."""
        return self._update(accession, step, _as_done)

    def remove(self, accession: str | None = None, step: str | None = None) -> int:
        """Remove the items of ``accession`` (and ``step``); returns how many."""
        return self._update(accession, step, lambda i: None)

    def clear(self) -> None:
        with self._lock:
            self._set([])

    def write_files(self, folder: str | os.PathLike[str]) -> list[Path]:
        """The open items as ``.wl`` files (one DICOM data set each) in ``folder``, the
        form dcmtk's ``wlmscpfs`` and Orthanc's worklist plugin read. wlmscpfs ignores an
        item that lacks an attribute of :data:`dicomlab.core.worklist.COMPLETE`: such
        items are written, and named in a warning."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, item in enumerate(self._open()):
            lacking = item.missing()
            if lacking:
                log.warning(
                    "worklist item %s/%s lacks %s: dcmtk's wlmscpfs will ignore it",
                    *item.key,
                    ", ".join(lacking),
                )
            path = out / f"item{n:05d}.wl"
            tmp = path.with_suffix(".tmp")
            wl.to_dataset(item).save_as(tmp, implicit_vr=False, little_endian=True)
            os.replace(tmp, path)
            paths.append(path)
        return paths

    # -- serving ---------------------------------------------------------------------
    def _open(self) -> list[wl.WorklistItem]:
        """The items not done (the ones served), kept until the table changes."""
        with self._lock:
            return self._served

    def find(self, key: Dataset, implicit: bool = True) -> Iterator[Dataset]:
        """The responses to a Modality Worklist FIND identifier, one per matching item,
        encoded for Implicit (or Explicit) VR Little Endian."""
        compiled = match.plan(key)
        for item in self._open():
            values = item.mapping
            if compiled.matches(values):
                yield compiled.answer(values, implicit)

    def arrived(self, row: dict[str, Any]) -> None:
        """A study was stored: its accession number's items follow ``on_arrival``."""
        accession = str(row.get("AccessionNumber") or "").strip()
        if not accession or self.on_arrival == "keep":
            return
        if accession not in self._scheduled:  # every stored instance asks: a set lookup
            return
        if self.on_arrival == "remove":
            n = self.remove(accession)
        else:
            n = self._update(accession, None, _as_done, open_only=True)
        if n:
            log.info("worklist: accession %s arrived, %d item(s) %s", accession, n, self.on_arrival)

    # -- inside ----------------------------------------------------------------------
    def _update(
        self, accession: str | None, step: str | None, change: Any, open_only: bool = False
    ) -> int:
        if not accession:
            raise ValidationError("say which items: accession='...' (and step='...')")
        n = 0
        kept: list[wl.WorklistItem] = []
        with self._lock:
            for item in self._items:
                chosen = item.key[0] == accession and (step is None or item.key[1] == step)
                if chosen and not (open_only and item.done):
                    n += 1
                    item = change(item)
                if item is not None:
                    kept.append(item)
            if n:
                self._set(kept)
        return n

    def _set(self, items: list[wl.WorklistItem]) -> None:
        """Replace the items and write them (the lock is held)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        data = [{"values": i.mapping, "done": i.done} for i in items]
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
        self._keep(items)

    def _keep(self, items: list[wl.WorklistItem]) -> None:
        """The items, the open ones and their accession numbers (derived once here)."""
        self._items = items
        self._served = [i for i in items if not i.done]
        self._scheduled = frozenset(i.key[0] for i in self._served if i.key[0])

    def _load(self) -> list[wl.WorklistItem]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read the worklist {self.path}: {exc}") from exc
        return [
            wl.WorklistItem(
                tuple((k, d["values"][k]) for k in wl.ITEM_KEYS if k in d["values"]),
                bool(d.get("done")),
            )
            for d in data
        ]


def _as_done(item: wl.WorklistItem) -> wl.WorklistItem:
    return wl.WorklistItem(item.values, True)
