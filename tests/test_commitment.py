"""Storage commitment (Push Model), both roles: ``dl.store(commit=...)`` and ``dl.commit``
against Orthanc (which reports on a new association to our LocalPACS) and against an
in-process LocalPACS (which reports on the requester's own association); Orthanc asking
a LocalPACS; a PACS that never reports; malformed N-ACTIONs; bad input; and the pure
request and report data sets of ``dicomlab.core.commitment``."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode, encode

import dicomlab as dl
from dicomlab.core import commitment as sc
from dicomlab.peers import Orthanc, free_port
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.raw import A_ASSOCIATE_AC, RawAssociation, command_set

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
NOT_HELD = (CT, "1.2.826.0.1.3680043.9.3811.99.1")
AE = "DLCOMMIT"  # our LocalPACS's AE title, registered on Orthanc


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Three studies of one or two CT or MR images."""
    folder = tmp_path_factory.mktemp("synth")
    return dl.synth.write_studies(folder, n_studies=3, seed=5, max_series=1, max_instances=2)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, dl.LocalPACS]]:
    """An Orthanc that knows our LocalPACS (AE ``DLCOMMIT``), and that LocalPACS, whose
    book knows Orthanc (so that it reports to Orthanc on a new association)."""
    need_peer("Orthanc")
    root = tmp_path_factory.mktemp("pair")
    port = free_port()
    orthanc = Orthanc(root / "orthanc", modalities={AE: ("127.0.0.1", port)})
    book = dl.NodeBook([orthanc.node.replace(allow_store=True)])
    with (
        dl.LocalPACS(root / "lp", ae_title=AE, port=port, book=book, fsync=False) as lp,
        orthanc,
    ):
        yield orthanc, lp


@pytest.fixture()
def local(tmp_path: Path) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        yield lp


def _pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    return [(str(c), str(i)) for c, i in zip(df.SOPClassUID, df.SOPInstanceUID, strict=True)]


def _by_uid(df: pd.DataFrame) -> dict[str, tuple[bool, Any]]:
    return {str(r.SOPInstanceUID): (bool(r.committed), r.commit_error) for r in df.itertuples()}


def _all_committed(df: pd.DataFrame) -> None:
    assert len(df) > 0
    assert df.committed.dtype == "boolean" and df.commit_error.dtype == "string"
    assert df.committed.eq(True).all(), df[["SOPInstanceUID", "committed", "commit_error"]]
    assert df.commit_error.isna().all()


# -- Orthanc as the SCP: it reports on a new association to our LocalPACS ----------------------


@pytest.mark.peers
def test_store_to_orthanc_with_commit_then_commit_again_with_unknown_and_deleted(
    pair: tuple[Orthanc, dl.LocalPACS], studies: pd.DataFrame
) -> None:
    orthanc, _ = pair
    stored = dl.store(orthanc.node, studies.path, commit=20, progress=False, calling_ae=AE)
    assert isinstance(stored, pd.DataFrame) and len(stored) == len(studies)
    assert stored.error.isna().all() and stored.status.eq(0).all()
    _all_committed(stored)

    gone = str(studies.SOPInstanceUID.iloc[0])
    (found,) = orthanc.rest("POST", "/tools/lookup", raw=gone.encode())
    orthanc.rest("DELETE", f"/instances/{found['ID']}")
    got = dl.commit(orthanc.node, [*_pairs(studies), NOT_HELD], timeout=20, calling_ae=AE)
    assert list(got.SOPInstanceUID) == [*studies.SOPInstanceUID, NOT_HELD[1]]
    assert got.attrs["complete"] is True and got.attrs["error"] is None
    rows = _by_uid(got)
    for uid in (NOT_HELD[1], gone):
        committed, error = rows.pop(uid)
        assert committed is False and "0x0112" in error, (uid, error)
    assert rows and all(c is True and pd.isna(e) for c, e in rows.values()), rows


@pytest.mark.peers
def test_orthanc_not_knowing_our_ae_gives_rows_that_say_to_register_it(
    pair: tuple[Orthanc, dl.LocalPACS], studies: pd.DataFrame
) -> None:
    """Orthanc aborts a storage commitment request from an AE title it does not know (it
    still takes its C-STOREs, as ``DicomAlwaysAllowStore`` says)."""
    orthanc, _ = pair
    t0 = time.monotonic()
    got = dl.commit(orthanc.node, _pairs(studies), timeout=10, calling_ae="NOTKNOWN")
    stored = dl.store(orthanc.node, studies.path, commit=10, progress=False, calling_ae="NOTKNOWN")
    assert time.monotonic() - t0 < 8  # the abort is seen at once, not after the timeouts
    assert isinstance(stored, pd.DataFrame) and stored.status.eq(0).all()
    for df in (got, stored):
        assert len(df) == len(studies) and df.committed.eq(False).all()
        for error in df.commit_error:
            assert "no answer from" in error and "register ours, 'NOTKNOWN'" in error, error
    assert got.attrs["complete"] is False and "NOTKNOWN" in got.attrs["error"]


# -- Orthanc as the SCU: our LocalPACS answers and reports on a new association ----------------


def _orthanc_asks(orthanc: Orthanc, instances: list[tuple[str, str]]) -> dict[str, Any]:
    body = {"DicomInstances": [{"SOPClassUID": c, "SOPInstanceUID": i} for c, i in instances]}
    job = orthanc.rest("POST", f"/modalities/{AE}/storage-commitment", body)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state: dict[str, Any] = orthanc.rest("GET", job["Path"])
        if state.get("Status") != "Pending":
            return state
        time.sleep(0.1)
    raise AssertionError(f"Orthanc's storage commitment {job} still pending after 20 s")


@pytest.mark.peers
def test_orthanc_asks_our_localpacs_and_gets_success_and_failure_reasons(
    pair: tuple[Orthanc, dl.LocalPACS], studies: pd.DataFrame
) -> None:
    orthanc, lp = pair
    held = studies.iloc[:3]
    assert dl.store(lp.node, held.path, progress=False).error.isna().all()  # type: ignore[union-attr]
    before = lp.stats
    state = _orthanc_asks(orthanc, [*_pairs(held), NOT_HELD])
    assert state["Status"] == "Failure" and state["RemoteAET"] == AE
    assert {s["SOPInstanceUID"] for s in state["Success"]} == set(held.SOPInstanceUID)
    assert [(f["SOPInstanceUID"], f["FailureReason"]) for f in state["Failures"]] == [
        (NOT_HELD[1], 0x0112)
    ]

    uid, sop_class = str(held.SOPInstanceUID.iloc[0]), str(held.SOPClassUID.iloc[0])
    wrong = MR if sop_class != MR else CT
    state = _orthanc_asks(orthanc, [(wrong, uid)])
    assert state["Success"] == []
    assert [(f["SOPInstanceUID"], f["FailureReason"]) for f in state["Failures"]] == [(uid, 0x0119)]
    assert lp.stats["commit_requests"] == before["commit_requests"] + 2
    assert lp.stats["commit_reports_failed"] == 0


# -- an in-process LocalPACS: the report comes on the requester's own association -------------


def test_store_with_commit_into_localpacs_then_not_held_and_wrong_class(
    local: dl.LocalPACS, studies: pd.DataFrame
) -> None:
    stored = dl.store(local.node, studies.path, commit=10, progress=False)
    assert isinstance(stored, pd.DataFrame) and stored.error.isna().all()
    _all_committed(stored)
    assert local.stats["commit_requests"] >= 1

    uid, sop_class = str(studies.SOPInstanceUID.iloc[0]), str(studies.SOPClassUID.iloc[0])
    wrong = MR if sop_class != MR else CT
    got = dl.commit(local.node, [*_pairs(studies), NOT_HELD], timeout=10)
    _all_committed(got.iloc[:-1])
    assert not got.committed.iloc[-1]  # (NA would raise)
    assert got.commit_error.iloc[-1] == "0x0112 no such object instance"
    got = dl.commit(local.node, [(wrong, uid)], timeout=10)
    assert not got.committed.iloc[0]
    assert got.commit_error.iloc[0] == "0x0119 class-instance conflict"
    assert local.stats["commit_reports_failed"] == 0


def test_a_pacs_that_answers_but_never_reports_times_out_with_a_clear_row(
    local: dl.LocalPACS, studies: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LocalPACS accepts the N-ACTION and its reporter then sends nothing: a
    simulated failure (its ``_deliver`` replaced) that no real peer produces on demand."""
    dl.store(local.node, studies.path, progress=False)
    monkeypatch.setattr(local.commitment, "_deliver", lambda job: False)
    t0 = time.monotonic()
    got = dl.commit(local.node, _pairs(studies), timeout=1)
    stored = dl.store(local.node, studies.path[:1], commit=1, progress=False, max_connections=1)
    assert time.monotonic() - t0 < 5
    assert isinstance(stored, pd.DataFrame) and stored.status.eq(0).all()
    for df in (got, stored):
        assert len(df) > 0 and df.committed.eq(False).all()
        for error in df.commit_error:
            assert error.startswith("no storage commitment report from") and "within 1 s" in error
    assert got.attrs["complete"] is False
    assert local.stats["commit_reports_failed"] == 2


# -- malformed N-ACTIONs on the wire ------------------------------------------------------------


def _uid(value: str) -> bytes:
    raw = value.encode()
    return raw + b"\0" * (len(raw) % 2)


def _n_action(data: bytes) -> bytes:
    """The command set of a Request Storage Commitment N-ACTION-RQ followed by ``data``."""
    return command_set(
        {
            0x00000003: _uid(sc.PUSH_MODEL),  # Requested SOP Class UID
            0x00000100: struct.pack("<H", 0x0130),  # N-ACTION-RQ
            0x00000110: struct.pack("<H", 7),  # Message ID
            0x00000800: struct.pack("<H", 0x0000),  # a data set follows
            0x00001001: _uid(sc.PUSH_MODEL_INSTANCE),  # Requested SOP Instance UID
            0x00001008: struct.pack("<H", sc.ACTION_REQUEST),  # Action Type ID
        }
    )


def _implicit(ds: Dataset) -> bytes:
    data = encode(ds, True, True)
    assert data is not None
    return data


def _without_transaction() -> bytes:
    ds = sc.request_dataset("2.25.1", [NOT_HELD])
    del ds.TransactionUID
    return _implicit(ds)


def _bad_instance_uid() -> bytes:
    ds = sc.request_dataset("2.25.2", [NOT_HELD])
    ds.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "1.2.x"
    return _implicit(ds)


# ReferencedSOPSequence of undefined length holding two bytes that are no item: does not decode
UNDECODABLE = b"\x08\x00\x99\x11\xff\xff\xff\xff\x01\x02"


@pytest.mark.parametrize(
    ("data", "status"),
    [(_without_transaction(), 0x0115), (_bad_instance_uid(), 0x0115), (UNDECODABLE, 0x0110)],
    ids=["no-TransactionUID", "bad-instance-UID", "undecodable"],
)
def test_a_malformed_n_action_gets_a_failure_status_and_the_server_goes_on(
    local: dl.LocalPACS, studies: pd.DataFrame, data: bytes, status: int
) -> None:
    with RawAssociation(local.port) as raw:
        contexts = [(str(sc.PUSH_MODEL), ["1.2.840.10008.1.2"])]
        assert raw.associate("RAWSCU", local.ae_title, contexts) == A_ASSOCIATE_AC
        raw.send_message(1, _n_action(data), data)
        rsp = raw.read_response()
        assert rsp is not None and rsp.command_field == 0x8130 and rsp.responded_to == 7, rsp
        assert rsp.status == status, f"status {rsp.status:#06x}"
        raw.release()
    assert local.stats["commit_requests"] == 0  # nothing was queued for a report
    assert dl.echo(local.node).ok
    dl.store(local.node, studies.path[:2], progress=False)
    _all_committed(dl.commit(local.node, _pairs(studies.iloc[:2]), timeout=10))


# -- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_with_the_value_quoted(local: dl.LocalPACS) -> None:
    """(``local`` runs so that ``dl.commit`` finds a listener and starts no default one.)"""
    node = local.node
    with pytest.raises(dl.ValidationError, match="nothing to commit"):
        dl.commit(node, [])
    with pytest.raises(dl.ValidationError, match=r"\['SOPClassUID', 'SOPInstanceUID'\]"):
        dl.commit(node, pd.DataFrame({"uid": ["1.2.3"]}))
    with pytest.raises(dl.ValidationError, match=r"\('1\.2\.3', 'not-a-uid'\)"):
        dl.commit(node, [(CT, "1.2.3"), ("1.2.3", "not-a-uid")])
    for bad in (0, "yes", -1, 3601):
        with pytest.raises(dl.ValidationError, match=rf"commit={bad!r} must be"):
            dl.store(node, [], commit=bad, progress=False)  # type: ignore[arg-type]
    assert local.stats["commit_requests"] == 0


def test_bad_input_starts_no_server_and_a_duplicate_is_refused() -> None:
    """Input is checked before anything runs: no default LocalPACS is left behind."""
    from dicomlab.server.lifecycle import running_servers

    before = set(map(id, running_servers()))
    node = dl.Node("x", ae_title="X", port=1)
    with pytest.raises(dl.ValidationError, match="nothing to commit"):
        dl.commit(node, [])
    with pytest.raises(dl.ValidationError, match=r"'1\.2\.3' is given twice"):
        dl.commit(node, [(CT, "1.2.3"), (MR, "1.2.3")])
    with pytest.raises(dl.ValidationError, match="does not exist"):
        dl.store(node, "no/such/folder", commit=True, progress=False)
    assert set(map(id, running_servers())) == before


def test_the_answer_to_a_report_goes_before_the_release(
    local: dl.LocalPACS, studies: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom answers an N-EVENT-REPORT from a thread of its own: the request must not
    return (and its caller release) before that answer has gone, or the release overtakes
    it and the LocalPACS waits for an answer that never comes. The handler is slowed
    here to hold that window open (a scheduling no real peer produces on demand)."""
    from dicomlab.net import commit as commit_scu

    real = commit_scu._PENDING.deliver

    def slow(*args: Any) -> bool:
        delivered = real(*args)
        time.sleep(0.3)  # the answer goes out only after this
        return delivered

    monkeypatch.setattr(commit_scu._PENDING, "deliver", slow)
    dl.store(local.node, studies.path, progress=False)
    for _ in range(2):
        t0 = time.monotonic()
        got = dl.commit(local.node, _pairs(studies), timeout=10)
        assert time.monotonic() - t0 < 5
        _all_committed(got)
    deadline = time.monotonic() + 5
    while local.stats["commit_requests"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    local.commitment.stop()
    assert local.stats["commit_reports_failed"] == 0


def test_commitment_with_a_dicomweb_only_node_is_refused() -> None:
    web = dl.Node("web", dicomweb=dl.DICOMweb("http://127.0.0.1:9/dicom-web"))
    with pytest.raises(dl.ValidationError, match="storage commitment is a DIMSE service"):
        dl.store(web, [], commit=True, progress=False)
    with pytest.raises(dl.ConfigError, match="web is not configured for dimse"):
        dl.commit(web, [NOT_HELD])


# -- pure: the request and the report as data sets --------------------------------------------


def _wire(ds: Dataset) -> Dataset:
    """``ds`` encoded as on the wire (implicit VR little endian) and decoded again."""
    return decode(io.BytesIO(_implicit(ds)), True, True)


def test_request_round_trip_and_refusals() -> None:
    refs = [(CT, "1.2.3"), (MR, "1.2.4")]
    parsed = sc.parse_request(_wire(sc.request_dataset("2.25.7", refs)))
    assert parsed == sc.CommitRequest("2.25.7", tuple(refs))
    with pytest.raises(dl.ValidationError, match="at least one instance"):
        sc.request_dataset("2.25.7", [])
    with pytest.raises(dl.ValidationError, match=r"'2\.25\.x'"):
        sc.request_dataset("2.25.x", refs)
    with pytest.raises(dl.ValidationError, match="no data set"):
        sc.parse_request(None)
    ds = sc.request_dataset("2.25.7", refs)
    ds.ReferencedSOPSequence[1].ReferencedSOPClassUID = "MR"
    with pytest.raises(dl.ValidationError, match="item 1: ReferencedSOPClassUID 'MR'"):
        sc.parse_request(_wire(ds))
    del ds.ReferencedSOPSequence
    with pytest.raises(dl.ValidationError, match="ReferencedSOPSequence is missing"):
        sc.parse_request(ds)


def test_report_round_trip_with_failures_and_reason_text() -> None:
    event, ds = sc.report_dataset("2.25.8", [(CT, "1.2.3")], [])
    assert event == 1 and "FailedSOPSequence" not in ds
    assert sc.parse_report(_wire(ds), event) == sc.CommitReport("2.25.8", frozenset({"1.2.3"}))

    failed = [(CT, "1.2.4", 0x0112), (MR, "1.2.5", 0x0119), (CT, "1.2.6", 0xA7FF)]
    event, ds = sc.report_dataset("2.25.8", [(CT, "1.2.3")], failed)
    assert event == 2
    report = sc.parse_report(_wire(ds), event)
    assert report.committed == {"1.2.3"}
    assert report.failed == {"1.2.4": 0x0112, "1.2.5": 0x0119, "1.2.6": 0xA7FF}
    assert report.reason("1.2.4") == "0x0112 no such object instance"
    assert report.reason("1.2.5") == "0x0119 class-instance conflict"
    assert report.reason("1.2.6") == "0xA7FF failure"
    assert report.reason("1.2.3") is None and report.reason("9.9") is None

    _, nothing_committed = sc.report_dataset("2.25.9", [], failed[:1])
    assert sc.parse_report(_wire(nothing_committed), 2).committed == frozenset()
    with pytest.raises(dl.ValidationError, match="Event Type ID 3"):
        sc.parse_report(ds, 3)
    del ds.TransactionUID
    with pytest.raises(dl.ValidationError, match="TransactionUID '' is missing"):
        sc.parse_report(ds, 2)
