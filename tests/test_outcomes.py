"""The outcome tables' one schema: retrieve and store return exactly its columns and dtypes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.core.outcomes import (
    BATCH_ATTRS,
    FIND_ATTRS,
    QUERIES,
    RETRIEVE,
    STORE,
    OutcomeSchema,
    progress_columns,
)


def _dtypes(df: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in df.dtypes.items()}


@pytest.mark.parametrize("schema", [RETRIEVE, STORE, QUERIES], ids=lambda s: s.name)
def test_an_empty_table_has_the_shape_of_a_full_one(schema: OutcomeSchema) -> None:
    empty = schema.empty()
    assert list(empty.columns) == schema.names and empty.empty
    assert _dtypes(empty) == schema.dtypes


def test_missing_values_keep_their_columns_dtypes() -> None:
    df = RETRIEVE.frame(
        [RETRIEVE.row(status=0, bytes=10, complete=True), RETRIEVE.row(error="refused")]
    )
    assert _dtypes(df) == RETRIEVE.dtypes  # an int column with a gap stays Int64
    assert df.status.isna().tolist() == [False, True]
    assert df.complete.tolist()[0] is True and pd.isna(df.complete.iloc[1])


def test_a_row_with_a_column_the_schema_lacks_is_refused() -> None:
    with pytest.raises(KeyError, match="no column"):
        STORE.row(PatientName="DOE^JANE")  # and no patient identifiers, ever


def test_no_outcome_column_names_a_patient() -> None:
    for schema in (RETRIEVE, STORE):
        assert not [c for c in schema.names if c.startswith("Patient")], schema.name


def test_retrieve_store_and_progress_return_the_schemas(tmp_path: Path) -> None:
    dl.synth.write_studies(tmp_path / "synth", n_studies=1, seed=3, max_series=1)
    with (
        dl.LocalPACS(tmp_path / "pacs", ae_title="OUTPACS", port=0, allow_unknown="all") as pacs,
        dl.LocalPACS(tmp_path / "mine", ae_title="OUTMINE", port=0) as mine,
    ):
        sent = dl.store(pacs.node, tmp_path / "synth", progress=False, calling_ae="OUTMINE")
        assert isinstance(sent, pd.DataFrame) and (sent.status == 0).all()
        assert list(sent.columns) == STORE.names and _dtypes(sent) == STORE.dtypes
        study = pacs.instances().StudyInstanceUID.iloc[0]
        job = dl.retrieve(
            pacs.node,
            [study],
            into=mine,
            method="get",
            wait=False,
            progress=False,
            calling_ae="OUTMINE",
        )
        assert isinstance(job, dl.Job)
        got = job.result(timeout=60)
        assert list(got.columns) == RETRIEVE.names and _dtypes(got) == RETRIEVE.dtypes
        assert got.complete.all()
        progress = job.progress
        assert list(progress.columns) == progress_columns(RETRIEVE)
        assert progress.state.tolist() == ["done"]


def test_find_and_find_many_say_how_they_ended_in_the_same_attrs(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
        dl.store(lp.node, dl.synth.write_studies(tmp_path / "s", n_studies=2), progress=False)
        one = dl.find(lp.node, dl.Query.studies())
        many = dl.find_many(
            lp.node, dl.Query.studies(), progress=False, PatientID=["NOBODY", *one.PatientID]
        )
        rec = dl.reconcile(many)
    assert set(one.attrs) == set(FIND_ATTRS)
    assert set(many.attrs) == set(FIND_ATTRS) | set(BATCH_ATTRS)
    for df in (one, many):
        assert df.attrs["protocol"] == "dimse" and df.attrs["complete"] is True
        assert df.attrs["status"] == 0 and df.attrs["error"] is None
    assert list(rec.columns) == QUERIES.names and _dtypes(rec) == QUERIES.dtypes
    assert rec.set_index("query_value").outcome["NOBODY"] == "none"
