"""The archive index at scale: bulk loading through its own API, and query plans that
use an index for every filtered C-FIND (EXPLAIN QUERY PLAN), so a query's cost follows
its matches, not the archive's size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dicomlab.server.index import Index
from dicomlab.testing.indexrows import index_row


def _row(i: int) -> dict[str, Any]:
    return index_row(i, per_series=5)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    ix = Index(tmp_path_factory.mktemp("index") / "index.sqlite")
    assert ix.add_many(_row(i) for i in range(30_000)) == 30_000
    yield ix
    ix.close()


def test_bulk_loading_counts_only_new_rows(tmp_path: Path) -> None:
    ix = Index(tmp_path / "i.sqlite")
    assert ix.add_many((_row(i) for i in range(250)), batch=100) == 250
    assert ix.add_many((_row(i) for i in range(200, 300)), batch=64) == 50  # 200-249 known
    assert ix.count() == 300 and ix.contains("2.25.1299")
    ix.close()


FILTERED = [
    ("STUDY", {"StudyDate": "20250301-20250307"}),
    ("STUDY", {"PatientID": "P00007"}),
    ("STUDY", {"PatientName": "SYNTH^PATIENT7"}),
    ("STUDY", {"AccessionNumber": "A00000007"}),
    ("STUDY", {"StudyInstanceUID": "2.25.27"}),
    ("STUDY", {"StudyDate": "20250301-20250307", "ModalitiesInStudy": "MR"}),
    ("STUDY", {"PatientID": "P00007", "ModalitiesInStudy": "CT\\MR"}),
    ("SERIES", {"StudyInstanceUID": "2.25.27"}),
    ("IMAGE", {"SeriesInstanceUID": "2.25.37"}),
    ("PATIENT", {"PatientID": "P00007"}),
]


@pytest.mark.parametrize(("level", "filters"), FILTERED, ids=[str(f) for _, f in FILTERED])
def test_every_filtered_find_uses_an_index(
    index: Index, level: str, filters: dict[str, str]
) -> None:
    plan = index.plan(level, filters)
    scans = [p for p in plan if p.startswith("SCAN") and "INDEX" not in p]
    assert not scans, plan  # no full table scan anywhere in the query
    assert any("USING" in p and "INDEX" in p for p in plan), plan


def test_matches_are_the_ones_a_table_scan_finds(index: Index) -> None:
    rows = pd.DataFrame([_row(i) for i in range(30_000)])
    week = rows[(rows.StudyDate >= "20250301") & (rows.StudyDate <= "20250307")]
    with_mr = set(week[week.Modality == "MR"].StudyInstanceUID)
    got = list(index.find("STUDY", {"StudyDate": "20250301-20250307", "ModalitiesInStudy": "MR"}))
    assert {m["StudyInstanceUID"] for m in got} == with_mr and with_mr
    for m in got:  # the computed attributes count the whole study, not only MR
        study = rows[rows.StudyInstanceUID == m["StudyInstanceUID"]]
        assert m["NumberOfStudyRelatedInstances"] == len(study)
        assert set(m["ModalitiesInStudy"].split(",")) == set(study.Modality)
    names = list(index.find("STUDY", {"PatientName": "synth^patient7"}))  # case-insensitive
    assert {m["PatientID"] for m in names} == {"P00007"}
