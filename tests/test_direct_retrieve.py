"""The direct C-GET / C-MOVE path (dicomlab.net._fast.qr.Querier.retrieve): what real
peers send arrives whole and logged; a peer that gives up mid-retrieve is reported."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_GET_RSP
from pynetdicom.dimse_primitives import C_GET
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet,
)
from test_direct import RawPeer, _data_set, _pynetdicom_command
from test_direct_find import _Count
from test_direct_find import _response as _find_response
from test_faults import _accept_all, _read_pdu

import dicomlab as dl
from dicomlab.core.header import IMPLICIT_LE
from dicomlab.net import wire
from dicomlab.peers import DcmQRSCP, Orthanc
from dicomlab.testing.fixtures import need_peer

HOST = "127.0.0.1"
GET = str(StudyRootQueryRetrieveInformationModelGet)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("direct-retrieve")
    return dl.synth.write_studies(folder, n_studies=3, seed=919, image_size=64, max_instances=6)


def _count(monkeypatch: pytest.MonkeyPatch) -> _Count:
    """Counts direct C-GETs and C-MOVEs."""
    return _Count(monkeypatch, wire.C_GET_RQ, wire.C_MOVE_RQ)


def _same_bytes(studies: pd.DataFrame, lp: dl.LocalPACS) -> None:
    held = lp.instances()
    assert sorted(held.SOPInstanceUID) == sorted(studies.SOPInstanceUID)
    paths = dict(zip(held.SOPInstanceUID, held.path, strict=True))
    for row in studies.itertuples():
        assert _data_set(paths[row.SOPInstanceUID]) == _data_set(row.path), row.SOPInstanceUID


@pytest.fixture
def orthanc_and_local(
    tmp_path: Path, studies: pd.DataFrame
) -> Iterator[tuple[Orthanc, dl.LocalPACS]]:
    need_peer("Orthanc")
    with (
        dl.LocalPACS(tmp_path / "lp", ae_title="DLDIRECT", port=0, fsync=False) as lp,
        Orthanc.knowing(tmp_path / "o", lp.node) as o,
    ):
        o.upload(studies.path)
        yield o, lp


@pytest.mark.peers
@pytest.mark.parametrize("method", ["get", "move"])
def test_retrieve_from_orthanc_goes_the_direct_way_byte_exact_and_logged(
    orthanc_and_local: tuple[Orthanc, dl.LocalPACS],
    studies: pd.DataFrame,
    method: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    o, lp = orthanc_and_local
    count = _count(monkeypatch)
    uids = sorted(studies.StudyInstanceUID.unique())
    res = dl.retrieve(o.node, uids, into=lp, method=method, progress=False, calling_ae="DLDIRECT")
    assert isinstance(res, pd.DataFrame)
    assert count.n == len(uids)  # every study went the direct way
    assert res.complete.all() and (res.status == 0).all(), res.error.tolist()
    expected = studies.groupby("StudyInstanceUID").size()
    for row in res.itertuples():
        assert row.completed == expected[row.StudyInstanceUID] == row.received_instances
    _same_bytes(studies, lp)
    dl.log.flush()
    log = dl.read_log()
    ops = log[(log.service == f"C-{method.upper()}") & (log.role == "SCU")]
    assert len(ops) == len(uids) and (ops.status == 0).all()
    assert sorted(ops.study_instance_uid) == uids
    assert list(ops.sort_values("study_instance_uid").n_completed) == [expected[u] for u in uids]
    stores = log[(log.service == "C-STORE") & (log.role == "SCP")]
    assert len(stores) == len(studies) and (stores.status == 0).all()
    if method == "get":  # the sub-operations came on our own association
        assert set(stores.association_id) <= set(ops.association_id)


@pytest.mark.peers
def test_get_from_dcmqrscp_goes_the_direct_way(
    tmp_path: Path, studies: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_peer("dcmqrscp")
    need_peer("dcmqridx")
    count = _count(monkeypatch)
    with (
        DcmQRSCP(tmp_path / "qr", files=list(studies.path)) as qr,
        dl.LocalPACS(tmp_path / "lp", port=0, fsync=False) as lp,
    ):
        uids = sorted(studies.StudyInstanceUID.unique())
        res = dl.retrieve(qr.node, uids, into=lp, method="get", progress=False)
        assert isinstance(res, pd.DataFrame)
        assert res.complete.all(), res.error.tolist()
        assert count.n == len(uids)
        _same_bytes(studies, lp)


def _get_response(mid: int, status: int, remaining: int, completed: int) -> bytes:
    primitive = C_GET()
    primitive.MessageIDBeingRespondedTo = mid
    primitive.AffectedSOPClassUID = GET
    primitive.Status = status
    primitive.NumberOfRemainingSuboperations = remaining
    primitive.NumberOfCompletedSuboperations = completed
    primitive.NumberOfFailedSuboperations = 0
    primitive.NumberOfWarningSuboperations = 0
    return _pynetdicom_command(C_GET_RSP(), primitive)


class GivingUpGetSCP(RawPeer):
    """Answers a C-GET with one C-STORE sub-operation (a real instance), one pending
    response, then A-ABORT: an archive giving up mid-retrieve, which no real one does
    on demand."""

    def __init__(self, instance: Path) -> None:
        super().__init__()
        self.instance = instance

    def serve_one(self, conn: socket.socket) -> None:
        rq = _read_pdu(conn)
        assert rq is not None and rq[0] == 0x01
        held = str(dcmread(self.instance, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        conn.sendall(_accept_all(rq[1], prefer=held))
        buf = bytearray()
        while True:  # the planning C-FIND (answered with three matches), then the C-GET
            scan = wire.MessageScan(1 << 20, wanted=(wire.C_FIND_RQ, wire.C_GET_RQ))
            while (need := scan.feed(buf)) != 0:
                assert need is not None, bytes(buf[:64])
                piece = conn.recv(65536)
                if not piece:
                    return
                buf += piece
            del buf[: scan.pos]
            assert scan.command is not None and scan.context_id is not None
            if scan.command.command_field == wire.C_GET_RQ:
                break
            self._answer_find(conn, int(scan.command.message_id or 0), scan.context_id, rq[1])
        mid, get_cx = int(scan.command.message_id or 0), scan.context_id
        meta = dcmread(self.instance, stop_before_pixels=True)
        store_cx = _context_for(rq[1], str(meta.SOPClassUID), str(meta.file_meta.TransferSyntaxUID))
        command = wire.store_request(7, str(meta.SOPClassUID), str(meta.SOPInstanceUID))
        conn.sendall(
            wire.command_pdu(store_cx, command, 0)
            + b"".join(wire.data_pdus(store_cx, _data_set(self.instance), 16384))
        )
        answer = wire.MessageScan(1 << 20, wanted=(wire.C_STORE_RSP,))
        buf = bytearray()
        while answer.feed(buf) != 0:
            piece = conn.recv(65536)
            if not piece:
                return
            buf += piece
        conn.sendall(wire.command_pdu(get_cx, _get_response(mid, 0xFF00, 2, 1), 0))
        conn.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x00")  # A-ABORT, then close

    def _answer_find(self, conn: socket.socket, mid: int, cx: int, request: bytes) -> None:
        meta = dcmread(self.instance, stop_before_pixels=True)
        held = str(meta.file_meta.TransferSyntaxUID)
        implicit = _accepted_syntax(request, cx, held) == IMPLICIT_LE
        for i in range(3):
            ds = Dataset()
            ds.QueryRetrieveLevel = "IMAGE"
            ds.SOPClassUID = meta.SOPClassUID
            ds.SOPInstanceUID = f"{meta.SOPInstanceUID}.{i}" if i else meta.SOPInstanceUID
            match = encode(ds, implicit, True)
            assert match is not None
            conn.sendall(
                wire.command_pdu(cx, _find_response(mid, 0xFF00, match), 0)
                + b"".join(wire.data_pdus(cx, match, 0))
            )
        conn.sendall(wire.command_pdu(cx, _find_response(mid, 0x0000), 0))


def _accepted_syntax(request: bytes, context_id: int, prefer: str) -> str:
    """The transfer syntax ``_accept_all(request, prefer)`` accepted for a context."""
    rq = A_ASSOCIATE_RQ()
    rq.decode(request)
    for cx in rq.to_primitive().presentation_context_definition_list:
        if cx.context_id == context_id:
            offered = [str(ts) for ts in cx.transfer_syntax]
            return prefer if prefer in offered else offered[0]
    raise AssertionError(f"no context {context_id} proposed")


def _context_for(request: bytes, sop_class: str, syntax: str) -> int:
    rq = A_ASSOCIATE_RQ()
    rq.decode(request)
    for cx in rq.to_primitive().presentation_context_definition_list:
        offered = [str(ts) for ts in cx.transfer_syntax]
        if str(cx.abstract_syntax) == sop_class and syntax in offered:
            return int(cx.context_id or 0)
    raise AssertionError(f"no context proposed for {sop_class} in {syntax}")


def test_a_peer_giving_up_mid_get_is_reported_and_what_came_is_whole(
    tmp_path: Path, studies: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = _count(monkeypatch)
    first = studies.iloc[0]
    with (
        GivingUpGetSCP(Path(first.path)) as peer,
        dl.LocalPACS(tmp_path / "lp", port=0, fsync=False) as lp,
    ):
        node = dl.Node("quitter", ae_title="QUITTER", host=HOST, port=peer.port, timeout=2)
        res = dl.retrieve(
            node,
            [first.StudyInstanceUID],
            into=lp,
            method="get",
            progress=False,
        )
        assert isinstance(res, pd.DataFrame)
        assert count.n >= 1
        row = res.iloc[0]
        assert not row.complete and pd.isna(row.status)
        assert "ended the association during C-GET" in row.error, row.error
        assert row.received_instances == 1 and row.attempts >= 2  # retried on a new association
        assert peer.connections == row.attempts
        held = lp.instances()
        assert list(held.SOPInstanceUID) == [first.SOPInstanceUID]
        assert _data_set(held.path.iloc[0]) == _data_set(first.path)
        assert not list(Path(lp.archive.root).rglob("*.tmp"))
