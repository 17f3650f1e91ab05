"""The committed fixtures are exactly what the synthetic generator makes."""

from __future__ import annotations

import datetime
from pathlib import Path

import dicomlab as dl

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "studies"


def test_fixtures_regenerate_byte_identical(tmp_path: Path) -> None:
    dl.synth.write_studies(
        tmp_path,
        n_studies=4,
        seed=7,
        today=datetime.date(2026, 1, 15),
        image_size=8,
        max_series=2,
        max_instances=2,
    )
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*.dcm"))
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.dcm"))
    assert committed and committed == made
    for rel in committed:
        assert (FIXTURES / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel
