"""Reproducible pull bundles: a named cohort's queries, the studies they found, what
changed on the PACS since, and every transfer, in one folder.

``Cohort(name, node, queries)`` keeps ``DICOMLAB_HOME/cohorts/<name>/`` (or
``folder=``):

- ``manifest.json``: the node, the queries (described), and one entry per run (when,
  how many studies, what changed, what was transferred, the retrieve's job id);
- ``studies.parquet``: the study list of the last run; ``snapshots/<run>.parquet``
  each run's;
- ``changes/<run>.parquet``: what changed on the PACS since the run before (a new
  study, a study gone, instances added or removed, attributes changed);
- ``transfers/<run>.parquet``: the retrieve's outcome table.

:meth:`Cohort.pull` asks the queries again (``plan="auto"``: capped archives give
every match), compares with the last run, and retrieves only what the archive does
not hold yet. The bundle holds no PHI unless ``phi=True``: study rows keep their UIDs,
modalities and counts only (names, IDs, birth dates, accession numbers, dates and
descriptions are left out).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dicomlab.core.atomic import replace_file, replace_text
from dicomlab.core.items import count_of
from dicomlab.core.nodebook import NodeBook, home
from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import RETRIEVE, Dtype, typed
from dicomlab.core.query import Query
from dicomlab.errors import ValidationError
from dicomlab.front import find, retrieve
from dicomlab.server.localpacs import LocalPACS

__all__ = ["CHANGES", "SAFE_COLUMNS", "Cohort"]

log = logging.getLogger(__name__)

SAFE_COLUMNS = (
    "StudyInstanceUID",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
"""What a study row of a bundle keeps without ``phi=True``."""
CHANGES: tuple[tuple[str, Dtype], ...] = (
    ("change", "string"),  # new study, study removed, instances added, instances removed,
    # attributes changed
    ("StudyInstanceUID", "string"),
    ("instances_before", "Int64"),
    ("instances_after", "Int64"),
    ("detail", "string"),
)
"""The columns of a cohort's changes table, and their dtypes."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_N = "NumberOfStudyRelatedInstances"


class Cohort:
    """A named, reproducible pull: see the module. ``queries``: study-level
    :class:`dl.Query` objects (one or several); ``accessions``: accession numbers to
    find (one query each, batched), instead of or beside the queries."""

    def __init__(
        self,
        name: str,
        node: Node | str,
        queries: Query | Sequence[Query] = (),
        *,
        accessions: Iterable[str] | None = None,
        folder: str | os.PathLike[str] | None = None,
        book: NodeBook | None = None,
        calling_ae: str | None = None,
        phi: bool = False,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValidationError(
                f"cohort name {name!r} is not valid", hint="use 1-64 letters, digits, '_.-'"
            )
        self.queries = [queries] if isinstance(queries, Query) else list(queries)
        for q in self.queries:
            if not isinstance(q, Query) or q.level != "study":
                raise ValidationError(f"a cohort's queries are study-level dl.Query, got {q!r}")
        self.accessions = [str(a) for a in accessions] if accessions is not None else []
        if not self.queries and not self.accessions:
            raise ValidationError("a cohort needs queries or accessions")
        if not isinstance(phi, bool):
            raise ValidationError(f"phi={phi!r} must be True or False")
        self.name, self.node, self.book, self.calling_ae, self.phi = (
            name,
            node,
            book,
            calling_ae,
            phi,
        )
        self.folder = Path(folder) if folder is not None else home() / "cohorts" / name
        self.changes: pd.DataFrame = _changes([])

    def __repr__(self) -> str:
        return f"Cohort({self.name!r}, runs={len(self.runs())}, folder={str(self.folder)!r})"

    # -- what the PACS holds now -------------------------------------------------------
    def resolve(self) -> pd.DataFrame:
        """The cohort's studies on the node now (each once), nothing written."""
        frames = [self._find(q) for q in self.queries]
        if self.accessions:
            q = Query.studies(AccessionNumber=self.accessions)
            frames.append(self._find(q).drop(columns=["query_value"], errors="ignore"))
        out = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
        out = out.drop_duplicates(subset="StudyInstanceUID", ignore_index=True)
        return out

    def _find(self, query: Query) -> pd.DataFrame:
        df = find(
            self.node,
            query,
            book=self.book,
            calling_ae=self.calling_ae,
            plan="auto",
            warn=False,
        )
        if not df.attrs.get("complete"):
            raise ValidationError(
                f"cohort {self.name!r}: the query {query.describe()} came back incomplete "
                f"({df.attrs.get('error')}): not pulling a partial cohort"
            )
        return df

    # -- the bundle ----------------------------------------------------------------------
    def studies(self) -> pd.DataFrame:
        """The study list of the last run (empty before the first)."""
        path = self.folder / "studies.parquet"
        if not path.exists():
            return pd.DataFrame(columns=list(SAFE_COLUMNS))
        return pd.read_parquet(path)

    def runs(self) -> pd.DataFrame:
        """One row per run: ``run``, ``when``, ``studies``, ``new``, ``removed``,
        ``changed``, ``transferred``, ``complete``, ``job_id``."""
        return pd.DataFrame(self._manifest().get("runs", []))

    def _manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def diff(self, now: pd.DataFrame | None = None) -> pd.DataFrame:
        """What changed on the node since the last run (:data:`CHANGES`); nothing written."""
        return _diff(self.studies(), self.resolve() if now is None else now, self.phi)

    def pull(
        self,
        into: Any = None,
        *,
        method: str | None = None,
        max_connections: int | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Ask again, record what changed, retrieve what the archive lacks: new studies,
        studies with instances added, and any study an earlier run did not finish.
        Returns the retrieve's outcome table (empty when nothing was needed);
        :attr:`changes` holds what changed; ``df.attrs["changes"]`` counts it."""
        local = into if isinstance(into, LocalPACS) else None
        now = self.resolve()
        changes = _diff(self.studies(), now, self.phi)
        if local is None:
            local = LocalPACS.default(self.book) if into is None else None
        needed = now[[_lacks(local, r) for r in _records(now).values()]] if local else now
        if len(needed):
            out = retrieve(
                self.node,
                needed,
                into=local if local is not None else into,
                method=method,
                max_connections=max_connections,
                progress=progress,
                book=self.book,
                calling_ae=self.calling_ae,
            )
            assert isinstance(out, pd.DataFrame)
        else:
            out = RETRIEVE.empty()
            out.attrs["complete"] = True
        counts = changes["change"].value_counts().to_dict()
        self._save(now, changes, out, counts)
        self.changes = changes
        out.attrs["changes"] = {str(k): int(v) for k, v in counts.items()}
        return out

    def _save(
        self, now: pd.DataFrame, changes: pd.DataFrame, out: pd.DataFrame, counts: dict[Any, int]
    ) -> None:
        run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        kept = now if self.phi else now[[c for c in SAFE_COLUMNS if c in now.columns]]
        kept = kept.reset_index(drop=True)
        _write_parquet(kept, self.folder / "snapshots" / f"{run}.parquet")
        _write_parquet(kept, self.folder / "studies.parquet")
        _write_parquet(changes, self.folder / "changes" / f"{run}.parquet")
        _write_parquet(out.reset_index(drop=True), self.folder / "transfers" / f"{run}.parquet")
        manifest = self._manifest()
        node = self.node if isinstance(self.node, str) else self.node.name
        manifest.update(
            name=self.name,
            node=node,
            queries=[q.describe() for q in self.queries],
            accessions=len(self.accessions),
            phi=self.phi,
        )
        job = out.attrs.get("job_id")
        manifest.setdefault("runs", []).append(
            {
                "run": run,
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "studies": len(now),
                "new": int(counts.get("new study", 0)),
                "removed": int(counts.get("study removed", 0)),
                "changed": int(sum(v for k, v in counts.items() if k not in ("new study",))),
                "transferred": len(out),
                "complete": bool(out.attrs.get("complete", True)),
                "job_id": job or None,
            }
        )
        replace_text(self.folder / "manifest.json", json.dumps(manifest, indent=2))


def _lacks(local: Any, row: dict[str, Any]) -> bool:
    """Whether the archive holds fewer instances of the study than the node lists."""
    held, _ = local.archive.index.count_matching({"StudyInstanceUID": row["StudyInstanceUID"]})
    expected = count_of(row.get(_N))
    return held == 0 or (expected is not None and held < expected)


def _records(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {
        str(r["StudyInstanceUID"]): {str(k): v for k, v in r.items()} for r in df.to_dict("records")
    }


def _diff(before: pd.DataFrame, now: pd.DataFrame, phi: bool) -> pd.DataFrame:
    """The changes from ``before`` to ``now`` (two study lists)."""
    old, new = _records(before), _records(now)
    compared = [c for c in (now.columns if phi else SAFE_COLUMNS) if c in before.columns]
    rows: list[dict[str, Any]] = []
    for uid, r in new.items():
        if uid not in old:
            rows.append(_row("new study", uid, None, r.get(_N), ""))
            continue
        a, b = count_of(old[uid].get(_N)), count_of(r.get(_N))
        if a is not None and b is not None and a != b:
            kind = "instances added" if b > a else "instances removed"
            rows.append(_row(kind, uid, a, b, f"{abs(b - a)} instance(s)"))
        moved = [
            c for c in compared if c not in (_N, "StudyInstanceUID") and _differs(old[uid], r, c)
        ]
        if moved:
            rows.append(_row("attributes changed", uid, a, b, ", ".join(moved)))
    for uid, r in old.items():
        if uid not in new:
            rows.append(_row("study removed", uid, count_of(r.get(_N)), None, ""))
    return _changes(rows)


def _differs(a: dict[str, Any], b: dict[str, Any], column: str) -> bool:
    x, y = a.get(column), b.get(column)
    if (x is None or pd.isna(x)) and (y is None or pd.isna(y)):
        return False
    return str(x) != str(y)


def _row(change: str, uid: str, before: Any, after: Any, detail: str) -> dict[str, Any]:
    return {
        "change": change,
        "StudyInstanceUID": uid,
        "instances_before": count_of(before),
        "instances_after": count_of(after),
        "detail": detail,
    }


def _changes(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[c for c, _ in CHANGES])
    return typed(df, dict(CHANGES))


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    plain = df.copy()
    plain.attrs = {}  # run facts live in the manifest, not in each table's metadata
    replace_file(path, lambda tmp: plain.to_parquet(tmp, index=False))
