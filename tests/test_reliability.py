"""Nothing corrupt or mismatched is stored, and one bad message fails only itself.

A hand-built peer (dicomlab.testing.raw) sends what no real peer sends on demand: a
data set cut inside its pixel data, UIDs that contradict the command, command sets
missing a required field. dcmtk's storescu sends a batch with one bad file in it.
Every case runs with the fast path on and off (``DICOMLAB_FASTPATH=0``: pynetdicom as
shipped), since the two receive C-STOREs on different code.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import DeflatedExplicitVRLittleEndian

import dicomlab as dl
from dicomlab.core.structure import structure_error
from dicomlab.net import wire
from dicomlab.peers import peer_env
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.raw import A_ABORT, A_ASSOCIATE_AC, EXPLICIT_LE, RawAssociation

CALLED = "DICOMLAB"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
_STORE_RESPONSE = re.compile(r"Received Store Response \(([^)]*)\)")


@pytest.fixture(params=["fast", "pynetdicom"])
def path_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pynetdicom":
        monkeypatch.setenv("DICOMLAB_FASTPATH", "0")
    return str(request.param)


@pytest.fixture
def lp(tmp_path: Path, path_kind: str) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all") as server:
        yield server


def _ct(seed: int) -> Dataset:
    return next(iter(dl.synth.generate(1, seed, modalities=("CT",), max_instances=1)))


def _encoded(ds: Dataset) -> bytes:
    """The data set alone (no preamble or meta), explicit VR little endian."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    raw = buf.getvalue()
    (meta_length,) = struct.unpack_from("<I", raw, 140)
    return raw[144 + meta_length :]


def _store_rq(ds: Dataset, message_id: int, sop_class: str = "", sop_instance: str = "") -> bytes:
    return wire.store_request(
        message_id, sop_class or str(ds.SOPClassUID), sop_instance or str(ds.SOPInstanceUID)
    )


def _raw_store(
    lp: dl.LocalPACS, messages: list[tuple[bytes, bytes]], contexts: list[str] | None = None
) -> list[wire.Command | None]:
    """Send each (command, data set) on one association; the responses."""
    with RawAssociation(lp.port) as raw:
        proposed = [(uid, [EXPLICIT_LE]) for uid in contexts or [CT]]
        assert raw.associate("RAWSCU", CALLED, proposed) == A_ASSOCIATE_AC
        responses = []
        for command, data in messages:
            raw.send_message(1, command, data)
            responses.append(raw.read_response())
        raw.release()
    return responses


def _held(lp: dl.LocalPACS) -> set[str]:
    return set(lp.instances().SOPInstanceUID)


def _files(lp: dl.LocalPACS) -> set[Path]:
    return {p for p in (lp.archive.root / "files").rglob("*") if p.is_file()}


# -- 1. a data set that ends inside an element ------------------------------------------------


def test_a_truncated_data_set_is_refused_with_nothing_written_and_the_next_stored(
    lp: dl.LocalPACS,
) -> None:
    """The reported case: pixel data declares 8,192 bytes, 3,672 arrive; success was answered,
    the file indexed and later served by C-GET as complete."""
    bad, good = _ct(1), _ct(2)
    bad.PixelData = bytes(8192)
    bad.Rows, bad.Columns = 64, 64
    body = _encoded(bad)
    cut = body[: len(body) - (8192 - 3672)]
    assert structure_error(cut, EXPLICIT_LE) is not None
    responses = _raw_store(lp, [(_store_rq(bad, 1), cut), (_store_rq(good, 2), _encoded(good))])
    first, second = responses
    assert first is not None and first.status is not None
    assert 0xC000 <= first.status <= 0xCFFF, hex(first.status)
    assert first.error_comment == "(7FE0,0010) declares 8192 bytes, 3672 follow"
    assert second is not None and second.status == 0x0000
    assert _held(lp) == {str(good.SOPInstanceUID)}
    assert len(_files(lp)) == 1
    assert not list(lp.archive.root.rglob("*.tmp"))
    assert lp.stats["failed"] == 1


@pytest.mark.parametrize(
    "cut",
    ["inside-a-header", "inside-a-sequence", "unclosed-sequence", "stray-bytes-at-the-end"],
)
def test_other_broken_structures_are_refused(lp: dl.LocalPACS, cut: str) -> None:
    ds = _ct(3)
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-D1100", "SRT", "Head"
    ds.AnatomicRegionSequence = [item]
    body = _encoded(ds)
    seq_tag = struct.pack("<HH", 0x0008, 0x2218) + b"SQ"
    at = body.index(seq_tag)
    broken = {
        "inside-a-header": body[: at + 5],
        "inside-a-sequence": body[: at + 30],
        # an undefined-length sequence whose delimiter never comes
        "unclosed-sequence": body[:at] + seq_tag + b"\0\0" + b"\xff\xff\xff\xff",
        "stray-bytes-at-the-end": body + b"\x10\x00\x10",
    }[cut]
    (rsp,) = _raw_store(lp, [(_store_rq(ds, 1), broken)])
    assert rsp is not None and rsp.status is not None and 0xC000 <= rsp.status <= 0xCFFF
    assert str(ds.SOPInstanceUID) not in _held(lp)
    assert not _files(lp)


# -- 4. UIDs that contradict the command or the context ----------------------------------------


def test_uids_that_contradict_the_command_or_the_context_are_refused(lp: dl.LocalPACS) -> None:
    ds, mr = _ct(4), _ct(5)
    mr.SOPClassUID = MR
    good = _ct(6)
    responses = _raw_store(
        lp,
        [
            # the command names another instance than the data set holds
            (_store_rq(ds, 1, sop_instance=dl.synth.uid("other")), _encoded(ds)),
            # the data set is an MR, the command and context say CT
            (_store_rq(mr, 2, sop_class=CT), _encoded(mr)),
            (_store_rq(good, 3), _encoded(good)),
        ],
    )
    statuses = [r.status if r is not None else None for r in responses]
    assert statuses == [0xA900, 0xA900, 0x0000]
    assert "SOP Instance UID" in (responses[0].error_comment or "")  # type: ignore[union-attr]
    assert "SOP Class UID" in (responses[1].error_comment or "")  # type: ignore[union-attr]
    assert _held(lp) == {str(good.SOPInstanceUID)}


def test_a_command_on_a_context_of_another_sop_class_is_refused(lp: dl.LocalPACS) -> None:
    """An MR sent (command and data set agreeing) on the context negotiated for CT."""
    mr = _ct(7)
    mr.SOPClassUID = MR
    with RawAssociation(lp.port) as raw:
        assert raw.associate("RAWSCU", CALLED, [(CT, [EXPLICIT_LE]), (MR, [EXPLICIT_LE])]) == (
            A_ASSOCIATE_AC
        )
        raw.send_message(1, _store_rq(mr, 1), _encoded(mr))  # context 1 is CT's
        rsp = raw.read_response()
        assert rsp is not None and rsp.status == 0xA900, rsp
        raw.send_message(3, _store_rq(mr, 2), _encoded(mr))  # context 3 is MR's
        rsp = raw.read_response()
        assert rsp is not None and rsp.status == 0x0000, rsp
        raw.release()
    assert _held(lp) == {str(mr.SOPInstanceUID)}


# -- 3. a command set that cannot be understood -------------------------------------------------


@pytest.mark.parametrize("missing", ["CommandField", "CommandDataSetType", "MessageID"])
def test_a_command_set_missing_a_required_field_gets_an_a_abort(
    lp: dl.LocalPACS, missing: str
) -> None:
    ds = _ct(8)
    elements = {
        0x00000002: wire._uid(str(ds.SOPClassUID)),
        0x00000100: struct.pack("<H", 0x0001),  # C-STORE-RQ
        0x00000110: struct.pack("<H", 1),
        0x00000700: struct.pack("<H", 0),
        0x00000800: struct.pack("<H", 0x0001),  # a data set follows
        0x00001000: wire._uid(str(ds.SOPInstanceUID)),
    }
    tag = {"CommandField": 0x00000100, "CommandDataSetType": 0x00000800, "MessageID": 0x00000110}
    del elements[tag[missing]]
    from dicomlab.testing.raw import command_set

    with RawAssociation(lp.port) as raw:
        assert raw.associate("RAWSCU", CALLED, [(CT, [EXPLICIT_LE])]) == A_ASSOCIATE_AC
        raw.send_message(1, command_set(elements), _encoded(ds))
        kind, _ = raw.read_pdu()
        assert kind == A_ABORT, f"expected an A-ABORT, got PDU type {kind:#x}"
    assert str(ds.SOPInstanceUID) not in _held(lp)
    r = dl.echo(lp.node)
    assert r.ok, r.detail
    good = _ct(9)
    (rsp,) = _raw_store(lp, [(_store_rq(good, 1), _encoded(good))])
    assert rsp is not None and rsp.status == 0


# -- 2. one bad file in a storescu batch ----------------------------------------------------------


@pytest.mark.peers
def test_storescu_batch_with_a_non_ascii_uid_stores_the_other_four(
    tmp_path: Path, lp: dl.LocalPACS
) -> None:
    """good, bad, good, good, good: the bad one refused, the association goes on."""
    storescu = need_peer("storescu")
    files = []
    for i in range(5):
        ds = _ct(20 + i)
        if i == 1:
            ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.1\xe9"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        files.append(tmp_path / f"{i}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    proc = subprocess.run(
        [storescu, "-v", "-nh", "-aet", "DCMTKSCU", "-aec", CALLED, "127.0.0.1", str(lp.port)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert _STORE_RESPONSE.findall(out) == [
        "Success",
        "Error: CannotUnderstand",
        "Success",
        "Success",
        "Success",
    ], out
    assert "Peer Aborted" not in out
    held = _held(lp)
    assert len(held) == 4
    assert all(dcmread(f).SOPInstanceUID in held for i, f in enumerate(files) if i != 1)
    assert lp.stats["failed"] == 1


# -- a long answer is not an idle association ---------------------------------------------------


@pytest.mark.peers
def test_a_find_answered_for_longer_than_the_idle_timeout_is_not_aborted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server streams matches for 3 s with idle_timeout=1: findscu gets all, then
    releases normally (pynetdicom only counted received PDUs as activity)."""
    findscu = need_peer("findscu")
    folder = tmp_path / "thirty"
    folder.mkdir()
    for i in range(30):
        ds = _ct(100 + i)
        ds.StudyInstanceUID = dl.synth.uid("long-find", str(i))
        ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)
    with dl.LocalPACS(tmp_path / "pacs", port=0, allow_unknown="all", idle_timeout=1) as slow:
        assert (slow.import_files(folder).status == "stored").all()
        find = slow.archive.index.find

        def dawdle(*args: object, **kwargs: object) -> Iterator[object]:
            for match in find(*args, **kwargs):  # type: ignore[arg-type]
                time.sleep(0.1)
                yield match

        monkeypatch.setattr(slow.archive.index, "find", dawdle)
        proc = subprocess.run(
            [
                findscu,
                "-v",
                "-S",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                "StudyInstanceUID",
                "-aet",
                "LONGFIND",
                "-aec",
                CALLED,
                "127.0.0.1",
                str(slow.port),
            ],
            capture_output=True,
            text=True,
            env=peer_env(),
            timeout=60,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count("(Pending)") == 30, out
    assert "Received Final Find Response (Success)" in out
    assert "Abort" not in out


# -- the same checks for imported files ----------------------------------------------------------


def test_import_reports_cut_short_and_mismatched_files_and_indexes_neither(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good, cut, other = _ct(40), _ct(41), _ct(42)
    good.save_as(folder / "good.dcm", enforce_file_format=True)
    cut.save_as(folder / "cut.dcm", enforce_file_format=True)
    whole = (folder / "cut.dcm").read_bytes()
    (folder / "cut.dcm").write_bytes(whole[:-100])  # the pixel data ends early
    other.save_as(folder / "other.dcm", enforce_file_format=True)
    uid = str(other.SOPInstanceUID).encode()
    lie = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")  # same length: offsets unchanged
    raw = (folder / "other.dcm").read_bytes()
    (folder / "other.dcm").write_bytes(raw.replace(uid, lie, 1))  # the meta comes first
    with dl.LocalPACS(tmp_path / "pacs", port=0) as lp:
        done = lp.import_files(folder)
        done.index = [Path(p).name for p in done.path]
        assert done.loc["good.dcm", "status"] == "stored"
        assert done.loc["cut.dcm", "status"] == "invalid"
        assert "(7FE0,0010) declares" in done.loc["cut.dcm", "error"]
        assert done.loc["other.dcm", "status"] == "invalid"
        assert "SOP Instance UID" in done.loc["other.dcm", "error"]
        assert "the file meta's" in done.loc["other.dcm", "error"]
        assert _held(lp) == {str(good.SOPInstanceUID)}
        assert len(_files(lp)) == 1


def test_a_cut_deflated_file_is_reported_invalid_not_raised(tmp_path: Path) -> None:
    """A deflated data set that ends early (pydicom's reader raises zlib's error on it)
    is an invalid file in the import's table, as any other cut file."""
    ds = _ct(43)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "deflated.dcm"
    ds.save_as(path, enforce_file_format=True)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with dl.LocalPACS(tmp_path / "pacs", port=0) as lp:
        done = lp.import_files(path)
        assert list(done.status) == ["invalid"]
        assert "deflated data set is cut short" in done.error.iloc[0]
        assert _held(lp) == set() and _files(lp) == set()
