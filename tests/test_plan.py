"""The query planner: archives that cap their answers still give every match.

Pure splitting rules first (no sockets), then a LocalPACS capping its C-FIND in each of
the three ways archives do (refuse the query, cancel after N, a silent Success after N),
then Orthanc with ``LimitFindResults``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydicom import dcmread

import dicomlab as dl
from dicomlab.core.plan import (
    FIRST_DAY,
    LAST_DAY,
    MIN_SECONDS,
    Window,
    judge,
    looks_capped,
    root_window,
    split,
    window_query,
)
from dicomlab.core.profile import learned_cap
from dicomlab.core.query import to_identifier
from dicomlab.peers import Orthanc
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.indexrows import index_row

TODAY = date(2026, 3, 1)
N_STUDIES = 1_200
BUSY_DAY = "20250615"


# -- pure: how a window is cut ------------------------------------------------------


def test_an_open_query_covers_every_day_and_splits_in_halves_that_cover_it() -> None:
    q = dl.Query.studies()
    w = root_window(q, TODAY)
    assert (w.first, w.last) == (FIRST_DAY, LAST_DAY)
    a, b = split(w, q)
    assert a.first == FIRST_DAY and b.last == LAST_DAY
    assert a.last is not None and b.first is not None
    assert (b.first - a.last).days == 1


def test_a_date_filter_is_the_window_and_pieces_replace_it() -> None:
    q = dl.Query.studies(StudyDate="20250101-20250110", PatientName="SYNTH*")
    w = root_window(q, TODAY)
    assert (w.first, w.last) == (date(2025, 1, 1), date(2025, 1, 10))
    first = split(w, q)[0]
    ds = to_identifier(window_query(q, first), today=TODAY)
    assert ds.StudyDate == "20250101-20250105"
    assert ds.PatientName == "SYNTH*"  # the user's other filters stay


def test_one_day_splits_by_time_of_day_down_to_30_minutes_then_by_patient_id() -> None:
    q = dl.Query.studies(date="20250615")
    w = root_window(q, TODAY)
    seen = 0
    while True:
        pieces = split(w, q)
        if pieces[0].prefix is not None:
            break
        seen += 1
        w = pieces[0]
        assert w.end_s - w.start_s + 1 >= MIN_SECONDS
    assert seen == 5  # 24 h -> 12 h -> 6 h -> 3 h -> 90 min -> 45 min (no half under 30)
    ds = to_identifier(window_query(q, w), today=TODAY)
    assert ds.StudyTime == "000000-004459"
    assert [p.prefix for p in pieces][:3] == ["0", "1", "2"]
    deeper = split(pieces[0], q)
    assert deeper[0].prefix == "00"


def test_several_modalities_split_one_query_each_and_an_exact_patient_id_cannot_split() -> None:
    q = dl.Query.studies(date="20250615", ModalitiesInStudy="CT\\MR", StudyTime="080000-081000")
    pieces = split(root_window(q, TODAY), q)  # a time filter of the user's: no time split
    assert [p.modality for p in pieces] == ["CT", "MR"]
    exact = dl.Query.studies(date="20250615", PatientID="P00001", StudyTime="080000-081000")
    assert split(root_window(exact, TODAY), exact) == []
    prefixed = dl.Query.patients(PatientID="P0*")
    assert split(root_window(prefixed, TODAY), prefixed)[0].prefix == "P00"


@pytest.mark.parametrize(
    ("args", "verdict"),
    [
        ((50, True, 0, None), "ok"),
        ((100, True, 0, None), "suspect"),  # a round count and no known cap: find out
        ((100, True, 0, 100), "capped"),
        ((99, True, 0, 100), "ok"),
        ((100, False, 0xFE00, None), "cut"),
        ((40, False, 0xA700, None), "cut"),
        ((40, False, None, None), "failed"),  # an abort or a timeout is not a cap
    ],
)
def test_judge_tells_a_cap_from_a_failure(args: tuple[Any, ...], verdict: str) -> None:
    assert judge(*args) == verdict


def test_a_refusal_is_a_cap_only_when_it_reads_as_too_many_matches() -> None:
    assert judge(0, False, 0xA700, None, refused=True) == "refused"
    assert judge(0, False, 0x0124, None, refused=True) == "failed"  # not authorised
    assert judge(0, False, 0x0110, None, refused=True, comment="Too many results") == "refused"
    assert looks_capped(500) and looks_capped(1024) and not looks_capped(137)


def test_a_window_refuses_nonsense() -> None:
    with pytest.raises(dl.ValidationError):
        Window(date(2025, 2, 1), date(2025, 1, 1))
    with pytest.raises(dl.ValidationError):
        Window(start_s=10, end_s=5)
    with pytest.raises(dl.ValidationError):
        dl.FindLimit(0)
    with pytest.raises(dl.ValidationError):
        dl.FindLimit(10, how="sometimes")  # type: ignore[arg-type]
    with pytest.raises(dl.ValidationError):
        dl.Node("x", ae_title="X", find_cap=0)


# -- a LocalPACS that caps its answers -----------------------------------------------


def _rows() -> Iterator[dict[str, Any]]:
    """N_STUDIES studies over 2025; a fifth of them on one busy day, their times spread."""
    for s in range(N_STUDIES):
        row = index_row(s * 20)
        row["StudyTime"] = f"{(s * 7) % 24:02d}{(s * 13) % 60:02d}00"
        if s % 5 == 0:
            row["StudyDate"] = BUSY_DAY
        yield row


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("capped")
    lp = dl.LocalPACS(root, port=0)
    lp.archive.index.add_many(_rows())
    return root


def _capped(root: Path, how: str) -> dl.LocalPACS:
    return dl.LocalPACS(root, port=0, find_limit=dl.FindLimit(100, how))  # type: ignore[arg-type]


def _node(lp: dl.LocalPACS, **extra: Any) -> dl.Node:
    return dl.Node("capped", ae_title=lp.ae_title, host="127.0.0.1", port=lp.port, **extra)


@pytest.fixture(scope="module")
def expected(archive_root: Path) -> set[str]:
    """Every study of the archive, asked once of an uncapped LocalPACS over it."""
    return _all_studies(archive_root)


def _all_studies(root: Path) -> set[str]:
    with dl.LocalPACS(root, port=0) as lp:
        df = dl.find(lp.node, dl.Query.studies())
    assert df.attrs["complete"] and len(df) == N_STUDIES
    return set(df.StudyInstanceUID)


def _check_whole(df: pd.DataFrame, expected: set[str]) -> None:
    assert df.attrs["complete"] is True
    assert df.StudyInstanceUID.is_unique
    assert set(df.StudyInstanceUID) == expected
    plan = df.attrs["plan"]
    assert len(plan) == df.attrs["queries"] > 1
    assert all(p["count"] < 100 for p in plan if not p["split"])
    assert any(" " in p["window"] for p in plan)  # the busy day needed a time-of-day split


@pytest.mark.slow
def test_a_query_cancelled_after_100_matches_is_split_until_whole_and_the_cap_is_kept(
    archive_root: Path, expected: set[str]
) -> None:
    with _capped(archive_root, "cancel") as lp:
        node = _node(lp)
        with pytest.warns(dl.PartialResultWarning, match="100 rows"):
            plain = dl.find(node, dl.Query.studies())
        assert len(plain) == 100 and plain.attrs["complete"] is False
        df = dl.find(node, dl.Query.studies(), plan="auto")
        _check_whole(df, expected)
        assert df.attrs["plan"][0] == {
            "window": "as asked",
            "count": 100,
            "verdict": "cut",
            "split": True,
            "complete": True,
            "error": None,
        }
        learned = learned_cap(node)
        assert learned is not None and (learned.cap, learned.how) == (100, "cut")
        assert df.attrs["cap"] == 100


@pytest.mark.slow
def test_a_refused_query_raises_unplanned_and_is_split_until_whole_when_planned(
    archive_root: Path, expected: set[str]
) -> None:
    with _capped(archive_root, "refuse") as lp:
        node = _node(lp)
        with pytest.raises(dl.OperationRefused, match="more than 100 matches"):
            dl.find(node, dl.Query.studies())
        df = dl.find(node, dl.Query.studies(), plan="auto")
        _check_whole(df, expected)
        assert df.attrs["plan"][0]["verdict"] == "refused"
        # a date range under the cap is asked once: no split, no extra query
        small = dl.find(node, dl.Query.studies(date=("20250101", "20250103")), plan="auto")
        assert small.attrs["queries"] == 1 and small.attrs["complete"]


@pytest.mark.slow
def test_a_silent_cap_is_found_by_probing_a_round_count_then_known(
    archive_root: Path, expected: set[str]
) -> None:
    with _capped(archive_root, "silent") as lp:
        node = _node(lp)
        plain = dl.find(node, dl.Query.studies())  # Success with 100: nothing says so yet
        assert len(plain) == 100 and plain.attrs["complete"] is True
        df = dl.find(node, dl.Query.studies(), plan="auto")
        _check_whole(df, expected)
        assert df.attrs["plan"][0]["verdict"] == "suspect"
        learned = learned_cap(node)
        assert learned is not None and (learned.cap, learned.how) == (100, "probed")
        # now known: a plain query answering exactly the cap is flagged, not trusted
        with pytest.warns(dl.PartialResultWarning, match="exactly the cap"):
            again = dl.find(node, dl.Query.studies())
        assert again.attrs["complete"] is False


@pytest.mark.slow
def test_a_configured_cap_splits_a_silent_subset_from_the_first_answer(
    archive_root: Path, expected: set[str]
) -> None:
    with _capped(archive_root, "silent") as lp:
        node = _node(lp, find_cap=100)
        df = dl.find(node, dl.Query.studies(), plan="auto")
        _check_whole(df, expected)
        assert df.attrs["plan"][0]["verdict"] == "capped"
        assert learned_cap(node) is None  # configured, not learned


@pytest.mark.slow
def test_a_batch_of_dates_replans_the_values_that_hit_the_cap(archive_root: Path) -> None:
    days = [BUSY_DAY, "20250101", "20250102"]
    with dl.LocalPACS(archive_root, port=0) as whole:
        truth = {d: len(dl.find(whole.node, dl.Query.studies(StudyDate=d))) for d in days}
    assert truth[BUSY_DAY] > 100 > truth["20250101"]
    with _capped(archive_root, "cancel") as lp:
        node = _node(lp)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            df = dl.find(node, dl.Query.studies(StudyDate=days), plan="auto")
        counts = df.groupby("query_value").size().to_dict()
        assert counts == truth
        assert df.attrs["complete"] is True and df.attrs["failed"] == {}
        assert set(df.attrs["plan"]) == {BUSY_DAY}


def test_find_refuses_an_unknown_plan() -> None:
    with pytest.raises(dl.ValidationError, match="plan="):
        dl.find("X@127.0.0.1:1", dl.Query.studies(), plan="always")  # type: ignore[arg-type]


def test_the_cap_is_saved_with_the_node_in_the_book(tmp_path: Path) -> None:
    book = dl.NodeBook(path=tmp_path / "nodes.toml")
    book.add(dl.Node("pacs", ae_title="PACS", find_cap=500))
    book.save()
    assert dl.NodeBook.load(tmp_path / "nodes.toml")["pacs"].find_cap == 500


# -- Orthanc with LimitFindResults ---------------------------------------------------


@pytest.mark.peers
@pytest.mark.slow
def test_orthanc_capped_at_100_results_gives_every_study_through_splitting(
    tmp_path: Path,
) -> None:
    need_peer("Orthanc")
    data = tmp_path / "data"
    dl.synth.write_studies(data, n_studies=260, seed=3)
    with Orthanc(tmp_path / "orthanc", config={"LimitFindResults": 100}) as orthanc:
        node = orthanc.node
        stored = dl.store(node, data, progress=False)
        assert isinstance(stored, pd.DataFrame) and stored.status.eq(0).all()
        expected = {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in stored.path}
        assert len(expected) == 260
        with pytest.warns(dl.PartialResultWarning):
            plain = dl.find(node, dl.Query.studies())
        assert len(plain) == 100 and plain.attrs["status"] == 0xFE00
        df = dl.find(node, dl.Query.studies(), plan="auto")
        assert df.attrs["complete"] is True
        assert df.StudyInstanceUID.is_unique and set(df.StudyInstanceUID) == expected
        assert df.attrs["cap"] == 100
        assert all(p["count"] < 100 for p in df.attrs["plan"] if not p["split"])
