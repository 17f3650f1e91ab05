"""The protocol-neutral front: a call picks its protocol, and a new protocol gets the
retrieve queue (skip what is held, retry what failed transiently, the outcome table)
by giving a Fetcher, touching nothing else.

The scripted protocol here stands in for one that does not exist yet (DICOMweb is
next); the DIMSE path is exercised against real peers everywhere else.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.core.call import Call
from dicomlab.core.items import Item
from dicomlab.core.nodes import Node
from dicomlab.core.outcomes import RETRIEVE
from dicomlab.protocols import base
from dicomlab.protocols.dimse import Dimse
from dicomlab.transfer.job import Job
from dicomlab.transfer.retrieve import Request, run_retrieve

UNUSED = dl.Node("nowhere", ae_title="NOWHERE", host="127.0.0.1", port=9, timeout=2)
"""A node nothing listens at: a call that tried to connect would raise ConnectionRefused."""


def test_a_protocol_this_dicomlab_lacks_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(
        dl.ConfigError, match=r"no protocol 'pigeon'.*it speaks: dimse, dicomweb"
    ) as err:
        dl.find(UNUSED, dl.Query.studies(), protocol="pigeon")  # type: ignore[arg-type]
    assert err.value.node == UNUSED
    with pytest.raises(dl.ConfigError, match=r"dimse cannot retrieve with method='wado'"):
        dl.retrieve(UNUSED, ["1.2.3"], method="wado", progress=False)
    with pytest.raises(dl.ConfigError, match="nowhere is not configured for dicomweb"):
        dl.retrieve(UNUSED, ["1.2.3"], method="wado", protocol="dicomweb", progress=False)


def test_auto_and_dimse_reach_the_same_peer(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
        assert dl.echo(lp.node).ok and dl.echo(lp.node, protocol="dimse").ok
        assert dl.find(lp.node, dl.Query.studies(), protocol="dimse").attrs["protocol"] == "dimse"


SCRIPT: dict[str, Any] = {}
"""What the scripted protocol's "archive" holds (files by study) and the errors its
next fetches raise, by node name."""


class _Scripted:
    """A Fetcher that copies an item's files into the LocalPACS, after failing as told."""

    method = "scripted"

    def __init__(
        self, node: Node, into: dl.LocalPACS, method: str, ours: str, cancel: threading.Event
    ) -> None:
        self.into = into
        self.files: dict[str, list[Path]] = SCRIPT[node.name]["files"]
        self.fail_first: list[Exception] = SCRIPT[node.name]["failures"]

    def plan(self, item: Item) -> int | None:
        return len(self.files[item.study or ""])

    def fetch(self, item: Item, row: dict[str, Any], progress: Callable[[int], None]) -> None:
        if self.fail_first:
            raise self.fail_first.pop(0)
        staging = self.into.archive.root.parent / f"incoming-{item.study}"
        staging.mkdir(exist_ok=True)
        for i, f in enumerate(self.files[item.study or ""]):
            shutil.copy(f, staging / f"{i}.dcm")
        self.into.import_files(staging)
        shutil.rmtree(staging)
        n = len(self.files[item.study or ""])
        progress(n)
        row.update(status=0, status_text="Success", completed=n, failed=0, warning=0)

    def gone(self) -> str | None:
        return None

    def idle(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _ScriptedSpeaker(Dimse):
    """The DIMSE speaker with its retrieve replaced by the scripted Fetcher."""

    name = "scripted"
    retrieve_methods = ("scripted",)

    def retrieve(self, call: Call, request: Request) -> pd.DataFrame | Job:
        return run_retrieve(call, request, fetchers=_Scripted, find=lambda *a: pd.DataFrame())


def _scripted_node(name: str, files: dict[str, list[Path]], failures: list[Exception]) -> Node:
    SCRIPT[name] = {"files": files, "failures": list(failures)}
    return dl.Node(name, ae_title="SCRIPTED", host="127.0.0.1", port=9)


def test_a_new_protocol_gets_the_queue_the_retries_and_the_outcome_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(base._SPEAKERS, "scripted", _ScriptedSpeaker())
    manifest = dl.synth.write_studies(tmp_path / "src", n_studies=3, seed=4)
    files = {str(uid): [Path(p) for p in g.path] for uid, g in manifest.groupby("StudyInstanceUID")}
    uids = sorted(files)
    with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
        # one transient failure (retried), then every study arrives
        node = _scripted_node("scripted", files, [dl.AssociationAborted("the peer went away")])
        out = dl.retrieve(node, uids, into=lp, method="scripted", max_connections=1, progress=False)
        assert isinstance(out, pd.DataFrame)
        assert list(out.columns) == RETRIEVE.names
        assert out.attrs["complete"] and out.complete.all(), out[["attempts", "error"]].to_string()
        assert sorted(out.StudyInstanceUID) == uids
        assert out.method.unique().tolist() == ["scripted"]
        assert sorted(out.attempts.tolist()) == [1, 1, 2]
        got = lp.instances().groupby("StudyInstanceUID").size()
        assert {u: got[u] for u in uids} == {u: len(files[u]) for u in uids}
        assert (out.received_instances == out.expected_instances).all()
        # run again: everything is held, nothing is fetched
        again = dl.retrieve(node, uids, into=lp, method="scripted", progress=False)
        assert isinstance(again, pd.DataFrame)
        assert again.skipped.all() and (again.attempts == 0).all()
        # a permanent error is not retried, and says what happened
        lp.delete_study(uids[0])
        bad = _scripted_node(
            "refusing", files, [dl.OperationRefused("not authorised", status=0xA801)]
        )
        refused = dl.retrieve(bad, uids[:1], into=lp, method="scripted", progress=False)
        assert isinstance(refused, pd.DataFrame)
        row = refused.iloc[0]
        assert row.attempts == 1 and not row.complete and "not authorised" in row.error


def test_the_default_localpacs_is_started_once_and_again_after_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMLAB_HOME", str(tmp_path / "home"))
    book = dl.NodeBook(local=dl.LocalIdentity(port=0))
    first = dl.LocalPACS.default(book)
    try:
        assert first.running and dl.LocalPACS.default(book) is first
        first.stop()
        second = dl.LocalPACS.default(book)
        assert second is not first and second.running
        assert second.archive.root == (tmp_path / "home" / "archive").resolve()
    finally:
        dl.LocalPACS.default(book).stop()


def test_a_busy_peer_is_tried_again_after_the_wait_it_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP 429 with Retry-After: 1.5 s, longer than the queue's first back-off (0.5 s)."""
    monkeypatch.setitem(base._SPEAKERS, "scripted", _ScriptedSpeaker())
    manifest = dl.synth.write_studies(tmp_path / "src", n_studies=1, seed=5)
    files = {str(manifest.StudyInstanceUID.iloc[0]): [Path(p) for p in manifest.path]}
    busy = dl.DICOMwebError("HTTP 429 Too Many Requests", http_status=429, retry_after_s=1.5)
    assert busy.transient
    node = _scripted_node("busy", files, [busy])
    with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
        t0 = time.monotonic()
        out = dl.retrieve(node, list(files), into=lp, method="scripted", progress=False)
        took = time.monotonic() - t0
    assert isinstance(out, pd.DataFrame)
    row = out.iloc[0]
    assert row.attempts == 2 and row.complete and pd.isna(row.error)
    assert took >= 1.5
