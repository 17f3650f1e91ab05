"""The archive index: one SQLite table (WAL) with what Q/R matching needs at every level.

Each row is an instance with its patient, study and series attributes copied
in (a small archive needs no joins). Values are stored decoded (Unicode names);
file paths are relative to the archive root.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomlab.core.indexrow import COLUMNS
from dicomlab.core.matching import condition
from dicomlab.core.models import DICOM_LEVEL, UNIQUE_KEY

__all__ = ["COLUMNS", "LEVEL_KEYS", "Index", "Match"]  # COLUMNS: core/indexrow


# Attributes that belong to each level (copied into answers at that level).
LEVEL_ATTRS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "STUDY": (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "InstitutionName",
    ),
    "SERIES": (
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
    ),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
LEVELS = tuple(DICOM_LEVEL.values())
LEVEL_KEYS = {DICOM_LEVEL[lv]: key for lv, key in UNIQUE_KEY.items()}


@dataclass(frozen=True, slots=True)
class Match:
    """One C-FIND match: attribute keyword -> value (strings, ints for counts)."""

    values: Mapping[str, Any]


def _attrs_up_to(level: str, root: str) -> list[str]:
    """Attributes of ``level`` and the levels above it (from the model's root)."""
    start = LEVELS.index(root)
    out: list[str] = []
    for lv in LEVELS[start : LEVELS.index(level) + 1]:
        out.extend(LEVEL_ATTRS[lv])
    return out


_LOCATE = (
    "path",
    "SOPClassUID",
    "TransferSyntaxUID",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "size",
)


@functools.lru_cache(maxsize=32)
def _insert_sql(keys: tuple[str, ...]) -> str:
    """The INSERT of a row with ``keys``, built once per set of keys (every stored instance
    asks)."""
    columns = ", ".join(f'"{k}"' for k in keys)
    return f"INSERT OR IGNORE INTO instances ({columns}) VALUES ({', '.join('?' * len(keys))})"


class Index:
    """SQLite index of an archive, safe to use from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        # timeout: how long a write waits for another writer (a worker process of the same
        # LocalPACS, a bulk import) before "database is locked"
        self._db = sqlite3.connect(
            self.path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f'"{k}" {t}' for k, (_, t) in COLUMNS.items())
        with self._lock:
            self._db.execute(f"CREATE TABLE IF NOT EXISTS instances ({cols})")
            for col in (
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "PatientID",
                "StudyDate",
                "AccessionNumber",
                "Modality",
            ):
                self._db.execute(f'CREATE INDEX IF NOT EXISTS ix_{col} ON instances("{col}")')
            # person names match case-insensitively (core/matching.py: lower(...) = ?)
            self._db.execute(
                'CREATE INDEX IF NOT EXISTS ix_lower_PatientName ON instances(lower("PatientName"))'
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing -------------------------------------------------------------
    def add(self, row: Mapping[str, Any]) -> bool:
        """Insert an instance row; False when the SOP Instance UID is already indexed."""
        keys = tuple(k for k in COLUMNS if k in row)
        sql = _insert_sql(keys)
        with self._lock:
            cur = self._db.execute(sql, [row[k] for k in keys])
            return cur.rowcount == 1

    def add_many(self, rows: Iterable[Mapping[str, Any]], batch: int = 10_000) -> int:
        """Insert many instance rows, ``batch`` per transaction (a bulk import, or an
        index rebuilt from its files); returns how many were new. Every row carries the
        same keys as the first."""
        added = 0
        keys: list[str] | None = None
        sql = ""
        chunk: list[list[Any]] = []

        def flush() -> None:
            nonlocal added
            if not chunk:
                return
            with self._lock:
                before = self._db.total_changes
                self._db.execute("BEGIN")
                try:
                    self._db.executemany(sql, chunk)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                added += self._db.total_changes - before
            chunk.clear()

        for row in rows:
            if keys is None:
                keys = [k for k in COLUMNS if k in row]
                sql = (
                    f"INSERT OR IGNORE INTO instances ({', '.join(f'{k!r}' for k in keys)}) "
                    f"VALUES ({', '.join('?' * len(keys))})"
                ).replace("'", '"')
            chunk.append([row[k] for k in keys])
            if len(chunk) >= batch:
                flush()
        flush()
        with self._lock:
            self._db.execute("ANALYZE")  # statistics for the planner, after a bulk load
        return added

    def plan(self, level: str, filters: Mapping[str, str]) -> list[str]:
        """SQLite's query plan (EXPLAIN QUERY PLAN details) of :meth:`find`'s query."""
        sql, params, _ = self._find_sql(level, filters)
        with self._lock:
            return [str(r[-1]) for r in self._db.execute("EXPLAIN QUERY PLAN " + sql, params)]

    def contains(self, sop_instance_uid: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "SELECT 1 FROM instances WHERE SOPInstanceUID = ?", (sop_instance_uid,)
            )
            return cur.fetchone() is not None

    def sop_class_of(self, sop_instance_uid: str) -> str | None:
        """The SOP Class UID of an instance held (None: not held)."""
        with self._lock:
            cur = self._db.execute(
                "SELECT SOPClassUID FROM instances WHERE SOPInstanceUID = ?", (sop_instance_uid,)
            )
            found = cur.fetchone()
        return None if found is None else str(found[0])

    def delete(self, where: str, params: Sequence[Any]) -> list[str]:
        """Delete matching rows; returns their relative paths."""
        with self._lock:
            paths = [
                r[0] for r in self._db.execute(f"SELECT path FROM instances WHERE {where}", params)
            ]
            self._db.execute(f"DELETE FROM instances WHERE {where}", params)
            return paths

    # -- reading -------------------------------------------------------------
    def rows(
        self, columns: Sequence[str] | None = None, where: str = "", params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        cols = ", ".join(f'"{c}"' for c in (columns or list(COLUMNS)))
        sql = f"SELECT {cols} FROM instances" + (f" WHERE {where}" if where else "")
        with self._lock:
            return list(
                self._db.execute(
                    sql + " ORDER BY StudyInstanceUID, SeriesInstanceUID, "
                    "CAST(InstanceNumber AS INTEGER)",
                    params,
                )
            )

    def supports(self, keyword: str) -> bool:
        """True when matching on ``keyword`` is supported (an indexed or computed attribute)."""
        return bool(COLUMNS.get(keyword, ("",))[0]) or keyword == "ModalitiesInStudy"

    def count_matching(self, filters: Mapping[str, str]) -> tuple[int, int]:
        """How many instances match ``filters``, and their total size in bytes."""
        where, params, _ = self._where(filters)
        sql = "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM instances" + (
            f" WHERE {where}" if where else ""
        )
        with self._lock:
            n, size = self._db.execute(sql, params).fetchone()
        return int(n), int(size)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    def _where(self, filters: Mapping[str, str]) -> tuple[str, list[Any], list[str]]:
        """SQL WHERE for the filters we can match; also the list of unmatched keywords."""
        parts: list[str] = []
        params: list[Any] = []
        unknown: list[str] = []
        for kw, value in filters.items():
            if kw == "ModalitiesInStudy":
                mods = [m for m in value.split("\\") if m]
                if len(mods) > 1:
                    cond, p = f"Modality IN ({', '.join('?' * len(mods))})", mods
                else:
                    cond, p = condition("Modality", "CS", value)
                if cond:
                    # per candidate study, through its index: the other filters (a date
                    # range, a patient) pick the candidates, not a scan for the modality
                    parts.append(
                        "EXISTS (SELECT 1 FROM instances AS m WHERE m.StudyInstanceUID = "
                        f"instances.StudyInstanceUID AND {cond.replace('Modality', 'm.Modality')})"
                    )
                    params.extend(p)
                continue
            if kw not in COLUMNS or not COLUMNS[kw][0]:
                unknown.append(kw)
                continue
            vr = COLUMNS[kw][0]
            if vr != "UI" and "\\" in value.strip("\\"):
                values = [v for v in value.split("\\") if v]
                subs = [condition(kw, vr, v, f'"{kw}"') for v in values]
                subs = [s for s in subs if s[0]]
                if subs:
                    parts.append("(" + " OR ".join(s[0] for s in subs) + ")")
                    for s in subs:
                        params.extend(s[1])
                continue
            cond, p = condition(kw, vr, value, f'"{kw}"')
            if cond:
                parts.append(cond)
                params.extend(p)
        return " AND ".join(parts), params, unknown

    def paths(self, filters: Mapping[str, str]) -> list[tuple[str, str, str]]:
        """``(path, SOPClassUID, TransferSyntaxUID)`` of every instance matching ``filters``."""
        where, params, _ = self._where(filters)
        return [
            (r[0], r[1], r[2])
            for r in self.rows(["path", "SOPClassUID", "TransferSyntaxUID"], where, params)
        ]

    def locate(self, filters: Mapping[str, str]) -> list[dict[str, Any]]:
        """Where each instance matching ``filters`` is, with its UIDs, in study, series
        and instance number order (what a WADO-RS retrieve or a zip streams)."""
        where, params, _ = self._where(filters)
        names = list(_LOCATE)
        return [dict(zip(names, r, strict=True)) for r in self.rows(names, where, params)]

    def find(
        self, level: str, filters: Mapping[str, str], root: str = "PATIENT"
    ) -> Iterator[dict[str, Any]]:
        """Matches at ``level`` for the query ``filters``, one dict per match (streamed).

        Each dict holds the level's attributes, those of the levels above it, and
        the computed counts (NumberOf...Related..., ModalitiesInStudy...).
        """
        sql, params, names = self._find_sql(level, filters)
        # A connection of its own: matches stream out in batches (bounded memory, even
        # for 50,000 of them) while other threads keep writing through the main one.
        reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            cursor = reader.execute(sql, params)
            while batch := cursor.fetchmany(500):
                for row in batch:
                    yield dict(zip(names, row, strict=True))
        finally:
            reader.close()

    def _find_sql(self, level: str, filters: Mapping[str, str]) -> tuple[str, list[Any], list[str]]:
        """:meth:`find`'s SQL, its parameters and the names of its columns."""
        if level not in LEVEL_KEYS:
            raise ValueError(f"query level {level!r} is not one of {list(LEVEL_KEYS)}")
        key = LEVEL_KEYS[level]
        where, params, _ = self._where(filters)
        # Patient attributes are answered at every level (Study Root includes them).
        attrs = _attrs_up_to(level, "PATIENT")
        if key not in attrs:
            attrs.append(key)
        select = [f'MIN("{a}") AS "{a}"' for a in attrs if a != key]
        select.append('MIN("SpecificCharacterSet") AS "SpecificCharacterSet"')
        computed = {
            "PATIENT": [
                ("NumberOfPatientRelatedStudies", "COUNT(DISTINCT StudyInstanceUID)"),
                ("NumberOfPatientRelatedSeries", "COUNT(DISTINCT SeriesInstanceUID)"),
                ("NumberOfPatientRelatedInstances", "COUNT(*)"),
            ],
            "STUDY": [
                ("NumberOfStudyRelatedSeries", "COUNT(DISTINCT SeriesInstanceUID)"),
                ("NumberOfStudyRelatedInstances", "COUNT(*)"),
                ("ModalitiesInStudy", "GROUP_CONCAT(DISTINCT Modality)"),
                ("SOPClassesInStudy", "GROUP_CONCAT(DISTINCT SOPClassUID)"),
            ],
            "SERIES": [("NumberOfSeriesRelatedInstances", "COUNT(*)")],
            "IMAGE": [],
        }[level]
        select.extend(f'{expr} AS "{name}"' for name, expr in computed)
        inner = f'SELECT DISTINCT "{key}" FROM instances' + (f" WHERE {where}" if where else "")
        sql = (
            f'SELECT "{key}", {", ".join(select)} FROM instances '
            f'WHERE "{key}" IN ({inner}) GROUP BY "{key}" ORDER BY MIN(StudyDate), "{key}"'
        )
        names = [key] + [a for a in attrs if a != key] + ["SpecificCharacterSet"]
        names += [n for n, _ in computed]
        return sql, params, names

    def table(self, columns: Iterable[str]) -> list[tuple[Any, ...]]:
        return self.rows(list(columns))
