"""The direct C-FIND path (dicomlab.net._fast.qr): same rows as pynetdicom's path, from
real peers; every way a query can break off ends the association and says why."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)
from test_direct import RawPeer, _pynetdicom_command
from test_faults import _accept_all, _read_pdu

import dicomlab as dl
from dicomlab.core.header import (
    CHARSET_TAG,
    EXPLICIT_LE,
    IMPLICIT_LE,
    encodings_of,
    scan_elements,
)
from dicomlab.core.results import ResultBuilder
from dicomlab.net import wire
from dicomlab.net._fast import qr as direct_qr
from dicomlab.net.association import open_association
from dicomlab.net.find import find_on
from dicomlab.peers import DcmQRSCP, Orthanc
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.raw import read_message

HOST = "127.0.0.1"
FIND = str(StudyRootQueryRetrieveInformationModelFind)

# -- rows from raw bytes are the rows pydicom's decode gives --------------------------------

_KEYS = [
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedInstances",
    "StudyInstanceUID",
    "Rows",
    "SliceThickness",
    "ImageComments",
]
_RESULT_KEYS = [k for k in _KEYS if k != "SpecificCharacterSet"]

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\\\0"), max_size=20)
values = st.fixed_dictionaries(
    {},
    optional={
        "PatientName": texts,
        "PatientID": st.text(alphabet="ABC123 ", max_size=12),
        "StudyDate": st.sampled_from(["20240229", "", "2024", "notadate"]),
        "StudyTime": st.sampled_from(["101530.5", "", "25", "1015", " 0930 "]),
        "ModalitiesInStudy": st.lists(st.sampled_from(["CT", "MR", "US"]), max_size=3),
        "StudyDescription": texts,
        "NumberOfStudyRelatedInstances": st.sampled_from(["12", "", "7 "]),
        "StudyInstanceUID": st.sampled_from(["1.2.3", "1.2.840.10008.99.1", ""]),
        "Rows": st.integers(0, 0xFFFF),
        "SliceThickness": st.sampled_from(["1.25", "", "0.5 "]),
        "ImageComments": texts,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(values, min_size=1, max_size=4),
    charset=st.sampled_from([None, "ISO_IR 192", "ISO_IR 100"]),
    syntax=st.sampled_from([IMPLICIT_LE, EXPLICIT_LE]),
)
def test_rows_read_from_raw_bytes_equal_pydicoms(
    rows: list[dict[str, Any]], charset: str | None, syntax: str
) -> None:
    raw, decoded = ResultBuilder(_RESULT_KEYS), ResultBuilder(_RESULT_KEYS)
    wanted = frozenset([*raw.tags, CHARSET_TAG])
    for row in rows:
        ds = Dataset()
        if charset:
            ds.SpecificCharacterSet = charset
        for kw, value in row.items():
            setattr(ds, kw, value)
        implicit = syntax == IMPLICIT_LE
        try:
            data = encode(ds, implicit, True)
        except (UnicodeEncodeError, ValueError):
            continue
        assert data is not None
        values = scan_elements(data, syntax, wanted, max(wanted))
        assert values is not None
        raw.add_raw(values, encodings_of(values))
        decoded.add(decode(BytesIO(data), implicit, True))
    pd.testing.assert_frame_equal(raw.frame(), decoded.frame())
    assert raw.undecodable == decoded.undecodable


# -- real peers: the direct path returns pynetdicom's rows -----------------------------------

TODAY = date(2026, 3, 1)


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="module")
def manifest(synth_folder: Path) -> pd.DataFrame:
    return dl.synth.write_studies(synth_folder, n_studies=10, seed=33, today=TODAY)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, manifest: pd.DataFrame) -> Iterator[Orthanc]:
    need_peer("Orthanc")
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as o:
        o.upload(manifest.path)
        yield o


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory, manifest: pd.DataFrame) -> Iterator[Any]:
    need_peer("dcmqrscp")
    need_peer("dcmqridx")
    with DcmQRSCP(tmp_path_factory.mktemp("qr"), files=list(manifest.path)) as q:
        yield q


@pytest.fixture(scope="module")
def local(
    tmp_path_factory: pytest.TempPathFactory, synth_folder: Path, manifest: pd.DataFrame
) -> Iterator[Any]:
    with dl.LocalPACS(tmp_path_factory.mktemp("lp"), port=0, allow_unknown="all") as lp:
        assert (lp.import_files(synth_folder).status == "stored").all()
        yield lp


class _Count:
    """Counts direct operations (``Querier._query`` runs) of the given command fields
    (default: C-FIND)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *fields: int) -> None:
        self.n = 0
        wanted = fields or (wire.C_FIND_RQ,)
        original = direct_qr.Querier._query

        def counted(querier: direct_qr.Querier, command_field: int, *args: Any) -> Any:
            if command_field in wanted:
                self.n += 1
            return original(querier, command_field, *args)

        monkeypatch.setattr(direct_qr.Querier, "_query", counted)


def _both_ways(
    node: dl.Node, query: dl.Query, monkeypatch: pytest.MonkeyPatch
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The query's rows by the direct path, then by pynetdicom's (the direct one refused)."""
    count = _Count(monkeypatch)
    direct = dl.find(node, query, calling_ae="DIRECT")
    assert count.n == 1, "the query did not take the direct path"
    with monkeypatch.context() as m:
        m.setattr(direct_qr.Querier, "find", lambda *a, **k: None)
        plain = dl.find(node, query, calling_ae="PLAIN")
    assert count.n == 1
    return direct, plain


def _same(direct: pd.DataFrame, plain: pd.DataFrame) -> None:
    assert direct.attrs["complete"] and plain.attrs["complete"]
    assert direct.attrs["undecodable"] == plain.attrs["undecodable"] == []
    order = [c for c in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID")]
    key = next(c for c in order if c in direct.columns)
    pd.testing.assert_frame_equal(
        direct.sort_values(key).reset_index(drop=True),
        plain.sort_values(key).reset_index(drop=True),
    )


@pytest.mark.peers
@pytest.mark.parametrize("peer", ["orthanc", "dcmqrscp", "local"])
def test_every_level_gives_pynetdicoms_rows(
    peer: str,
    manifest: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    node: dl.Node = request.getfixturevalue(peer).node
    study = manifest.StudyInstanceUID.iloc[2]
    series = manifest[manifest.StudyInstanceUID == study].SeriesInstanceUID.iloc[0]
    queries = [
        dl.Query.studies(),
        dl.Query.studies(PatientName="Müller*"),
        dl.Query.series(StudyInstanceUID=study),
        dl.Query.instances(StudyInstanceUID=study, SeriesInstanceUID=series),
    ]
    if peer != "dcmqrscp":  # its configuration here is Study Root only
        queries.append(dl.Query.patients())
    for query in queries:
        direct, plain = _both_ways(node, query, monkeypatch)
        assert len(direct) > 0, query.describe()
        _same(direct, plain)
    names = set(dl.find(node, dl.Query.studies(), calling_ae="DIRECT").PatientName)
    assert {"Müller^Jürgen", "Gómez^José"} <= names


@pytest.mark.peers
@pytest.mark.parametrize("syntax", [IMPLICIT_LE, EXPLICIT_LE])
def test_either_little_endian_transfer_syntax(
    orthanc: Orthanc, syntax: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, query = orthanc.node, dl.Query.studies()
    count = _Count(monkeypatch)
    context = build_context(FIND, [syntax])
    with open_association(node, [context], calling_ae="SYNTAX") as opened:
        assert str(opened.assoc.accepted_contexts[0].transfer_syntax[0]) == syntax
        direct = find_on(opened.assoc, node, query)
    assert count.n == 1
    with monkeypatch.context() as m:
        m.setattr(direct_qr.Querier, "find", lambda *a, **k: None)
        plain = dl.find(node, query, calling_ae="PLAIN")
    _same(direct, plain)


@pytest.mark.peers
def test_direct_queries_are_logged_with_their_matches(
    orthanc: Orthanc, manifest: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = _Count(monkeypatch)
    study = manifest.StudyInstanceUID.iloc[0]
    every = dl.find(orthanc.node, dl.Query.studies(), calling_ae="LOGGED")
    one = dl.find(orthanc.node, dl.Query.series(StudyInstanceUID=study), calling_ae="LOGGED")
    assert count.n == 2
    dl.log.flush()
    finds = dl.read_log(service="C-FIND").sort_values("started_at")
    assert list(finds.n_matches) == [len(every), len(one)]
    assert list(finds.status) == [0, 0] and (finds.role == "SCU").all()
    assert finds.study_instance_uid.isna().iloc[0]  # a universal match names no study
    assert finds.study_instance_uid.iloc[1] == study
    assoc = dl.log.read_associations()
    assert (assoc.outcome == "released").all() and (assoc.bytes_received > 0).all()


# -- a query that breaks off -----------------------------------------------------------------


def _response(mid: int, status: int, identifier: bytes | None = None) -> bytes:
    """A C-FIND-RSP command set, as pynetdicom encodes it (saying whether a data set follows)."""
    primitive = C_FIND()
    primitive.MessageIDBeingRespondedTo = mid
    primitive.AffectedSOPClassUID = FIND
    primitive.Status = status
    if identifier is not None:
        primitive.Identifier = BytesIO(identifier)
    return _pynetdicom_command(C_FIND_RSP(), primitive)


def _match(i: int, implicit: bool) -> bytes:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = f"P{i}"
    ds.StudyInstanceUID = f"1.2.3.{i}"
    data = encode(ds, implicit, True)
    assert data is not None
    return data


class ScriptedFindSCP(RawPeer):
    """Accepts, answers each C-FIND with three matches, then does ``then``: "abort"
    (A-ABORT), "mute" (nothing), "close" (closes the connection), "stray" (a message that
    is not a C-FIND-RSP) or "success". A peer failing on demand, which no real one does.
    """

    def __init__(self, then: str) -> None:
        super().__init__()
        self.then = then
        self.ended_by_abort = 0

    def node(self) -> dl.Node:
        return dl.Node("scripted", ae_title="SCRIPTED", host=HOST, port=self.port, timeout=1)

    def serve_one(self, conn: socket.socket) -> None:
        rq = _read_pdu(conn)
        assert rq is not None and rq[0] == 0x01
        conn.sendall(_accept_all(rq[1]))  # each context with its first transfer syntax
        request = A_ASSOCIATE_RQ()
        request.decode(rq[1])
        proposed = request.to_primitive().presentation_context_definition_list
        implicit = str(proposed[0].transfer_syntax[0]) == IMPLICIT_LE
        scan = read_message(conn, (wire.C_FIND_RQ,))
        if scan is None:
            return
        assert scan.command is not None and scan.context_id is not None
        mid, cx = int(scan.command.message_id or 0), scan.context_id
        for i in range(3):
            match = _match(i, implicit)
            conn.sendall(
                wire.command_pdu(cx, _response(mid, 0xFF00, match), 0)
                + b"".join(wire.data_pdus(cx, match, 0))
            )
        if self.then == "abort":
            conn.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x00")
        elif self.then == "stray":
            conn.sendall(wire.command_pdu(cx, wire.store_response(mid, FIND, "1.2.3", 0), 0))
        elif self.then == "success":
            conn.sendall(wire.command_pdu(cx, _response(mid, 0x0000), 0))
        if self.then == "close":
            return
        deadline = time.monotonic() + 5  # read until our side ends the association
        while time.monotonic() < deadline and not self._stop.is_set():
            pdu = _read_pdu(conn)
            if pdu is None:
                return
            if pdu[0] == 0x07:
                self.ended_by_abort += 1
                return
            if pdu[0] == 0x05:  # release
                conn.sendall(b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00")
                return


@pytest.mark.parametrize(
    ("then", "error"),
    [
        ("abort", "ended the association during C-FIND"),
        ("close", "ended the association during C-FIND"),
        ("mute", "no C-FIND response from"),
        ("stray", "something other than a C-FIND response"),
    ],
)
def test_a_query_that_breaks_off_keeps_its_rows_and_says_why(
    then: str, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = _Count(monkeypatch)
    with ScriptedFindSCP(then) as peer:
        t0 = time.monotonic()
        with pytest.warns(dl.PartialResultWarning, match="3 rows"):
            df = dl.find(peer.node(), dl.Query.studies(), calling_ae="ASKER")
        took = time.monotonic() - t0
        assert count.n == 1
        assert list(df.PatientID) == ["P0", "P1", "P2"]  # the matches before the break
        assert not df.attrs["complete"] and df.attrs["status"] is None
        assert error in df.attrs["error"], df.attrs["error"]
        assert took < 4  # the per-response timeout is 1 s
        if then in ("mute", "stray"):  # we ended it: never reused, aborted
            deadline = time.monotonic() + 3
            while peer.ended_by_abort < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert peer.ended_by_abort == 1
        peer.then = "success"
        again = dl.find(peer.node(), dl.Query.studies(), calling_ae="ASKER")
        assert again.attrs["complete"] and len(again) == 3
        assert peer.connections == 2


@pytest.mark.peers
def test_a_response_over_the_direct_limit_is_named_and_the_association_not_reused(
    orthanc: Orthanc, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(direct_qr, "_IDENTIFIER_LIMIT", 64)  # smaller than any response here
        with pytest.raises(dl.DimseError, match="DICOMLAB_FASTPATH=0") as caught:
            dl.find(orthanc.node, dl.Query.studies(), calling_ae="LIMITED")
    assert not isinstance(caught.value, dl.NetworkError)  # our limit, not the peer's doing
    again = dl.find(orthanc.node, dl.Query.studies(), calling_ae="LIMITED")
    assert again.attrs["complete"] and len(again) > 0
