"""``dl.check_move``: the reverse path of C-MOVE, checked against Orthanc and dcmtk's
dcmqrscp with our LocalPACS registered correctly, not registered, and registered with a
wrong port, and against an Orthanc that holds nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.peers import DcmQRSCP, Orthanc
from dicomlab.testing.fixtures import need_peer


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("synth")
    return dl.synth.write_studies(folder, n_studies=3, seed=11, max_series=1, max_instances=2)


@pytest.fixture()
def local(tmp_path: Path) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        yield lp


def _wrong_port(lp: dl.LocalPACS) -> dl.Node:
    return dataclasses.replace(lp.node, port=lp.port + 1 if lp.port < 65535 else lp.port - 1)


def _says_what_to_register(check: dl.MoveCheck, lp: dl.LocalPACS) -> None:
    assert not check.ok
    assert (check.our_ae, check.our_host, check.our_port) == (lp.ae_title, "127.0.0.1", lp.port)
    assert f"'{lp.ae_title}'" in check.detail
    assert f"port {lp.port}" in check.detail
    assert check.seen_from is None
    assert lp.instances().empty  # nothing arrived


def test_orthanc_with_our_modality_registered_moves_and_says_from_where(
    tmp_path: Path, studies: pd.DataFrame, local: dl.LocalPACS
) -> None:
    need_peer("Orthanc")
    with Orthanc.knowing(tmp_path / "o", local.node) as orthanc:
        orthanc.upload(studies.path)
        check = dl.check_move(orthanc.node, into=local)
    assert check.ok and check.cause == "ok", check.detail
    assert check.seen_from == "127.0.0.1"
    assert "127.0.0.1" in check.detail
    held = local.instances()
    assert len(held) == 1 and held.SOPInstanceUID.iloc[0] in set(studies.SOPInstanceUID)
    assert "C-MOVE works" in str(check)


@pytest.mark.parametrize("registered", ["not at all", "with a wrong port"])
def test_orthanc_unregistered_or_at_a_wrong_port_gets_both_fixes_named(
    tmp_path: Path, studies: pd.DataFrame, local: dl.LocalPACS, registered: str
) -> None:
    """Orthanc answers 0xC000 whether it lacks our AE title or cannot reach the port it
    has (its log alone says which), and the same to an AE title it cannot know: the
    diagnosis says DICOM cannot tell and names what to register or correct."""
    need_peer("Orthanc")
    nodes = [] if registered == "not at all" else [_wrong_port(local)]
    with Orthanc.knowing(tmp_path / "o", *nodes) as orthanc:
        orthanc.upload(studies.path)
        check = dl.check_move(orthanc.node, into=local)
        log = orthanc.log_text()
    assert check.cause == "unknown-or-unreachable", check.detail
    assert "register (or correct)" in check.detail and "0xC000" in check.detail
    _says_what_to_register(check, local)
    # what Orthanc itself saw, so the two cases really are the two cases
    expected = "Unknown modality" if registered == "not at all" else "Connection refused"
    assert expected in log


def test_an_empty_orthanc_cannot_be_checked_and_says_so(
    tmp_path: Path, local: dl.LocalPACS
) -> None:
    need_peer("Orthanc")
    with Orthanc.knowing(tmp_path / "o", local.node) as orthanc:
        check = dl.check_move(orthanc.node, into=local)
    assert check.cause == "empty"
    assert check.detail.startswith("cannot check")
    assert f"port {local.port}" in check.detail


def test_dcmqrscp_tells_an_unknown_destination_from_an_unreachable_one(
    tmp_path: Path, studies: pd.DataFrame, local: dl.LocalPACS
) -> None:
    """dcmtk's dcmqrscp answers 0xA801 to a destination it does not know and fails the
    sub-operations of one it cannot reach: each gets its own diagnosis."""
    need_peer("dcmqrscp")
    files = list(studies.path)
    with DcmQRSCP(tmp_path / "unknown", files=files, move_destinations={}) as q:
        unknown = dl.check_move(q.node, into=local)
    assert unknown.cause == "unknown-destination", unknown.detail
    assert "0xA801" in unknown.detail and "register AE title" in unknown.detail
    _says_what_to_register(unknown, local)

    wrong = {local.ae_title: _wrong_port(local).port}
    with DcmQRSCP(tmp_path / "wrong", files=files, move_destinations=wrong) as q:
        unreachable = dl.check_move(q.node, into=local)
    assert unreachable.cause == "cannot-connect", unreachable.detail
    assert f"should be host 127.0.0.1, port {local.port}" in unreachable.detail
    _says_what_to_register(unreachable, local)

    right = {local.ae_title: local.port}
    with DcmQRSCP(tmp_path / "right", files=files, move_destinations=right) as q:
        works = dl.check_move(q.node, into=local)
    assert works.ok and works.cause == "ok", works.detail
    assert len(local.instances()) == 1


def test_a_pacs_that_does_not_answer_is_a_clear_error_not_a_verdict(local: dl.LocalPACS) -> None:
    """Nothing listening: the C-FIND that looks for an instance fails, and the check says
    it could not look (no C-MOVE verdict on a PACS that was never asked)."""
    node = dl.Node("nobody", ae_title="NOBODY", host="127.0.0.1", port=_wrong_port(local).port)
    check = dl.check_move(node, into=local)
    assert check.cause == "no-query" and not check.ok
    assert "cannot look for an instance to move" in check.detail
