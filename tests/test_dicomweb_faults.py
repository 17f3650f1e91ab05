"""DICOMweb failures no real peer produces on demand, from a scripted HTTP peer: QIDO-RS
paging (a server's page cap, "additional results", a server that ignores ``offset``, one
that refuses our page size), fuzzy matching, each HTTP and network failure as a clear
error, WADO-RS answers of 429 and 503 retried, and find_many's concurrency and failures.

The peer (:class:`Peer`) is an ``http.server.ThreadingHTTPServer`` in a daemon thread,
its answers scripted per test; it records every request (path and query string as sent,
when) and the most requests it held at once."""

from __future__ import annotations

import http.server
import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.tls import DemoCertificates

# -- the scripted peer ------------------------------------------------------------------


@dataclass(frozen=True)
class Asked:
    """One request the peer received."""

    method: str
    path: str
    """The path, without the query string."""
    query: dict[str, str]
    """The query parameters, decoded (the last value of each)."""
    raw: str
    """The path and query string exactly as sent."""
    accept: str
    at: float
    """When it arrived (``time.perf_counter()``)."""


@dataclass(frozen=True)
class Reply:
    """What the peer answers to one request (``hold``: nothing, until the test ends)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False


Answer = Callable[[Asked], Reply]


class _Server(http.server.ThreadingHTTPServer):
    peer: Peer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a timeout, a failed TLS handshake) is no news."""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        peer = self.server.peer
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        asked = Asked(
            self.command,
            split.path,
            query,
            self.path,
            self.headers.get("Accept", ""),
            time.perf_counter(),
        )
        with peer.lock:
            peer.asked.append(asked)
            peer.in_flight += 1
            peer.peak = max(peer.peak, peer.in_flight)
        try:
            if peer.delay:
                time.sleep(peer.delay)
            reply = peer.answer(asked)
        except Exception as exc:  # a bug in the script: the test's teardown says so
            peer.script_errors.append(f"{asked.raw}: {exc!r}")
            reply = Reply(599)
        finally:
            # Done before the answer goes out: a client reading it may ask again at once.
            with peer.lock:
                peer.in_flight -= 1
        if reply.hold:
            peer.released.wait(30)
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, *args: object) -> None:
        pass


class Peer:
    """A scripted DICOMweb server at ``url``: ``answer`` says what each request gets,
    after ``delay`` seconds; ``tls`` serves HTTPS with that context."""

    def __init__(
        self, answer: Answer, *, delay: float = 0.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.answer, self.delay = answer, delay
        self.asked: list[Asked] = []
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.script_errors: list[str] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.peer = self
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}/dicom-web"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def node(self, name: str = "web", *, url: str | None = None, **settings: Any) -> dl.Node:
        """A DICOMweb-only node of this peer (``settings``: of ``dl.DICOMweb``, or
        ``max_connections``)."""
        node_settings = {k: settings.pop(k) for k in ("max_connections",) if k in settings}
        settings.setdefault("timeout", 5)
        return dl.Node(name, dicomweb=dl.DICOMweb(url or self.url, **settings), **node_settings)

    def at(self, suffix: str) -> list[Asked]:
        """The requests whose path ends with ``suffix``, in order."""
        with self.lock:
            return [a for a in self.asked if a.path.endswith(suffix)]

    def stop(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Peer]]:
    """Starts scripted peers (``serve(answer, delay=, tls=)``); all are shut down and
    joined at the end of the test."""
    started: list[Peer] = []

    def start(answer: Answer, *, delay: float = 0.0, tls: ssl.SSLContext | None = None) -> Peer:
        peer = Peer(answer, delay=delay, tls=tls)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()
    for peer in started:
        assert not peer._thread.is_alive(), "a scripted peer did not stop"
        assert not peer.script_errors, peer.script_errors


# -- answers ------------------------------------------------------------------------------


def _json(items: Sequence[dict[str, Any]], status: int = 200, **headers: str) -> Reply:
    return Reply(
        status,
        json.dumps(list(items)).encode(),
        {"Content-Type": "application/dicom+json", **headers},
    )


def _study(i: int, patient: str = "P1") -> dict[str, Any]:
    """One study match in the DICOM JSON model."""
    return {
        "0020000D": {"vr": "UI", "Value": [f"1.2.826.0.1.3680043.8.498.77.{i}"]},
        "00100020": {"vr": "LO", "Value": [patient]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": f"DOE^J{i}"}]},
        "00080020": {"vr": "DA", "Value": ["20240101"]},
    }


def _uids(items: Sequence[dict[str, Any]]) -> set[str]:
    return {item["0020000D"]["Value"][0] for item in items}


def _offset(asked: Asked) -> int:
    return int(asked.query.get("offset", "0"))


def _paged(
    studies: list[dict[str, Any]],
    cap: int,
    *,
    honour_offset: bool = True,
    more: str | None = None,
) -> Answer:
    """Pages of at most ``cap`` studies, whatever ``limit`` asks; ``more``: how a page
    that is not the last says so (``"warning"``: a Warning 299, ``"206"``: HTTP 206)."""

    def answer(asked: Asked) -> Reply:
        offset = _offset(asked) if honour_offset else 0
        size = min(int(asked.query.get("limit", cap)), cap)
        page = studies[offset : offset + size]
        if offset + size >= len(studies) or more is None:
            return _json(page)
        if more == "206":
            return _json(page, 206)
        return _json(page, Warning=ADDITIONAL)

    return answer


ADDITIONAL = '299 127.0.0.1: "There are additional results that can be requested"'
"""PS3.18 8.3.4.3's warning of a page that is not the last."""

BOUNDARY = "dicomlab-faults-3f9c2e"


def _multipart(files: Sequence[Path]) -> Reply:
    body = b"".join(
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + f.read_bytes()
        + b"\r\n"
        for f in files
    )
    return Reply(
        200,
        body + f"--{BOUNDARY}--\r\n".encode(),
        {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
    )


def _free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- QIDO-RS paging -----------------------------------------------------------------------


def test_a_server_capping_each_page_is_paged_by_offset_to_the_end(
    serve: Callable[..., Peer],
) -> None:
    studies = [_study(i) for i in range(400)]
    peer = serve(_paged(studies, cap=150))
    df = dl.find(peer.node(), dl.Query.studies())
    assert df.attrs["complete"] is True and df.attrs["error"] is None
    assert len(df) == 400 and set(df.StudyInstanceUID) == _uids(studies)
    assert [_offset(a) for a in peer.at("/studies")] == [0, 150, 300, 400]


@pytest.mark.parametrize("more", ["warning", "206"])
def test_short_pages_that_say_more_results_follow_are_paged_to_the_end(
    serve: Callable[..., Peer], more: str
) -> None:
    """A page of 20 would be the last one, unless the server says more follow."""
    studies = [_study(i) for i in range(70)]
    peer = serve(_paged(studies, cap=20, more=more))
    df = dl.find(peer.node(), dl.Query.studies())
    assert df.attrs["complete"] is True
    assert len(df) == 70 and set(df.StudyInstanceUID) == _uids(studies)
    assert [_offset(a) for a in peer.at("/studies")] == [0, 20, 40, 60]
    if more == "warning":
        assert df.attrs["server_warnings"] == [ADDITIONAL]


def test_a_server_ignoring_offset_gives_a_partial_result_and_says_so(
    serve: Callable[..., Peer],
) -> None:
    studies = [_study(i) for i in range(400)]
    peer = serve(_paged(studies, cap=150, honour_offset=False))
    with pytest.warns(dl.PartialResultWarning, match="same page"):
        df = dl.find(peer.node(), dl.Query.studies())
    assert len(df) == 150 and set(df.StudyInstanceUID) == _uids(studies[:150])
    assert df.attrs["complete"] is False
    assert "same page" in df.attrs["error"]
    assert len(peer.at("/studies")) == 2  # it stopped at the repeated page


def test_a_server_refusing_our_page_size_is_asked_again_without_a_limit(
    serve: Callable[..., Peer],
) -> None:
    """Azure's DICOM service answers 400 to a limit above 200."""
    studies = [_study(i) for i in range(450)]
    pages = _paged(studies, cap=200)

    def answer(asked: Asked) -> Reply:
        if int(asked.query.get("limit", "0")) > 200:
            return Reply(400, b"limit must be at most 200")
        return pages(asked)

    peer = serve(answer)
    df = dl.find(peer.node(), dl.Query.studies())
    assert df.attrs["complete"] is True
    assert len(df) == 450 and set(df.StudyInstanceUID) == _uids(studies)
    first, *rest = peer.at("/studies")
    assert int(first.query["limit"]) > 200
    assert rest and all("limit" not in a.query for a in rest)
    assert [_offset(a) for a in rest] == [0, 200, 400, 450]


# -- fuzzy matching -----------------------------------------------------------------------


def test_a_fuzzy_query_sends_fuzzymatching_true(serve: Callable[..., Peer]) -> None:
    match = _study(1)
    peer = serve(lambda asked: _json([match]))
    df = dl.find(peer.node(), dl.Query.studies(PatientName="DOE^J*", fuzzy=True))
    assert list(df.StudyInstanceUID) == list(_uids([match]))
    (asked,) = peer.at("/studies")
    assert asked.query.get("fuzzymatching") == "true"
    assert asked.query.get("PatientName") == "DOE^J*"
    plain = serve(lambda asked: _json([match]))
    dl.find(plain.node(), dl.Query.studies(PatientName="DOE^J*"))
    assert "fuzzymatching" not in plain.at("/studies")[0].query


def test_dicom_matching_characters_go_unescaped_in_the_query_string(
    serve: Callable[..., Peer],
) -> None:
    """Orthanc 1.10's DICOMweb plugin does not decode %5E: ``PatientName=DOE%5EJ*``
    matches nothing where ``DOE^J*`` matches (dicomlab.web.session._Session says so)."""
    peer = serve(lambda asked: _json([]))
    dl.find(peer.node(), dl.Query.studies(PatientName="DOE^J*", AccessionNumber="A?1"))
    (asked,) = peer.at("/studies")
    assert "AccessionNumber=A?1" in asked.raw
    assert "PatientName=DOE^J*" in asked.raw, asked.raw


def test_a_fuzzy_query_is_refused_before_anything_is_sent_where_qido_rs_is_not_used(
    serve: Callable[..., Peer],
) -> None:
    # A DIMSE-only node: "auto" picks DICOMweb for a fuzzy query, which it does not speak.
    dimse_only = dl.Node("p", ae_title="P", port=_free_port())
    with pytest.raises(dl.ConfigError, match="p is not configured for dicomweb") as err:
        dl.find(dimse_only, dl.Query.studies(fuzzy=True))
    assert not isinstance(err.value, dl.ValidationError)

    # A node with both, asked over DIMSE: refused, nothing sent on either side.
    peer = serve(lambda asked: _json([]))
    both = dl.Node("both", ae_title="BOTH", port=_free_port(), dicomweb=dl.DICOMweb(peer.url))
    with pytest.raises(dl.ValidationError, match="QIDO-RS"):
        dl.find(both, dl.Query.studies(fuzzy=True), protocol="dimse")
    assert peer.asked == []


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "hint_says"),
    [(404, "root URL"), (500, "server failed")],
)
def test_an_http_error_is_a_dicomweb_error_naming_the_node_with_a_hint(
    serve: Callable[..., Peer], status: int, hint_says: str
) -> None:
    peer = serve(lambda asked: Reply(status, b"no"))
    node = peer.node()
    with pytest.raises(dl.DICOMwebError) as err:
        dl.find(node, dl.Query.studies())
    exc = err.value
    assert exc.http_status == status and f"HTTP {status}" in str(exc)
    assert node.address == peer.url and peer.url in str(exc)
    assert exc.hint and hint_says in exc.hint
    assert exc.transient is False


def test_a_server_that_does_not_answer_in_time_is_a_timeout_naming_the_url(
    serve: Callable[..., Peer],
) -> None:
    """Connected, then no answer: a transient DICOMweb error (a connect that does not
    complete is a ConnectTimeout, as over DIMSE)."""
    peer = serve(lambda asked: Reply(hold=True))
    t0 = time.perf_counter()
    with pytest.raises(dl.DICOMwebError, match="no answer within") as err:
        dl.find(peer.node(timeout=0.5), dl.Query.studies())
    assert time.perf_counter() - t0 < 3
    exc = err.value
    assert peer.url in str(exc) and "0.5 s" in str(exc)
    assert exc.transient is True
    assert exc.hint, f"no hint in {exc!s}"


def test_a_refused_connection_names_the_url_with_a_hint() -> None:
    url = f"http://127.0.0.1:{_free_port()}/dicom-web"
    with pytest.raises(dl.ConnectionRefused) as err:
        dl.find(dl.Node("web", dicomweb=dl.DICOMweb(url, timeout=5)), dl.Query.studies())
    assert url in str(err.value)
    assert err.value.hint and "port" in err.value.hint


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoCertificates, str]:
    """The server's certificates, and another CA (that did not sign them)."""
    served = dl.tls.make_demo_certificates(tmp_path_factory.mktemp("served"))
    other = dl.tls.make_demo_certificates(tmp_path_factory.mktemp("other"))
    return served, other.ca


@pytest.mark.parametrize("case", ["https-to-plain-http", "untrusted-certificate"])
def test_a_tls_failure_names_the_url_and_hints_at_verify_and_ca(
    serve: Callable[..., Peer], certificates: tuple[DemoCertificates, str], case: str
) -> None:
    served, other_ca = certificates
    match = _study(1)
    if case == "https-to-plain-http":
        peer = serve(lambda asked: _json([match]))
        url = peer.url.replace("http://", "https://")
        node = peer.node(url=url)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(served.server_cert, served.server_key)
        peer = serve(lambda asked: _json([match]), tls=context)
        url = peer.url
        node = peer.node(ca=other_ca)
        # The same server, its CA trusted: the failure is about trust, nothing else.
        trusted = dl.find(peer.node(ca=served.ca), dl.Query.studies())
        assert list(trusted.StudyInstanceUID) == list(_uids([match]))
    asked_before = len(peer.asked)
    with pytest.raises(dl.TLSError) as err:
        dl.find(node, dl.Query.studies())
    assert url in str(err.value)
    assert err.value.hint and "verify=" in err.value.hint and "ca=" in err.value.hint
    assert len(peer.asked) == asked_before  # no request got through


# -- WADO-RS retries ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_study(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return dl.synth.write_studies(tmp_path_factory.mktemp("synth"), n_studies=1, seed=5)


def _wado(manifest: pd.DataFrame, before: Callable[[int], Reply | None]) -> Answer:
    """The QIDO-RS instance search of the one study, and its WADO-RS GET: the n-th GET
    (from 1) answers ``before(n)``, or the files when that is None."""
    (study,) = set(manifest.StudyInstanceUID)
    instances = [
        {
            "0020000D": {"vr": "UI", "Value": [row.StudyInstanceUID]},
            "0020000E": {"vr": "UI", "Value": [row.SeriesInstanceUID]},
            "00080018": {"vr": "UI", "Value": [row.SOPInstanceUID]},
            "00080016": {"vr": "UI", "Value": [row.SOPClassUID]},
        }
        for row in manifest.itertuples()
    ]
    files = [Path(p) for p in manifest.path]
    gets = itertools.count(1)

    def answer(asked: Asked) -> Reply:
        if asked.path.endswith("/instances") and asked.query.get("StudyInstanceUID") == study:
            return _json(instances)
        if asked.path.endswith(f"/studies/{study}"):
            return before(next(gets)) or _multipart(files)
        return Reply(404)

    return answer


def test_wado_rs_429_is_retried_after_retry_after_and_the_files_arrive_intact(
    serve: Callable[..., Peer], one_study: pd.DataFrame, tmp_path: Path
) -> None:
    (study,) = set(one_study.StudyInstanceUID)
    busy = Reply(429, b"slow down", {"Retry-After": "1"})
    peer = serve(_wado(one_study, lambda n: busy if n == 1 else None))
    with dl.LocalPACS(tmp_path / "lp", port=0, fsync=False) as lp:
        out = dl.retrieve(peer.node(), [study], into=lp, method="wado", progress=False)
        held = lp.instances()
    assert isinstance(out, pd.DataFrame) and len(out) == 1
    row = out.iloc[0]
    assert row.complete and row.attempts == 2 and pd.isna(row.error)
    first, second = peer.at(f"/studies/{study}")
    assert second.at - first.at >= 1.0  # Retry-After: 1 was honoured
    assert 'type="application/dicom"' in first.accept and "transfer-syntax=*" in first.accept
    sent = {row.SOPInstanceUID: Path(str(row.path)).read_bytes() for row in one_study.itertuples()}
    got = {row.SOPInstanceUID: Path(str(row.path)).read_bytes() for row in held.itertuples()}
    assert got.keys() == sent.keys()
    assert all(got[uid] == sent[uid] for uid in sent)


def test_wado_rs_503_every_time_ends_incomplete_after_the_retries(
    serve: Callable[..., Peer], one_study: pd.DataFrame, tmp_path: Path
) -> None:
    (study,) = set(one_study.StudyInstanceUID)
    peer = serve(_wado(one_study, lambda n: Reply(503, b"unavailable")))
    t0 = time.perf_counter()
    with dl.LocalPACS(tmp_path / "lp", port=0, fsync=False) as lp:
        out = dl.retrieve(peer.node(), [study], into=lp, method="wado", progress=False)
        held = lp.instances()
    assert time.perf_counter() - t0 < 10
    assert isinstance(out, pd.DataFrame)
    row = out.iloc[0]
    assert not row.complete and "HTTP 503" in row.error
    gets = peer.at(f"/studies/{study}")
    assert row.attempts == len(gets) > 1  # retried, each attempt one GET, then given up
    assert len(held) == 0


# -- find_many over QIDO-RS ---------------------------------------------------------------


def _by_patient(fail: Callable[[str], bool] = lambda value: False) -> Answer:
    """One study per PatientID asked for, echoing it (HTTP 500 for the values ``fail``
    picks)."""

    def answer(asked: Asked) -> Reply:
        value = asked.query["PatientID"]
        if fail(value):
            return Reply(500, b"internal error")
        return _json([_study(int(value[1:]), patient=value)])

    return answer


def test_find_many_over_qido_rs_runs_max_connections_searches_at_once(
    serve: Callable[..., Peer],
) -> None:
    values = [f"P{i:02d}" for i in range(20)]
    peer = serve(_by_patient(), delay=0.1)
    t0 = time.perf_counter()
    df = dl.find_many(
        peer.node(max_connections=4), dl.Query.studies(), PatientID=values, progress=False
    )
    elapsed = time.perf_counter() - t0
    assert len(df) == 20 and sorted(df.query_value) == values
    assert (df.PatientID == df.query_value).all()
    outcome = dl.reconcile(df)
    assert list(outcome.query_value) == values and set(outcome.outcome) == {"matched"}
    assert df.attrs["complete"] is True and df.attrs["failed"] == {}
    assert 1 < peer.peak <= 4
    assert elapsed < 0.75 * 20 * 0.1, f"{elapsed:.2f} s: not concurrent"


def test_find_many_keeps_the_other_values_when_one_fails_and_raises_when_all_do(
    serve: Callable[..., Peer],
) -> None:
    values = [f"P{i}" for i in range(6)]
    peer = serve(_by_patient(lambda value: value == "P3"))
    with pytest.warns(dl.PartialResultWarning, match="1 of 6 queries failed"):
        df = dl.find_many(peer.node(), dl.Query.studies(), PatientID=values, progress=False)
    assert sorted(df.query_value) == [v for v in values if v != "P3"]
    assert list(df.attrs["failed"]) == ["P3"] and "HTTP 500" in df.attrs["failed"]["P3"]
    assert df.attrs["complete"] is False
    outcome = dl.reconcile(df).set_index("query_value").outcome
    assert outcome["P3"] == "failed" and (outcome.drop("P3") == "matched").all()

    failing = serve(_by_patient(lambda value: True))
    with pytest.raises(dl.DICOMwebError) as err:
        dl.find_many(failing.node(), dl.Query.studies(), PatientID=values, progress=False)
    assert err.value.http_status == 500 and failing.url in str(err.value)
    assert sorted(a.query["PatientID"] for a in failing.at("/studies")) == values
