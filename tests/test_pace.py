"""Politeness: fewer connections while the peer is busy, more when it recovers, and a
daily window outside of which nothing starts."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.testing.tiny import tiny_archive
from dicomlab.transfer.pace import RECOVER_AFTER, Pace, Schedule


def test_a_schedule_past_midnight_is_open_at_night_and_says_when_it_opens() -> None:
    night = Schedule("19:00", "07:00")
    assert night.is_open(datetime(2026, 12, 3, 23, 30))
    assert night.is_open(datetime(2026, 12, 3, 6, 59))
    assert not night.is_open(datetime(2026, 12, 3, 7, 0))
    assert night.seconds_to_open(datetime(2026, 12, 3, 18, 0)) == 3600
    day = Schedule("08:00", "17:30")
    assert day.seconds_to_open(datetime(2026, 12, 3, 18, 0)) == 14 * 3600
    assert day.seconds_to_open(datetime(2026, 12, 3, 9, 0)) == 0


@pytest.mark.parametrize("bad", [("7:00", "19:00"), ("19:00", "19:00"), ("25:00", "01:00")])
def test_a_schedule_refuses_nonsense(bad: tuple[str, str]) -> None:
    with pytest.raises(dl.ValidationError):
        Schedule(*bad)


def test_busy_takes_a_connection_away_and_a_run_of_good_items_gives_it_back() -> None:
    pace = Pace(4)
    pace.busy()
    pace.busy()
    assert pace.limit == 2 and pace.lowest == 2
    for _ in range(RECOVER_AFTER):
        pace.ok()
    assert pace.limit == 3
    for _ in range(5):
        pace.busy()
    assert pace.limit == 1 and pace.lowest == 1  # never below one


def test_no_more_than_the_limit_run_at_once() -> None:
    pace = Pace(2)
    cancel = threading.Event()
    assert pace.acquire(cancel) and pace.acquire(cancel)
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(pace.acquire(cancel)))
    t.start()
    time.sleep(0.4)
    assert got == []  # a third waits
    pace.release()
    t.join(2)
    assert got == [True]
    cancel.set()
    assert pace.acquire(cancel) is False


class _Evening(datetime):
    @classmethod
    def now(cls, tz: object = None) -> _Evening:  # type: ignore[override]
        return cls(2026, 12, 3, 18, 59, 59)


def test_outside_the_window_nothing_starts_until_cancelled() -> None:
    pace = Pace(2, Schedule("19:00", "07:00"), clock=_Evening)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    assert pace.acquire(cancel) is False
    assert time.monotonic() - t0 >= 0.25


def test_a_peer_at_its_association_limit_slows_the_job_down_and_everything_arrives(
    tmp_path: Path,
) -> None:
    with (
        tiny_archive(tmp_path / "src", 40, ae_title="SRC", port=0, max_associations=2) as src,
        dl.LocalPACS(tmp_path / "dst", ae_title="DST", port=0, fsync=False) as dst,
    ):
        uids = [f"2.25.7{s}" for s in range(40)]
        out = dl.retrieve(src.node, uids, into=dst, method="get", max_connections=6, progress=False)
        assert isinstance(out, pd.DataFrame)
        assert out.complete.all(), out.error.dropna().head()
        assert len(dst.instances()) == 80
        assert out.attrs["connections"]["max"] == 6
        assert out.attrs["connections"]["lowest"] < 6
