"""Test setup: an isolated DICOMLAB_HOME per test, real-peer fixtures, and no skips in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["dicomlab.testing.fixtures"]

_SKIPPED: list[str] = []


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own dicomlab home: the user's node book is never touched."""
    home = tmp_path_factory.mktemp("dicomlab-home")
    monkeypatch.setenv("DICOMLAB_HOME", str(home))
    yield home
    from dicomlab.log import flush

    flush()  # this test's network log rows go to its own home now, not during the next test


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: a missing peer must not pass silently."""
    if os.environ.get("CI") == "true" and _SKIPPED and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get("CI") == "true" and _SKIPPED:
        terminalreporter.write_line(
            f"CI=true: {len(_SKIPPED)} skipped test(s) count as failures: {_SKIPPED[:5]}", red=True
        )
