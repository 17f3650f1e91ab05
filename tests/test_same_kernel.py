"""The kernel can use its own LocalPACS; a refusal never looks like an empty result.

Same-process trust rests on the connection (dicomlab's client registers the sockets it
opens), never on the AE title: dcmtk in a subprocess sending our very AE title is a
stranger. A LocalPACS in another process (``dicomlab serve``) refuses us as the
stranger we are there, and that refusal raises, in code, in the CLI and in the panel.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dicomlab as dl
from dicomlab.peers import Serve, peer_env
from dicomlab.testing.fixtures import need_peer

OURS = "DICOMLAB"  # the calling AE title dl.* uses by default (book.local)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("studies")
    dl.synth.write_studies(folder, n_studies=2, seed=3, max_instances=3)
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.dcm"))


@pytest.mark.peers
def test_the_kernel_stores_queries_and_retrieves_with_its_default_localpacs(
    tmp_path: Path, studies: Path
) -> None:
    """No book, no allow_unknown: what a notebook does first."""
    with (
        dl.LocalPACS(tmp_path / "pacs", port=0) as local,
        dl.LocalPACS(tmp_path / "other", ae_title="OTHER", port=0) as other,
    ):
        sent = dl.store(local.node, studies)
        assert (sent.status == 0).all(), sent[["path", "status", "error"]]
        assert len(local.instances()) == len(_files(studies))

        found = dl.find(local.node, dl.Query.studies())
        assert len(found) == 2 and found.attrs["complete"]

        done = dl.retrieve(local.node, found, into=other, method="get", progress=False)
        assert done.complete.all(), done[["status", "error"]]
        assert len(other.instances()) == len(_files(studies))

        # dcmtk in another process, calling with our very AE title, is a stranger
        storescu = need_peer("storescu")
        where = ["-aec", local.ae_title, "127.0.0.1", str(local.port)]
        proc = subprocess.run(
            [storescu, "-v", "-aet", OURS, *where, str(_files(studies)[0])],
            capture_output=True,
            text=True,
            env=peer_env(),
            timeout=60,
        )
        out = proc.stdout + proc.stderr
        assert "Received Store Response (Unknown Status: 0x124)" in out, out  # not authorised
        assert len(local.instances()) == len(_files(studies))  # nothing new
        findscu = need_peer("findscu")
        proc = subprocess.run(
            [findscu, "-v", "-S", "-k", "QueryRetrieveLevel=STUDY", "-aet", OURS, *where],
            capture_output=True,
            text=True,
            env=peer_env(),
            timeout=60,
        )
        out = proc.stdout + proc.stderr
        assert "Received Final Find Response (Unknown Status: 0x124)" in out, out
        assert "(Pending)" not in out, out


def test_a_whitelisting_localpacs_still_lets_the_kernel_in(tmp_path: Path, studies: Path) -> None:
    """A book and no services for strangers: AE titles outside it are rejected at association
    level, but this process's own connections are served whatever AE title they use."""
    book = dl.NodeBook([dl.Node("friend", ae_title="FRIEND")])
    with dl.LocalPACS(tmp_path / "pacs", port=0, book=book, allow_unknown=()) as local:
        sent = dl.store(local.node, studies, calling_ae="NOTINBOOK")
        assert (sent.status == 0).all()
        assert len(dl.find(local.node, dl.Query.studies(), calling_ae="NOTINBOOK")) == 2


def test_the_query_panel_searches_the_kernels_localpacs(tmp_path: Path, studies: Path) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0) as local:
        local.import_files(studies)
        book = dl.NodeBook([local.node])
        book.default = local.node.name
        panel = dl.widgets.QueryPanel(book)
        try:
            panel.search("all")
            panel.wait()
            assert panel.error is None, panel.message.value
            assert len(panel.result) == 2
        finally:
            panel.close()


# -- a LocalPACS in another process refuses us ---------------------------------------------------


@pytest.fixture
def stranger_pacs(tmp_path: Path) -> Iterator[dl.Node]:
    """``dicomlab serve`` in a subprocess: only echo for callers it does not know."""
    with Serve(tmp_path / "srv", ae_title="ELSEWHERE", extra=["--seed-demo", "2"]) as srv:
        yield dl.Node("elsewhere", ae_title="ELSEWHERE", port=srv.port, timeout=10)


def test_a_refused_query_raises_with_the_status_and_what_to_register(
    stranger_pacs: dl.Node,
) -> None:
    with pytest.raises(dl.OperationRefused) as caught:
        dl.find(stranger_pacs, dl.Query.studies(), calling_ae="ASKER")
    err = caught.value
    assert isinstance(err, dl.DimseError)
    assert err.status == 0x0124
    assert err.hint is not None and "'ASKER'" in err.hint and "ELSEWHERE" in err.hint
    assert "refused" in str(err)


def test_the_cli_exits_non_zero_on_a_refusal(stranger_pacs: dl.Node) -> None:
    address = f"ELSEWHERE@127.0.0.1:{stranger_pacs.port}"
    proc = subprocess.run(
        [sys.executable, "-m", "dicomlab.cli", "find", address, "--calling-ae", "ASKER"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "refused" in proc.stderr and "ASKER" in proc.stderr


def test_the_query_panel_shows_a_refusal_in_red_with_its_hint(stranger_pacs: dl.Node) -> None:
    book = dl.NodeBook([stranger_pacs])
    book.default = "elsewhere"
    panel = dl.widgets.QueryPanel(book)
    try:
        panel.search("all")
        panel.wait()
        assert isinstance(panel.error, dl.OperationRefused)
        text = panel.message.value
        assert "#b42318" in text  # the error colour
        assert "refused" in text and "hint:" in text
        assert "0 studies" not in text and "partial" not in text
    finally:
        panel.close()


def test_a_refused_retrieve_says_so_per_item(tmp_path: Path, stranger_pacs: dl.Node) -> None:
    with dl.LocalPACS(tmp_path / "mine", ae_title="MINE", port=0) as mine:
        what = dl.Query.studies()
        with pytest.raises(dl.OperationRefused):
            dl.find(stranger_pacs, what, calling_ae="MINE")
        done = dl.retrieve(
            stranger_pacs.replace(retrieve="get"),
            ["1.2.3.4"],
            into=mine,
            calling_ae="MINE",
            progress=False,
        )
        assert not done.complete.any()
        assert done.status.tolist() == [0x0124]
        assert "not authori" in str(done.error.iloc[0]).lower()
        assert len(mine.instances()) == 0


def test_retrieving_a_study_the_pacs_does_not_hold_is_not_complete(tmp_path: Path) -> None:
    with (
        dl.LocalPACS(tmp_path / "pacs", port=0) as local,
        dl.LocalPACS(tmp_path / "other", ae_title="OTHER", port=0) as other,
    ):
        done = dl.retrieve(local.node, ["1.2.826.0.1.3680043.9.999"], into=other, progress=False)
        (row,) = done.itertuples()
        assert row.received_instances == 0
        assert not row.complete
        assert "holds no instance" in row.error
        assert not done.attrs["complete"]


def test_a_batch_refused_for_every_value_raises(stranger_pacs: dl.Node) -> None:
    with pytest.raises(dl.OperationRefused, match="all 3 queries failed") as caught:
        dl.find_many(
            stranger_pacs,
            dl.Query.studies(),
            progress=False,
            calling_ae="ASKER",
            AccessionNumber=["A1", "A2", "A3"],
        )
    assert caught.value.status == 0x0124 and "'ASKER'" in str(caught.value.hint)


def test_an_unauthorised_move_or_get_from_a_stranger_is_refused_0124(tmp_path: Path) -> None:
    """A plain pynetdicom AE (not dicomlab's client: a stranger, even in this process)."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    with dl.LocalPACS(tmp_path / "dest", ae_title="DEST", port=0) as dest:
        book = dl.NodeBook([dl.Node("dest", ae_title="DEST", port=dest.port)])
        with dl.LocalPACS(tmp_path / "pacs", port=0, book=book) as local:
            ae = AE(ae_title="STRANGER")
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
            ae.add_requested_context(CTImageStorage)
            role = build_role(CTImageStorage, scp_role=True)
            assoc = ae.associate("127.0.0.1", local.port, ae_title=local.ae_title, ext_neg=[role])
            assert assoc.is_established
            try:
                query = Dataset()
                query.QueryRetrieveLevel = "STUDY"
                query.StudyInstanceUID = "1.2.3"
                moved = [
                    int(s.Status)
                    for s, _ in assoc.send_c_move(
                        query, "DEST", StudyRootQueryRetrieveInformationModelMove
                    )
                    if "Status" in s
                ]
                got = [
                    int(s.Status)
                    for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
                    if "Status" in s
                ]
            finally:
                assoc.release()
    assert moved[-1] == 0x0124 and got[-1] == 0x0124
