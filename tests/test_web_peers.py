"""Orthanc's DICOMweb plugin as a client of a LocalPACS's web port: configured with our
root in ``DicomWeb.Servers`` (as an administrator would), it queries, retrieves from and
stores into the LocalPACS through its own REST calls; with a wrong password nothing
moves."""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.peers import DICOMWEB_PLUGIN, Orthanc
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers

PASSWORD = "orthanc-client-passphrase"


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return dl.synth.write_studies(tmp_path_factory.mktemp("src"), 4, seed=12, image_size=32)


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, studies: pd.DataFrame
) -> Iterator[tuple[dl.LocalPACS, Orthanc]]:
    need_peer("Orthanc")
    need_peer(DICOMWEB_PLUGIN, "orthanc-dicomweb")
    root = tmp_path_factory.mktemp("pair")
    with dl.LocalPACS(root / "pacs", port=0, web_port=0) as local:
        uids = sorted(studies.StudyInstanceUID.unique())
        for path in studies[studies.StudyInstanceUID != uids[-1]].path:  # the last: Orthanc's
            local.import_files(path)
        local.add_web_user("orthanc", PASSWORD, role="upload")
        servers = {
            "dicomlab": [local.dicomweb_url + "/", "orthanc", PASSWORD],
            "wrong": [local.dicomweb_url + "/", "orthanc", "not the password"],
        }
        web = {"Enable": True, "Root": "/dicom-web/", "Servers": servers}
        with Orthanc(root / "orthanc", dicomweb=True, config={"DicomWeb": web}) as orthanc:
            orthanc.upload(studies[studies.StudyInstanceUID == uids[-1]].path)
            yield local, orthanc


def _study_uids(answers: list[dict]) -> list[str]:
    """Orthanc gives the answers in its own format (``{"Value": "1.2..."}``)."""
    values = [a["0020000D"]["Value"] for a in answers]
    return sorted(v[0] if isinstance(v, list) else v for v in values)


def test_orthanc_queries_our_studies(pair) -> None:
    local, orthanc = pair
    found = orthanc.rest("POST", "/dicom-web/servers/dicomlab/qido", {"Uri": "/studies"})
    assert _study_uids(found) == sorted(local.studies().StudyInstanceUID)


def test_orthanc_retrieves_a_study_from_us(pair) -> None:
    local, orthanc = pair
    study = sorted(local.studies().StudyInstanceUID)[0]
    before = len(orthanc.rest("GET", "/instances"))
    orthanc.rest("POST", "/dicom-web/servers/dicomlab/retrieve", {"Resources": [{"Study": study}]})
    held = local.instances()
    expected = set(held[held.StudyInstanceUID == study].SOPInstanceUID)
    found = orthanc.rest(
        "POST",
        "/tools/find",
        {"Level": "Instance", "Query": {"StudyInstanceUID": study}, "Expand": True},
    )
    got = {i["MainDicomTags"]["SOPInstanceUID"] for i in found}
    assert got == expected
    assert len(orthanc.rest("GET", "/instances")) == before + len(expected)


def test_a_wrong_password_moves_nothing(pair, studies: pd.DataFrame) -> None:
    local, orthanc = pair
    before = len(local.instances())
    with pytest.raises(urllib.error.HTTPError):
        orthanc.rest("POST", "/dicom-web/servers/wrong/qido", {"Uri": "/studies"})
    theirs = sorted(studies.StudyInstanceUID.unique())[-1]
    study_id = next(
        i["ID"]
        for i in orthanc.rest("POST", "/tools/lookup", raw=theirs.encode())
        if i["Type"] == "Study"
    )
    with pytest.raises(urllib.error.HTTPError):
        orthanc.rest("POST", "/dicom-web/servers/wrong/stow", {"Resources": [study_id]})
    assert len(local.instances()) == before
    assert Path(local.archive.root / "web.json").exists()


def test_orthanc_stores_into_us_by_stow(pair, studies: pd.DataFrame) -> None:
    local, orthanc = pair
    theirs = sorted(studies.StudyInstanceUID.unique())[-1]
    ids = orthanc.rest("POST", "/tools/lookup", raw=theirs.encode())
    study_id = next(i["ID"] for i in ids if i["Type"] == "Study")
    orthanc.rest("POST", "/dicom-web/servers/dicomlab/stow", {"Resources": [study_id]})
    held = local.instances()
    expected = set(studies[studies.StudyInstanceUID == theirs].SOPInstanceUID)
    assert set(held[held.StudyInstanceUID == theirs].SOPInstanceUID) == expected
    log = dl.read_log()
    stow = log[(log.service == "STOW-RS") & (log.role == "SCP")]
    assert (stow.principal == "orthanc").any() and (stow.status == 200).any()
