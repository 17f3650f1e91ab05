"""The network log: capture in both roles against real peers, the Parquet files, reading, plots."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from matplotlib.axes import Axes
from pydicom import dcmread
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

import dicomlab as dl
from dicomlab.core.logschema import OPERATIONS, SCHEMA_VERSION
from dicomlab.log import writer as log_writer
from dicomlab.net.transport import DicomlabAE
from dicomlab.peers import Orthanc, StoreSCP, peer_env, require_binary
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers


@pytest.fixture
def studies(tmp_path: Path) -> pd.DataFrame:
    return dl.synth.write_studies(tmp_path / "synth", n_studies=3, seed=21, today=date(2026, 3, 1))


@pytest.fixture
def local(tmp_path: Path) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path / "lp", ae_title="LOGPACS", port=0, allow_unknown="all") as lp:
        yield lp


def _log_files() -> list[Path]:
    folder = dl.log.folder()
    assert folder is not None
    return sorted(folder.rglob("*.parquet"))


def test_store_to_storescp_is_logged_with_statuses_bytes_and_job(
    storescp: StoreSCP, studies: pd.DataFrame
) -> None:
    out = dl.store(storescp.node, list(studies.path), progress=False, max_connections=1)
    assert isinstance(out, pd.DataFrame) and (out.status == 0).all()
    log = dl.read_log(service="C-STORE")
    assert len(log) == len(studies)
    assert (log.role == "SCU").all() and (log.peer_ae == storescp.ae_title).all()
    assert (log.status == 0).all() and (log.status_category == "success").all()
    assert set(log.sop_instance_uid) == set(studies.SOPInstanceUID)
    on_disk = sum(Path(p).stat().st_size for p in studies.path)
    assert log.bytes.sum() < on_disk  # data sets only, without preamble and file meta
    assert log.bytes.min() > 0
    assert log.job_id.nunique() == 1 and log.job_id.notna().all()
    assert (log.duration_s > 0).all()
    assert str(log.started_at.dtype) == "datetime64[us, UTC]"
    assert len(dl.read_log(since="today")) == len(log)
    assert dl.read_log(since=datetime.now(UTC) + timedelta(minutes=1)).empty
    assoc = dl.log.read_associations()
    assert list(assoc.outcome) == ["released"]
    row = assoc.iloc[0]
    assert row.bytes_sent > log.bytes.sum() and row.bytes_received > 0
    assert row.peer_port == storescp.port and row.contexts_accepted >= 1


def test_scp_role_logs_dcmtk_storescu_and_orthanc_find(
    local: dl.LocalPACS, studies: pd.DataFrame, tmp_path: Path
) -> None:
    import subprocess

    subprocess.run(
        [
            require_binary("storescu"),
            "-aet",
            "DCMTKSCU",
            "-aec",
            local.ae_title,
            "127.0.0.1",
            str(local.port),
            *studies.path,
        ],
        check=True,
        env=peer_env(),
        capture_output=True,
    )
    need_peer("Orthanc")
    with Orthanc.knowing(tmp_path / "o", local.node) as o:
        o.rest(
            "POST",
            f"/modalities/{local.ae_title}/query",
            {"Level": "Study", "Query": {"StudyInstanceUID": ""}},
        )
    log = dl.read_log()
    stores = log[(log.service == "C-STORE") & (log.role == "SCP")]
    assert len(stores) == len(studies) and (stores.peer_ae == "DCMTKSCU").all()
    finds = log[(log.service == "C-FIND") & (log.role == "SCP")]
    assert len(finds) == 1 and finds.n_matches.iloc[0] == studies.StudyInstanceUID.nunique()
    assert finds.study_instance_uid.isna().all()  # a universal match names no study
    assert finds.peer_ae.iloc[0] == "ORTHANC"
    assert set(dl.log.read_associations().outcome) == {"released"}


def test_retrieve_by_move_logs_both_roles(
    local: dl.LocalPACS, studies: pd.DataFrame, tmp_path: Path
) -> None:
    need_peer("Orthanc")
    with Orthanc.knowing(tmp_path / "o", local.node) as o:
        o.upload(studies.path)
        res = dl.retrieve(
            o.node,
            list(studies.StudyInstanceUID.unique()),
            into=local,
            method="move",
            progress=False,
            calling_ae=local.ae_title,
        )
        assert res.complete.all()
    log = dl.read_log()
    moves = log[log.service == "C-MOVE"]
    assert len(moves) == studies.StudyInstanceUID.nunique()
    assert (moves.role == "SCU").all() and (moves.status == 0).all()
    assert moves.n_completed.sum() == len(studies)
    assert set(moves.study_instance_uid) == set(studies.StudyInstanceUID)
    assert moves.job_id.nunique() == 1
    received = log[(log.service == "C-STORE") & (log.role == "SCP")]
    assert len(received) == len(studies) and (received.peer_ae == "ORTHANC").all()


def test_rejected_and_refused_associations_are_logged(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "lp", ae_title="STRICT", port=0, max_associations=1) as lp:
        first = DicomlabAE(ae_title="HOLDER")
        first.add_requested_context(Verification)
        held = first.associate("127.0.0.1", lp.port, ae_title="STRICT")
        assert held.is_established
        r = dl.echo(lp.node, calling_ae="STRANGER")
        assert not r.ok and r.cause == "rejected", r.detail
        held.release()
        port = lp.port
    refused = dl.echo(dl.Node("gone", ae_title="GONE", port=port, timeout=3))
    assert refused.cause == "refused"
    assoc = dl.log.read_associations()
    scu = assoc[assoc.role == "SCU"].set_index("local_ae")
    assert scu.loc["STRANGER", "outcome"] == "rejected"
    assert "limit" in scu.loc["STRANGER", "reject_reason"]
    assert scu.loc["HOLDER", "outcome"] == "released"
    gone = assoc[assoc.peer_ae == "GONE"].iloc[0]
    assert gone.outcome == "failed" and "Refused" in gone.error
    scp = assoc[assoc.role == "SCP"].set_index("peer_ae")
    assert scp.loc["STRANGER", "outcome"] == "rejected"
    assert scp.loc["HOLDER", "outcome"] == "released"


def test_no_patient_identifiers_in_the_files(storescp: StoreSCP, studies: pd.DataFrame) -> None:
    dl.store(storescp.node, list(studies.path), progress=False)
    dl.log.flush()
    blob = b"".join(p.read_bytes() for p in _log_files())
    assert blob
    for path in studies.path:
        ds = dcmread(path, stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
            for part in str(ds.get(keyword, "")).split("^"):
                if len(part) >= 4:
                    assert part.encode() not in blob, f"{keyword} {part!r} leaked into the log"
    names = set(pq.read_schema(_log_files()[0]).names)
    assert not {n for n in names if "patient" in n.lower()}


def test_pynetdicom_never_logs_identifiers(
    local: dl.LocalPACS, studies: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    local.import_files(studies.path.iloc[0])
    names = {str(dcmread(p, stop_before_pixels=True).PatientName) for p in studies.path}
    with caplog.at_level(logging.DEBUG):
        found = dl.find(local.node, dl.Query.studies(), calling_ae="CURIOUS")
    assert len(found) == 1
    assert caplog.records  # dicomlab's own debug logging is there...
    for name in names:
        for part in name.split("^"):
            assert part not in caplog.text  # ...but no patient name, from pynetdicom or us


def test_files_carry_the_versioned_schema_and_date_partitions(
    storescp: StoreSCP, studies: pd.DataFrame
) -> None:
    dl.store(storescp.node, list(studies.path)[:1], progress=False)
    dl.log.flush()
    files = _log_files()
    assert {f.parent.parent.name for f in files} == {"associations", "operations"}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert {f.parent.name for f in files} == {f"date={today}"}
    ops = next(f for f in files if f.parent.parent.name == "operations")
    schema = pq.read_schema(ops)
    assert schema.metadata[b"dicomlab.log.schema_version"] == SCHEMA_VERSION.encode()
    assert schema.remove_metadata().equals(OPERATIONS.remove_metadata())


def _row(i: int, when: datetime) -> dict[str, object]:
    return {
        "association_id": f"a{i % 50}",
        "role": "SCU",
        "service": "C-STORE" if i % 3 else "C-FIND",
        "message_id": i,
        "started_at": when,
        "ended_at": when + timedelta(seconds=0.01),
        "duration_s": 0.01 + (i % 7) / 100,
        "status": 0 if i % 10 else 0xA700,
        "status_category": "success" if i % 10 else "failure",
        "bytes": 500_000,
    }


def test_a_failed_flush_keeps_rows_and_reports_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the log folder should be")
    w = log_writer.LogWriter(interval_s=3600)
    now = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="dicomlab.log.writer"):
        for i in range(10):
            w.add("operations", _row(i, now), blocked)
        assert w.flush() == 0 and w.flush() == 0
    assert w.pending() == 10
    assert len([r for r in caplog.records if "cannot write" in r.message]) == 1
    blocked.unlink()
    assert w.flush() == 10 and w.pending() == 0
    assert len(dl.read_log(folder=blocked)) == 10
    w.close()


def test_half_written_files_are_never_read(tmp_path: Path) -> None:
    w = log_writer.LogWriter(interval_s=3600)
    now = datetime.now(UTC)
    for i in range(5):
        w.add("operations", _row(i, now), tmp_path)
    w.flush()
    part = next((tmp_path / "operations").iterdir())
    (part / ".part-crashed.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert len(dl.read_log(folder=tmp_path)) == 5
    w.close()


_KILLED_WRITER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from dicomlab.log.writer import LogWriter
from tests.test_log import _row
w = LogWriter(interval_s=3600)
folder = Path(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    for _ in range(2000):
        w.add("operations", _row(i, datetime.now(UTC)), folder)
        i += 1
    w.flush()
"""


def test_a_writer_killed_mid_write_leaves_every_file_readable(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    for delay in (0.5, 0.8, 1.1):
        with subprocess.Popen(
            [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
            cwd=root,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(root)},
        ) as proc:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    files = list((tmp_path / "operations").rglob("part-*.parquet"))
    assert files
    for f in files:
        assert pq.read_metadata(f).num_rows > 0  # no torn file under a final name
    df = dl.read_log(folder=tmp_path)
    assert len(df) == sum(pq.read_metadata(f).num_rows for f in files)


def test_read_log_filters_and_summary(tmp_path: Path) -> None:
    w = log_writer.LogWriter(interval_s=3600)
    start = datetime(2026, 6, 1, 12, tzinfo=UTC)
    for i in range(300):
        w.add("operations", _row(i, start + timedelta(hours=i)), tmp_path)
    w.add(
        "associations",
        {
            "association_id": "a1",
            "role": "SCU",
            "requested_at": start,
            "peer_ae": "PACS",
            "local_ae": "MINE",
        },
        tmp_path,
    )
    w.flush()
    days = {p.name for p in (tmp_path / "operations").iterdir()}
    assert len(days) == 13  # 300 hours from noon
    some = dl.read_log(folder=tmp_path, since="2026-06-03", until=date(2026, 6, 5))
    assert len(some) == 48 and some.started_at.min() == pd.Timestamp("2026-06-03", tz="UTC")
    finds = dl.read_log(folder=tmp_path, service="C-FIND")
    assert (finds.service == "C-FIND").all() and len(finds) == 100
    assert len(dl.read_log(folder=tmp_path, peer="PACS")) == 6  # association a1 only
    with pytest.raises(dl.ValidationError, match="C-STOR"):
        dl.read_log(folder=tmp_path, service="C-STOR")
    with pytest.raises(dl.ValidationError, match="'yesterdayish'"):
        dl.read_log(folder=tmp_path, since="yesterdayish")
    s = dl.log.summary(dl.read_log(folder=tmp_path))
    assert set(s.peer) == {"PACS", "?"}  # peers known from association a1 only
    assert list(s.columns[:4]) == ["local_ae", "peer", "role", "service"]  # who "we" were
    assert set(s[s.peer == "PACS"].local_ae) == {"MINE"}
    store = s[s.service == "C-STORE"]
    assert store.operations.sum() == 200 and store.failures.sum() == 20
    unknown = store.set_index("peer").loc["?"]
    assert unknown.success_rate == pytest.approx(1 - 20 / 196)
    assert unknown.top_failure == "Failure: out of resources"  # 0xA700 decoded
    assert store.MB.sum() == pytest.approx(100.0)
    w.close()


@pytest.mark.slow
def test_a_million_rows_read_in_seconds(tmp_path: Path) -> None:
    w = log_writer.LogWriter(interval_s=3600)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(20):
        for i in range(50_000):
            w.add("operations", _row(i, start + timedelta(days=day, seconds=i)), tmp_path)
        w.flush()
    t0 = time.perf_counter()
    df = dl.read_log(folder=tmp_path)
    elapsed = time.perf_counter() - t0
    assert len(df) == 1_000_000
    assert elapsed < 10, f"{elapsed:.1f} s"
    t0 = time.perf_counter()
    week = dl.read_log(folder=tmp_path, since="2026-01-14")
    assert len(week) == 7 * 50_000 and time.perf_counter() - t0 < elapsed
    w.close()


def test_plots_draw_what_the_log_holds(local: dl.LocalPACS, studies: pd.DataFrame) -> None:
    dl.store(local.node, list(studies.path), progress=False)
    dl.find(local.node, dl.Query.studies())
    log = dl.read_log()
    assoc = dl.log.read_associations()
    ax = dl.plot.throughput(log, freq="1s")
    assert isinstance(ax, Axes) and ax.lines and ax.lines[0].get_ydata().max() > 0
    ax = dl.plot.latency(log)
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["C-FIND", "C-STORE"]
    ax = dl.plot.timeline(assoc)
    assert len([p for p in ax.patches if p.get_width() > 0]) == len(assoc)
    story = dl.log.association(assoc[assoc.role == "SCU"].association_id.iloc[0])
    ax = dl.plot.sequence(story)
    labels = [t.get_text() for t in ax.texts if t.get_text()]
    assert labels[2] == "A-ASSOCIATE-RQ" and labels[-1] == "A-RELEASE-RP"
    assert sum(label.startswith("C-STORE-RSP 0x0000") for label in labels) >= 1
    with pytest.raises(ValueError, match="started_at"):
        dl.plot.throughput(pd.DataFrame({"x": [1]}))


def test_a_plot_shows_as_a_picture_where_ipython_displays_it(tmp_path: Path) -> None:
    """No pyplot, no %matplotlib: IPython's own formatters give the figure as a PNG."""
    from IPython.core.formatters import DisplayFormatter

    dl.log.write_synthetic_log(tmp_path, days=1, seed=2)
    fig = dl.plot.latency(dl.read_log(tmp_path)).figure
    bundle, _ = DisplayFormatter().format(fig)
    assert bundle["image/png"].startswith(b"\x89PNG")
    assert len(bundle["image/png"]) > 5_000  # a picture, not an empty canvas


def test_synthetic_log_is_deterministic_and_shaped_like_the_real_one(tmp_path: Path) -> None:
    n = dl.log.write_synthetic_log(tmp_path / "a", days=5, seed=4)
    dl.log.write_synthetic_log(tmp_path / "b", days=5, seed=4)
    a, b = dl.read_log(tmp_path / "a"), dl.read_log(tmp_path / "b")
    assert len(a) == n > 1000
    cols = [c for c in a.columns if c != "association_id"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert a.started_at.dt.strftime("%Y-%m-%d").nunique() == 5
    assert set(a.service) == {"C-FIND", "C-MOVE", "C-GET", "C-STORE"}
    assert 0.9 < (a.status_category == "success").mean() < 1.0
    busy = a.started_at.dt.hour.between(8, 17)
    assert busy.mean() > 0.6  # working hours dominate
    assoc = dl.log.read_associations(tmp_path / "a")
    assert set(assoc.outcome) == {"released", "aborted", "rejected"}


@pytest.mark.parametrize("span", ["minute", "day"])
def test_the_timeline_is_readable_at_any_span(tmp_path: Path, span: str) -> None:
    """Each association is a visible mark, legend colours are the outcomes', tick labels
    do not overlap: at a one-minute span and at a day-wide one (seconds-long bars)."""
    from matplotlib.colors import to_rgba

    dl.log.write_synthetic_log(tmp_path, days=1, seed=3)
    assoc = dl.log.read_associations(tmp_path).sort_values("requested_at")
    if span == "minute":  # the busiest minute
        minute = assoc.requested_at.dt.floor("min")
        assoc = assoc[minute == minute.value_counts().idxmax()]
    assert len(assoc) >= 2
    ax = dl.plot.timeline(assoc)
    (marks,) = ax.collections
    assert len(marks.get_offsets()) == len(assoc)  # one mark each, whatever its width
    legend = ax.get_legend()
    handles = legend.legend_handles
    shown = {t.get_text(): h.get_facecolor() for t, h in zip(legend.texts, handles, strict=True)}
    assert set(shown) == set(assoc.outcome)
    for outcome, colour in shown.items():
        assert colour == to_rgba(dl.plot._OUTCOME_COLOURS[outcome])
    fig = ax.figure
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    assert len(boxes) >= 2
    assert all(not a.overlaps(b) for a, b in itertools.pairwise(boxes))


def test_time_labels_do_not_overlap_in_the_reports_narrow_panels(tmp_path: Path) -> None:
    """The network report draws three plots side by side (12 in wide): a day of throughput
    and the timeline each get labels that fit (they used to run into each other)."""
    from matplotlib.figure import Figure

    dl.log.write_synthetic_log(tmp_path, days=1, seed=3)
    ops, assoc = dl.read_log(tmp_path), dl.log.read_associations(tmp_path)
    fig = Figure(figsize=(12, 3.5), layout="constrained")
    left, _, right = fig.subplots(1, 3)
    dl.plot.throughput(ops, freq="1min", ax=left)
    dl.plot.timeline(assoc, ax=right)
    fig.canvas.draw()
    for ax in (left, right):
        boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) >= 2
        assert all(not a.overlaps(b) for a, b in itertools.pairwise(boxes)), ax.get_title()


def test_storage_commitment_is_logged_in_both_roles(tmp_path: Path) -> None:
    dl.synth.write_studies(tmp_path / "src", n_studies=1, seed=4, max_series=1, max_instances=2)
    with dl.LocalPACS(tmp_path / "lp", ae_title="LOGCOMMIT", port=0) as lp:
        sent = dl.store(lp.node, tmp_path / "src", commit=10, progress=False)
    assert isinstance(sent, pd.DataFrame) and sent.committed.all()
    ops = dl.read_log(since="today")
    commit_ops = ops[ops.service.isin(["N-ACTION", "N-EVENT-REPORT"])]
    # each association's request and its report, seen as sent (SCU) and as received (SCP)
    got = commit_ops.groupby(["service", "role"]).size().to_dict()
    n = got.get(("N-ACTION", "SCU"), 0)
    assert n >= 1 and set(got) == {
        ("N-ACTION", "SCP"),
        ("N-ACTION", "SCU"),
        ("N-EVENT-REPORT", "SCP"),
        ("N-EVENT-REPORT", "SCU"),
    }, got
    assert set(got.values()) == {n}, got
    assert (commit_ops.status == 0).all()
    assert (commit_ops.sop_class_uid == "1.2.840.10008.1.20.1").all()
    assert set(dl.read_log(since="today", service="N-ACTION").service) == {"N-ACTION"}
