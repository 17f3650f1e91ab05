"""The fast header scan agrees with pydicom, and the file meta it writes is valid."""

from __future__ import annotations

from datetime import date
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import dicomlab as dl
from dicomlab.core.header import IMPLEMENTATION_UID, encode_file_meta, scan_header
from dicomlab.core.indexrow import HEADER_KEYWORDS, file_header, header_row

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
