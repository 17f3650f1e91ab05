"""dl.Query: date presets, the C-FIND identifier, validation before sending, fan-out."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

import dicomlab as dl
from dicomlab.core.query import DEFAULT_KEYS, Query, date_range, to_identifier

TODAY = date(2026, 3, 10)

STUDY_KEYS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "InstitutionName",
    "StudyInstanceUID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


def ident(query: Query, **kwargs: Any) -> Dataset:
    return to_identifier(query, today=TODAY, **kwargs)


def is_empty(ds: Dataset, keyword: str) -> bool:
    """The element is present with no value (a return key / universal match)."""
    return keyword in ds and ds[keyword].value in (None, "")


def filled(ds: Dataset) -> dict[str, str]:
    """Keyword -> text of every element that carries a value."""
    return {e.keyword: str(e.value) for e in ds if e.value not in (None, "")}


def parse_da_range(text: str) -> tuple[date, date]:
    """'YYYYMMDD' or 'YYYYMMDD-YYYYMMDD' -> (first, last)."""
    parts = text.split("-")
    assert len(parts) in (1, 2), text
    assert all(len(p) == 8 and p.isdigit() for p in parts), text
    days = [datetime.strptime(p, "%Y%m%d").date() for p in parts]
    return days[0], days[-1]


# -- date presets -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("today", "20260310"),
        ("yesterday", "20260309"),
        ("last7days", "20260304-20260310"),
        ("last30days", "20260209-20260310"),
        ("last1days", "20260310"),
        ("last2days", "20260309-20260310"),
        ((date(2026, 3, 1), date(2026, 3, 5)), "20260301-20260305"),
        ((datetime(2026, 3, 1, 23, 59), datetime(2026, 3, 5, 0, 1)), "20260301-20260305"),
        (("20260301", "20260305"), "20260301-20260305"),
        (("2026-03-01", "2026-03-05"), "20260301-20260305"),
        (("2026-03-01", date(2026, 3, 5)), "20260301-20260305"),
        (("20251215", "2026-01-15"), "20251215-20260115"),
        ((date(2026, 3, 1), date(2026, 3, 1)), "20260301"),
        (date(2026, 3, 1), "20260301"),
        (datetime(2026, 3, 1, 12, 30), "20260301"),
        ("20260301", "20260301"),
        ("2026-03-01", "20260301"),
    ],
)
def test_date_spec_sets_study_date(spec: Any, expected: str) -> None:
    ds = ident(Query.studies(date=spec))
    assert ds.StudyDate == expected
    assert ds.QueryRetrieveLevel == "STUDY"


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("today", TODAY, TODAY),
        ("yesterday", date(2026, 3, 9), date(2026, 3, 9)),
        ("last7days", date(2026, 3, 4), TODAY),
        ("last30days", date(2026, 2, 9), TODAY),
        (("2026-03-01", "20260305"), date(2026, 3, 1), date(2026, 3, 5)),
        ("20260301", date(2026, 3, 1), date(2026, 3, 1)),
    ],
)
def test_date_range_is_inclusive(spec: Any, first: date, last: date) -> None:
    assert date_range(spec, TODAY) == (first, last)


def test_last7days_is_today_and_the_six_days_before() -> None:
    first, last = parse_da_range(ident(Query.studies(date="last7days")).StudyDate)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    assert days == [date(2026, 3, d) for d in range(4, 11)]


def test_presets_cross_month_year_and_leap_day() -> None:
    q = Query.studies(date="yesterday")
    assert to_identifier(q, today=date(2026, 1, 1)).StudyDate == "20251231"
    q = Query.studies(date="last7days")
    assert to_identifier(q, today=date(2024, 3, 2)).StudyDate == "20240225-20240302"
    assert to_identifier(q, today=date(2025, 3, 2)).StudyDate == "20250224-20250302"


def test_preset_uses_today_argument_not_the_clock() -> None:
    q = Query.studies(date="today")
    assert to_identifier(q, today=date(2001, 2, 3)).StudyDate == "20010203"
    assert to_identifier(q, today=date(2030, 12, 31)).StudyDate == "20301231"


def test_no_today_means_the_local_calendar() -> None:
    before = date.today()
    text = to_identifier(Query.studies(date="today")).StudyDate
    assert text in {before.strftime("%Y%m%d"), date.today().strftime("%Y%m%d")}


@pytest.mark.parametrize("spec", [None, "all"])
def test_all_or_none_puts_no_date_filter(spec: Any) -> None:
    ds = ident(Query.studies(date=spec))
    assert is_empty(ds, "StudyDate")  # still a return key, but no filter
    assert date_range(spec, TODAY) is None
    assert filled(ds) == {"QueryRetrieveLevel": "STUDY"}


def test_series_level_preset_goes_on_series_date() -> None:
    ds = ident(Query.series(date="last7days", StudyInstanceUID="1.2.3"))
    assert ds.QueryRetrieveLevel == "SERIES"
    assert ds.SeriesDate == "20260304-20260310"
    assert "StudyDate" not in ds
    ds = ident(Query.series(date="all"))
    assert is_empty(ds, "SeriesDate")


def test_image_level_preset_goes_on_content_date() -> None:
    ds = ident(Query.instances(date="yesterday"))
    assert ds.ContentDate == "20260309"
    assert "StudyDate" not in ds
    assert "SeriesDate" not in ds


def test_start_after_end_raises() -> None:
    with pytest.raises(dl.ValidationError, match="ends before it starts") as info:
        Query.studies(date=("2026-03-10", "2026-03-01"))
    assert "2026-03-10" in str(info.value)
    with pytest.raises(dl.ValidationError):
        date_range((date(2026, 3, 2), date(2026, 3, 1)), TODAY)


@pytest.mark.parametrize(
    "spec",
    ["lastweek", "last0days", "lastdays", "tomorrow", "2026-13-01", "20260230", ""],
)
def test_bad_preset_raises_quoting_it(spec: str) -> None:
    with pytest.raises(dl.ValidationError) as info:
        Query.studies(date=spec)
    assert repr(spec) in str(info.value)
    with pytest.raises(dl.ValidationError):
        date_range(spec, TODAY)


@pytest.mark.parametrize(
    "spec",
    [
        (date(2026, 3, 1),),
        (date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)),
        ("2026-03-01", "soon"),
        (None, date(2026, 3, 1)),
        12345,
    ],
)
def test_bad_date_range_raises(spec: Any) -> None:
    with pytest.raises(dl.ValidationError):
        Query.studies(date=spec)


def test_patient_level_query_with_date_raises() -> None:
    with pytest.raises(dl.ValidationError, match="patient-level"):
        Query("patient", date="today")
    with pytest.raises(dl.ValidationError):
        Query.patients(date="today")  # no such parameter: not a DICOM keyword either


# -- identifier -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "level"),
    [
        (Query.patients(), "PATIENT"),
        (Query.studies(), "STUDY"),
        (Query.series(), "SERIES"),
        (Query.instances(), "IMAGE"),
        (Query.patients(model="patient"), "PATIENT"),
        (Query.studies(model="study"), "STUDY"),
    ],
)
def test_query_retrieve_level(query: Query, level: str) -> None:
    ds = ident(query)
    assert ds.QueryRetrieveLevel == level
    # every default return key is there, empty; nothing else is
    assert {e.keyword for e in ds} == {"QueryRetrieveLevel", *DEFAULT_KEYS[query.level]}
    assert all(is_empty(ds, kw) for kw in DEFAULT_KEYS[query.level])
    assert "SpecificCharacterSet" not in ds


def test_study_level_default_return_keys() -> None:
    ds = ident(Query.studies())
    for kw in STUDY_KEYS:
        assert is_empty(ds, kw), kw
    assert set(STUDY_KEYS) <= set(Query.studies().keys)


def test_level_specific_default_keys() -> None:
    assert {"SeriesInstanceUID", "Modality", "SeriesNumber"} <= set(Query.series().keys)
    assert {"SOPInstanceUID", "SOPClassUID", "InstanceNumber"} <= set(Query.instances().keys)
    assert {"PatientName", "PatientID"} <= set(Query.patients().keys)
    assert "StudyInstanceUID" not in Query.patients().keys


def test_extra_return_keys_are_added() -> None:
    q = Query.studies(return_keys=["PatientAge", "OtherPatientIDs"], OperatorsName="SMITH*")
    ds = ident(q)
    assert is_empty(ds, "PatientAge")
    assert is_empty(ds, "OtherPatientIDs")
    assert str(ds.OperatorsName) == "SMITH*"
    # column order: defaults, extra keys, then filters
    assert q.keys == (*DEFAULT_KEYS["study"], "PatientAge", "OtherPatientIDs", "OperatorsName")


def test_return_key_already_a_default_is_not_duplicated() -> None:
    q = Query.studies(return_keys=["PatientID", "PatientAge"], PatientID="123")
    assert q.keys.count("PatientID") == 1
    assert q.keys[-1] == "PatientAge"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"PatientName": "DOE*"}, {"PatientName": "DOE*"}),
        ({"PatientID": "12?4"}, {"PatientID": "12?4"}),
        ({"AccessionNumber": "A-B"}, {"AccessionNumber": "A-B"}),
        ({"StudyDate": "20260101-20260131"}, {"StudyDate": "20260101-20260131"}),
        ({"StudyDate": "20260101-"}, {"StudyDate": "20260101-"}),
        ({"StudyDate": "-20260131"}, {"StudyDate": "-20260131"}),
        ({"StudyDate": "2026*"}, {"StudyDate": "2026*"}),
        ({"StudyTime": "080000-120000"}, {"StudyTime": "080000-120000"}),
        ({"ModalitiesInStudy": "CT"}, {"ModalitiesInStudy": "CT"}),
        ({"StudyDate": date(2026, 3, 1)}, {"StudyDate": "20260301"}),
        ({"StudyDate": datetime(2026, 3, 1, 8, 0)}, {"StudyDate": "20260301"}),
        (
            {"PatientBirthDate": (date(1950, 1, 1), date(1960, 12, 31))},
            {"PatientBirthDate": "19500101-19601231"},
        ),
        ({"PatientBirthDate": (None, date(1960, 12, 31))}, {"PatientBirthDate": "-19601231"}),
        ({"PatientBirthDate": (date(1950, 1, 1), None)}, {"PatientBirthDate": "19500101-"}),
        ({"NumberOfStudyRelatedInstances": 12}, {"NumberOfStudyRelatedInstances": "12"}),
        ({"PatientID": ""}, {}),
        ({"PatientID": None}, {}),
    ],
)
def test_filter_values_pass_through(filters: dict[str, Any], expected: dict[str, str]) -> None:
    ds = ident(Query.studies(**filters))
    assert filled(ds) == {"QueryRetrieveLevel": "STUDY", **expected}


def test_filters_and_preset_together() -> None:
    q = Query.studies(date="yesterday", PatientName="DOE*", ModalitiesInStudy="CT")
    ds = ident(q)
    assert filled(ds) == {
        "QueryRetrieveLevel": "STUDY",
        "StudyDate": "20260309",
        "PatientName": "DOE*",
        "ModalitiesInStudy": "CT",
    }


def test_non_ascii_filter_sets_utf8_charset() -> None:
    ds = ident(Query.studies(PatientName="Müller^Jürgen*"))
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Müller^Jürgen*"
    # and it is really encoded as UTF-8 on the wire
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    assert "Müller^Jürgen*".encode() in fp.getvalue()


def test_ascii_filters_send_no_charset() -> None:
    assert "SpecificCharacterSet" not in ident(Query.studies(PatientName="MULLER*"))


@pytest.mark.parametrize(
    ("filters", "charset"),
    [
        ({"PatientName": "Müller*"}, "ISO_IR 100"),
        ({"PatientName": "MULLER*"}, "ISO_IR 100"),
        ({"PatientName": "Müller*"}, "ISO_IR 192"),
    ],
)
def test_explicit_charset_is_honoured(filters: dict[str, str], charset: str) -> None:
    ds = ident(Query.studies(**filters), charset=charset)
    assert ds.SpecificCharacterSet == charset
    assert str(ds.PatientName) == filters["PatientName"]


# -- validation before anything is sent -----------------------------------------------


def test_validation_error_is_a_value_error() -> None:
    assert issubclass(dl.ValidationError, ValueError)
    with pytest.raises(ValueError):
        Query.studies(PatientNmae="DOE")


def test_unknown_keyword_is_quoted() -> None:
    with pytest.raises(dl.ValidationError) as info:
        Query.studies(PatientNmae="DOE")
    assert "'PatientNmae'" in str(info.value)


def test_unknown_return_key_is_quoted() -> None:
    with pytest.raises(dl.ValidationError) as info:
        Query.studies(return_keys=["StudyDescr"])
    assert "'StudyDescr'" in str(info.value)


def test_sequence_keyword_refused() -> None:
    with pytest.raises(dl.ValidationError, match="sequence") as info:
        Query.studies(ReferencedStudySequence="x")
    assert "'ReferencedStudySequence'" in str(info.value)
    with pytest.raises(dl.ValidationError, match="sequence"):
        Query.studies(return_keys=["ProcedureCodeSequence"])


@pytest.mark.parametrize(
    "value",
    ["20261345", "yesterdayish", "2026010", "20260230", "20260101-20261345", "1-2-3", "-"],
)
def test_bad_date_filter_value_is_quoted(value: str) -> None:
    with pytest.raises(dl.ValidationError) as info:
        Query.studies(StudyDate=value)
    assert repr(value) in str(info.value)


def test_impossible_level() -> None:
    with pytest.raises(dl.ValidationError, match="'visit'"):
        Query("visit")  # type: ignore[arg-type]


def test_study_root_model_has_no_patient_level() -> None:
    with pytest.raises(dl.ValidationError, match="model='patient'"):
        Query.patients(model="study")
    with pytest.raises(dl.ValidationError, match="'hierarchy'"):
        Query.studies(model="hierarchy")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "keyword", "hint"),
    [
        (Query.studies, "SeriesInstanceUID", "series"),
        (Query.studies, "SOPInstanceUID", "instances"),
        (Query.series, "SOPInstanceUID", "instances"),
        pytest.param(
            Query.patients,
            "StudyInstanceUID",
            "studies",
        ),
    ],
)
def test_lower_level_unique_key_refused(make: Any, keyword: str, hint: str) -> None:
    with pytest.raises(dl.ValidationError) as info:
        make(**{keyword: "1.2.3"})
    assert keyword in str(info.value)
    # the hint names a constructor that exists
    assert f"Query.{hint}(" in str(info.value)
    assert callable(getattr(Query, hint))


def test_higher_level_unique_keys_allowed() -> None:
    Query.series(StudyInstanceUID="1.2")
    Query.instances(StudyInstanceUID="1.2", SeriesInstanceUID="1.2.3", SOPInstanceUID="1.2.3.4")
    Query.studies(StudyInstanceUID="1.2")


@pytest.mark.parametrize("make", [Query.studies, Query.patients])
def test_modality_above_series_level_hints_modalities_in_study(make: Any) -> None:
    with pytest.raises(dl.ValidationError, match="ModalitiesInStudy"):
        make(Modality="CT")


def test_modality_at_series_level_is_fine() -> None:
    assert ident(Query.series(Modality="CT")).Modality == "CT"


def test_filter_given_twice_refused() -> None:
    with pytest.raises(dl.ValidationError, match="twice"):
        Query("study", (("PatientID", "1"), ("PatientID", "2")))


@pytest.mark.parametrize(
    "filters",
    [
        {"PatientID": True},
        {"NumberOfStudyRelatedInstances": False},
        {"StudyDate": (date(2026, 3, 1), True)},
        {"StudyInstanceUID": ["1.2", True]},
    ],
)
def test_bool_values_refused(filters: dict[str, Any]) -> None:
    with pytest.raises(dl.ValidationError, match="bool"):
        Query.studies(**filters)


def test_unsupported_value_type_refused() -> None:
    with pytest.raises(dl.ValidationError):
        Query.studies(PatientID=object())


# -- fan-out --------------------------------------------------------------------------


def test_fan_out_of_a_list() -> None:
    q = Query.series(StudyInstanceUID=["1.2", "1.3", "1.4"], Modality="CT")
    assert q.fan_out() == ("StudyInstanceUID", ["1.2", "1.3", "1.4"])


def test_fan_out_of_a_pandas_series() -> None:
    column = pd.Series(["1.2", "1.3"], dtype="string", name="StudyInstanceUID")
    q = Query.series(StudyInstanceUID=column)
    keyword, values = q.fan_out() or ("", [])
    assert keyword == "StudyInstanceUID"
    assert values == ["1.2", "1.3"]
    assert "[2 values]" in q.describe()


@pytest.mark.parametrize(
    "query",
    [
        Query.studies(),
        Query.studies(PatientID="123"),
        Query.studies(StudyDate=(date(2026, 1, 1), date(2026, 1, 2))),  # a range, not a list
    ],
)
def test_no_fan_out_without_a_list(query: Query) -> None:
    assert query.fan_out() is None


def test_two_list_filters_cannot_fan_out() -> None:
    q = Query.series(StudyInstanceUID=["1.2", "1.3"], Modality=["CT", "MR"])
    with pytest.raises(dl.ValidationError) as info:
        q.fan_out()
    assert "StudyInstanceUID" in str(info.value)
    assert "Modality" in str(info.value)


def test_to_identifier_refuses_a_many_valued_filter() -> None:
    q = Query.series(StudyInstanceUID=["1.2", "1.3"])
    with pytest.raises(dl.ValidationError, match="StudyInstanceUID"):
        ident(q)


def test_fanned_out_queries_build_identifiers() -> None:
    q = Query.series(date="today", StudyInstanceUID=["1.2", "1.3"], Modality="CT")
    keyword, values = q.fan_out() or ("", [])
    for value in values:
        ds = ident(q.with_filters(**{keyword: value}))
        assert filled(ds) == {
            "QueryRetrieveLevel": "SERIES",
            "SeriesDate": "20260310",
            "StudyInstanceUID": value,
            "Modality": "CT",
        }


def test_fan_out_values_are_validated_up_front() -> None:
    with pytest.raises(dl.ValidationError, match="'2026-01-01'"):
        Query.studies(StudyDate=["20260101", "2026-01-01"])


def test_int64_result_column_can_fan_out() -> None:
    column = pd.Series([1, 2], dtype="Int64", name="SeriesNumber")
    q = Query.series(StudyInstanceUID="1.2", SeriesNumber=column)
    keyword, values = q.fan_out() or ("", [])
    ds = ident(q.with_filters(**{keyword: values[0]}))
    assert str(ds.SeriesNumber) == "1"


def test_dates_before_year_1000_are_eight_digits() -> None:
    ds = ident(Query.studies(date=(date(999, 1, 1), date(999, 1, 2))))
    assert ds.StudyDate == "09990101-09990102"


# -- properties -----------------------------------------------------------------------

TEXT_KEYWORDS = [
    "PatientID",
    "AccessionNumber",
    "StudyDescription",
    "PatientName",
    "ReferringPhysicianName",
    "InstitutionName",
    "StudyID",
]
PN_KEYWORDS = {"PatientName", "ReferringPhysicianName"}
ascii_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"),
    max_size=16,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(TEXT_KEYWORDS), ascii_text, max_size=len(TEXT_KEYWORDS)))
def test_identifier_holds_exactly_the_filters(filters: dict[str, str]) -> None:
    q = Query.studies(**filters)
    ds = ident(q)
    # pydicom drops trailing empty PN component groups ('DOE==' is 'DOE'): same meaning
    trimmed = {kw: v.rstrip("=") if kw in PN_KEYWORDS else v for kw, v in filters.items()}
    expected = {kw: v for kw, v in trimmed.items() if v}
    assert filled(ds) == {"QueryRetrieveLevel": "STUDY", **expected}
    for kw in filters:
        assert kw in ds
    assert "SpecificCharacterSet" not in ds


date_as = st.sampled_from(
    [
        lambda d: d,
        lambda d: datetime(d.year, d.month, d.day, 13, 45),
        lambda d: d.strftime("%Y%m%d"),
        lambda d: d.isoformat(),
    ]
)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))


@settings(max_examples=150, deadline=None)
@given(dates, dates, date_as, date_as)
def test_range_round_trips(a: date, b: date, fa: Any, fb: Any) -> None:
    start, end = min(a, b), max(a, b)
    spec = (fa(start), fb(end))
    assert date_range(spec, TODAY) == (start, end)
    text = ident(Query.studies(date=spec)).StudyDate
    assert parse_da_range(text) == (start, end)
    assert ("-" in text) == (start != end)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=365), dates)
def test_last_n_days_covers_n_days_ending_today(n: int, today: date) -> None:
    first, last = date_range(f"last{n}days", today) or (today, date.min)
    assert last == today
    assert (last - first).days + 1 == n
    text = to_identifier(Query.studies(date=f"last{n}days"), today=today).StudyDate
    assert parse_da_range(text) == (first, last)


@pytest.mark.parametrize(
    ("keyword", "value", "vr"),
    [
        ("AccessionNumber", "X" * 17, "SH"),
        ("StudyDescription", "d" * 65, "LO"),
        ("StudyInstanceUID", "1." * 40, "UI"),
    ],
)
def test_values_longer_than_their_vr_allows_are_refused_before_sending(
    keyword: str, value: str, vr: str
) -> None:
    with pytest.raises(dl.ValidationError, match=f"longer than {vr}"):
        dl.Query.studies(**{keyword: value})
    dl.Query.studies(**{keyword: value[: {"SH": 16, "LO": 64, "UI": 64}[vr]]})
