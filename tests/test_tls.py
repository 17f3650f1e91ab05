"""TLS both ways: LocalPACS serving TLS to dcmtk and dicomlab, dicomlab to dcmtk's TLS storescp.

dcmtk is the independent TLS implementation (echoscu, storescu, findscu, storescp
with ``+tls``). Every failure is checked for the words a user needs (which check
failed), and every test that disturbs the server checks that it still serves.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread

import dicomlab as dl
from dicomlab.net.tls import client_context, server_context
from dicomlab.peers import StoreSCP, peer_env
from dicomlab.testing.fixtures import need_peer

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dl.tls.DemoCertificates:
    return dl.tls.make_demo_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> dl.tls.DemoCertificates:
    """A second, unrelated demo CA (and its certificates)."""
    return dl.tls.make_demo_certificates(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return dl.synth.write_studies(tmp_path_factory.mktemp("synth"), n_studies=2, seed=5)


@pytest.fixture
def local(tmp_path: Path, certs: dl.tls.DemoCertificates) -> Iterator[dl.LocalPACS]:
    with dl.LocalPACS(
        tmp_path / "archive",
        port=0,
        tls=certs.server(require_client_cert=True),
        tls_port=0,
        allow_unknown="all",
    ) as lp:
        yield lp


def _dcmtk(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    need_peer(args[0])
    return subprocess.run(
        args, capture_output=True, text=True, env=peer_env(), timeout=timeout, check=False
    )


def _tls_args(certs: dl.tls.DemoCertificates) -> list[str]:
    return ["+tls", certs.client_key, certs.client_cert, "+cf", certs.ca]


def _echoscu(local: dl.LocalPACS, tls: list[str], timeout: float = 60) -> int:
    port = str(local.tls_port)
    return _dcmtk(["echoscu", "-aec", local.ae_title, *tls, "127.0.0.1", port], timeout).returncode


def _still_serves(local: dl.LocalPACS, certs: dl.tls.DemoCertificates) -> None:
    assert dl.echo(local.tls_node.replace(tls=certs.client())).ok
    assert dl.echo(local.node).ok


# -- demo certificates ---------------------------------------------------------------------------


def test_demo_certificates_form_a_chain_for_both_roles(certs: dl.tls.DemoCertificates) -> None:
    server = server_context(certs.server(require_client_cert=True))
    client = client_context(certs.client())
    assert server.verify_mode == ssl.CERT_REQUIRED
    assert server.minimum_version == client.minimum_version == ssl.TLSVersion.TLSv1_2  # BCP 195
    # A real handshake in memory: the client verifies the server's name, the server the client.
    a, b = socket.socketpair()
    srv = server.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    cli = client.wrap_socket(b, server_hostname="localhost", do_handshake_on_connect=False)
    with srv, cli:
        srv.settimeout(10)
        cli.settimeout(10)
        t = threading.Thread(target=srv.do_handshake)
        t.start()
        cli.do_handshake()
        t.join(10)
        assert dict(x[0] for x in srv.getpeercert()["subject"])["commonName"] == (
            "dicomlab demo client"
        )
    assert oct(Path(certs.client_key).stat().st_mode & 0o777) == "0o600"


# -- dcmtk clients -> LocalPACS TLS port ------------------------------------------------------


def test_dcmtk_echo_store_find_over_tls_into_localpacs(
    local: dl.LocalPACS, certs: dl.tls.DemoCertificates, synthetic: pd.DataFrame, tmp_path: Path
) -> None:
    tls = _tls_args(certs)
    assert _echoscu(local, tls) == 0
    files = list(synthetic.path)
    port = str(local.tls_port)
    r = _dcmtk(["storescu", "-aec", local.ae_title, *tls, "127.0.0.1", port, *files])
    assert r.returncode == 0, r.stderr
    held = local.instances()
    assert sorted(held.SOPInstanceUID) == sorted(synthetic.SOPInstanceUID)
    first = synthetic.iloc[0]
    ours = held.set_index("SOPInstanceUID").loc[first.SOPInstanceUID, "path"]
    assert dcmread(ours).PixelData == dcmread(first.path).PixelData
    out = tmp_path / "find"
    out.mkdir()
    args = ["findscu", "-S", "-X", "-od", str(out), "-aec", local.ae_title, *tls]
    r = _dcmtk(
        [*args, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "127.0.0.1", port]
    )
    assert r.returncode == 0, r.stderr
    found = {dcmread(p).StudyInstanceUID for p in out.glob("rsp*.dcm")}
    assert found == set(synthetic.StudyInstanceUID)


def test_client_certificate_required_and_checked(
    local: dl.LocalPACS, certs: dl.tls.DemoCertificates, other_ca: dl.tls.DemoCertificates
) -> None:
    # dcmtk without a certificate, and with one signed by a CA the server does not trust
    assert _echoscu(local, ["+tla", "+cf", certs.ca]) != 0
    foreign = ["+tls", other_ca.client_key, other_ca.client_cert, "+cf", certs.ca]
    assert _echoscu(local, foreign) != 0
    # dicomlab says which check failed
    no_cert = dl.echo(local.tls_node.replace(tls=certs.client(with_certificate=False)))
    assert not no_cert.ok and no_cert.cause == "tls"
    assert "requires a client certificate" in no_cert.detail
    with pytest.raises(dl.TLSError, match="client certificate"):
        foreign_tls = dl.TLS(ca=certs.ca, cert=other_ca.client_cert, key=other_ca.client_key)
        dl.find(local.tls_node.replace(tls=foreign_tls), dl.Query("study"))
    # each refusal is in the network log, marked TLS, with the handshake error
    dl.log.flush()
    rows = dl.log.read_associations()
    failed = rows[(rows.role == "SCP") & (rows.outcome == "failed") & rows.tls]
    assert len(failed) >= 3
    assert failed.error.str.contains("TLS handshake").all()
    _still_serves(local, certs)


def test_plain_dicom_on_the_tls_port_and_tls_on_the_plain_port(
    local: dl.LocalPACS, certs: dl.tls.DemoCertificates
) -> None:
    plain = dl.echo(local.node.replace(port=local.tls_port))
    assert not plain.ok
    wrong = dl.echo(local.node.replace(tls=certs.client()))
    assert not wrong.ok and wrong.cause == "tls"
    assert "plain, non-TLS port" in wrong.detail
    _still_serves(local, certs)


def test_an_idle_client_does_not_block_the_tls_port(
    local: dl.LocalPACS, certs: dl.tls.DemoCertificates
) -> None:
    """pynetdicom's own TLS server handshakes in its accept loop: one silent client blocks all."""
    assert local.tls_port is not None
    idle = [socket.create_connection(("127.0.0.1", local.tls_port)) for _ in range(3)]
    half = socket.create_connection(("127.0.0.1", local.tls_port))
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, cut short
    try:
        t0 = time.monotonic()
        assert _echoscu(local, _tls_args(certs), timeout=30) == 0
        assert dl.echo(local.tls_node.replace(tls=certs.client())).ok
        assert time.monotonic() - t0 < 5
        # stop() does not wait for the silent clients' handshakes to time out
        t0 = time.monotonic()
        local.stop()
        assert time.monotonic() - t0 < 3
        # both ports can be served again at once
        again = dl.LocalPACS(
            local.archive.root, port=local.port, tls=local.tls, tls_port=local.tls_port
        )
        with again:
            assert dl.echo(again.tls_node.replace(tls=certs.client())).ok
    finally:
        for s in [*idle, half]:
            s.close()


def test_dicomlab_store_and_find_over_tls(
    local: dl.LocalPACS, certs: dl.tls.DemoCertificates, synthetic: pd.DataFrame
) -> None:
    node = local.tls_node.replace(tls=certs.client())
    out = dl.store(node, synthetic)
    assert (out.status == 0).all(), out
    studies = dl.find(node, dl.Query("study"))
    assert set(studies.StudyInstanceUID) == set(synthetic.StudyInstanceUID)
    dl.log.flush()
    rows = dl.log.read_associations()
    ours = rows[(rows.role == "SCU") & (rows.peer_port == local.tls_port)]
    assert len(ours) >= 2 and ours.tls.all() and (ours.outcome == "released").all()


# -- dicomlab -> dcmtk storescp +tls ------------------------------------------------------------


@pytest.fixture
def tls_storescp(tmp_path: Path, certs: dl.tls.DemoCertificates) -> Iterator[StoreSCP]:
    need_peer("storescp")
    extra = ["+tls", certs.server_key, certs.server_cert, "+cf", certs.ca]
    with StoreSCP(tmp_path / "storescp", extra=extra) as scp:
        yield scp


def test_store_into_dcmtk_storescp_over_tls(
    tls_storescp: StoreSCP, certs: dl.tls.DemoCertificates, synthetic: pd.DataFrame
) -> None:
    node = tls_storescp.node.replace(tls=certs.client())
    assert dl.echo(node).ok
    out = dl.store(node, synthetic)
    assert (out.status == 0).all(), out
    received = {dcmread(p).SOPInstanceUID for p in tls_storescp.output.iterdir()}
    assert received == set(synthetic.SOPInstanceUID)


def test_dcmtk_server_refuses_us_without_a_client_certificate(
    tls_storescp: StoreSCP, certs: dl.tls.DemoCertificates
) -> None:
    r = dl.echo(tls_storescp.node.replace(tls=certs.client(with_certificate=False)))
    assert not r.ok and r.cause == "tls"
    assert "client certificate" in r.detail


def test_unknown_ca_is_named(
    tls_storescp: StoreSCP, certs: dl.tls.DemoCertificates, other_ca: dl.tls.DemoCertificates
) -> None:
    # our client certificate is fine, but we trust another CA than the one that signed storescp
    tls = dl.TLS(ca=other_ca.ca, cert=certs.client_cert, key=certs.client_key)
    r = dl.echo(tls_storescp.node.replace(tls=tls))
    assert not r.ok and r.cause == "tls"
    assert "CA we do not trust" in r.detail


# -- certificate problems on the server side ----------------------------------------------------


def _serve(tmp_path: Path, certs: dl.tls.DemoCertificates) -> dl.LocalPACS:
    return dl.LocalPACS(tmp_path / "lp", port=0, tls=certs.server(), tls_port=0)


def test_hostname_mismatch_is_named(tmp_path: Path) -> None:
    certs = dl.tls.make_demo_certificates(tmp_path / "c", hostnames=("pacs.example.org",))
    with _serve(tmp_path, certs) as lp:
        r = dl.echo(lp.tls_node.replace(tls=certs.client()))
        assert not r.ok and r.cause == "tls"
        assert "does not name host '127.0.0.1'" in r.detail
        # the hint works: ask for the name in the certificate
        assert dl.echo(lp.tls_node.replace(tls=certs.client(server_hostname="pacs.example.org"))).ok


def test_expired_certificate_is_named(tmp_path: Path) -> None:
    month_ago = datetime.now(UTC) - timedelta(days=30)
    certs = dl.tls.make_demo_certificates(tmp_path / "c", not_before=month_ago, days=1)
    with _serve(tmp_path, certs) as lp:
        r = dl.echo(lp.tls_node.replace(tls=certs.client()))
        assert not r.ok and r.cause == "tls"
        assert "expired" in r.detail


def test_unusable_server_files_are_refused_before_listening(
    tmp_path: Path, certs: dl.tls.DemoCertificates, other_ca: dl.tls.DemoCertificates
) -> None:
    missing = dl.TLS(cert=str(tmp_path / "nope.pem"), key=certs.server_key)
    with pytest.raises(dl.ConfigError, match=r"nope\.pem' does not exist"):
        dl.LocalPACS(tmp_path / "a", port=0, tls=missing, tls_port=0).start()
    mismatched = dl.TLS(cert=certs.server_cert, key=other_ca.server_key)
    with pytest.raises(dl.ConfigError, match="does not belong to certificate"):
        dl.LocalPACS(tmp_path / "b", port=0, tls=mismatched, tls_port=0).start()
    not_pem = tmp_path / "garbage.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(dl.ConfigError, match="not a usable PEM"):
        dl.LocalPACS(
            tmp_path / "c", port=0, tls=dl.TLS(cert=str(not_pem), key=certs.server_key), tls_port=0
        ).start()
    with pytest.raises(dl.ConfigError, match="needs tls="):
        dl.LocalPACS(tmp_path / "d", port=0, tls_port=0)
    # a node whose CA file is missing: a TLS error naming the file, before any connection
    r = dl.echo(dl.Node("x", ae_title="X", port=104, tls=dl.TLS(ca=str(tmp_path / "ca.pem"))))
    assert not r.ok and r.cause == "tls" and "ca.pem' does not exist" in r.detail
