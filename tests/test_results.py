"""ResultBuilder: C-FIND responses to typed DataFrames (dtypes by VR, charsets, bad values)."""

from __future__ import annotations

import struct
from typing import Any

import pandas as pd
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dicomlab.core.query import DEFAULT_KEYS, Query
from dicomlab.core.results import ResultBuilder, dtype_for

STUDY_DTYPES = {
    "PatientName": "string",
    "PatientID": "string",
    "PatientBirthDate": "datetime64[ns]",
    "PatientSex": "string",
    "StudyDate": "datetime64[ns]",
    "StudyTime": "timedelta64[ns]",
    "AccessionNumber": "string",
    "StudyID": "string",
    "StudyDescription": "string",
    "ModalitiesInStudy": "string",
    "ReferringPhysicianName": "string",
    "InstitutionName": "string",
    "StudyInstanceUID": "string",
    "NumberOfStudyRelatedSeries": "Int64",
    "NumberOfStudyRelatedInstances": "Int64",
}

# A plausible value for each VR of the default keys.
SAMPLE = {
    "DA": "20260310",
    "TM": "101530",
    "IS": "3",
    "UI": "1.2.826.0.1.3680043.2.1125.1",
    "CS": "CT",
    "PN": "DOE^JOHN",
    "LO": "LONG",
    "SH": "SHORT",
}


def encode(ds: Dataset) -> bytes:
    """Explicit VR Little Endian bytes of ``ds`` (through pydicom's writer)."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


def decode(raw: bytes) -> Dataset:
    """Read bytes back: the elements stay raw (undecoded bytes), as in a C-FIND response."""
    return read_dataset(DicomBytesIO(raw), is_implicit_VR=False, is_little_endian=True)


def on_the_wire(ds: Dataset) -> Dataset:
    out = decode(encode(ds))
    assert all(isinstance(out.get_item(e.tag), RawDataElement) for e in ds)
    return out


def raw_dataset(**elements: bytes) -> Dataset:
    """A dataset read from hand-made bytes: values pydicom would refuse to build."""
    data = b""
    for kw in sorted(elements, key=lambda k: int(tag_for_keyword(k) or 0)):
        tag = int(tag_for_keyword(kw) or 0)
        value = elements[kw]
        if len(value) % 2:
            value += b" "
        vr = str(dictionary_VR(kw)).encode()
        data += struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value))
        data += value
    return decode(data)


def one_column(keyword: str, values: list[bytes]) -> pd.Series:
    builder = ResultBuilder([keyword])
    for value in values:
        builder.add(raw_dataset(**{keyword: value}))
    return builder.frame()[keyword]


def dtypes(df: pd.DataFrame) -> dict[str, str]:
    return {k: str(v) for k, v in df.dtypes.items()}


# -- columns and dtypes ----------------------------------------------------------------


def test_empty_builder_has_every_column_with_documented_dtypes() -> None:
    keys = Query.studies().keys
    builder = ResultBuilder(keys, extra=["query_value"])
    assert len(builder) == 0
    df = builder.frame()
    assert list(df.columns) == [*keys, "query_value"]
    assert len(df) == 0
    assert dtypes(df) == {**STUDY_DTYPES, "query_value": "object"}
    assert df.attrs["undecodable"] == []


@pytest.mark.parametrize("level", ["patient", "study", "series", "image"])
def test_empty_and_filled_frames_have_the_same_dtypes(level: str) -> None:
    keys = DEFAULT_KEYS[level]  # type: ignore[index]
    empty = ResultBuilder(keys).frame()
    ds = Dataset()
    for kw in keys:
        setattr(ds, kw, SAMPLE[str(dictionary_VR(kw))])
    filled = ResultBuilder(keys)
    filled.add(ds)
    filled.add(on_the_wire(ds))
    df = filled.frame()
    assert len(df) == 2
    assert dtypes(df) == dtypes(empty)
    assert df.notna().all().all()
    assert df.iloc[0].equals(df.iloc[1])  # pydicom values and raw bytes agree


@pytest.mark.parametrize(
    ("keyword", "dtype"),
    [
        ("StudyDate", "datetime64[ns]"),
        ("StudyTime", "timedelta64[ns]"),
        ("AcquisitionDateTime", "datetime64[ns]"),
        ("NumberOfStudyRelatedInstances", "Int64"),
        ("Rows", "Int64"),
        ("SliceThickness", "Float64"),
        ("PatientName", "string"),
        ("StudyInstanceUID", "string"),
        ("PatientAge", "string"),
    ],
)
def test_dtype_for(keyword: str, dtype: str) -> None:
    assert dtype_for(keyword) == dtype
    assert str(ResultBuilder([keyword]).frame()[keyword].dtype) == dtype


# -- text and character sets ------------------------------------------------------------


def study(charset: str | None, **values: Any) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    for kw, value in values.items():
        setattr(ds, kw, value)
    return ds


NAMES = {
    "PatientName": "Müller^Jürgen",
    "InstitutionName": "Hôpital Saint-Éloi",
    "StudyDescription": "Thorax ± Kontrast",
}


@pytest.mark.parametrize("charset", ["ISO_IR 192", "ISO_IR 100"])
@pytest.mark.parametrize("wire", [True, False])
def test_latin_names_decode_per_charset(charset: str, wire: bool) -> None:
    ds = study(charset, **NAMES)
    raw = encode(ds)
    assert NAMES["PatientName"].encode("utf-8" if charset == "ISO_IR 192" else "latin-1") in raw
    builder = ResultBuilder(list(NAMES))
    builder.add(on_the_wire(ds) if wire else ds)
    df = builder.frame()
    assert df.iloc[0].to_dict() == NAMES
    assert df.attrs["undecodable"] == []


def test_utf8_cjk_names_decode() -> None:
    names = {"PatientName": "山田^太郎", "InstitutionName": "東京病院", "PatientID": "ID-1"}
    builder = ResultBuilder(list(names))
    builder.add(on_the_wire(study("ISO_IR 192", **names)))
    df = builder.frame()
    assert df.iloc[0].to_dict() == names
    assert df.attrs["undecodable"] == []


def test_rows_with_different_charsets() -> None:
    builder = ResultBuilder(["PatientName"])
    builder.add(on_the_wire(study("ISO_IR 100", PatientName="Müller")))
    builder.add(on_the_wire(study("ISO_IR 192", PatientName="Øster^Åse")))
    builder.add(on_the_wire(study(None, PatientName="PLAIN^ASCII")))
    df = builder.frame()
    assert list(df["PatientName"]) == ["Müller", "Øster^Åse", "PLAIN^ASCII"]
    assert df.attrs["undecodable"] == []


def test_iso2022_japanese_names_decode() -> None:
    name = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds = on_the_wire(study(["", "ISO 2022 IR 87"], PatientName=name))
    builder = ResultBuilder(["PatientName"])
    builder.add(ds)
    assert builder.frame()["PatientName"][0] == name


def test_invalid_utf8_is_flagged_and_replaced() -> None:
    good = study("ISO_IR 192", PatientName="Zoë", InstitutionName="Clinic")
    # Latin-1 bytes labelled as UTF-8: a charset of the same length swapped in the raw bytes.
    latin = encode(study("ISO_IR 100", PatientName="Müller", InstitutionName="Hôpital"))
    mislabelled = latin.replace(b"ISO_IR 100", b"ISO_IR 192")
    assert mislabelled != latin
    assert b"M\xfcller" in mislabelled
    builder = ResultBuilder(["PatientName", "InstitutionName", "PatientID"])
    builder.add(on_the_wire(good))
    builder.add(decode(mislabelled))  # does not raise
    df = builder.frame()
    assert df.attrs["undecodable"] == [(1, "PatientName"), (1, "InstitutionName")]
    assert df["PatientName"][0] == "Zoë"
    assert df["PatientName"][1] == "M\ufffdller"
    assert df["InstitutionName"][1] == "H\ufffdpital"
    assert builder.undecodable == [(1, "PatientName"), (1, "InstitutionName")]


def test_non_ascii_without_charset_is_flagged() -> None:
    ds = on_the_wire(study("ISO_IR 192", PatientName="Zoë"))
    del ds.SpecificCharacterSet
    builder = ResultBuilder(["PatientName"])
    builder.add(ds)
    df = builder.frame()
    assert df.attrs["undecodable"] == [(0, "PatientName")]
    assert df["PatientName"][0] == "Zoë"  # UTF-8, the likeliest intent


def test_padding_is_stripped() -> None:
    ds = study(None, StudyInstanceUID="1.2.3", PatientID="ABC", ModalitiesInStudy="CT")
    raw = encode(ds)
    assert b"1.2.3\x00" in raw  # UIDs are padded with NUL, text with a space
    builder = ResultBuilder(["StudyInstanceUID", "PatientID", "ModalitiesInStudy"])
    builder.add(decode(raw))
    assert builder.frame().iloc[0].to_dict() == {
        "StudyInstanceUID": "1.2.3",
        "PatientID": "ABC",
        "ModalitiesInStudy": "CT",
    }


@pytest.mark.parametrize("wire", [True, False])
def test_multi_valued_text_joined_with_backslash(wire: bool) -> None:
    ds = study(None, ModalitiesInStudy=["CT", "MR"], OtherPatientIDs=["A1", "B2", "C3"])
    builder = ResultBuilder(["ModalitiesInStudy", "OtherPatientIDs"])
    builder.add(on_the_wire(ds) if wire else ds)
    df = builder.frame()
    assert df["ModalitiesInStudy"][0] == "CT\\MR"
    assert df["OtherPatientIDs"][0] == "A1\\B2\\C3"
    assert df["ModalitiesInStudy"].dtype == "string"


def test_missing_elements_are_missing_values() -> None:
    builder = ResultBuilder(
        ["PatientName", "StudyDate", "StudyTime", "NumberOfStudyRelatedSeries", "SliceThickness"]
    )
    builder.add(study(None, PatientName="DOE"))
    df = builder.frame()
    assert df["PatientName"][0] == "DOE"
    assert df["StudyDate"].isna().all()
    assert df["StudyTime"].isna().all()
    assert df["NumberOfStudyRelatedSeries"][0] is pd.NA
    assert df["SliceThickness"][0] is pd.NA


# -- dates, times and numbers -----------------------------------------------------------


def test_da_values() -> None:
    col = one_column("StudyDate", [b"20260310", b"", b"20261345", b"2026", b"abcdefgh"])
    assert str(col.dtype) == "datetime64[ns]"
    assert col[0] == pd.Timestamp(2026, 3, 10)
    assert col[1:].isna().all()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"101530", pd.Timedelta(hours=10, minutes=15, seconds=30)),
        (b"101530.5", pd.Timedelta(hours=10, minutes=15, seconds=30, milliseconds=500)),
        (b"101530.123456", pd.Timedelta(hours=10, minutes=15, seconds=30, microseconds=123456)),
        (b"1015", pd.Timedelta(hours=10, minutes=15)),
        (b"10", pd.Timedelta(hours=10)),
        (b"10:15:30", pd.Timedelta(hours=10, minutes=15, seconds=30)),  # ACR-NEMA style
        (b"000000", pd.Timedelta(0)),
        (b"235959.999999", pd.Timedelta(hours=24) - pd.Timedelta(microseconds=1)),
    ],
)
def test_tm_values(raw: bytes, expected: pd.Timedelta) -> None:
    col = one_column("StudyTime", [raw])
    assert str(col.dtype) == "timedelta64[ns]"
    assert col[0] == expected


@pytest.mark.parametrize("raw", [b"", b"noon", b"1", b"1015301", b"10:15:30:00"])
def test_tm_empty_or_invalid_is_nat(raw: bytes) -> None:
    col = one_column("StudyTime", [raw])
    assert str(col.dtype) == "timedelta64[ns]"
    assert col.isna().all()


@pytest.mark.parametrize("raw", [b"250000", b"106000"])
def test_tm_out_of_range_is_nat(raw: bytes) -> None:
    assert one_column("StudyTime", [raw]).isna().all()


def test_dt_without_offsets_is_naive() -> None:
    col = one_column(
        "AcquisitionDateTime", [b"20260310120000", b"20260310120000.25", b"2026", b"", b"junk"]
    )
    assert str(col.dtype) == "datetime64[ns]"
    assert col[0] == pd.Timestamp(2026, 3, 10, 12)
    assert col[1] == pd.Timestamp(2026, 3, 10, 12, 0, 0, 250000)
    assert col[2] == pd.Timestamp(2026, 1, 1)
    assert col[3:].isna().all()


def test_dt_with_offset_is_tz_aware_utc() -> None:
    col = one_column(
        "AcquisitionDateTime",
        [b"20260310120000+0100", b"20260310120000-0530", b"", b"20260230120000+0100"],
    )
    assert str(col.dtype) == "datetime64[ns, UTC]"
    assert col[0] == pd.Timestamp("2026-03-10 11:00:00", tz="UTC")
    assert col[1] == pd.Timestamp("2026-03-10 17:30:00", tz="UTC")
    assert col[2:].isna().all()


def test_dt_with_offset_from_a_pydicom_dataset() -> None:
    builder = ResultBuilder(["AcquisitionDateTime"])
    builder.add(study(None, AcquisitionDateTime="20260310120000+0100"))
    col = builder.frame()["AcquisitionDateTime"]
    assert col.dt.tz is not None
    assert col[0] == pd.Timestamp("2026-03-10T12:00:00+01:00")


def test_is_values() -> None:
    col = one_column("NumberOfStudyRelatedInstances", [b"7", b" 12 ", b"", b"x", b"3\\4"])
    assert str(col.dtype) == "Int64"
    assert col.tolist() == [7, 12, pd.NA, pd.NA, 3]


def test_ds_values() -> None:
    col = one_column("SliceThickness", [b"1.5", b"2.5\\3", b"", b"1e3", b"-0.25", b"abc"])
    assert str(col.dtype) == "Float64"
    assert col.tolist() == [1.5, 2.5, pd.NA, 1000.0, -0.25, pd.NA]


def test_numbers_from_a_pydicom_dataset() -> None:
    builder = ResultBuilder(["NumberOfStudyRelatedSeries", "SliceThickness", "Rows"])
    builder.add(study(None, NumberOfStudyRelatedSeries=4, SliceThickness="0.625", Rows=512))
    assert builder.frame().iloc[0].tolist() == [4, 0.625, 512]


# -- extra columns ------------------------------------------------------------------------


def test_extra_columns_are_kept() -> None:
    builder = ResultBuilder(["StudyInstanceUID"], extra=["query_value"])
    builder.add(study(None, StudyInstanceUID="1.2.3"), query_value="1.2")
    builder.add(study(None, StudyInstanceUID="1.2.4"))
    df = builder.frame()
    assert list(df.columns) == ["StudyInstanceUID", "query_value"]
    assert df["query_value"].tolist() == ["1.2", None]
    typed = builder.frame(extra_dtypes={"query_value": "string"})
    assert str(typed["query_value"].dtype) == "string"
    assert typed["query_value"][0] == "1.2"
    assert typed["query_value"][1] is pd.NA


def test_unknown_extra_values_are_ignored() -> None:
    builder = ResultBuilder(["PatientID"])
    builder.add(study(None, PatientID="1"), not_a_column="x")
    assert list(builder.frame().columns) == ["PatientID"]


def test_study_level_row_end_to_end() -> None:
    ds = study(
        "ISO_IR 192",
        PatientName="Ærø^Søren",
        PatientID="P1",
        PatientBirthDate="19700102",
        PatientSex="M",
        StudyDate="20260310",
        StudyTime="081500",
        AccessionNumber="ACC1",
        StudyID="S1",
        StudyDescription="CT Thorax",
        ModalitiesInStudy=["CT", "SR"],
        ReferringPhysicianName="Doe^Jane",
        InstitutionName="Århus",
        StudyInstanceUID="1.2.3.4",
        NumberOfStudyRelatedSeries="2",
        NumberOfStudyRelatedInstances="150",
    )
    builder = ResultBuilder(Query.studies().keys, extra=["query_value"])
    builder.add(on_the_wire(ds), query_value="P1")
    row = builder.frame().iloc[0].to_dict()
    assert row == {
        "PatientName": "Ærø^Søren",
        "PatientID": "P1",
        "PatientBirthDate": pd.Timestamp(1970, 1, 2),
        "PatientSex": "M",
        "StudyDate": pd.Timestamp(2026, 3, 10),
        "StudyTime": pd.Timedelta(hours=8, minutes=15),
        "AccessionNumber": "ACC1",
        "StudyID": "S1",
        "StudyDescription": "CT Thorax",
        "ModalitiesInStudy": "CT\\SR",
        "ReferringPhysicianName": "Doe^Jane",
        "InstitutionName": "Århus",
        "StudyInstanceUID": "1.2.3.4",
        "NumberOfStudyRelatedSeries": 2,
        "NumberOfStudyRelatedInstances": 150,
        "query_value": "P1",
    }
