"""Modality worklist: ``local.worklist`` served to Modality Worklist FIND, checked against
dcmtk's wlmscpfs (same items, same answers) and dcmtk's findscu; studies stored by
storescu marking their items done; bad tables refused whole; the table kept on disk;
and the matching itself, without sockets."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

import dicomlab as dl
from dicomlab.core import worklist as wl
from dicomlab.peers import WlmSCPFS, peer_env
from dicomlab.server.worklist import OnArrival
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers

HOST = "127.0.0.1"
TODAY = date(2026, 3, 10)
KEY = ["AccessionNumber", "ScheduledProcedureStepID"]
# One accession with two steps at another station; wlmscpfs ignores items without a
# name, time, station or descriptions, so these have them all.
TWO_STEPS = pd.DataFrame(
    {
        "PatientName": "ROE^RICHARD",
        "PatientID": "X1",
        "AccessionNumber": "ACCX1",
        "StudyInstanceUID": "2.25.4242",  # one requested procedure: one study
        "RequestedProcedureDescription": "CT TWO STEPS",
        "Modality": "CT",
        "ScheduledStationAETitle": "CTSOUTH",
        "ScheduledProcedureStepStartDate": "2026-03-09",
        "ScheduledProcedureStepStartTime": ["093000", "120000"],  # 12:00 is a range's end
        "ScheduledProcedureStepDescription": ["FIRST", "SECOND"],
        "ScheduledProcedureStepID": ["S1", "S2"],
    }
)


def _scheduled() -> pd.DataFrame:
    """The worklist that scheduled the studies of :func:`studies` (the same arguments)."""
    return dl.synth.worklist(10, 5, today=TODAY, max_series=1, max_instances=2)


@pytest.fixture(scope="module")
def items() -> pd.DataFrame:
    return pd.concat([_scheduled(), TWO_STEPS], ignore_index=True)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        yield lp


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, items: pd.DataFrame
) -> Iterator[tuple[dl.LocalPACS, WlmSCPFS]]:
    """A LocalPACS serving ``items`` and a wlmscpfs serving its ``.wl`` files."""
    need_peer("wlmscpfs")
    tmp = tmp_path_factory.mktemp("both")
    with dl.LocalPACS(tmp / "lp", port=0, fsync=False) as lp, WlmSCPFS(tmp / "wlm") as wlm:
        lp.worklist.add(items)
        assert len(lp.worklist.write_files(wlm.folder)) == len(items)
        yield lp, wlm


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY).reset_index(drop=True)


def _served(lp: dl.LocalPACS, **filters: str) -> list[tuple[str, str]]:
    df = dl.find(lp.node, dl.Query.worklist(**filters))
    return sorted(zip(df.AccessionNumber, df.ScheduledProcedureStepID, strict=True))


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    need_peer(args[0])
    return subprocess.run(
        args, capture_output=True, text=True, env=peer_env(), timeout=60, check=False
    )


def _findscu(lp: dl.LocalPACS, out: Path, keys: list[str]) -> list[Dataset]:
    """findscu -W with ``keys`` against ``lp``: the responses it extracted, in order."""
    out.mkdir(exist_ok=True)
    args = ["findscu", "-W", "-X", "-od", str(out), "-aec", lp.ae_title]
    for k in keys:
        args += ["-k", k]
    r = _run([*args, HOST, str(lp.port)])
    assert r.returncode == 0, r.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def _storescu(lp: dl.LocalPACS, files: list[str]) -> None:
    r = _run(["storescu", "-aet", "MODALITY", "-aec", lp.ae_title, HOST, str(lp.port), *files])
    assert r.returncode == 0, r.stderr


def _between(column: str, low: str, high: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda d: d[column].str.replace("-", "").between(low, high)


# What each query should find, worked out from the table itself.
QUERIES: list[tuple[str, dl.Query, Callable[[pd.DataFrame], pd.Series]]] = [
    ("all", dl.Query.worklist(), lambda d: d.PatientID.notna()),
    ("modality", dl.Query.worklist(Modality="CT"), lambda d: d.Modality == "CT"),
    (
        "station",
        dl.Query.worklist(ScheduledStationAETitle="CTSOUTH"),
        lambda d: d.ScheduledStationAETitle == "CTSOUTH",
    ),
    ("name", dl.Query.worklist(PatientName="G*"), lambda d: d.PatientName.str.startswith("G")),
    (
        "dates",
        dl.Query.worklist(date=(date(2026, 3, 7), "20260309")),
        _between("ScheduledProcedureStepStartDate", "20260307", "20260309"),
    ),
    (
        "times",
        dl.Query.worklist(ScheduledProcedureStepStartTime=("0800", "1200")),
        _between("ScheduledProcedureStepStartTime", "080000", "120059"),
    ),
    (
        "accession",
        dl.Query.worklist(AccessionNumber="ACC005000003"),
        lambda d: d.AccessionNumber == "ACC005000003",
    ),
]


@pytest.mark.parametrize(("query", "expect"), [q[1:] for q in QUERIES], ids=[q[0] for q in QUERIES])
def test_localpacs_and_wlmscpfs_give_the_same_rows_for_the_same_items(
    both: tuple[dl.LocalPACS, WlmSCPFS],
    items: pd.DataFrame,
    query: dl.Query,
    expect: Callable[[pd.DataFrame], pd.Series],
) -> None:
    lp, wlm = both
    ours, theirs = _sorted(dl.find(lp.node, query)), _sorted(dl.find(wlm.node, query))
    want = items[expect(items)].copy()
    want["ScheduledProcedureStepID"] = want.ScheduledProcedureStepID.fillna(want.AccessionNumber)
    want = _sorted(want)
    assert list(ours.AccessionNumber) == list(want.AccessionNumber)
    assert list(ours.ScheduledProcedureStepID) == list(want.ScheduledProcedureStepID)
    if query.filters or query.date:
        assert 0 < len(ours) < len(items), "the filter must match some items, not all"
    pd.testing.assert_frame_equal(ours, theirs)  # every column, typed alike
    for column in ("PatientName", "StudyInstanceUID", "Modality", "ScheduledStationAETitle"):
        assert list(ours[column]) == list(want[column]), column  # non-ASCII names too


@pytest.mark.parametrize(
    ("keys", "query"),
    [
        (["(0040,0100)[0].Modality=MR"], dl.Query.worklist(Modality="MR")),
        (
            ["SpecificCharacterSet=ISO_IR 192", "PatientName=Lefèvre*"],
            dl.Query.worklist(PatientName="Lefèvre*"),
        ),
    ],
    ids=["modality", "non-ascii-name"],
)
def test_findscu_worklist_answers_match_dl_find(
    tmp_path: Path, local: dl.LocalPACS, items: pd.DataFrame, keys: list[str], query: dl.Query
) -> None:
    local.worklist.add(items)
    common = ["PatientName", "AccessionNumber", "(0040,0100)[0].ScheduledStationAETitle"]
    common += ["(0040,0100)[0].Modality"]
    names = {k.split("=")[0] for k in keys}
    rsp = _findscu(local, tmp_path / "rsp", keys + [k for k in common if k not in names])
    df = dl.find(local.node, query)
    assert len(rsp) == len(df) > 0
    got = {
        str(ds.AccessionNumber): (
            str(ds.PatientName),
            ds.ScheduledProcedureStepSequence[0].Modality,
            ds.ScheduledProcedureStepSequence[0].ScheduledStationAETitle,
        )
        for ds in rsp
    }
    cols = ["PatientName", "Modality", "ScheduledStationAETitle"]
    assert got == {r.AccessionNumber: tuple(r[cols]) for _, r in df.iterrows()}
    assert "Lefèvre^Hélène" in {name for name, _, _ in got.values()}  # UTF-8 decoded
    assert len(df) < len(items)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("studies")
    return dl.synth.write_studies(folder, 10, 5, today=TODAY, max_series=1, max_instances=2)


@pytest.mark.parametrize("on_arrival", ["done", "remove", "keep"])
def test_a_study_stored_by_storescu_takes_its_item_off_the_worklist(
    tmp_path: Path, studies: pd.DataFrame, on_arrival: OnArrival
) -> None:
    scheduled = _scheduled()
    assert set(scheduled.AccessionNumber) == set(studies.AccessionNumber)
    accession = scheduled.AccessionNumber[1]
    files = list(studies.path[studies.AccessionNumber == accession])
    root = tmp_path / "lp"
    with dl.LocalPACS(
        root, port=0, allow_unknown="all", fsync=False, worklist_on_arrival=on_arrival
    ) as lp:
        lp.worklist.add(scheduled)
        _storescu(lp, files)
        assert len(lp.instances()) == len(files)
        rsp = _findscu(lp, tmp_path / "rsp", ["AccessionNumber"])
        served = {str(ds.AccessionNumber) for ds in rsp}
        assert served == set(dl.find(lp.node, dl.Query.worklist()).AccessionNumber)
        table = lp.worklist.frame()
    others = set(scheduled.AccessionNumber) - {accession}
    if on_arrival == "keep":
        assert served == others | {accession}
        assert not table.done.any()
        return
    assert served == others
    if on_arrival == "done":
        assert list(table.AccessionNumber[table.done]) == [accession]
        assert len(table) == len(scheduled)
    else:
        assert set(table.AccessionNumber) == others and not table.done.any()


BAD_DATE = ("ScheduledProcedureStepStartDate", "20261341")
LONG_UID = ("StudyInstanceUID", "1." + "2" * 63)  # 65 characters


@pytest.mark.parametrize("position", [0, 2], ids=["only-row", "third-of-three"])
@pytest.mark.parametrize("bad", [BAD_DATE, LONG_UID], ids=["date", "uid-65"])
def test_a_bad_value_is_quoted_and_nothing_is_added(
    local: dl.LocalPACS, items: pd.DataFrame, bad: tuple[str, str], position: int
) -> None:
    local.worklist.add(items.iloc[:2])
    before, on_disk = local.worklist.frame(), local.worklist.path.read_bytes()
    served = _served(local)
    rows = items.iloc[2:5].copy() if position else items.iloc[2:3].copy()
    rows.loc[rows.index[position], bad[0]] = bad[1]
    for change in (local.worklist.add, local.worklist.replace):
        with pytest.raises(dl.ValidationError) as err:
            change(rows)
        assert repr(bad[1]) in str(err.value) and bad[0] in str(err.value)
        assert f"row {position}" in str(err.value)
        pd.testing.assert_frame_equal(local.worklist.frame(), before)
        assert local.worklist.path.read_bytes() == on_disk
        assert _served(local) == served


def test_the_worklist_and_its_done_flags_outlive_the_localpacs(
    tmp_path: Path, items: pd.DataFrame
) -> None:
    root = tmp_path / "lp"
    with dl.LocalPACS(root, port=0, fsync=False) as first:
        first.worklist.add(items)
        assert first.worklist.mark_done(accession="ACC005000004") == 1
        table = first.worklist.frame()
        served = _served(first)
    assert not first.running
    with dl.LocalPACS(root, port=0, fsync=False) as second:
        pd.testing.assert_frame_equal(second.worklist.frame(), table)
        assert _served(second) == served
    assert len(served) == len(items) - 1
    assert ("ACC005000004", "ACC005000004") not in served
    assert list(table.AccessionNumber[table.done]) == ["ACC005000004"]


def test_mark_done_and_remove_choose_by_accession_and_step(
    tmp_path: Path, local: dl.LocalPACS, items: pd.DataFrame
) -> None:
    local.worklist.add(items)
    n = len(items)
    assert local.worklist.mark_done(accession="ACCX1", step="S1") == 1
    assert [s for a, s in _served(local) if a == "ACCX1"] == ["S2"]
    assert _served(local, AccessionNumber="ACCX1") == [("ACCX1", "S2")]
    table = local.worklist.frame()
    assert list(table[table.done].ScheduledProcedureStepID) == ["S1"]
    assert len(local.worklist.write_files(tmp_path / "wl")) == n - 1  # open items only
    assert local.worklist.mark_done(accession="NOPE") == 0
    assert local.worklist.remove(accession="ACCX1", step="NOPE") == 0
    assert local.worklist.remove(accession="ACC005000000") == 1
    assert len(_served(local)) == n - 2
    assert local.worklist.remove(accession="ACCX1") == 2  # the done step too
    assert "ACCX1" not in set(local.worklist.frame().AccessionNumber)
    assert len(local.worklist.frame()) == len(_served(local)) == n - 3
    with pytest.raises(dl.ValidationError):
        local.worklist.mark_done()
    local.worklist.clear()
    assert local.worklist.frame().empty and _served(local) == []


# -- matching, without sockets ---------------------------------------------------------
def _item(**values: str) -> Dataset:
    row = {"PatientID": "P1", "Modality": "CT", "ScheduledProcedureStepStartDate": "20260310"}
    return wl.to_dataset(wl.items_from_frame(pd.DataFrame([{**row, **values}]))[0])


def _key(step: dict[str, str] | None = None, **top: str) -> Dataset:
    """A worklist identifier: ``top`` attributes, and a step item of ``step``."""
    key = Dataset()
    for kw, value in top.items():
        setattr(key, kw, value)
    if step is not None:
        item = Dataset()
        for kw, value in step.items():
            setattr(item, kw, value)
        key.ScheduledProcedureStepSequence = [item]
    return key


def test_uid_lists_match_any_of_their_uids() -> None:
    ds = _item(StudyInstanceUID="1.2.3", AccessionNumber="A1")
    assert wl.matches(ds, _key(StudyInstanceUID="1.2.9\\1.2.3"))
    assert not wl.matches(ds, _key(StudyInstanceUID="1.2.9\\1.2.33"))
    assert not wl.matches(ds, _key(StudyInstanceUID="1.2"))  # no prefix matching of UIDs


def test_an_empty_sequence_key_returns_the_whole_step() -> None:
    ds = _item(AccessionNumber="A1", ScheduledStationAETitle="CT01", Modality="MR")
    step = ds.ScheduledProcedureStepSequence[0]
    no_item = _key(AccessionNumber="")
    no_item.ScheduledProcedureStepSequence = []
    for key in (_key({}), _key({}, AccessionNumber=""), no_item):
        assert wl.matches(ds, key)
        out = wl.answer(ds, key)
        (got,) = out.ScheduledProcedureStepSequence
        assert {e.keyword: e.value for e in got} == {e.keyword: e.value for e in step}
    # a key item naming attributes returns those only
    out = wl.answer(ds, _key({"Modality": ""}))
    assert [e.keyword for e in out.ScheduledProcedureStepSequence[0]] == ["Modality"]
    assert not wl.matches(ds, _key({"Modality": "CT"}))


def test_person_names_match_wildcards_case_insensitively_other_texts_do_not() -> None:
    ds = _item(PatientName="Ødegård^Åse", Modality="CT", AccessionNumber="Acc1")
    for name in ("ødegård*", "ØDEGÅRD^ÅSE", "?degård^*", "*^åse"):
        assert wl.matches(ds, _key(PatientName=name)), name
    assert not wl.matches(ds, _key(PatientName="odegard*"))
    assert not wl.matches(ds, _key(AccessionNumber="acc*"))  # SH: case matters
    assert wl.matches(ds, _key(AccessionNumber="Acc?"))
    assert not wl.matches(ds, _key({"Modality": "c*"}))
    assert wl.flat(wl.answer(ds, _key({"Modality": "C*"}, PatientName="*"))).Modality == "CT"


def test_date_and_time_ranges_include_their_ends() -> None:
    ds = _item(ScheduledProcedureStepStartTime="120030")
    for step in ({"ScheduledProcedureStepStartTime": "-1200"}, {"Modality": "CT"}):
        assert wl.matches(ds, _key(step))
    for date_key in ("20260310-", "-20260310", "20260301-20260310", "20260310"):
        assert wl.matches(ds, _key({"ScheduledProcedureStepStartDate": date_key}))
    assert not wl.matches(ds, _key({"ScheduledProcedureStepStartDate": "20260311-"}))
    assert not wl.matches(ds, _key({"ScheduledProcedureStepStartTime": "1201-"}))


# -- nothing to serve ------------------------------------------------------------------
def test_an_empty_worklist_answers_with_an_empty_typed_table(local: dl.LocalPACS) -> None:
    for query in (dl.Query.worklist(), dl.Query.worklist(Modality="CT", date="today")):
        df = dl.find(local.node, query)
        assert df.empty and df.attrs["complete"]
        assert list(df.columns) == list(wl.ITEM_KEYS)
        assert str(df.ScheduledProcedureStepStartDate.dtype).startswith("datetime64")


@pytest.mark.parametrize("peer", ["storescp", "orthanc"])
def test_a_node_without_a_worklist_says_so(request: pytest.FixtureRequest, peer: str) -> None:
    node = request.getfixturevalue(peer).node
    with pytest.raises(dl.NoAcceptedContext) as err:
        dl.find(node, dl.Query.worklist())
    assert "Modality Worklist" in str(err.value) and node.address in str(err.value)
    assert "does not serve a modality worklist" in str(err.value), err.value
    assert "RIS" in (err.value.hint or "")


def test_the_steps_of_one_accession_share_the_study_made_for_them() -> None:
    steps = TWO_STEPS.drop(columns=["StudyInstanceUID"])
    one, two = wl.items_from_frame(steps)
    assert one.key != two.key
    assert one.get("StudyInstanceUID") == two.get("StudyInstanceUID") != ""
    other = wl.items_from_frame(steps.assign(AccessionNumber=["ACCY1", "ACCY2"]))
    assert other[0].get("StudyInstanceUID") != other[1].get("StudyInstanceUID")
