"""The fast header scan agrees with pydicom, and the file meta it writes is valid."""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from datetime import date
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian as DeflatedSyntax
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import dicomlab as dl
from dicomlab.core.header import (
    IMPLEMENTATION_UID,
    decode_values,
    encode_file_meta,
    scan_header,
    wanted_tags,
)
from dicomlab.core.indexrow import (
    HEADER_KEYWORDS,
    HeaderError,
    checked_file,
    file_header,
    file_problem,
    header_row,
    prefix_header,
    prefix_uids,
)
from dicomlab.core.structure import walk

INSTANCES = list(dl.synth.generate(10, seed=5, today=date(2026, 2, 1)))


def _encode(ds: Dataset, implicit: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_dataset(fp, ds)
    return fp.getvalue()


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(INSTANCES), st.booleans())
def test_scan_matches_pydicom(ds: Dataset, implicit: bool) -> None:
    data = _encode(ds, implicit)
    ts = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    fast = scan_header(data, ts, HEADER_KEYWORDS)
    assert fast is not None
    assert header_row(fast) == header_row(ds)


def test_non_ascii_names_decode_per_charset() -> None:
    by_charset = {d.get("SpecificCharacterSet"): d for d in INSTANCES}
    for charset in ("ISO_IR 192", "ISO_IR 100"):
        ds = by_charset[charset]
        data = _encode(ds, implicit=False)
        assert scan_header(data, ExplicitVRLittleEndian, ["PatientName"])["PatientName"] == str(
            ds.PatientName
        )
        assert not str(ds.PatientName).isascii()


def test_undefined_length_sequence_before_wanted_tags_falls_back() -> None:
    ds = Dataset()
    ds.ReferencedStudySequence = Sequence([Dataset()])  # (0008,1110), before (0010,0010)
    ds.PatientName = "X"
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    data = bytearray(fp.getvalue())
    # Rewrite the sequence with undefined length: tag, VR, 2 reserved, 0xFFFFFFFF.
    assert data[4:6] == b"SQ"
    data[8:12] = b"\xff\xff\xff\xff"
    assert scan_header(bytes(data), ExplicitVRLittleEndian, ["PatientName"]) is None


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"])
def test_unsupported_encodings_fall_back(ts: str) -> None:
    assert scan_header(b"\x08\x00\x05\x00", ts, ["PatientName"]) is None


def test_truncated_data_falls_back_or_reads_what_is_there() -> None:
    data = _encode(INSTANCES[0], implicit=False)
    # Cut inside the PatientName value: the scan must not read past the end.
    cut = data[: data.index(b"PN") + 10]
    assert scan_header(cut, ExplicitVRLittleEndian, ["PatientName"]) is None


def test_unknown_keyword_is_an_error() -> None:
    with pytest.raises(ValueError, match="'NotAKeyword'"):
        scan_header(b"", ExplicitVRLittleEndian, ["NotAKeyword"])


def test_file_meta_is_what_pydicom_reads() -> None:
    ds = INSTANCES[1]
    body = _encode(ds, implicit=False)
    meta = encode_file_meta(
        ds.SOPClassUID,
        ds.SOPInstanceUID,
        ExplicitVRLittleEndian,
        IMPLEMENTATION_UID,
        "DICOMLAB_010",
    )
    back = dcmread(BytesIO(meta + body))
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.file_meta.ImplementationClassUID == IMPLEMENTATION_UID
    assert back.PixelData == ds.PixelData
    row, ts = file_header(meta + body)
    assert ts == ExplicitVRLittleEndian and row == header_row(ds)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(INSTANCES),
    st.booleans(),
    st.sampled_from([None, "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]),
    st.integers(min_value=0, max_value=4000),
)
def test_prefix_uids_answer_as_the_whole_header_does(
    ds: Dataset, implicit: bool, broken: str | None, cut: int
) -> None:
    """What dl.store reads of each file before sending it (the UIDs only, from its
    start): the same UIDs and syntax as the full header scan, the same refusal of a
    missing or invalid UID, and a fall back (None) whenever the start is too short."""
    ts = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    meta = encode_file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ts, IMPLEMENTATION_UID, "X")
    ds = copy.deepcopy(ds)
    if broken is not None:
        setattr(ds, broken, "1.2.x")
    data = meta + _encode(ds, implicit)
    start = data[: len(meta) + cut]
    whole = len(start) == len(data)

    def answer(f: Callable[[], object]) -> tuple[str, object]:
        try:
            return ("ok", f())
        except HeaderError as exc:
            return ("error", str(exc))

    lean = answer(lambda: prefix_uids(start, whole=whole))
    full = answer(lambda: prefix_header(data))
    assert full[0] == ("error" if broken else "ok")
    if lean == ("ok", None):
        assert cut < 1000  # the four UIDs lie in the first few hundred bytes of these
        return
    if full[0] == "error":
        assert lean == full
    else:
        row, syntax = full[1]
        assert lean == ("ok", (row["SOPClassUID"], row["SOPInstanceUID"], syntax))


# -- the receive path's single walk: structure and index values at once -----------------------

_BIG = "1.2.840.10008.1.2.2"


def _encode_as(ds: Dataset, syntax: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = syntax != _BIG
    fp.is_implicit_VR = syntax == ImplicitVRLittleEndian
    write_dataset(fp, ds)
    return fp.getvalue()


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(INSTANCES),
    st.sampled_from([ImplicitVRLittleEndian, ExplicitVRLittleEndian, _BIG, DeflatedSyntax]),
)
def test_walk_reads_what_pydicom_reads_in_every_encoding(ds: Dataset, syntax: str) -> None:
    """The index row from the one walk equals pydicom's, names in their character sets
    included; deflated data sets are read inflated, big endian ones too."""
    if syntax == DeflatedSyntax:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = deflater.compress(_encode_as(ds, ExplicitVRLittleEndian)) + deflater.flush()
    else:
        data = _encode_as(ds, syntax)
    wanted = wanted_tags(tuple(HEADER_KEYWORDS))
    walked = walk(data, syntax, wanted)
    assert walked.error is None
    assert header_row(decode_values(walked.found, wanted)) == header_row(ds)


def test_walk_reads_past_an_undefined_length_sequence_and_not_inside_it() -> None:
    """Where the header scan gives up (an undefined-length sequence before the wanted
    tags) the walk reads on; a wanted tag inside a sequence's item is not the data set's."""
    item = Dataset()
    item.PatientName = "INSIDE^ITEM"  # (0010,0010) in an item: not the data set's own
    ds = Dataset()
    ds.ReferencedStudySequence = Sequence([item])  # (0008,1110), before (0010,0010)
    ds.PatientID = "OUTSIDE"
    data = bytearray(_encode_as(ds, ExplicitVRLittleEndian))
    # the sequence and its item with undefined lengths, closed by their delimiters
    seq_len = int.from_bytes(data[8:12], "little")
    body, rest = data[12 : 12 + seq_len], data[12 + seq_len :]
    item_body = body[8:]
    data = (
        data[:8]
        + b"\xff\xff\xff\xff"
        + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        + item_body
        + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        + rest
    )
    assert scan_header(bytes(data), ExplicitVRLittleEndian, ["PatientID"]) is None
    wanted = wanted_tags(("PatientID", "PatientName"))
    walked = walk(bytes(data), ExplicitVRLittleEndian, wanted)
    assert walked.error is None
    assert decode_values(walked.found, wanted) == {
        "PatientID": "OUTSIDE",
        "PatientName": "",
        "SpecificCharacterSet": "",
    }


def test_walk_of_a_cut_data_set_says_where_it_breaks() -> None:
    data = _encode(INSTANCES[0], implicit=False)
    cut = data[: data.index(b"PN") + 10]
    walked = walk(cut, ExplicitVRLittleEndian, wanted_tags(("PatientName",)))
    assert walked.error is not None and "declares" in walked.error


# -- a whole file (import, STOW-RS, WADO-RS part): one walk answers what two did ---------------


def _two_steps(data: bytes) -> tuple[str, object]:
    """What file_header then file_problem answer, as ("ok", (row, ts, problem)) or
    ("error", exception type)."""
    try:
        row, ts = file_header(data)
    except (HeaderError, InvalidDicomError, ValueError, zlib.error) as exc:
        return "error", type(exc)  # pydicom raises zlib.error for a cut deflated data set
    return "ok", (row, ts, file_problem(data, row, ts))


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(INSTANCES),
    st.sampled_from([ImplicitVRLittleEndian, ExplicitVRLittleEndian, _BIG, DeflatedSyntax]),
    st.sampled_from(["whole", "cut", "other meta instance", "other meta class"]),
    st.integers(min_value=0, max_value=10_000),
)
def test_checked_file_answers_as_header_then_problem(
    ds: Dataset, syntax: str, change: str, cut_at: int
) -> None:
    """The one walk of a file gives the index row, transfer syntax and refusal that the
    header scan then the structure walk gave, for whole files, cut ones and files whose
    meta announces another instance or class."""
    if syntax == DeflatedSyntax:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = deflater.compress(_encode_as(ds, ExplicitVRLittleEndian)) + deflater.flush()
    else:
        body = _encode_as(ds, syntax)
    sop_class, sop_instance = ds.SOPClassUID, ds.SOPInstanceUID
    if change == "other meta instance":
        sop_instance = "1.2.3.4"
    elif change == "other meta class":
        sop_class = "1.2.840.10008.5.1.4.1.1.7"
    data = encode_file_meta(sop_class, sop_instance, syntax, IMPLEMENTATION_UID, "X") + body
    if change == "cut":
        data = data[: len(data) - 1 - cut_at % (len(body) - 1)]
    before = _two_steps(data)
    try:
        now: tuple[str, object] = ("ok", checked_file(data))
    except (HeaderError, InvalidDicomError, ValueError) as exc:
        now = ("error", type(exc))
    if before[0] == "ok" and now[0] == "ok":
        row, ts, problem = now[1]  # type: ignore[misc]
        old_row, old_ts, old_problem = before[1]  # type: ignore[misc]
        assert (row, ts) == (old_row, old_ts)
        assert (problem is None) == (old_problem is None), (problem, old_problem)
        if change.startswith("other meta"):
            assert problem == old_problem and "the file meta" in str(problem)
    else:
        # a file broken before its UIDs is refused either way (the walk says where)
        assert now[0] == "error" or now[1][2] is not None, (before, now)  # type: ignore[index]
    if change == "whole":
        assert now == ("ok", (header_row(ds), syntax, None))
