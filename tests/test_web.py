"""LocalPACS's web port against real clients: dicomweb-client (the field's DICOMweb
client library) and our own DICOMweb client (``dl.find``/``dl.retrieve`` on
``local.web_node``) for QIDO-RS, WADO-RS and STOW-RS; plain HTTP for what a browser or an
attacker sends: share tokens that see one study, users and their roles, refused paths,
zip downloads, the network log, and the server's lifecycle."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEGLSLossless, generate_uid

import dicomlab as dl
from dicomlab.server.web.multipart import RelatedReader

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return dl.synth.write_studies(tmp_path_factory.mktemp("src"), 4, seed=5, image_size=64)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, source: pd.DataFrame) -> Iterator[dl.LocalPACS]:
    pacs = dl.LocalPACS(tmp_path_factory.mktemp("pacs"), port=0, web_port=0).start()
    for path in source.path:
        pacs.import_files(path)
    pacs.add_web_user("viewer", PASSWORD, role="view")
    pacs.add_web_user("uploader", PASSWORD, role="upload")
    yield pacs
    pacs.stop()


@pytest.fixture
def owner(local: dl.LocalPACS) -> dict[str, str]:
    secret = local.web_node.dicomweb.secret()  # type: ignore[union-attr]
    return {"Authorization": f"Bearer {secret}"}


def _client(local: dl.LocalPACS, headers: dict[str, str]) -> DICOMwebClient:
    return DICOMwebClient(local.dicomweb_url, headers=headers)


def _basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _studies(local: dl.LocalPACS) -> list[str]:
    return sorted(local.studies().StudyInstanceUID)


def _uids(answers: list[dict], tag: str = "0020000D") -> list[str]:
    return sorted(a[tag]["Value"][0] for a in answers)


# -- QIDO-RS ------------------------------------------------------------------------------
def test_qido_with_dicomweb_client_matches_the_archive(local: dl.LocalPACS, owner) -> None:
    client = _client(local, owner)
    assert _uids(client.search_for_studies()) == _studies(local)
    held = local.instances()
    study = _studies(local)[0]
    series = client.search_for_series(study)
    assert _uids(series, "0020000E") == sorted(
        held[held.StudyInstanceUID == study].SeriesInstanceUID.unique()
    )
    inst = client.search_for_instances(study)
    assert _uids(inst, "00080018") == sorted(held[held.StudyInstanceUID == study].SOPInstanceUID)
    # the counts a study list shows
    one = next(a for a in client.search_for_studies() if a["0020000D"]["Value"][0] == study)
    assert one["00201208"]["Value"] == [int((held.StudyInstanceUID == study).sum())]


def test_qido_matching_paging_and_bad_parameters(local: dl.LocalPACS, owner) -> None:
    url = local.dicomweb_url + "/studies"
    studies = local.studies()
    name = str(studies.PatientName.iloc[0])
    got = requests.get(url, params={"PatientName": name[:3] + "*"}, headers=owner).json()
    expected = studies[studies.PatientName.astype(str).str.startswith(name[:3])]
    assert _uids(got) == sorted(expected.StudyInstanceUID)
    first = requests.get(url, params={"limit": 2}, headers=owner).json()
    rest = requests.get(url, params={"offset": 2}, headers=owner).json()
    assert len(first) == 2 and _uids(first + rest) == _studies(local)
    by_tag = requests.get(url, params={"0020000D": _studies(local)[1]}, headers=owner).json()
    assert _uids(by_tag) == [_studies(local)[1]]
    bad = requests.get(url, params={"NoSuchKeyword": "x"}, headers=owner)
    assert bad.status_code == 400 and "NoSuchKeyword" in bad.text
    assert requests.get(url, params={"limit": "ten"}, headers=owner).status_code == 400


# -- WADO-RS ------------------------------------------------------------------------------
def test_wado_retrieve_is_the_stored_bytes(local: dl.LocalPACS, owner) -> None:
    row = local.instances().iloc[0]
    url = (
        f"{local.dicomweb_url}/studies/{row.StudyInstanceUID}/series/{row.SeriesInstanceUID}"
        f"/instances/{row.SOPInstanceUID}"
    )
    answer = requests.get(url, headers=owner)
    assert answer.status_code == 200
    reader = RelatedReader(answer.headers["content-type"])
    parts = reader.feed(answer.content)
    try:
        assert len(parts) == 1
        assert parts[0].read() == Path(row.path).read_bytes()
        assert "transfer-syntax=" in parts[0].headers["content-type"]
    finally:
        for part in parts:
            part.close()


def test_wado_study_metadata_and_frames_with_dicomweb_client(local: dl.LocalPACS, owner) -> None:
    client = _client(local, owner)
    study = _studies(local)[0]
    got = client.retrieve_study(study)
    held = local.instances()
    mine = held[held.StudyInstanceUID == study]
    assert sorted(ds.SOPInstanceUID for ds in got) == sorted(mine.SOPInstanceUID)
    row = mine.iloc[0]
    metadata = client.retrieve_instance_metadata(study, row.SeriesInstanceUID, row.SOPInstanceUID)
    assert metadata["00080018"]["Value"] == [row.SOPInstanceUID]
    assert metadata["7FE00010"]["BulkDataURI"].endswith("/frames/1")
    frame = client.retrieve_instance_frames(study, row.SeriesInstanceUID, row.SOPInstanceUID, [1])
    assert frame[0] == dcmread(row.path).PixelData
    missing = requests.get(
        f"{local.dicomweb_url}/studies/{study}/series/{row.SeriesInstanceUID}/instances/"
        f"{row.SOPInstanceUID}/frames/9",
        headers=owner,
    )
    assert missing.status_code == 404


def test_thumbnail_is_a_picture(local: dl.LocalPACS, owner) -> None:
    from PIL import Image

    row = local.instances().iloc[0]
    series = f"studies/{row.StudyInstanceUID}/series/{row.SeriesInstanceUID}"
    url = f"{local.dicomweb_url}/{series}/thumbnail"
    answer = requests.get(url, headers={**owner, "Accept": "image/png"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(answer.content)))
    assert picture.std() > 1  # an image, not a blank


# -- our own DICOMweb client ------------------------------------------------------------
def test_our_client_finds_and_retrieves_over_the_web_port(
    local: dl.LocalPACS, tmp_path: Path
) -> None:
    df = dl.find(local.web_node, dl.Query.studies())
    assert sorted(df.StudyInstanceUID) == _studies(local)
    target = dl.LocalPACS(tmp_path / "into", port=0)
    with target:
        outcome = dl.retrieve(local.web_node, df.head(1), into=target)
        assert len(outcome) >= 1 and "failed" not in set(outcome.status.astype(str))
        held = local.instances()
        expected = held[held.StudyInstanceUID == df.StudyInstanceUID.iloc[0]]
        assert sorted(target.instances().SOPInstanceUID) == sorted(expected.SOPInstanceUID)


# -- STOW-RS ------------------------------------------------------------------------------
def _fresh_copy(path: str) -> tuple[bytes, str]:
    ds = dcmread(path)
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), uid


def _related(parts: list[bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    )
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return body + f"--{boundary}--\r\n".encode(), kind


def test_stow_with_dicomweb_client_stores_and_indexes(local: dl.LocalPACS, source) -> None:
    data, uid = _fresh_copy(source.path.iloc[0])
    client = _client(local, _basic("uploader"))
    answer = client.store_instances([dcmread(io.BytesIO(data))])
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == uid
    assert uid in set(local.instances().SOPInstanceUID)


def test_stow_of_garbage_is_refused_per_instance_and_stores_nothing(
    local: dl.LocalPACS, owner, source
) -> None:
    before = len(local.instances())
    good, _ = _fresh_copy(source.path.iloc[1])
    cut = good[: len(good) // 2]  # a file cut short
    body, kind = _related([b"not dicom at all", cut])
    answer = requests.post(
        local.dicomweb_url + "/studies", data=body, headers={**owner, "Content-Type": kind}
    )
    assert answer.status_code == 409
    failed = answer.json()["00081198"]["Value"]
    assert len(failed) == 2 and all("00081197" in f for f in failed)
    assert len(local.instances()) == before
    plain = requests.post(
        local.dicomweb_url + "/studies", data=b"x", headers={**owner, "Content-Type": "text/plain"}
    )
    assert plain.status_code == 415


def test_stow_into_another_study_is_refused(local: dl.LocalPACS, owner, source) -> None:
    data, uid = _fresh_copy(source.path.iloc[0])
    other = next(s for s in _studies(local) if s != dcmread(io.BytesIO(data)).StudyInstanceUID)
    body, kind = _related([data])
    answer = requests.post(
        f"{local.dicomweb_url}/studies/{other}", data=body, headers={**owner, "Content-Type": kind}
    )
    assert answer.status_code == 409
    assert uid not in set(local.instances().SOPInstanceUID)


# -- tokens and users ---------------------------------------------------------------------
def _token(link: str) -> str:
    return link.split("token=")[1].split("&")[0]


def test_a_share_token_sees_its_study_only(local: dl.LocalPACS) -> None:
    a, b = _studies(local)[:2]
    secret = _token(local.share(a, days=1))
    bearer = {"Authorization": f"Bearer {secret}"}
    w = local.dicomweb_url
    assert _uids(requests.get(w + "/studies", headers=bearer).json()) == [a]
    guess = requests.get(w + "/instances", params={"StudyInstanceUID": b}, headers=bearer)
    assert guess.status_code == 200 and guess.json() == []
    assert requests.get(f"{w}/studies/{b}", headers=bearer).status_code == 404
    assert requests.get(f"{w}/studies/{b}/metadata", headers=bearer).status_code == 404
    assert (
        requests.get(f"{local.web_url}/zip/studies/{b}", params={"token": secret}).status_code
        == 404
    )
    assert requests.get(f"{w}/studies/{a}/metadata", headers=bearer).status_code == 200
    zipped = requests.get(f"{local.web_url}/zip/studies/{a}", params={"token": secret})
    assert zipped.status_code == 200
    body, kind = _related([b"x"])
    stow = requests.post(w + "/studies", data=body, headers={**bearer, "Content-Type": kind})
    assert stow.status_code == 403  # a share link never uploads


def test_expired_revoked_and_unknown_tokens(local: dl.LocalPACS) -> None:
    study = _studies(local)[0]
    w = local.dicomweb_url + "/studies"
    short = _token(local.share(study, days=1 / 86_400))  # one second
    time.sleep(1.2)
    assert requests.get(w, headers={"Authorization": f"Bearer {short}"}).status_code == 403
    link = local.share(study, days=1, label="for a colleague")
    secret = _token(link)
    assert requests.get(w, params={"token": secret}).status_code == 200
    token_id = local.shares().query("label == 'for a colleague'").id.iloc[0]
    local.revoke(token_id)
    assert requests.get(w, params={"token": secret}).status_code == 403
    assert local.shares().set_index("id").loc[token_id, "state"] == "revoked"
    assert requests.get(w, params={"token": "guess"}).status_code == 401
    assert secret not in (local.archive.root / "web.json").read_text()  # stored hashed


def test_share_counted_from_the_study_date(local: dl.LocalPACS) -> None:
    study = local.studies().sort_values("StudyDate").iloc[0]
    if str(study.StudyDate) > time.strftime("%Y%m%d", time.gmtime(time.time() - 2 * 86_400)):
        pytest.fail("the synthetic studies should include one older than two days")
    link = local.share(study.StudyInstanceUID, days=1, from_study_date=True)
    answer = requests.get(local.dicomweb_url + "/studies", params={"token": _token(link)})
    assert answer.status_code == 403  # a day after a study older than two days: expired


def test_users_roles_and_slowed_wrong_passwords(local: dl.LocalPACS) -> None:
    w = local.dicomweb_url + "/studies"
    assert requests.get(w, headers=_basic("viewer")).status_code == 200
    body, kind = _related([b"x"])
    assert (
        requests.post(w, data=body, headers={**_basic("viewer"), "Content-Type": kind}).status_code
        == 403
    )
    assert requests.get(w).status_code == 401
    assert "Basic" in requests.get(w).headers["www-authenticate"]
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert requests.get(w, headers=_basic("viewer", "wrong password")).status_code == 401
        times.append(time.perf_counter() - t0)
    assert times[4] >= 0.9 and times[0] < 0.5  # the fourth failure waits 0.5 s, the fifth 1 s
    assert requests.get(w, headers=_basic("viewer")).status_code == 200  # and success resets
    stored = (local.archive.root / "web.json").read_text()
    assert PASSWORD not in stored
    with pytest.raises(dl.ValidationError):
        local.add_web_user("x", "short", role="view")
    with pytest.raises(dl.ValidationError):
        local.add_web_user("someone", PASSWORD, role="superuser")  # type: ignore[arg-type]


def test_odd_paths_are_refused(local: dl.LocalPACS, owner) -> None:
    base = local.web_url
    for path in (
        "/dicom-web/studies/..%2F..%2Fetc%2Fpasswd",
        "/dicom-web/studies/1.2%2F3",
        "/zip/studies/%2e%2e/x",
        "/dicom-web/studies/" + "1." * 40 + "1",
    ):
        with socket.create_connection((local.archive.index and "127.0.0.1", local.web_port)) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            status = s.recv(200).split(b" ")[1]
        assert status == b"400", path
    assert requests.get(base + "/dicom-web/studies/abc", headers=owner).status_code == 400


# -- zip ------------------------------------------------------------------------------------
def test_zip_download_holds_the_files(local: dl.LocalPACS, owner) -> None:
    study = _studies(local)[0]
    answer = requests.get(f"{local.web_url}/zip/studies/{study}", headers=owner)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    held = local.instances()
    mine = held[held.StudyInstanceUID == study]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert len(names) == len(mine)
        for row in mine.itertuples():
            name = f"{row.StudyInstanceUID}/{row.SeriesInstanceUID}/{row.SOPInstanceUID}.dcm"
            assert zf.read(name) == Path(row.path).read_bytes()


def test_export_zip_compressed_is_lossless(local: dl.LocalPACS, tmp_path: Path) -> None:
    study = _studies(local)[0]
    out = local.export_zip(study, tmp_path / "s.zip", compress="jpeg-ls")
    held = local.instances().set_index("SOPInstanceUID")
    with zipfile.ZipFile(out) as zf:
        for name in zf.namelist():
            ds = dcmread(io.BytesIO(zf.read(name)))
            original = dcmread(held.loc[ds.SOPInstanceUID, "path"])
            if "PixelData" in original:
                assert ds.file_meta.TransferSyntaxUID == JPEGLSLossless
                assert np.array_equal(ds.pixel_array, original.pixel_array)
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(dl.ValidationError):
        local.export_zip(study, tmp_path / "x.zip", compress="jpeg-lossy")


def _fill(pacs: dl.LocalPACS, template: Dataset, n: int) -> None:
    """``n`` instances of ``template``'s study in ``pacs`` (new SOP Instance UIDs)."""
    for k in range(n):
        uid = generate_uid()
        template.SOPInstanceUID = uid
        template.file_meta.MediaStorageSOPInstanceUID = uid
        template.InstanceNumber = k + 1
        buf = io.BytesIO()
        template.save_as(buf, enforce_file_format=True)
        assert pacs.archive.add_file(buf.getvalue(), "test").status == "stored"


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dl.LocalPACS, str]]:
    """A LocalPACS holding one 300-instance study of 256x256 images (about 40 MB)."""
    folder = tmp_path_factory.mktemp("big")
    seed = dl.synth.write_studies(folder / "seed", 1, seed=8, image_size=256)
    template = dcmread(seed.path.iloc[0])
    study = template.StudyInstanceUID
    pacs = dl.LocalPACS(folder / "pacs", port=0, web_port=0, fsync=False).start()
    _fill(pacs, template, 300)
    yield pacs, study
    pacs.stop()


def test_a_300_instance_zip_streams_with_flat_memory(big) -> None:
    pacs, study = big
    headers = {"Authorization": f"Bearer {pacs.web_node.dicomweb.secret()}"}  # type: ignore[union-attr]
    total = sum(int(s) for s in pacs.instances()["size"])
    tracemalloc.start()
    try:
        received = 0
        with requests.get(f"{pacs.web_url}/zip/studies/{study}", headers=headers, stream=True) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(256 * 1024):
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > total
    assert peak < total / 4, f"peak {peak / 1e6:.1f} MB while streaming {total / 1e6:.1f} MB"


def test_dimse_keeps_serving_during_a_large_download(big) -> None:
    pacs, study = big
    headers = {"Authorization": f"Bearer {pacs.web_node.dicomweb.secret()}"}  # type: ignore[union-attr]
    started, done = threading.Event(), threading.Event()

    def slow_reader() -> None:
        with requests.get(
            f"{pacs.dicomweb_url}/studies/{study}", headers=headers, stream=True
        ) as r:
            for n, _ in enumerate(r.iter_content(64 * 1024)):
                if n == 1:
                    started.set()
                time.sleep(0.01)
        done.set()

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    assert started.wait(10)
    t0 = time.perf_counter()
    assert dl.echo(pacs.node).ok
    found = dl.find(pacs.node, dl.Query.studies())
    assert list(found.StudyInstanceUID) == [study]
    assert time.perf_counter() - t0 < 3
    assert not done.is_set()  # the download was still running
    reader.join(60)


def test_a_study_answer_declares_its_length_and_holds_every_file_in_order(big) -> None:
    """A WADO-RS study retrieve says its size up front (a browser shows progress, a
    client knows a cut answer), streams with flat memory, and each part is the stored
    file, in the order the index lists them."""
    pacs, study = big
    headers = {"Authorization": f"Bearer {pacs.web_node.dicomweb.secret()}"}  # type: ignore[union-attr]
    held = pacs.archive.index.locate({"StudyInstanceUID": study})
    url = f"{pacs.dicomweb_url}/studies/{study}"
    received = 0
    tracemalloc.start()  # the server runs in this process: its allocations count
    try:
        with requests.get(url, headers=headers, stream=True) as r:
            assert r.status_code == 200
            declared = int(r.headers["content-length"])
            assert "transfer-encoding" not in r.headers
            for chunk in r.iter_content(256 * 1024):
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = sum(int(row["size"]) for row in held)
    assert received == declared > total
    assert peak < total / 4, f"peak {peak / 1e6:.1f} MB while streaming {total / 1e6:.1f} MB"
    answer = requests.get(url, headers=headers)
    parts = RelatedReader(answer.headers["content-type"]).feed(answer.content)
    try:
        assert len(parts) == len(held) == 300
        for part, row in zip(parts, held, strict=True):
            assert part.read() == (pacs.archive.root / row["path"]).read_bytes()
            assert part.headers["content-type"].endswith(row["TransferSyntaxUID"])
    finally:
        for part in parts:
            part.close()


def test_a_client_leaving_mid_study_leaves_the_port_serving(big) -> None:
    pacs, study = big
    headers = {"Authorization": f"Bearer {pacs.web_node.dicomweb.secret()}"}  # type: ignore[union-attr]
    url = f"{pacs.dicomweb_url}/studies/{study}"
    for _ in range(3):
        with requests.get(url, headers=headers, stream=True) as r:
            next(r.iter_content(64 * 1024))  # then the connection is dropped
    with requests.get(url, headers=headers, stream=True) as r:
        got = sum(len(c) for c in r.iter_content(1024 * 1024))
        assert r.status_code == 200 and got == int(r.headers["content-length"])


def test_a_file_gone_from_the_archive_refuses_the_retrieve_before_it_starts(
    tmp_path: Path, source: pd.DataFrame
) -> None:
    with dl.LocalPACS(tmp_path / "pacs", port=0, web_port=0) as pacs:
        pacs.import_files(source.path.iloc[0])
        row = pacs.instances().iloc[0]
        Path(row.path).unlink()
        headers = {"Authorization": f"Bearer {pacs.web_node.dicomweb.secret()}"}  # type: ignore[union-attr]
        answer = requests.get(
            f"{pacs.dicomweb_url}/studies/{row.StudyInstanceUID}", headers=headers
        )
    assert answer.status_code == 500
    assert "rebuild the index" in answer.text and row.SOPInstanceUID in answer.text


# -- the log, the viewer page, the lifecycle --------------------------------------------
def test_every_request_is_a_log_row_without_patient_data(local: dl.LocalPACS, owner) -> None:
    study = _studies(local)[0]
    since = pd.Timestamp.now(tz="UTC")
    requests.get(local.dicomweb_url + "/studies", headers=_basic("viewer"))
    requests.get(f"{local.dicomweb_url}/studies/{study}/metadata", headers=owner)
    requests.get(f"{local.web_url}/zip/studies/{study}", headers=owner)
    requests.get(local.dicomweb_url + "/studies")  # 401
    # A request's row is made when the server has sent its last byte: the client may
    # have the response a moment before that (the last request's row, most often).
    deadline = time.monotonic() + 5
    while True:
        dl.log.flush()
        df = dl.read_log(since=since)
        web = df[df.role == "SCP"]
        got = set(zip(web.service, web.status, web.principal.fillna(""), strict=True))
        if len(web) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ("QIDO-RS", 200, "viewer") in got
    assert ("WADO-RS", 200, "owner") in got
    assert ("ZIP", 200, "owner") in got
    assert ("QIDO-RS", 401, "") in got
    zip_row = web[web.service == "ZIP"].iloc[0]
    assert zip_row.study_instance_uid == study and zip_row.bytes > 0
    names = {str(n) for n in local.studies().PatientName}
    text = df.astype(str).to_numpy().ravel()
    assert not any(name in cell for name in names for cell in text)


def test_without_the_viewer_the_page_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMLAB_OHIF_DIST", str(tmp_path / "nowhere"))
    with dl.LocalPACS(tmp_path / "p", port=0, web_port=0) as pacs:
        page = requests.get(pacs.web_url + "/")
        assert page.status_code == 404 and "make viewer" in page.text
        with pytest.raises(dl.ConfigError, match="not installed") as err:
            pacs.viewer_url()
        assert "make viewer" in str(err.value.hint)


def test_web_port_stops_with_the_localpacs(tmp_path: Path) -> None:
    pacs = dl.LocalPACS(tmp_path / "p", port=0, web_port=0).start()
    port = pacs.web_port
    with pytest.raises(dl.ConfigError, match="already in use"):
        dl.LocalPACS(tmp_path / "q", port=0, web_port=port).start()
    before = {t.name for t in threading.enumerate()}
    assert f"dicomlab-web-{port}" in before
    t0 = time.perf_counter()
    pacs.stop()
    assert time.perf_counter() - t0 < 5
    assert f"dicomlab-web-{port}" not in {t.name for t in threading.enumerate()}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(dl.ConfigError, match="serves no web port"):
        _ = pacs.web_url
    again = dl.LocalPACS(tmp_path / "p", port=0, web_port=port).start()  # the port is free
    again.stop()


def test_stopping_mid_download_closes_the_connection(tmp_path: Path) -> None:
    """A LocalPACS stopped while a client is in the middle of a study's download ends
    that connection (the client sees it end at once), rather than leaving it open
    until the garbage collector finds it."""
    seed = dl.synth.write_studies(tmp_path / "seed", 1, seed=9, image_size=256)
    template = dcmread(seed.path.iloc[0])
    pacs = dl.LocalPACS(tmp_path / "pacs", port=0, web_port=0, fsync=False).start()
    try:
        _fill(pacs, template, 60)  # about 8 MB: more than the sockets' buffers hold
        secret = pacs.web_node.dicomweb.secret()  # type: ignore[union-attr]
        path = f"{pacs.dicomweb_url}/studies/{template.StudyInstanceUID}".split(
            str(pacs.web_port), 1
        )[1]
        client = socket.create_connection(("127.0.0.1", pacs.web_port), timeout=10)
    except BaseException:
        pacs.stop()
        raise
    with client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\r\n".encode()
        )
        assert client.recv(65536).startswith(b"HTTP/1.1 200")  # then it stops reading
        pacs.stop()
        client.settimeout(5)
        ended = False
        try:
            while client.recv(1 << 20):
                pass
            ended = True  # the server closed it
        except ConnectionResetError:
            ended = True  # or reset it
        except TimeoutError:
            pass
        assert ended, "the connection stayed open after the LocalPACS stopped"


def test_https_with_the_same_tls_files(tmp_path: Path, source: pd.DataFrame) -> None:
    certs = dl.tls.make_demo_certificates(tmp_path / "certs")
    with dl.LocalPACS(tmp_path / "p", port=0, tls=certs.server(), tls_port=0, web_port=0) as pacs:
        pacs.import_files(source.path.iloc[0])
        assert pacs.web_url.startswith("https://")
        df = dl.find(pacs.web_node, dl.Query.studies())
        assert len(df) == 1
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(pacs.dicomweb_url + "/studies", timeout=5)  # not our CA: refused


def test_users_and_tokens_survive_a_restart(tmp_path: Path, source: pd.DataFrame) -> None:
    with dl.LocalPACS(tmp_path / "p", port=0, web_port=0) as pacs:
        pacs.import_files(source.path.iloc[0])
        pacs.add_web_user("alice", PASSWORD)
        link = pacs.share(_studies(pacs)[0], days=2)
    with dl.LocalPACS(tmp_path / "p", port=0, web_port=0) as pacs:
        w = pacs.dicomweb_url + "/studies"
        assert requests.get(w, headers=_basic("alice")).status_code == 200
        assert requests.get(w, params={"token": _token(link)}).status_code == 200
    assert json.loads((tmp_path / "p" / "web.json").read_text())["users"][0]["name"] == "alice"


def test_panels_view_buttons_link_the_selection(local: dl.LocalPACS) -> None:
    from dicomlab.widgets.query import QueryPanel
    from dicomlab.widgets.server import ServerPanel

    panel = QueryPanel()
    assert panel.view() is None and "select" in panel.message.value
    panel.result = local.studies()
    panel.selection = panel.result.head(1)
    url = panel.view()
    assert url is not None and "dl-query-view-link" in panel.view_link._dom_classes
    study = panel.selection.StudyInstanceUID.iloc[0]
    page = requests.get(url, allow_redirects=False)
    assert page.status_code == 303 and study in page.headers["location"]
    cookie = page.cookies.get("dicomlab")
    visible = requests.get(local.dicomweb_url + "/studies", cookies={"dicomlab": cookie}).json()
    assert _uids(visible) == [study]  # the link's cookie sees the selection only
    server = ServerPanel(local, refresh_s=60)
    try:
        assert not server.view_button.disabled
        assert server.view() is not None and "Open the viewer" in server.view_link.value
        assert local.web_url in server.address.value
    finally:
        server.close()


def test_login_gives_a_session_cookie_and_logout_ends_it(local: dl.LocalPACS) -> None:
    session = requests.Session()
    assert session.get(local.dicomweb_url + "/studies").status_code == 401
    answer = session.post(local.web_url + "/login", headers=_basic("viewer"))
    assert answer.status_code == 200 and "viewer" in answer.text
    assert session.get(local.dicomweb_url + "/studies").status_code == 200  # by the cookie
    cookie = session.cookies.get("dicomlab")
    session.post(local.web_url + "/logout")
    assert session.get(local.dicomweb_url + "/studies").status_code == 401
    kept = requests.get(local.dicomweb_url + "/studies", cookies={"dicomlab": cookie})
    assert kept.status_code == 401  # a copy of the cookie is worth nothing after logout
    wrong = requests.post(local.web_url + "/login", headers=_basic("viewer", "not it"))
    assert wrong.status_code == 401 and "dicomlab" not in wrong.cookies
