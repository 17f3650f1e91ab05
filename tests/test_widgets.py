"""The widget panels driven in plain Python (values set, buttons clicked) against LocalPACS."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import ipywidgets as w
import pandas as pd
import pytest

import dicomlab as dl
from dicomlab.peers import free_port

pytestmark = pytest.mark.peers

TODAY = date.today()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[dl.NodeBook, dl.LocalPACS, dl.LocalPACS, pd.DataFrame]]:
    manifest = dl.synth.write_studies(tmp_path / "synth", n_studies=10, seed=11, today=TODAY)
    with (
        dl.LocalPACS(tmp_path / "pacs", ae_title="WPACS", port=0, allow_unknown="all") as pacs,
        dl.LocalPACS(tmp_path / "mine", ae_title="WMINE", port=0) as mine,
    ):
        pacs.import_files(tmp_path / "synth")
        book = dl.NodeBook(local=dl.LocalIdentity(ae_title="WMINE", port=mine.port))
        book.add(dl.Node("pacs", ae_title="WPACS", port=pacs.port, retrieve="get"))
        book.default = "pacs"
        book.save()
        yield book, pacs, mine, manifest


def _panel_threads() -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(("dicomlab-dl-", "dicomlab-transfer-panel", "dicomlab-server-panel"))
    ]


def test_query_panel_last_7_days_select_and_retrieve(world: tuple) -> None:  # type: ignore[type-arg]
    book, _pacs, mine, manifest = world
    panel = dl.widgets.QueryPanel(book, transfers=dl.widgets.TransferPanel(book, into=mine))
    assert panel.node.value == "pacs"
    panel.preset_buttons["last7days"].click()
    panel.wait()
    studies = manifest.drop_duplicates("StudyInstanceUID")
    recent = studies[pd.to_datetime(studies.StudyDate) >= pd.Timestamp(TODAY - timedelta(days=6))]
    assert len(panel.result) == len(recent) > 0, panel.message.value
    assert len(panel.grid.frame) == len(recent)
    assert "studies on pacs" in panel.message.value
    shown = json.loads(panel.grid.table._dt_args["data_json"])
    assert len(shown) == len(recent)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", row[0]) for row in shown)  # dates, no times

    first = panel.grid.frame.StudyInstanceUID.iloc[0]
    panel.grid.table.selected_rows = [0]  # what clicking the first row sends from the browser
    panel.wait()
    assert list(panel.selection.StudyInstanceUID) == [first]
    assert (
        len(panel.series)
        == manifest[manifest.StudyInstanceUID == first].SeriesInstanceUID.nunique()
    )

    panel.retrieve_study.click()
    panel.transfers.wait()
    outcome = panel.transfers.result
    assert outcome is not None and outcome.complete.all()
    held = set(mine.instances().SOPInstanceUID)
    assert held == set(manifest[manifest.StudyInstanceUID == first].SOPInstanceUID)
    assert "all complete" in panel.transfers.message.value
    row = panel.transfers._rows[0]
    assert row.bar.value == row.bar.max
    assert f"{len(held)} instances" in row.status.value and "MB/s" in row.status.value
    panel.close()


def test_query_panel_filters_and_bad_input(world: tuple) -> None:  # type: ignore[type-arg]
    book, _, _, manifest = world
    panel = dl.widgets.QueryPanel(book)
    one = manifest.PatientID.iloc[0]
    panel.fields["PatientID"].value = one
    panel.preset_buttons["all"].click()
    panel.wait()
    assert set(panel.result.PatientID) == {one}
    panel.start.value = TODAY
    panel.dates_button.click()  # no end date
    assert "both dates" in panel.message.value
    panel.fields["PatientID"].value = ""
    panel.fields["AccessionNumber"].value = "X" * 40  # longer than SH allows
    panel.preset_buttons["all"].click()
    assert "AccessionNumber" in panel.message.value and panel.result is not None
    panel.close()


def test_worker_errors_reach_the_panel(world: tuple) -> None:  # type: ignore[type-arg]
    book, pacs, _, _ = world
    port = pacs.port
    pacs.stop()
    panel = dl.widgets.QueryPanel(book)
    panel.preset_buttons["today"].click()
    panel.wait()
    assert isinstance(panel.error, dl.NetworkError)
    assert "failed" in panel.message.value and str(port) in panel.message.value
    assert "refused" in panel.message.value
    panel.close()


def test_node_panel_edit_validate_echo_delete(world: tuple) -> None:  # type: ignore[type-arg]
    book, pacs, _, _ = world
    panel = dl.widgets.NodePanel(book)
    panel.nodes.value = "pacs"
    assert panel.ae_title.value == "WPACS" and panel.port.value == pacs.port
    panel.echo_button.click()
    panel.wait()
    assert "online" in panel.echo_status.value
    assert panel.echo_results["pacs"].ok

    panel.nodes.value = "(new node)"  # a blank form with defaults, not pacs's values
    assert (panel.name.value, panel.ae_title.value) == ("", "")
    assert (panel.host.value, panel.port.value, panel.timeout.value) == ("127.0.0.1", 104, 30)
    panel.port.value = 70000
    assert panel.port.value == 65535  # a bounded input: it never holds 70000
    panel.name.value, panel.ae_title.value, panel.host.value = "bad", "WAY TOO LONG AE TITLE", ""
    assert panel.save() is None
    assert set(panel.problems()) == {"ae_title", "host"}  # every field at once
    for key in ("ae_title", "host"):
        assert "dl-invalid" in panel.fields[key]._dom_classes, key  # highlighted
        assert panel.field_errors[key].value, key  # its reason beside it
    assert "2 fields to fix: ae_title, host" in panel.message.value
    panel.port.value, panel.ae_title.value, panel.host.value = 4242, "GONE", "127.0.0.1"
    node = panel.save()
    assert node is not None and "saved" in panel.message.value
    assert not any(e.value for e in panel.field_errors.values())
    assert not any("dl-invalid" in f._dom_classes for f in panel.fields.values())
    assert dl.NodeBook.load(book.path)["bad"].port == 4242
    panel.echo_button.click()
    panel.wait()
    assert "offline" in panel.echo_status.value
    panel.default_button.click()
    assert dl.NodeBook.load(book.path).default == "bad"
    panel.delete_button.click()
    assert "bad" not in dl.NodeBook.load(book.path)
    panel.our_ae.value = "NEWNAME"
    panel.save_local.click()
    assert dl.NodeBook.load(book.path).local.ae_title == "NEWNAME"
    panel.close()


def test_network_report_filters_story_and_plots(world: tuple) -> None:  # type: ignore[type-arg]
    _book, pacs, _, _ = world
    assert dl.echo(pacs.node).ok
    dl.find(pacs.node, dl.Query.studies())
    report = dl.widgets.NetworkReport()
    report.refresh_button.click()
    report.wait()
    assert {"C-ECHO", "C-FIND"} <= set(report.result.service), report.message.value
    report.service.value = "C-FIND"
    assert set(report.result.service) == {"C-FIND"}
    report.table.table.selected_rows = [0]  # click an operation
    assert report.story is not None
    assert report.story["association"]["outcome"] == "released"
    assert report.tabs.selected_index == 1
    assert bytes(report.diagram.value).startswith(b"\x89PNG")
    assert len(bytes(report.diagram.value)) > 5000
    assert bytes(report.plots.value).startswith(b"\x89PNG")
    report.close()


def test_server_panel_counters_stop_start_and_rerun(world: tuple) -> None:  # type: ignore[type-arg]
    _, pacs, _, manifest = world
    panel = dl.widgets.ServerPanel(pacs, refresh_s=0.2)
    assert "running" in panel.address.value and str(pacs.port) in panel.address.value
    panel.stop_button.click()
    assert not pacs.running and "stopped" in panel.address.value
    panel.start_button.click()
    assert pacs.running
    assert dl.store(pacs.node, list(manifest.path[:2]), progress=False).status.eq(0).all()
    deadline = time.monotonic() + 5
    while "C-STORE" not in panel.activity.value and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "C-STORE" in panel.activity.value  # refreshed on its own
    again = dl.widgets.ServerPanel(pacs, refresh_s=0.2)  # the cell re-run
    assert panel._closed.is_set() and not panel._ticker.is_alive()
    again.close()
    assert not again._ticker.is_alive()


def test_app_has_every_panel_and_leaves_no_threads(world: tuple) -> None:  # type: ignore[type-arg]
    book, _, mine, _ = world
    before = len(_panel_threads())
    app = dl.widgets.App(book, local=mine)
    titles = [app.tabs.get_title(i) for i in range(len(app.tabs.children))]
    assert titles == ["Nodes", "Query", "Network report", "Server", "Worklist"]
    assert titles == list(app.tab_titles)
    for title in titles:  # the docstring names every tab it shows
        assert title in (dl.widgets.App.__doc__ or ""), title
    app.query.preset_buttons["all"].click()
    app.query.wait()
    assert len(app.query.result) == 10
    bundle = app._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    app.close()
    deadline = time.monotonic() + 5
    while len(_panel_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_panel_threads()) <= before


def test_server_panel_shows_the_tls_port(tmp_path: Path) -> None:
    certs = dl.tls.make_demo_certificates(tmp_path / "certs")
    pacs = dl.LocalPACS(tmp_path / "tls", port=0, tls=certs.server(), tls_port=0)
    panel = dl.widgets.ServerPanel(pacs, refresh_s=0.2)
    try:
        panel.start_button.click()
        assert f"TLS {pacs.tls_port}" in panel.address.value
        assert dl.echo(pacs.tls_node.replace(tls=certs.client())).ok
    finally:
        panel.close()
        pacs.stop()


def test_retrieve_uses_the_node_the_results_came_from(tmp_path: Path, world: tuple) -> None:  # type: ignore[type-arg]
    """Search node A, switch the dropdown to an empty node B, click Retrieve Study: the
    studies come from A (they used to be asked of B: "0 instances, all complete")."""
    book, _, mine, manifest = world
    with dl.LocalPACS(tmp_path / "empty", ae_title="EMPTY", port=0, allow_unknown="all") as b:
        book.add(dl.Node("empty", ae_title="EMPTY", port=b.port, retrieve="get"))
        panel = dl.widgets.QueryPanel(book, transfers=dl.widgets.TransferPanel(book, into=mine))
        try:
            panel.preset_buttons["all"].click()
            panel.wait()
            assert panel.result.attrs["node"] == "pacs"  # the frame says where it came from
            assert panel.result.attrs["protocol"] == "dimse"
            first = panel.result.StudyInstanceUID.iloc[0]
            panel.select([first])
            panel.wait()
            panel.node.value = "empty"  # the dropdown moves on; the results did not
            panel.retrieve_study.click()
            panel.transfers.wait()
            outcome = panel.transfers.result
            assert outcome is not None and outcome.complete.all(), outcome
            assert set(outcome.node) == {"pacs"}
            want = manifest[manifest.StudyInstanceUID == first]
            assert set(want.SOPInstanceUID) <= set(mine.instances().SOPInstanceUID)
            assert "retrieving 1 study from pacs" in panel.message.value
        finally:
            panel.close()


def test_a_failed_search_marks_the_old_results_stale(world: tuple) -> None:  # type: ignore[type-arg]
    book = world[0]
    book.add(dl.Node("gone", ae_title="GONE", port=free_port(), timeout=2))  # nothing listens
    panel = dl.widgets.QueryPanel(book)
    try:
        panel.preset_buttons["all"].click()
        panel.wait()
        assert len(panel.result) == 10 and "dl-stale" not in panel.grid.ui._dom_classes
        panel.node.value = "gone"
        panel.preset_buttons["all"].click()
        panel.wait()
        assert panel.error is not None
        assert "dl-stale" in panel.grid.ui._dom_classes
        assert len(panel.grid.frame) == 10  # still there, dimmed
        assert "the search on gone failed" in panel.stale_note.value
        assert "previous results from pacs" in panel.stale_note.value
        assert panel.source is not None and panel.source.name == "pacs"
    finally:
        panel.close()


def test_the_network_report_loads_on_open(world: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _book, pacs, _, _ = world
    assert dl.echo(pacs.node).ok
    dl.log.flush()
    report = dl.widgets.NetworkReport()  # no click: it reads the last week's log itself
    try:
        report.wait()
        assert "C-ECHO" in set(report.result.service), report.message.value
        assert "operation" in report.message.value
    finally:
        report.close()
    empty = dl.widgets.NetworkReport(folder=tmp_path / "no-log-here")
    try:
        empty.wait()
        assert "nothing in the network log" in empty.message.value, empty.message.value
    finally:
        empty.close()


def _web_form(panel: dl.widgets.NodePanel, **values: object) -> None:
    """Fill the DICOMweb part of ``panel``'s form (``url=``, ``auth=``, ``username=``...)."""
    for key, value in values.items():
        panel.fields[f"web_{key}"].value = value


def test_node_panel_saves_a_dicomweb_only_node_but_never_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DL_TEST_WEB_PASSWORD", "hunter2-the-password")
    path = tmp_path / "nodes.toml"
    panel = dl.widgets.NodePanel(dl.NodeBook(path=path))
    try:
        assert not any(isinstance(f, w.Password) for f in panel.fields.values())  # no secret
        assert panel.web.note.value and "environment variable" in panel.web.note.value
        panel.name.value, panel.timeout.value = "web", 12
        assert panel.ae_title.value == ""  # a DICOMweb-only node: no AE title
        _web_form(
            panel,
            url="https://pacs.example.org:8443/dicom-web/",
            auth="basic",
            username="reader",
            secret_env="DL_TEST_WEB_PASSWORD",
            ca="/etc/pki/ca.pem",
            cert="/home/me/client.pem",
            key="/home/me/client.key",
            verify=False,
        )
        node = panel.save()
        assert node is not None, panel.message.value
        assert "saved web (https://pacs.example.org:8443/dicom-web)" in panel.message.value
        assert "not set" not in panel.message.value  # (the variable is set here)
        panel.nodes.value = "(new node)"
        panel.name.value = "tok"
        _web_form(panel, url="http://127.0.0.1:8042/dicom-web", auth="bearer", token_file="~/t")
        assert panel.save() is not None, panel.message.value

        loaded = dl.NodeBook.load(path)
        web = loaded["web"]
        assert not web.speaks_dimse and web.ae_title == ""
        assert web.dicomweb == dl.DICOMweb(
            "https://pacs.example.org:8443/dicom-web",
            auth="basic",
            username="reader",
            secret_env="DL_TEST_WEB_PASSWORD",
            verify=False,
            ca="/etc/pki/ca.pem",
            timeout=12.0,
            cert="/home/me/client.pem",
            key="/home/me/client.key",
        )
        assert web.dicomweb.secret() == "hunter2-the-password"  # read from the variable
        assert loaded["tok"].dicomweb == dl.DICOMweb(
            "http://127.0.0.1:8042/dicom-web", auth="bearer", token_file="~/t"
        )
        text = path.read_text()
        assert "[nodes.web.dicomweb]" in text and 'secret_env = "DL_TEST_WEB_PASSWORD"' in text
        assert 'username = "reader"' in text and "verify = false" in text
        assert 'token_file = "~/t"' in text
        assert "hunter2" not in text  # the variable's name only, never its value
    finally:
        panel.close()


def test_node_panel_marks_each_wrong_dicomweb_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DL_TEST_UNSET_VARIABLE", raising=False)
    panel = dl.widgets.NodePanel(dl.NodeBook(path=tmp_path / "nodes.toml"))
    try:
        panel.name.value = "web"
        _web_form(panel, url="http://127.0.0.1:8042/dicom-web", auth="basic")
        assert panel.save() is None
        assert set(panel.problems()) == {"web_username", "web_secret_env"}
        for key in ("web_username", "web_secret_env"):
            assert "dl-invalid" in panel.fields[key]._dom_classes, key
            assert "basic auth needs username=" in panel.field_errors[key].value, key
        assert "dl-invalid" not in panel.fields["web_url"]._dom_classes
        assert "2 fields to fix: web_username, web_secret_env" in panel.message.value

        _web_form(panel, secret_env="DL_TEST_PW")  # the user alone is missing now
        assert panel.save() is None
        assert set(panel.problems()) == {"web_username"}
        assert "dl-invalid" not in panel.fields["web_secret_env"]._dom_classes

        _web_form(panel, username="u", secret_env="my secret pw!")  # the secret, not a name
        assert set(panel.problems()) == {"web_secret_env"}
        assert "not an environment variable name" in panel.problems()["web_secret_env"]

        _web_form(panel, url="ftp://nowhere", auth="bearer", secret_env="", key="k.pem")
        assert panel.save() is None
        found = panel.problems()
        assert set(found) == {"web_url", "web_token_file", "web_secret_env", "web_cert"}
        assert "must be http(s)://" in found["web_url"]
        assert "bearer auth needs" in found["web_token_file"]
        assert "give cert= too" in found["web_cert"]

        _web_form(panel, url="http://127.0.0.1:8042/dicom-web", token_file="t", cert="c.pem")
        assert panel.problems() == {}
        _web_form(panel, secret_env="DL_TEST_UNSET_VARIABLE")
        assert panel.save() is not None, panel.message.value
        assert "DL_TEST_UNSET_VARIABLE is not set here" in panel.message.value  # a warning
        assert not any("dl-invalid" in f._dom_classes for f in panel.fields.values())
    finally:
        panel.close()


def test_node_panel_needs_an_ae_title_or_a_dicomweb_url(tmp_path: Path) -> None:
    panel = dl.widgets.NodePanel(dl.NodeBook(path=tmp_path / "nodes.toml"))
    try:
        panel.name.value = "nothing"
        assert panel.save() is None
        assert set(panel.problems()) == {"ae_title"}
        assert "dl-invalid" in panel.fields["ae_title"]._dom_classes
        assert "DICOMweb URL" in panel.field_errors["ae_title"].value
        with pytest.raises(dl.ValidationError):
            panel.form_node()
        _web_form(panel, url="http://127.0.0.1:8042/dicom-web")
        assert panel.problems() == {}
        assert panel.form_node().dicomweb == dl.DICOMweb("http://127.0.0.1:8042/dicom-web")
        _web_form(panel, url="")
        panel.ae_title.value = "PACS"  # DIMSE only: no dicomweb
        assert panel.problems() == {} and panel.form_node().dicomweb is None
    finally:
        panel.close()


def test_selecting_a_node_fills_the_dicomweb_fields(tmp_path: Path) -> None:
    book = dl.NodeBook(path=tmp_path / "nodes.toml")
    web = dl.DICOMweb(
        "https://pacs.example.org/dicom-web",
        auth="bearer",
        secret_env="PACS_TOKEN",
        token_file="/run/token",
        verify=False,
        ca="ca.pem",
        cert="c.pem",
        key="k.pem",
    )
    book.add(dl.Node("both", ae_title="BOTH", dicomweb=web))
    book.add(dl.Node("dimse", ae_title="DIMSE"))
    panel = dl.widgets.NodePanel(book)
    blank = {
        "url": "",
        "auth": "none",
        "username": None,
        "secret_env": None,
        "token_file": None,
        "verify": True,
        "ca": None,
        "cert": None,
        "key": None,
    }
    try:
        panel.nodes.value = "both"
        assert panel.web.url.value == "https://pacs.example.org/dicom-web"
        assert (panel.web.auth.value, panel.web.secret_env.value) == ("bearer", "PACS_TOKEN")
        assert (panel.web.token_file.value, panel.web.verify.value) == ("/run/token", False)
        assert (panel.web.ca.value, panel.web.cert.value, panel.web.key.value) == (
            "ca.pem",
            "c.pem",
            "k.pem",
        )
        assert panel.form_node() == book["both"]  # the form describes the node as saved
        panel.nodes.value = "dimse"
        assert panel.web.given() == blank and panel.web.username.value == ""
        assert panel.form_node() == book["dimse"]
        panel.nodes.value = "both"
        panel.nodes.value = "(new node)"
        assert panel.web.given() == blank
    finally:
        panel.close()


def test_echo_of_a_dicomweb_only_node_where_nothing_listens(tmp_path: Path) -> None:
    port = free_port()  # bound, its port taken, closed: nothing listens there now
    book = dl.NodeBook(path=tmp_path / "nodes.toml")
    url = f"http://127.0.0.1:{port}/dicom-web"
    book.add(dl.Node("gone", dicomweb=dl.DICOMweb(url), timeout=5))
    panel = dl.widgets.NodePanel(book)
    try:
        panel.nodes.value = "gone"
        panel.echo_button.click()
        panel.wait()
        result = panel.echo_results["gone"]
        assert not result.ok and result.cause == "refused", result
        assert result.node.dicomweb is not None and result.node.dicomweb.url == url
        assert "offline: refused" in panel.echo_status.value
        assert str(port) in panel.message.value
    finally:
        panel.close()


def test_echo_says_when_the_secret_variable_is_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DL_TEST_UNSET_VARIABLE", raising=False)
    book = dl.NodeBook(path=tmp_path / "nodes.toml")
    web = dl.DICOMweb(
        f"http://127.0.0.1:{free_port()}/dicom-web",
        auth="basic",
        username="u",
        secret_env="DL_TEST_UNSET_VARIABLE",
    )
    book.add(dl.Node("nosecret", dicomweb=web))
    panel = dl.widgets.NodePanel(book)
    try:
        panel.nodes.value = "nosecret"
        panel.echo_button.click()
        panel.wait()
        assert isinstance(panel.error, dl.ConfigError)
        assert "not checked" in panel.echo_status.value  # not left at "…"
        assert "DL_TEST_UNSET_VARIABLE" in panel.echo_status.value
        assert "nosecret" not in panel.echo_results
    finally:
        panel.close()


def test_node_panel_checks_c_move_and_says_what_to_register(world: tuple) -> None:  # type: ignore[type-arg]
    """The NodePanel's "Check C-MOVE" asks the selected node to move one instance to our
    LocalPACS: the PACS here does not know our AE title, and the panel says what to
    register where; a node that is not there gets "not checked" with the reason."""
    book, _, mine, _ = world
    panel = dl.widgets.NodePanel(book, local=mine)
    panel.nodes.value = "pacs"
    panel.move_button.click()
    panel.wait()
    result = panel.move_results["pacs"]
    assert not result.ok and result.cause == "unknown-destination", result.detail
    assert "C-MOVE: unknown-destination" in panel.move_status.value
    shown = html.unescape(panel.message.value)
    assert f"register AE title 'WMINE', host 127.0.0.1, port {mine.port}" in shown
    assert mine.instances().empty
    panel.nodes.value = "(new node)"
    assert panel.move_status.value == ""
    panel.nodes.value = "pacs"  # the last result comes back with the node
    assert "unknown-destination" in panel.move_status.value
    panel.close()


def test_worklist_panel_adds_marks_done_and_removes_steps(tmp_path: Path) -> None:
    with dl.LocalPACS(tmp_path / "wl", ae_title="WLPANEL", port=0) as local:
        panel = dl.widgets.WorklistPanel(local)
        panel.patient_name.value = "TEST^ONE"
        panel.patient_id.value = "PW1"
        panel.accession.value = "ACCW1"
        panel.modality.value = "MR"
        panel.station.value = "MR01"
        panel.time.value = "25:99"  # not a time: refused, quoted, nothing added
        panel.add_button.click()
        panel.wait()
        assert "'25:99'" in html.unescape(panel.message.value), panel.message.value
        assert len(local.worklist) == 0
        panel.time.value = "10:30"
        panel.add_button.click()
        panel.wait()
        assert "added 1 step" in panel.message.value, panel.message.value
        assert "ACCW1" in panel.table.value and list(panel.chosen.options) == ["ACCW1"]
        # what a modality asking this LocalPACS for its worklist sees
        got = dl.find(local.node, dl.Query.worklist(Modality="MR"))
        assert list(got.AccessionNumber) == ["ACCW1"]
        assert got.ScheduledProcedureStepStartTime.iloc[0] == pd.Timedelta(hours=10, minutes=30)
        assert got.ScheduledProcedureStepStartDate.iloc[0] == pd.Timestamp(date.today())
        panel.synthetic_button.click()
        panel.wait()
        assert len(local.worklist) == 6 and len(panel.chosen.options) == 6
        panel.chosen.value = "ACCW1"
        panel.done_button.click()
        panel.wait()
        assert "ACCW1" not in panel.chosen.options
        assert "ACCW1" not in set(dl.find(local.node, dl.Query.worklist()).AccessionNumber)
        frame = local.worklist.frame()
        assert bool(frame.loc[frame.AccessionNumber == "ACCW1", "done"].iloc[0])
        panel.chosen.value = panel.chosen.options[0]
        panel.remove_button.click()
        panel.wait()
        assert len(local.worklist) == 5
        panel.close()


def test_transfer_panel_lists_an_unfinished_job_and_resumes_it(world: tuple) -> None:  # type: ignore[type-arg]
    book, _pacs, mine, manifest = world
    studies = list(manifest.StudyInstanceUID.unique())
    job = dl.retrieve(
        "pacs", studies, into=mine, book=book, max_connections=1, wait=False, progress=False
    )
    assert isinstance(job, dl.Job)
    job.cancel()
    job.result()
    panel = dl.widgets.TransferPanel(book, into=mine)
    try:
        assert panel.kept.options and panel.kept.value == job.id
        assert "cancelled" in panel.kept.options[0][0]
        panel.resume_button.click()
        panel.wait()
        assert panel.result is not None and len(panel.result) == len(studies)
        assert bool(panel.result.complete.all()), panel.message.value
        assert len(mine.instances()) == len(manifest)
        assert not panel.kept.options and panel.resume_button.disabled  # nothing left open
    finally:
        panel.close()
