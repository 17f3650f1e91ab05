"""DICOMweb as a client against Orthanc's DICOMweb plugin: the same calls, frames and
outcome tables as DIMSE (QIDO-RS find, WADO-RS retrieve, the echo probe), and a node
book that keeps the settings and never a secret."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from pydicom import dcmread

import dicomlab as dl
from dicomlab.core.outcomes import RETRIEVE, STORE
from dicomlab.peers import DICOMWEB_PLUGIN, Orthanc
from dicomlab.testing.fixtures import need_peer
from dicomlab.testing.tlsproxy import TLSProxy
from dicomlab.tls import make_demo_certificates
from dicomlab.web import qido

pytestmark = pytest.mark.peers

TODAY = date.today()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("synth")
    return dl.synth.write_studies(folder, n_studies=6, seed=19, today=TODAY)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, synthetic: pd.DataFrame) -> Iterator[Orthanc]:
    need_peer("Orthanc")
    need_peer(DICOMWEB_PLUGIN, "orthanc-dicomweb")
    with Orthanc(tmp_path_factory.mktemp("orthanc"), dicomweb=True) as o:
        o.upload(synthetic.path)
        yield o


@pytest.fixture
def both(orthanc: Orthanc) -> dl.Node:
    """Orthanc as one node that speaks DIMSE and DICOMweb."""
    return orthanc.node.replace(dicomweb=dl.DICOMweb(orthanc.dicomweb_url, timeout=10))


def _sorted(df: pd.DataFrame, key: str) -> pd.DataFrame:
    return df.sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize(
    ("query", "key"),
    [
        (dl.Query.studies(), "StudyInstanceUID"),
        (dl.Query.studies(date="last7days"), "StudyInstanceUID"),
        (dl.Query.studies(PatientName="*"), "StudyInstanceUID"),
        (dl.Query.series(Modality="CT"), "SeriesInstanceUID"),
        (dl.Query.series(), "SeriesInstanceUID"),
    ],
    ids=["all-studies", "last7days", "name-wildcard", "ct-series", "all-series"],
)
def test_qido_gives_the_rows_c_find_gives(both: dl.Node, query: dl.Query, key: str) -> None:
    by_dimse = dl.find(both, query, protocol="dimse")
    by_web = dl.find(both, query, protocol="dicomweb")
    assert by_web.attrs["protocol"] == "dicomweb" and by_web.attrs["complete"]
    assert len(by_web) > 0
    pd.testing.assert_frame_equal(_sorted(by_web, key), _sorted(by_dimse, key))  # values, dtypes


def test_qido_instances_and_a_uid_list(both: dl.Node, synthetic: pd.DataFrame) -> None:
    two = sorted(synthetic.StudyInstanceUID.unique())[:2]
    q = dl.Query.instances(StudyInstanceUID=two[0])
    web = _sorted(dl.find(both, q, protocol="dicomweb"), "SOPInstanceUID")
    dimse = _sorted(dl.find(both, q, protocol="dimse"), "SOPInstanceUID")
    for col in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber"):
        pd.testing.assert_series_equal(web[col], dimse[col])
    listed = dl.find(both, dl.Query.studies(StudyInstanceUID="\\".join(two)), protocol="dicomweb")
    assert sorted(listed.StudyInstanceUID) == two


def test_results_are_paged_until_the_server_has_no_more(
    both: dl.Node, synthetic: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qido, "PAGE", 4)  # 6 studies, 15+ series: several pages each
    series = dl.find(both, dl.Query.series(), protocol="dicomweb")
    assert series.attrs["complete"]
    assert sorted(series.SeriesInstanceUID) == sorted(synthetic.SeriesInstanceUID.unique())


def test_a_dicomweb_only_node_is_queried_and_retrieved_with_the_same_calls(
    orthanc: Orthanc, synthetic: pd.DataFrame, tmp_path: Path
) -> None:
    web = dl.Node("cloud", dicomweb=dl.DICOMweb(orthanc.dicomweb_url))
    assert web.address == orthanc.dicomweb_url
    studies = dl.find(web, dl.Query.studies())
    assert sorted(studies.StudyInstanceUID) == sorted(synthetic.StudyInstanceUID.unique())
    with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
        out = dl.retrieve(web, studies, into=lp, progress=False)  # method: wado, the only one
        assert isinstance(out, pd.DataFrame)
        assert list(out.columns) == RETRIEVE.names
        assert out.method.unique().tolist() == ["wado"]
        assert out.complete.all(), out.error.tolist()
        assert (out.received_instances == out.expected_instances).all()
        held = lp.instances()
        assert len(held) == len(synthetic)
        sent = {dcmread(p).SOPInstanceUID: dcmread(p).PixelData for p in synthetic.path}
        for row in held.itertuples():  # byte-identical pixel data
            assert dcmread(lp.archive.absolute(row.path)).PixelData == sent[row.SOPInstanceUID]
        again = dl.retrieve(web, studies, into=lp, progress=False)
        assert isinstance(again, pd.DataFrame) and again.skipped.all()  # resumed: nothing pulled
        # a series and an instance, by WADO-RS too
        lp.delete_study(studies.StudyInstanceUID.iloc[0])
        series = dl.find(web, dl.Query.series(StudyInstanceUID=studies.StudyInstanceUID.iloc[0]))
        part = dl.retrieve(web, series.head(1), into=lp, progress=False)
        assert isinstance(part, pd.DataFrame) and part.complete.all(), part.error.tolist()
        assert part.level.tolist() == ["series"]


def test_echo_probes_the_service_and_says_what_is_wrong(orthanc: Orthanc) -> None:
    ok = dl.echo(dl.Node("w", dicomweb=dl.DICOMweb(orthanc.dicomweb_url)))
    assert ok.ok and ok.status == 200
    said = dict(ok.services)
    assert said == {
        "QIDO-RS": "answers, limit honoured",
        "WADO-RS": "answers",
        "STOW-RS": "answers",
    }, said
    assert all(name in ok.detail for name in said)
    held = len(orthanc.rest("GET", "/instances"))
    assert dl.echo(dl.Node("w", dicomweb=dl.DICOMweb(orthanc.dicomweb_url))).ok
    assert len(orthanc.rest("GET", "/instances")) == held  # the probe stores nothing
    wrong_root = dl.echo(dl.Node("w", dicomweb=dl.DICOMweb(orthanc.url + "/not-dicomweb")))
    assert not wrong_root.ok and wrong_root.cause == "not-found" and wrong_root.status == 404
    assert "DICOMweb root URL" in wrong_root.detail
    refused = dl.echo(dl.Node("w", dicomweb=dl.DICOMweb("http://127.0.0.1:9/dicom-web")))
    assert not refused.ok and refused.cause == "refused" and refused.latency_s < 5


def test_basic_auth_reads_the_secret_from_the_environment(
    tmp_path: Path, synthetic: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_peer("Orthanc")
    need_peer(DICOMWEB_PLUGIN, "orthanc-dicomweb")
    users = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "s3cret"}}
    with Orthanc(tmp_path / "o", dicomweb=True, config=users) as o:
        web = dl.DICOMweb(o.dicomweb_url, auth="basic", username="alice", secret_env="DL_PW")
        node = dl.Node("secure", dicomweb=web)
        monkeypatch.setenv("DL_PW", "wrong")
        denied = dl.echo(node)
        assert not denied.ok and denied.cause == "not-authenticated" and denied.status == 401
        with pytest.raises(dl.DICOMwebError, match="HTTP 401") as err:
            dl.find(node, dl.Query.studies())
        assert err.value.http_status == 401 and "auth" in str(err.value.hint)
        monkeypatch.setenv("DL_PW", "s3cret")  # read at each request: no new node needed
        assert dl.echo(node).ok
        monkeypatch.delenv("DL_PW")
        with pytest.raises(dl.ConfigError, match="DL_PW"):
            dl.find(node, dl.Query.studies())


class _Forbidding(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_403_is_told_from_401() -> None:
    """No real peer answers 403 on demand: a scripted one does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidding)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        result = dl.echo(dl.Node("w", dicomweb=dl.DICOMweb(url)))
        assert not result.ok and result.cause == "not-allowed" and result.status == 403
        assert "not allowed" in result.detail
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_node_book_keeps_dicomweb_settings_and_no_secret(tmp_path: Path) -> None:
    web = dl.DICOMweb(
        "https://pacs.example.org/dicomweb/",
        auth="bearer",
        token_file="~/.config/token",
        ca="/etc/ssl/ca.pem",
        timeout=12,
    )
    book = dl.NodeBook(
        [dl.Node("cloud", dicomweb=web), dl.Node("both", ae_title="B", dicomweb=web)]
    )
    path = tmp_path / "nodes.toml"
    book.save(path)
    text = path.read_text()
    assert "token_file" in text and "Bearer" not in text
    loaded = dl.NodeBook.load(path)
    assert loaded["cloud"].dicomweb == web and loaded["cloud"].dicomweb.url.endswith("/dicomweb")
    assert loaded["both"].ae_title == "B" and loaded["both"].dicomweb == web


def test_bad_dicomweb_settings_are_refused_with_the_reason() -> None:
    with pytest.raises(dl.ValidationError, match="http"):
        dl.DICOMweb("ftp://pacs/dicomweb")
    with pytest.raises(dl.ValidationError, match="secret_env"):
        dl.DICOMweb("http://pacs/dicomweb", auth="basic", username="alice")
    with pytest.raises(dl.ValidationError, match="AE title"):
        dl.Node("nothing")  # neither an AE title nor a DICOMweb service


def test_a_call_for_what_a_node_does_not_speak_is_refused_before_anything_is_sent(
    synthetic: pd.DataFrame,
) -> None:
    web_only = dl.Node("cloud", dicomweb=dl.DICOMweb("http://127.0.0.1:9/dicom-web"))
    with pytest.raises(dl.ConfigError, match="cloud is not configured for dimse"):
        dl.find(web_only, dl.Query.studies(), protocol="dimse")
    dimse_only = dl.Node("pacs", ae_title="PACS", port=9)
    with pytest.raises(dl.ConfigError, match="pacs is not configured for dicomweb"):
        dl.retrieve(dimse_only, ["1.2.3"], method="wado", progress=False)


def test_store_over_stow_rs_gives_the_c_store_outcome_table(
    tmp_path: Path, synthetic: pd.DataFrame
) -> None:
    need_peer("Orthanc")
    need_peer(DICOMWEB_PLUGIN, "orthanc-dicomweb")
    junk = tmp_path / "notes.txt"
    junk.write_text("not DICOM")
    with Orthanc(tmp_path / "o", dicomweb=True) as o:
        web = dl.Node("cloud", dicomweb=dl.DICOMweb(o.dicomweb_url), max_connections=2)
        files = [*synthetic.path, str(junk)]
        out = dl.store(web, files, progress=False)
        assert isinstance(out, pd.DataFrame) and list(out.columns) == STORE.names
        sent = out[out.path != str(junk)]
        assert len(sent) == len(synthetic) and (sent.status == 0).all(), sent.error.tolist()
        assert out[out.path == str(junk)].error.iloc[0] == "not a DICOM file"
        assert not out.attrs["complete"]  # the junk file was not sent
        held = dl.find(web, dl.Query.instances())
        assert sorted(held.SOPInstanceUID) == sorted(synthetic.SOPInstanceUID)
        first = synthetic.iloc[0]  # sent as the file's bytes, not parsed and re-encoded
        (found,) = o.rest("POST", "/tools/lookup", raw=str(first.SOPInstanceUID).encode())
        assert o.rest("GET", f"/instances/{found['ID']}/file") == Path(first.path).read_bytes()


def test_each_instance_gets_the_status_the_stow_response_gives_it() -> None:
    """The answer parsed per PS3.18 10.5.3 (no real peer fails or warns on demand)."""
    from pydicom.dataset import Dataset

    from dicomlab.transfer.stow import _acknowledged

    def item(uid: str, **values: int) -> Dataset:
        ds = Dataset()
        ds.ReferencedSOPInstanceUID = uid
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return ds

    response = Dataset()
    response.ReferencedSOPSequence = [item("1.1"), item("1.2", WarningReason=0xB000)]
    response.FailedSOPSequence = [item("1.3", FailureReason=0xA700)]
    got = _acknowledged(response)
    assert got["1.1"] == (0x0000, None)
    assert got["1.2"][0] == 0xB000 and "warning" in str(got["1.2"][1])
    assert got["1.3"][0] == 0xA700 and "refused" in str(got["1.3"][1])
    assert "1.4" not in got  # the caller reports it as not acknowledged


def test_every_request_is_in_the_network_log_without_patient_data(
    orthanc: Orthanc, synthetic: pd.DataFrame, tmp_path: Path
) -> None:
    web = dl.Node("cloud", dicomweb=dl.DICOMweb(orthanc.dicomweb_url))
    first = dcmread(synthetic.path.iloc[0], stop_before_pixels=True)
    family = str(first.PatientName).split("^")[0]
    found = dl.find(web, dl.Query.studies(PatientName=f"{family}*"))  # a value naming a patient
    assert len(found)
    with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
        dl.retrieve(web, found.head(1), into=lp, progress=False)
    dl.store(web, synthetic.path.iloc[:2], progress=False)
    dl.log.flush()
    ops = dl.read_log()
    web_ops = ops[ops.service.isin(["QIDO-RS", "WADO-RS", "STOW-RS"])]
    assert {"QIDO-RS", "WADO-RS", "STOW-RS"} <= set(web_ops.service)
    assert (web_ops.status == 200).all() and (web_ops.status_name == "HTTP 200").all()
    assert (web_ops.status_category == "success").all()
    qido_rows = web_ops[web_ops.service == "QIDO-RS"]
    assert len(found) in set(qido_rows.n_matches)
    wado = web_ops[web_ops.service == "WADO-RS"].iloc[0]
    assert wado.n_completed >= 1 and wado.bytes > 0
    assert wado.study_instance_uid == found.StudyInstanceUID.iloc[0]
    stow = web_ops[web_ops.service == "STOW-RS"].iloc[0]
    assert stow.n_completed == 2
    assert (web_ops.peer_host == "127.0.0.1").all()  # joined with its session's row
    sessions = dl.log.read_associations()
    ours = sessions[sessions.association_id.isin(web_ops.association_id)]
    assert len(ours) and (ours.outcome == "released").all()
    blob = b"".join(p.read_bytes() for p in Path(str(dl.log.folder())).rglob("*.parquet"))
    for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
        for part in str(first.get(keyword, "")).split("^"):
            if len(part) >= 4:
                assert part.encode() not in blob, f"{keyword} {part!r} leaked into the log"


class _DyingWado(http.server.BaseHTTPRequestHandler):
    """A scripted WADO-RS server that dies in the middle of the last part of a study the
    first ``dies`` times it is asked, then serves it whole (no real peer dies on demand)."""

    files: ClassVar[list[bytes]] = []
    uids: ClassVar[list[str]] = []
    calls: ClassVar[int] = 0
    dies: ClassVar[int] = 4  # every attempt of the first retrieve (1 + 3 retries)
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def do_GET(self) -> None:
        if "/instances" in self.path:  # QIDO-RS: what the study holds
            body = json.dumps(
                [{"00080018": {"vr": "UI", "Value": [uid]}} for uid in self.uids]
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        type(self).calls += 1
        self.send_response(200)
        self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=B')
        self.end_headers()
        head = b"--B\r\nContent-Type: application/dicom\r\n\r\n"
        for i, data in enumerate(self.files):
            if self.calls <= self.dies and i == len(self.files) - 1:
                self.wfile.write(head + data[: len(data) // 2])  # then the server dies
                return
            self.wfile.write(head + data + b"\r\n")
        self.wfile.write(b"--B--\r\n")

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_dying_mid_wado_leaves_only_whole_files_and_the_rerun_completes(
    tmp_path: Path, synthetic: pd.DataFrame
) -> None:
    study = synthetic[synthetic.StudyInstanceUID == synthetic.StudyInstanceUID.iloc[0]]
    assert len(study) >= 2
    _DyingWado.files = [Path(p).read_bytes() for p in study.path]
    _DyingWado.uids = list(study.SOPInstanceUID)
    _DyingWado.calls = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DyingWado)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        web = dl.Node("dying", dicomweb=dl.DICOMweb(url, timeout=10))
        uid = str(study.StudyInstanceUID.iloc[0])
        with dl.LocalPACS(tmp_path / "lp", port=0) as lp:
            first = dl.retrieve(web, [uid], into=lp, progress=False)
            assert isinstance(first, pd.DataFrame)
            row = first.iloc[0]
            assert row.attempts == 4 and not row.complete  # tried again, each time cut off
            assert "closed mid-answer" in row.error, row.error
            assert row.received_instances == len(study) - 1  # the whole parts, each once
            archive = Path(lp.archive.root)
            assert not [p for p in archive.rglob("*") if p.name.endswith(".tmp")]
            sent = {r.SOPInstanceUID: Path(r.path).read_bytes() for r in study.itertuples()}
            for held in lp.instances().itertuples():  # every file kept is whole, as sent
                assert lp.archive.absolute(held.path).read_bytes() == sent[held.SOPInstanceUID]
            again = dl.retrieve(web, [uid], into=lp, progress=False)  # the server recovered
            assert isinstance(again, pd.DataFrame) and again.complete.all(), again.error.tolist()
            held = lp.instances()
            assert sorted(held.SOPInstanceUID) == sorted(study.SOPInstanceUID)  # none twice
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_https_with_a_client_certificate_gives_the_same_rows_and_says_what_failed(
    orthanc: Orthanc,
    tmp_path: Path,
    synthetic: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Orthanc behind TLS that requires a client certificate signed by our CA (Debian's
    Orthanc 1.10.1 crashes serving HTTPS itself: see dicomlab.testing.tlsproxy)."""
    certs = make_demo_certificates(tmp_path / "certs")
    # conda and many images set this; requests would let it override the node's ca=
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with TLSProxy(
        orthanc.http_port, certs.server_cert, certs.server_key, certs.ca, require_client_cert=True
    ) as proxy:
        url = proxy.url("/dicom-web")
        good = dl.DICOMweb(url, ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
        node = dl.Node("secure", dicomweb=good)
        assert dl.echo(node).ok
        over_tls = dl.find(node, dl.Query.studies())
        plain = dl.find(orthanc.node, dl.Query.studies())
        pd.testing.assert_frame_equal(
            _sorted(over_tls, "StudyInstanceUID"), _sorted(plain, "StudyInstanceUID")
        )
        study = synthetic.StudyInstanceUID.iloc[0]
        out = dl.retrieve(node, [study], into=tmp_path / "out", method="wado", progress=False)
        assert isinstance(out, pd.DataFrame) and out.complete.all()

        no_cert = dl.echo(dl.Node("secure", dicomweb=dl.DICOMweb(url, ca=certs.ca)))
        assert not no_cert.ok and no_cert.cause == "tls"
        untrusted = dl.Node("secure", dicomweb=dl.DICOMweb(url))
        with pytest.raises(dl.TLSError, match="not trusted") as err:
            dl.find(untrusted, dl.Query.studies())
        assert url in str(err.value) and "ca=" in str(err.value.hint)
    with (
        pytest.raises(dl.TLSError, match="client certificate"),
        TLSProxy(
            orthanc.http_port,
            certs.server_cert,
            certs.server_key,
            certs.ca,
            require_client_cert=True,
        ) as proxy,
    ):
        dl.find(
            dl.Node("s", dicomweb=dl.DICOMweb(proxy.url("/dicom-web"), ca=certs.ca)),
            dl.Query.studies(),
        )


class _BearerOnly(http.server.BaseHTTPRequestHandler):
    """Answers QIDO-RS only to the current bearer token (Orthanc has no bearer auth)."""

    token: ClassVar[str] = ""
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        got = self.headers.get("Authorization", "")
        type(self).seen.append(got)
        ok = got == f"Bearer {self.token}"
        body = b"[]" if ok else b""
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_a_bearer_token_function_is_asked_at_each_request_and_never_saved(
    tmp_path: Path,
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BearerOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    issued: list[str] = []

    def refresh() -> str:  # as a cloud store's client refreshes an expiring token
        issued.append(f"tok-{len(issued)}")
        _BearerOnly.token = issued[-1]
        return issued[-1]

    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        node = dl.Node("cloud", dicomweb=dl.DICOMweb(url, auth="bearer", token=refresh))
        _BearerOnly.seen.clear()
        assert dl.echo(node).ok and dl.echo(node).ok  # (a QIDO-RS and a STOW-RS request each)
        assert len(issued) == 4 and _BearerOnly.seen == [f"Bearer {t}" for t in issued]
        stale = dl.Node("cloud", dicomweb=dl.DICOMweb(url, auth="bearer", token=lambda: "old"))
        with pytest.raises(dl.DICOMwebError, match="HTTP 401"):
            dl.find(stale, dl.Query.studies())
        with pytest.raises(dl.ConfigError, match="token function failed"):
            dl.find(
                dl.Node("c", dicomweb=dl.DICOMweb(url, auth="bearer", token=lambda: 1 / 0)),
                dl.Query.studies(),
            )
        with pytest.raises(dl.ConfigError, match="cannot be saved"):
            dl.NodeBook([node]).save(tmp_path / "nodes.toml")
        assert not (tmp_path / "nodes.toml").exists()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_node_book_keeps_the_client_certificate_paths(tmp_path: Path) -> None:
    web = dl.DICOMweb("https://pacs.example.org/dicomweb", cert="/etc/c.pem", key="/etc/c.key")
    book = dl.NodeBook([dl.Node("tls", dicomweb=web)])
    book.save(tmp_path / "nodes.toml")
    assert dl.NodeBook.load(tmp_path / "nodes.toml")["tls"].dicomweb == web
    with pytest.raises(dl.ValidationError, match="cert="):
        dl.DICOMweb("https://pacs.example.org/dicomweb", key="/etc/c.key")


def test_a_full_person_name_matches_over_qido_as_over_c_find(both: dl.Node) -> None:
    """``^`` reaches Orthanc 1.10 unescaped (its plugin does not decode %5E)."""
    name = str(dl.find(both, dl.Query.studies(), protocol="dimse").PatientName.iloc[0])
    assert "^" in name
    query = dl.Query.studies(PatientName=name)
    over_web = dl.find(both, query, protocol="dicomweb")
    assert len(over_web) >= 1
    pd.testing.assert_frame_equal(
        _sorted(over_web, "StudyInstanceUID"),
        _sorted(dl.find(both, query, protocol="dimse"), "StudyInstanceUID"),
    )
