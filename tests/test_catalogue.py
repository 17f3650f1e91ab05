"""A catalogue of edge cases a user relies on, each against the real peer that can show it.

1. A C-GET (or C-MOVE) of a study spanning 130 SOP classes: more storage contexts than
   one association carries (128).
2. A C-GET peer that refuses the SCP role for our storage contexts.
3. A malicious C-GET peer sending path-like UIDs ("../../evil", "/etc/passwd").
4. A private SOP class sent by dcmtk storescu into LocalPACS.
5. One C-FIND with more than 65,535 matches (16-bit counters would wrap).
6. An instance with an empty SOP Instance UID in the middle of a sending run.
7. A whitelist: an unknown calling AE rejected at association level.
8. A real TLS 1.1 ClientHello refused by the TLS port, TLS 1.2 served after it.

Real peers (Orthanc, dcmqrscp, storescu, echoscu, openssl) where one can show the case;
a pynetdicom AE or a raw socket peer built here only where no real peer misbehaves on
demand (2, 3, 6) or none can serve the case within the test's time (5). Every test stops
what it starts.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom.config
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)
from test_direct import RawPeer, _pynetdicom_command
from test_faults import _accept_all, _read_pdu

import dicomlab as dl
from dicomlab.core.header import IMPLICIT_LE
from dicomlab.net import wire
from dicomlab.peers import DcmQRSCP, Orthanc, peer_env
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.raw import read_message

HOST = "127.0.0.1"
CALLED = "DICOMLAB"
PRIVATE_CLASS = "1.2.826.0.1.3680043.9.9999.1.1"
_STORE_RESPONSE = re.compile(r"Received Store Response \(([^)]*)\)")


# -- helpers ----------------------------------------------------------------------------


def _ct(n: int, seed: int) -> list[Dataset]:
    """``n`` small synthetic CT instances (file meta included) of one study and series."""
    base = next(iter(dl.synth.generate(1, seed, modalities=("CT",), image_size=8)))
    out = []
    for i in range(n):
        ds = _set_uid(base, "SOPInstanceUID", dl.synth.uid("catalogue", seed, i))
        ds.InstanceNumber = i + 1
        out.append(ds)
    return out


def _set_uid(ds: Dataset, keyword: str, value: str) -> Dataset:
    """A copy of ``ds`` with ``keyword`` set (and its file meta twin, for the instance)."""
    out = copy.deepcopy(ds)
    setattr(out, keyword, value)
    if keyword == "SOPInstanceUID":
        out.file_meta.MediaStorageSOPInstanceUID = value
    if keyword == "SOPClassUID":
        out.file_meta.MediaStorageSOPClassUID = value
    return out


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def _operations() -> pd.DataFrame:
    dl.log.flush()
    return dl.read_log()


def _sent_requests(service: str) -> int:
    """How many ``service`` requests we (the SCU) sent in this test, from the network log."""
    ops = _operations()
    return int(((ops.role == "SCU") & (ops.service == service)).sum())


def _run(args: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=timeout,
        check=False,
    )


def _scp_rows(where: Callable[[pd.DataFrame], pd.Series], expected: int) -> pd.DataFrame:
    """The server's association log rows matching ``where``, once ``expected`` are written
    (a row is written when its connection closes, from the server's threads)."""
    deadline = time.monotonic() + 5
    while True:
        dl.log.flush()
        rows = dl.log.read_associations()
        rows = rows[(rows.role == "SCP") & where(rows).fillna(False)]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _held(lp: dl.LocalPACS) -> set[str]:
    return set(lp.instances().SOPInstanceUID)


# -- 1. more storage SOP classes than one association carries ------------------------------


_UNKNOWN_TO_DCMTK_367 = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.11.12",
        "1.2.840.10008.5.1.4.1.1.481.23",
        "1.2.840.10008.5.1.4.1.1.481.24",
        "1.2.840.10008.5.1.4.1.1.481.25",
        "1.2.840.10008.5.1.4.1.1.6.3",
        "1.2.840.10008.5.1.4.1.1.66.7",
        "1.2.840.10008.5.1.4.1.1.66.8",
        "1.2.840.10008.5.1.4.1.1.77.1.8",
        "1.2.840.10008.5.1.4.1.1.77.1.9",
        "1.2.840.10008.5.1.4.1.1.88.77",
        "1.2.840.10008.5.1.4.1.1.9.1.4",
        "1.2.840.10008.5.1.4.1.1.9.100.1",
        "1.2.840.10008.5.1.4.1.1.9.100.2",
    }
)
"""pynetdicom's storage classes that dcmtk 3.6.7 (Orthanc 1.10, dcmqrscp) does not know: it
refuses their contexts, so no real peer here could send them by C-GET at all."""


@dataclass(frozen=True)
class ManyClasses:
    """One study of 130 instances, each of its own storage SOP class (all known to the
    peers), in three series."""

    study: str
    files: list[Path]
    uids: set[str]
    classes: list[str]


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory: pytest.TempPathFactory) -> ManyClasses:
    folder = tmp_path_factory.mktemp("many-classes")
    template = _ct(1, seed=131)[0]
    known = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]
    classes = [c for c in known if c not in _UNKNOWN_TO_DCMTK_367][:130]
    study = dl.synth.uid("catalogue", "many-classes")
    files, uids = [], set()
    for i, sop_class in enumerate(classes):
        ds = _set_uid(template, "SOPClassUID", sop_class)
        ds = _set_uid(ds, "SOPInstanceUID", dl.synth.uid("catalogue", "many-classes", i))
        ds.StudyInstanceUID = study
        # 60 + 60 + 10: each series fits in one association, the study does not
        ds.SeriesInstanceUID = dl.synth.uid("catalogue", "many-classes", "series", i // 60)
        ds.SeriesNumber = i // 60 + 1
        ds.InstanceNumber = i + 1
        files.append(_save(ds, folder / f"{i:03d}.dcm"))
        uids.add(str(ds.SOPInstanceUID))
    assert len(set(classes)) == 130
    return ManyClasses(study, files, uids, classes)


@pytest.mark.peers
def test_get_of_a_study_spanning_130_sop_classes_is_refused_before_the_get_or_split(
    tmp_path: Path, many_classes: ManyClasses
) -> None:
    """Orthanc reporting SOP Class UIDs in C-FIND (StorageAccessOnFind): dicomlab knows the
    study needs 130 storage contexts, more than the 128 of one association. Either the
    retrieve still delivers everything (split over associations), or it refuses before
    any C-GET is sent, says why, and the way it suggests works."""
    need_peer("Orthanc")
    with (
        Orthanc(tmp_path / "o", config={"StorageAccessOnFind": "Always"}) as o,
        dl.LocalPACS(tmp_path / "lp", port=0, fsync=False) as lp,
    ):
        assert o.upload(many_classes.files) == 130
        res = dl.retrieve(
            o.node, [many_classes.study], into=lp, method="get", progress=False, calling_ae="GETTER"
        )
        assert isinstance(res, pd.DataFrame) and len(res) == 1
        row = res.iloc[0]
        if row.complete:
            assert _held(lp) == many_classes.uids
            return
        # Refused up front: nothing asked of the peer, nothing half-delivered.
        assert _sent_requests("C-GET") == 0, "a C-GET was sent that could not be served whole"
        assert row.received_instances == 0 and not _held(lp)
        assert isinstance(row.error, str) and "130" in row.error and "SOP class" in row.error
        assert "series" in row.error, f"the error suggests nothing that works: {row.error}"
        series = dl.find(
            o.node, dl.Query.series(StudyInstanceUID=many_classes.study), calling_ae="GETTER"
        )
        assert len(series) == 3
        again = dl.retrieve(o.node, series, into=lp, method="get", progress=False)
        assert isinstance(again, pd.DataFrame)
        assert again.complete.all(), again.error.tolist()
        assert _held(lp) == many_classes.uids


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def classes_unreported(
    request: pytest.FixtureRequest, tmp_path: Path, many_classes: ManyClasses
) -> Iterator[dl.Node]:
    """A real C-GET peer holding the 130-class study whose C-FIND does not say the SOP
    classes (Orthanc's default, dcmqrscp always)."""
    if request.param == "orthanc":
        need_peer("Orthanc")
        with Orthanc(tmp_path / "o") as o:
            o.upload(many_classes.files)
            yield o.node
    else:
        need_peer("dcmqrscp")
        need_peer("dcmqridx")
        with DcmQRSCP(tmp_path / "qr", files=many_classes.files) as qr:
            yield qr.node


@pytest.mark.peers
def test_get_from_a_peer_that_hides_sop_classes_reports_the_peers_final_status(
    tmp_path: Path, many_classes: ManyClasses, classes_unreported: dl.Node
) -> None:
    """The peer does not report SOP classes, so dicomlab proposes its 120 common storage
    classes; instances of the other classes cannot come. The outcome must carry the
    peer's final status (a failure or 0xB000, once: a final status is no broken
    association to retry), count what came, and say that instances failed."""
    with dl.LocalPACS(tmp_path / "lp", port=0, fsync=False) as lp:
        res = dl.retrieve(
            classes_unreported,
            [many_classes.study],
            into=lp,
            method="get",
            progress=False,
            calling_ae="GETTER",
        )
        assert isinstance(res, pd.DataFrame) and len(res) == 1
        row = res.iloc[0]
        held = _held(lp)
        assert held <= many_classes.uids
        assert row.received_instances == len(held)
        if row.complete:
            assert held == many_classes.uids
            return
        assert len(held) < 130
        assert not pd.isna(row.status), f"no final status reported: {row.error}"
        assert dl.decode_status(int(row.status)).category in ("failure", "warning")
        assert row.attempts == 1, f"a final status was retried: {row.error}"
        assert "broke off" not in row.error, row.error
        assert re.search(r"fail", row.error, re.I), row.error


def test_move_from_localpacs_of_130_sop_classes_delivers_all_or_refuses_whole(
    tmp_path: Path, many_classes: ManyClasses
) -> None:
    """LocalPACS as the C-MOVE SCP opens the sub-association to the destination with the
    contexts it decides (handlers.storage_contexts). A study of 130 classes must arrive
    whole, or be refused before any sub-operation with the reason: never 128 of 130 with
    the same two instances failing at every retry."""
    with dl.LocalPACS(tmp_path / "b", ae_title="DLDEST", port=0, fsync=False) as b:
        book = dl.NodeBook([dl.Node("dest", ae_title="DLDEST", host=HOST, port=b.port)])
        with dl.LocalPACS(tmp_path / "a", ae_title="DLSOURCE", port=0, book=book) as a:
            imported = a.import_files(many_classes.files[0].parent)
            assert (imported.status == "stored").sum() == 130
            res = dl.retrieve(
                a.node,
                [many_classes.study],
                into=b,
                method="move",
                progress=False,
                calling_ae="DLDEST",
            )
            assert isinstance(res, pd.DataFrame) and len(res) == 1
            row = res.iloc[0]
            held = _held(b)
            if row.complete:
                assert held == many_classes.uids
                return
            assert not held, (
                f"{len(held)} of 130 instances were moved and the rest silently left behind "
                f"(the sub-association carried {len(held)} contexts): {row.error}"
            )
            assert isinstance(row.error, str) and "SOP class" in row.error


# -- 2 and 3: pynetdicom C-GET peers built here ----------------------------------------------


class GetPeer:
    """A pynetdicom Query/Retrieve SCP answering C-FIND and C-GET from ``datasets``.

    ``store_roles``: the SCU/SCP roles it accepts for CT Image Storage; (False, False)
    refuses the SCP role we propose for it (no real peer refuses on demand).
    """

    def __init__(self, datasets: list[Dataset], store_roles: tuple[bool, bool]) -> None:
        self.datasets = datasets
        self.ae = AE(ae_title="GETPEER")
        for model in (
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            PatientRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelGet,
        ):
            self.ae.add_supported_context(model)
        scu_role, scp_role = store_roles
        self.ae.add_supported_context(CTImageStorage, scu_role=scu_role, scp_role=scp_role)
        self.sub_statuses: list[int] = []
        self.server: Any = None

    def __enter__(self) -> GetPeer:
        handlers = [(evt.EVT_C_FIND, self._find), (evt.EVT_C_GET, self._get)]
        self.server = self.ae.start_server((HOST, 0), block=False, evt_handlers=handlers)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()

    @property
    def node(self) -> dl.Node:
        port = int(self.server.server_address[1])
        return dl.Node("getpeer", ae_title="GETPEER", host=HOST, port=port, timeout=5)

    def _find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        for ds in self.datasets:
            match = Dataset()
            match.QueryRetrieveLevel = "IMAGE"
            match.StudyInstanceUID = event.identifier.get("StudyInstanceUID", "")
            match.SOPInstanceUID = ds.SOPInstanceUID
            match.SOPClassUID = ds.SOPClassUID
            yield 0xFF00, match
        yield 0x0000, None

    def _get(self, event: Any) -> Iterator[Any]:
        yield len(self.datasets)
        for ds in self.datasets:
            yield 0xFF00, ds


def test_a_get_peer_refusing_our_scp_role_is_reported_as_failed_not_success(
    tmp_path: Path,
) -> None:
    """The peer accepts CT Image Storage but not with us as its SCP, so it cannot send us a
    single instance: the outcome says the sub-operations failed."""
    datasets = _ct(4, seed=202)
    study = str(datasets[0].StudyInstanceUID)
    with (
        GetPeer(datasets, store_roles=(False, False)) as peer,
        dl.LocalPACS(tmp_path / "lp", port=0, fsync=False) as lp,
    ):
        res = dl.retrieve(peer.node, [study], into=lp, method="get", progress=False)
        assert isinstance(res, pd.DataFrame) and len(res) == 1
        row = res.iloc[0]
        assert not row.complete and not res.attrs.get("complete", False)
        assert row.expected_instances == 4 and row.received_instances == 0
        assert not _held(lp)
        assert not pd.isna(row.status)
        category = dl.decode_status(int(row.status)).category
        failed = 0 if pd.isna(row.failed) else int(row.failed)
        assert category != "success" and (failed == 4 or category == "failure"), row
        assert isinstance(row.error, str) and re.search(r"sub-operation|fail", row.error)
        assert "reported success" not in row.error
        assert "SCP role" in row.error and "method='move'" in row.error


_HOSTILE = {
    "dotdot-instance": ("SOPInstanceUID", "../../evil"),
    "absolute-instance": ("SOPInstanceUID", "/etc/passwd"),
    "dotdot-study": ("StudyInstanceUID", "1.2.3/../../x"),
}


def test_a_malicious_get_peer_cannot_write_outside_the_archive_and_we_say_we_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A C-GET peer sends three instances whose UIDs are paths, and one valid instance.
    Nothing is written outside the LocalPACS root, the valid one is stored, and the
    outcome table says that WE refused the three (and why), not that the peer failed."""
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.IGNORE)
    good, *rest = _ct(4, seed=303)
    hostile = [_set_uid(ds, k, v) for ds, (k, v) in zip(rest, _HOSTILE.values(), strict=True)]
    study = str(good.StudyInstanceUID)
    passwd = Path("/etc/passwd")
    passwd_before = hashlib.sha256(passwd.read_bytes()).hexdigest() if passwd.exists() else None
    stray_before = Path("/etc/passwd.dcm").exists()
    outside = tmp_path.parent
    root = tmp_path / "a" / "b" / "pacs"
    with (
        GetPeer([hostile[0], good, *hostile[1:]], store_roles=(True, True)) as peer,
        dl.LocalPACS(root, port=0, fsync=False) as lp,
    ):
        before = _files_under(outside)
        res = dl.retrieve(peer.node, [study], into=lp, method="get", progress=False)
        new = {
            p
            for p in _files_under(outside) - before
            if not (p.suffix == ".parquet" and "logs" in p.parts)
            and not p.name.startswith("jobs.sqlite")  # the jobs file (dl.jobs), in the home
        }
        assert all(p.resolve().is_relative_to(lp.archive.root) for p in new), new
        assert not [p for p in _files_under(outside) if re.search("evil|passwd", p.name)]
        assert not [p for p in Path.cwd().iterdir() if re.search("evil|passwd", p.name)]
        assert Path("/etc/passwd.dcm").exists() == stray_before
        if passwd_before is not None:
            assert hashlib.sha256(passwd.read_bytes()).hexdigest() == passwd_before
        assert _held(lp) == {str(good.SOPInstanceUID)}
        on_disk = {p.resolve() for p in lp.archive.files.rglob("*") if p.is_file()}
        assert on_disk == {Path(p).resolve() for p in lp.instances().path}

        assert isinstance(res, pd.DataFrame) and len(res) == 1
        row = res.iloc[0]
        assert not row.complete and row.received_instances == 1
        assert isinstance(row.error, str)
        assert "at the peer" not in row.error, f"blames the peer for our refusal: {row.error}"
        assert re.search(r"refus", row.error, re.I), row.error
        assert "UID" in row.error, f"does not say why they were refused: {row.error}"
        # the right AE on each side: the instance came from the peer, not from us
        assert lp.instances().source_ae.tolist() == ["GETPEER"]
    ops = _operations()
    stores = ops[(ops.role == "SCP") & (ops.service == "C-STORE")]
    refused = stores[stores.status != 0]
    assert len(refused) == 3 and (refused.peer_ae == "GETPEER").all()
    assert refused.error.str.contains("not a valid UID").all(), refused.error.tolist()


# -- 4. a private SOP class from dcmtk storescu -----------------------------------------------

_PRIVATE_PROFILE = f"""\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[[PresentationContexts]]
[StoreContexts]
PresentationContext1 = {PRIVATE_CLASS}\\Uncompressed
PresentationContext2 = CTImageStorage\\Uncompressed

[[Profiles]]
[Private]
PresentationContexts = StoreContexts
"""


@pytest.mark.peers
def test_a_private_sop_class_from_storescu_is_refused_at_negotiation_and_the_next_file_stored(
    tmp_path: Path,
) -> None:
    """Decision: refused. LocalPACS accepts the storage SOP classes it knows (pynetdicom's
    standard list), as Orthanc does by default (it accepts unknown classes only when
    configured to); ``allow_unknown`` is about unknown calling AEs, not unknown SOP classes.
    The refusal is the DICOM one for an unsupported class: its presentation context is
    rejected (abstract syntax not supported, PS3.8 9.3.3.2), so no C-STORE can carry it,
    nothing is indexed, and the same storescu run still stores the CT that follows.

    storescu refuses by itself to propose an unknown class (``-R`` stops at "unknown
    storage SOP class"); an association profile (``-xf``) makes it propose the file's class.
    """
    need_peer("storescu")
    private, ct = _ct(2, seed=404)
    private = _set_uid(private, "SOPClassUID", PRIVATE_CLASS)
    files = [_save(private, tmp_path / "private.dcm"), _save(ct, tmp_path / "ct.dcm")]
    profile = tmp_path / "storescu.cfg"
    profile.write_text(_PRIVATE_PROFILE)
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        done = _run(
            [
                *("storescu", "-v", "+v", "-nh", "-xf", str(profile), "Private"),
                *("-aet", "DCMTKSCU", "-aec", CALLED, HOST, str(lp.port), *map(str, files)),
            ]
        )
        out = done.stdout + done.stderr
        assert f"Abstract Syntax: {PRIVATE_CLASS}" in out, out  # it was proposed
        assert re.search(r"Context ID:\s+1 \(Abstract Syntax Not Supported\)", out), out
        assert f"No presentation context for: (unknown SOP class) {PRIVATE_CLASS}" in out, out
        assert _STORE_RESPONSE.findall(out) == ["Success"], out  # the CT, and only it
        held = lp.instances()
        assert list(held.SOPInstanceUID) == [str(ct.SOPInstanceUID)]
        assert PRIVATE_CLASS not in set(held.SOPClassUID)
        assert len([p for p in lp.archive.files.rglob("*") if p.is_file()]) == 1
        assert dl.echo(lp.node, calling_ae="PROBE").ok


# -- 5. more than 65,535 matches for one C-FIND ----------------------------------------------

_BIG = 70_000
_BIG_STUDY = "1.2.826.0.1.3680043.9.7777.1"
_BIG_SERIES = _BIG_STUDY + ".1"


def _accepted_syntax(request: bytes, context_id: int) -> str:
    """The transfer syntax ``_accept_all`` accepted for a context (its first one)."""
    rq = A_ASSOCIATE_RQ()
    rq.decode(request)
    for cx in rq.to_primitive().presentation_context_definition_list:
        if cx.context_id == context_id:
            return str(cx.transfer_syntax[0])
    raise AssertionError(f"no context {context_id} proposed")


def _find_response(mid: int, sop_class: str, status: int, identifier: bytes | None = None) -> bytes:
    """A C-FIND-RSP command set as pynetdicom encodes it."""
    primitive = C_FIND()
    primitive.MessageIDBeingRespondedTo = mid
    primitive.AffectedSOPClassUID = sop_class
    primitive.Status = status
    if identifier is not None:
        primitive.Identifier = io.BytesIO(identifier)
    return _pynetdicom_command(C_FIND_RSP(), primitive)


class BigFindSCP(RawPeer):
    """Answers one image-level C-FIND with 70,000 matches, pre-encoded, as fast as the
    socket takes them, then releases.

    Why not a real archive: LocalPACS answers about 650 C-FIND matches a second here
    (measured with findscu: 70,000 in 110 s); dcmqrscp would need 70,000 files indexed by
    dcmqridx (quadratic), Orthanc 70,000 uploads. test_find_large covers 50,000 matches
    from LocalPACS; this covers the client past 65,535.
    """

    def serve_one(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        rq = _read_pdu(conn)
        assert rq is not None and rq[0] == 0x01
        conn.sendall(_accept_all(rq[1]))
        scan = read_message(conn, (wire.C_FIND_RQ,))
        if scan is None:
            return
        assert scan.command is not None and scan.context_id is not None
        mid, cx = int(scan.command.message_id or 0), scan.context_id
        sop_class = str(scan.command.sop_class)
        implicit = _accepted_syntax(rq[1], cx) == IMPLICIT_LE
        template = Dataset()
        template.QueryRetrieveLevel = "IMAGE"
        template.StudyInstanceUID = _BIG_STUDY
        template.SOPInstanceUID = f"{_BIG_SERIES}.100000"  # six digits for every match
        template.InstanceNumber = "100000"
        raw = encode(template, implicit, True)
        assert raw is not None and raw.count(b"100000") == 2
        command = wire.command_pdu(cx, _find_response(mid, sop_class, 0xFF00, raw), 0)
        chunk: list[bytes] = []
        for i in range(100_000, 100_000 + _BIG):
            match = raw.replace(b"100000", str(i).encode())
            chunk.append(command + b"".join(wire.data_pdus(cx, match, 0)))
            if len(chunk) == 2000:
                conn.sendall(b"".join(chunk))
                chunk = []
        final = wire.command_pdu(cx, _find_response(mid, sop_class, 0x0000), 0)
        conn.sendall(b"".join(chunk) + final)
        pdu = _read_pdu(conn)
        if pdu is not None and pdu[0] == 0x05:  # A-RELEASE-RQ
            conn.sendall(b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00")


@pytest.mark.slow
def test_70000_matches_for_one_image_level_find_arrive_whole_and_are_logged() -> None:
    with BigFindSCP() as peer:
        node = dl.Node("big", ae_title="BIGFIND", host=HOST, port=peer.port, timeout=30)
        query = dl.Query.instances(StudyInstanceUID=_BIG_STUDY, return_keys=["InstanceNumber"])
        df = dl.find(node, query, calling_ae="ASKER")
    assert df.attrs["complete"] is True and df.attrs["status"] == 0, df.attrs
    assert len(df) == _BIG
    assert df.SOPInstanceUID.is_unique
    numbers = pd.to_numeric(df.InstanceNumber)
    assert numbers.min() == 100_000 and numbers.max() == 100_000 + _BIG - 1
    assert numbers.is_unique
    ops = _operations()
    finds = ops[(ops.role == "SCU") & (ops.service == "C-FIND")]
    assert list(finds.n_matches) == [_BIG] and list(finds.status) == [0]


# -- 6. an empty SOP Instance UID -------------------------------------------------------------


@pytest.mark.peers
def test_an_empty_sop_instance_uid_is_refused_and_the_next_instance_stored(
    tmp_path: Path,
) -> None:
    """dcmtk's storescu will not send an empty SOP Instance UID at all (its DIMSE layer
    answers "Badly formed message" for that file and, with -nh, goes on), so LocalPACS
    must hold the rest of that run. The refusal itself is then shown with a pynetdicom
    sender, which sends such a C-STORE as it is (no real peer does on demand): a failure
    status, nothing indexed or written, and the next C-STORE on the same association
    stored."""
    need_peer("storescu")
    first, empty, after, by_pynetdicom = _ct(4, seed=606)
    empty = _set_uid(empty, "SOPInstanceUID", "")
    files = [_save(first, tmp_path / "first.dcm")]
    files.append(tmp_path / "empty.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty.save_as(files[-1], enforce_file_format=False)
    files.append(_save(after, tmp_path / "after.dcm"))
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as lp:
        done = _run(
            ["storescu", "-v", "-nh", "-aet", "DCMTKSCU", "-aec", CALLED, HOST, str(lp.port)]
            + [str(f) for f in files]
        )
        out = done.stdout + done.stderr
        assert _STORE_RESPONSE.findall(out) == ["Success", "Success"], out
        assert _held(lp) == {str(first.SOPInstanceUID), str(after.SOPInstanceUID)}

        failed0 = lp.stats["failed"]
        ae = AE(ae_title="RAWSCU")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate(HOST, lp.port, ae_title=CALLED)
        try:
            assert assoc.is_established
            refused = assoc.send_c_store(empty)
            stored = assoc.send_c_store(by_pynetdicom)
        finally:
            if assoc.is_established:
                assoc.release()
            if assoc.is_alive():
                assoc.abort()
        assert "Status" in refused and "Status" in stored
        assert dl.decode_status(int(refused.Status)).category == "failure", refused
        assert int(stored.Status) == 0
        assert lp.stats["failed"] == failed0 + 1
        held = lp.instances()
        assert "" not in set(held.SOPInstanceUID) and held.SOPInstanceUID.notna().all()
        assert set(held.SOPInstanceUID) == {
            str(first.SOPInstanceUID),
            str(after.SOPInstanceUID),
            str(by_pynetdicom.SOPInstanceUID),
        }
        on_disk = {p.resolve() for p in lp.archive.files.rglob("*") if p.is_file()}
        assert on_disk == {Path(p).resolve() for p in held.path}


# -- 7. a whitelist rejects unknown calling AEs at association level ------------------------


_ECHO_FROM_ELSEWHERE = """
import json, sys
import dicomlab as dl
r = dl.echo(dl.Node.parse(sys.argv[1], name="pacs"), calling_ae=sys.argv[2])
print(json.dumps({"ok": r.ok, "cause": r.cause, "status": r.status, "detail": r.detail}))
"""


def _echo_from_another_process(node: dl.Node, calling_ae: str) -> dict[str, Any]:
    """dl.echo run by another Python process (the LocalPACS trusts its own process's
    connections whatever their AE title: a stranger is somebody else)."""
    done = _run([sys.executable, "-c", _ECHO_FROM_ELSEWHERE, node.address, calling_ae])
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.peers
def test_a_whitelist_rejects_an_unknown_calling_ae_at_association_level(tmp_path: Path) -> None:
    echoscu = need_peer("echoscu")
    book = dl.NodeBook([dl.Node("friend", ae_title="FRIEND", host=HOST, port=104)])
    with dl.LocalPACS(tmp_path / "pacs", port=0, book=book, allow_unknown=()) as lp:
        stranger = _run([echoscu, "-aet", "STRANGER", "-aec", CALLED, HOST, str(lp.port)])
        out = stranger.stdout + stranger.stderr
        assert stranger.returncode != 0, out
        assert "Association Rejected" in out, out
        assert "Rejected Permanent" in out and "Source: Service User" in out, out
        assert "Reason: Calling AE Title Not Recognized" in out, out

        r = _echo_from_another_process(lp.node, "STRANGER")
        assert not r["ok"] and r["cause"] == "rejected" and r["status"] is None, r
        assert re.search(r"calling AE title not recogni[sz]ed", r["detail"], re.I), r

        # the one known node is served, by dcmtk and by dicomlab
        friend = _run([echoscu, "-aet", "FRIEND", "-aec", CALLED, HOST, str(lp.port)])
        assert friend.returncode == 0, friend.stderr
        assert _echo_from_another_process(lp.node, "FRIEND")["ok"]
        assert lp.stats["rejected"] == 2
        rows = _scp_rows(lambda df: df.peer_ae == "STRANGER", expected=2)
        assert list(rows.outcome) == ["rejected", "rejected"], rows
        assert rows.reject_reason.str.contains("calling AE", case=False).all(), rows


# -- 8. TLS 1.1 refused by the server, TLS 1.2 served after it --------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dl.tls.DemoCertificates:
    return dl.tls.make_demo_certificates(tmp_path_factory.mktemp("certs"))


@contextmanager
def _tls11_allowed() -> Iterator[None]:
    """ssl.TLSVersion.TLSv1_1 is deprecated (a DeprecationWarning, an error here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _tls11_client() -> ssl.SSLContext:
    """A client that offers TLS 1.1 only; security level 0, so that OpenSSL lets it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with _tls11_allowed():
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def _handshake_in_memory(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    """The version a handshake between the two contexts agrees on (over a socketpair)."""
    a, b = socket.socketpair()
    srv = server.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    cli = client.wrap_socket(b, do_handshake_on_connect=False)
    with srv, cli:
        srv.settimeout(10)
        cli.settimeout(10)
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                srv.do_handshake()
            except (OSError, ValueError) as exc:
                errors.append(exc)

        t = threading.Thread(target=serve)
        t.start()
        cli.do_handshake()
        t.join(10)
        assert not errors, errors
        return cli.version()


@pytest.mark.peers
def test_a_real_tls_1_1_handshake_is_refused_by_the_server_and_tls_1_2_served_after(
    tmp_path: Path, certs: dl.tls.DemoCertificates
) -> None:
    openssl = need_peer("openssl")
    # Control: our TLS 1.1 client really makes a TLS 1.1 handshake (with a server that
    # allows it), so a failure against LocalPACS is the server's refusal, not our client's.
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with _tls11_allowed():
        permissive.minimum_version = ssl.TLSVersion.TLSv1_1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.load_cert_chain(certs.server_cert, certs.server_key)
    assert _handshake_in_memory(permissive, _tls11_client()) == "TLSv1.1"

    with dl.LocalPACS(
        tmp_path / "pacs", port=0, tls=certs.server(), tls_port=0, allow_unknown="all"
    ) as lp:
        assert lp.tls_port is not None
        # Python's ssl: the server answers the TLS 1.1 ClientHello with a protocol_version
        # alert (received by us: the refusal is the server's).
        with (
            socket.create_connection((HOST, lp.tls_port), timeout=10) as raw,
            pytest.raises(ssl.SSLError) as refused,
        ):
            _tls11_client().wrap_socket(raw)
        assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value

        # openssl s_client, an independent client, offering TLS 1.1 only
        old = _run(
            [
                *(openssl, "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"),
                *("-connect", f"{HOST}:{lp.tls_port}", "-CAfile", certs.ca),
            ],
            timeout=30,
        )
        assert old.returncode != 0, old.stdout
        assert "alert protocol version" in old.stderr, old.stderr
        assert "Protocol  : TLSv1.1" in old.stdout, old.stdout  # what it offered

        # TLS 1.2 after it: openssl's handshake completes, dicomlab's C-ECHO is answered
        new = _run(
            [
                *(openssl, "s_client", "-tls1_2", "-connect", f"{HOST}:{lp.tls_port}"),
                *("-CAfile", certs.ca, "-verify_return_error"),
            ],
            timeout=30,
        )
        assert new.returncode == 0, new.stderr
        assert "Protocol  : TLSv1.2" in new.stdout
        r = dl.echo(lp.tls_node, calling_ae="TLS12")
        assert r.ok, r.detail
        assert dl.echo(lp.node, calling_ae="PLAIN").ok

        # both refusals are in the server's network log, as failed TLS handshakes
        handshake = _scp_rows(
            lambda df: df.tls & (df.outcome == "failed") & df.error.str.contains("TLS handshake"),
            expected=2,
        )
        assert len(handshake) == 2, handshake[["outcome", "error"]].to_string()
        assert handshake.error.str.contains("protocol", case=False).all(), handshake.error
