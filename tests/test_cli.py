"""The command line: echo exits non-zero on failure, nodes edits the book, demo runs."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import dicomlab as dl
from dicomlab.cli import main
from dicomlab.peers import free_port, peer_env, stop_process, wait_for_port
from dicomlab.server.lifecycle import VerificationServer
from dicomlab.testing.fixtures import need_peer


def test_echo_ok_and_failure_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with VerificationServer("CLI") as srv:
        assert main(["echo", srv.node.address]) == 0
        assert "Online" in capsys.readouterr().out
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert main(["echo", f"NOBODY@127.0.0.1:{port}", "--timeout", "3"]) != 0
    out = capsys.readouterr().out
    assert "Offline" in out and "refused" in out


def test_nodes_add_list_default_remove(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["nodes", "add", "pacs", "PACS@10.0.0.5:4242", "--retrieve", "get", "--default"]) == 0
    )
    book = dl.NodeBook.load()
    assert book["pacs"].retrieve == "get" and book.default == "pacs"
    assert main(["nodes", "list"]) == 0
    assert "* pacs" in capsys.readouterr().out
    assert main(["nodes", "add", "bad", "WAY_TOO_LONG_AE_TITLE_X@h:1"]) == 1
    assert "16" in capsys.readouterr().err
    assert main(["nodes", "remove", "pacs"]) == 0
    assert "pacs" not in dl.NodeBook.load()


def test_echo_by_name_from_book(capsys: pytest.CaptureFixture[str]) -> None:
    with VerificationServer("BYNAME") as srv:
        book = dl.NodeBook()
        book.add(srv.node.replace(name="mine"))
        book.save()
        assert main(["echo", "mine"]) == 0


def _demo(out: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dicomlab.cli", "demo", "--out", str(out), "--studies", "6"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_console_script_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = _demo(out)
    assert "answered C-ECHO: Success" in proc.stdout
    assert "refused" in proc.stdout
    assert "all complete: True" in proc.stdout
    assert "skips 3 complete studies" in proc.stdout
    assert len(list((out / "studies").rglob("*.dcm"))) >= 6
    assert (out / "network-log.png").stat().st_size > 10_000
    log = dl.read_log(folder=out / "logs")
    assert {"C-ECHO", "C-FIND", "C-GET", "C-MOVE", "C-STORE"} <= set(log.service)
    assert set(log.role) == {"SCU", "SCP"}
    # a second run starts clean and succeeds too (no port, file or log left behind)
    _demo(out)
    assert len(dl.read_log(folder=out / "logs")) == len(log)


def test_find_writes_parquet_and_quotes_bad_keywords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import datetime

    import pandas as pd

    dl.synth.write_studies(tmp_path / "s", n_studies=6, seed=3, today=datetime.date.today())
    with dl.LocalPACS(tmp_path / "lp", port=0, allow_unknown="all", fsync=False) as lp:
        lp.import_files(tmp_path / "s")
        out = tmp_path / "week.parquet"
        argv = [
            "find",
            lp.node.address,
            "--date",
            "last7days",
            "PatientName=*",
            "--parquet",
            str(out),
        ]
        assert main(argv) == 0
        week = pd.read_parquet(out)
        expected = dl.find(lp.node, dl.Query.studies(date="last7days"), calling_ae="T")
        assert set(week.StudyInstanceUID) == set(expected.StudyInstanceUID) and len(week) > 0
        assert main(["find", lp.node.address, "Bogus=1"]) == 1
        assert "'Bogus'" in capsys.readouterr().err


def test_retrieve_and_store_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = dl.NodeBook(local=dl.LocalIdentity(ae_title="CLIRECV", port=0))
    book.save()
    manifest = dl.synth.write_studies(tmp_path / "s", n_studies=3, seed=4)
    with dl.LocalPACS(tmp_path / "src", port=0, allow_unknown="all", fsync=False) as src:
        src.import_files(tmp_path / "s")
        study = manifest.StudyInstanceUID.iloc[0]
        argv = [
            "retrieve",
            src.node.address,
            "--study",
            study,
            "--into",
            str(tmp_path / "dst"),
            "--method",
            "get",
        ]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert study in out and "True" in out
        got = dl.LocalPACS(tmp_path / "dst", port=0).instances()
        assert set(got.SOPInstanceUID) == set(
            manifest[manifest.StudyInstanceUID == study].SOPInstanceUID
        )
    with dl.LocalPACS(tmp_path / "sink", port=0, allow_unknown="all", fsync=False) as sink:
        assert main(["store", sink.node.address, str(tmp_path / "s")]) == 0
        assert f"{len(manifest)} files" in capsys.readouterr().out
        assert len(sink.instances()) == len(manifest)


def test_certs_then_serve_with_tls_and_ctrl_c(tmp_path: Path) -> None:
    """`dicomlab certs`, then `serve --tls-...`: dcmtk echoes over TLS; Ctrl-C stops cleanly."""
    need_peer("echoscu")
    cli = [sys.executable, "-m", "dicomlab.cli"]
    made = subprocess.run([*cli, "certs", str(tmp_path / "certs")], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    c = tmp_path / "certs"
    port, tls_port = free_port(), free_port()
    args = ["serve", "--root", str(tmp_path / "root"), "--port", str(port), "--ae", "SRV"]
    args += ["--tls-cert", str(c / "server.pem"), "--tls-key", str(c / "server.key")]
    args += ["--tls-ca", str(c / "ca.pem"), "--tls-port", str(tls_port), "--require-client-cert"]
    proc = subprocess.Popen(
        [*cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(tls_port, proc=proc)
        tls = ["+tls", str(c / "client.key"), str(c / "client.pem"), "+cf", str(c / "ca.pem")]
        echo = ["echoscu", "-aec", "SRV", *tls, "127.0.0.1", str(tls_port)]
        r = subprocess.run(echo, capture_output=True, text=True, env=peer_env(), timeout=30)
        assert r.returncode == 0, r.stderr
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, err
    assert f"TLS on {tls_port}" in out and "stopped" in out


def test_deidentify_command_reads_the_secret_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = dl.synth.write_studies(tmp_path / "src", n_studies=2, seed=8, modalities=("CT",))
    out = tmp_path / "out"
    argv = ["deidentify", str(tmp_path / "src"), str(out), "--option", "retain_longitudinal"]
    monkeypatch.delenv("DICOMLAB_DEID_SECRET", raising=False)
    assert main(argv) == 1
    assert "DICOMLAB_DEID_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("DICOMLAB_DEID_SECRET", "a-secret-for-the-cli-test")
    assert main([*argv, "--map-dir", str(tmp_path / "map")]) == 0
    assert f"de-identified {len(manifest)} of {len(manifest)} files" in capsys.readouterr().out
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == len(manifest)
    blob = b"".join(p.read_bytes() for p in written)
    assert not any(pid.encode() in blob for pid in manifest.PatientID.unique())


def test_find_with_plan_splits_what_a_capped_node_cuts_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dl.synth.write_studies(tmp_path / "s", n_studies=6, seed=4)
    capped = dl.FindLimit(2, "cancel")
    with dl.LocalPACS(tmp_path / "lp", port=0, fsync=False, find_limit=capped) as lp:
        lp.import_files(tmp_path / "s")
        assert main(["find", lp.node.address]) == 3  # cut short: said, not hidden
        out = capsys.readouterr().out
        assert "2 matches" in out and "INCOMPLETE" in out
        assert main(["find", lp.node.address, "--plan"]) == 0
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith("6 matches") and "queries" in last and "(complete)" in last


def test_jobs_lists_a_cancelled_retrieve_and_resume_finishes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dicomlab.testing.tiny import study_uid, tiny_archive

    with (
        tiny_archive(tmp_path / "src", 12, ae_title="SRC", port=0, fsync=False) as src,
        dl.LocalPACS(tmp_path / "dst", port=0, fsync=False) as dst,
    ):
        uids = [study_uid(s) for s in range(12)]
        job = dl.retrieve(
            src.node, uids, into=dst, method="get", max_connections=1, wait=False, progress=False
        )
        assert isinstance(job, dl.Job)
        job.cancel()
        job.result()
        assert main(["jobs"]) == 0
        listed = capsys.readouterr().out
        assert job.id in listed and "cancelled" in listed
        assert main(["resume", job.id]) == 0  # the LocalPACS running here on that folder
        assert len(dst.instances()) == 24
    assert main(["resume", "nope"]) == 1
    assert "no job 'nope'" in capsys.readouterr().err
