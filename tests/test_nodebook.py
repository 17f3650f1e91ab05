"""NodeBook: editing semantics, TOML persistence, errors that name the line, safe saves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicomlab as dl
from dicomlab.core.nodebook import FILENAME, NodeBook, home

PACS = dl.Node("pacs", ae_title="PACS", host="pacs.example.org", port=4242, retrieve="get")
ORTHANC = dl.Node("orthanc", ae_title="ORTHANC", host="127.0.0.1", port=4242)
SECURE = dl.Node(
    "secure.site",
    ae_title="SECURE AE",
    host="10.0.0.7",
    port=2762,
    tls=dl.TLS(ca="/etc/ca.pem", cert="me.pem", key="me.key", server_hostname="pacs.local"),
    max_connections=16,
    timeout=2.5,
    charset="ISO_IR 192",
    allow_store=False,
)

# A hand-written book; tests replace single lines of it. Line numbers matter.
GOOD_LINES = [
    "# my node book",  # 1
    "version = 1",  # 2
    'default = "pacs"',  # 3
    "",  # 4
    "[local]",  # 5
    'ae_title = "ME"',  # 6
    "port = 11112",  # 7
    "",  # 8
    "[nodes.pacs]",  # 9
    'ae_title = "PACS"',  # 10
    'host = "pacs.example.org"',  # 11
    "port = 4242",  # 12
    'retrieve = "get"',  # 13
    "",  # 14
    "[nodes.orthanc]",  # 15
    'ae_title = "ORTHANC"',  # 16
    'host = "127.0.0.1"',  # 17
    "port = 4242",  # 18
]


def book_text(**replace_lines: str) -> str:
    """GOOD_LINES with some lines replaced: book_text(l12="port = 0")."""
    lines = list(GOOD_LINES)
    for key, text in replace_lines.items():
        lines[int(key[1:]) - 1] = text
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> bytes:
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def load_error(tmp_path: Path, text: str) -> dl.NodeBookError:
    path = tmp_path / "nodes.toml"
    data = write(path, text)
    with pytest.raises(dl.NodeBookError) as exc:
        NodeBook.load(path)
    assert path.read_bytes() == data
    err = exc.value
    assert err.path == str(path)
    return err


def assert_names_line(err: dl.NodeBookError, line: int) -> None:
    assert err.line == line, str(err)
    assert str(err).startswith(f"{err.path}:{line}: "), str(err)


# -- editing --------------------------------------------------------------------


def test_hand_written_book_loads() -> None:
    book = NodeBook.loads(book_text())
    assert [n.name for n in book] == ["pacs", "orthanc"]
    assert book["pacs"] == PACS
    assert book["orthanc"] == ORTHANC
    assert book.default == "pacs"
    assert book.default_node == PACS
    assert book.local == dl.LocalIdentity(ae_title="ME", port=11112)


def test_add_and_lookup() -> None:
    book = NodeBook()
    assert len(book) == 0 and book.default is None and book.default_node is None
    book.add(PACS)
    book.add(ORTHANC)
    assert len(book) == 2
    assert "pacs" in book and "nobody" not in book
    assert book["orthanc"] is ORTHANC
    assert book.nodes == [PACS, ORTHANC]
    assert list(book) == [PACS, ORTHANC]
    with pytest.raises(KeyError, match="nobody"):
        book["nobody"]


def test_add_refuses_duplicates_unless_replace() -> None:
    book = NodeBook([PACS])
    other = PACS.replace(port=1)
    with pytest.raises(dl.ValidationError) as exc:
        book.add(other)
    assert repr("pacs") in str(exc.value)
    assert book["pacs"] is PACS
    book.add(other, replace=True)
    assert book["pacs"] is other
    assert len(book) == 1


def test_add_refuses_non_nodes() -> None:
    with pytest.raises(dl.ValidationError):
        NodeBook().add({"name": "pacs"})  # type: ignore[arg-type]


def test_constructor_refuses_duplicate_names_and_unknown_default() -> None:
    with pytest.raises(dl.ValidationError):
        NodeBook([PACS, PACS.replace(port=1)])
    with pytest.raises(dl.ValidationError, match="nobody"):
        NodeBook([PACS], default="nobody")


def test_edit_validates_and_replaces_in_place() -> None:
    book = NodeBook([PACS, ORTHANC], default="pacs")
    new = book.edit("pacs", port=104, ae_title="NEW_AE")
    assert book["pacs"] is new
    assert (new.port, new.ae_title, new.host) == (104, "NEW_AE", PACS.host)
    assert [n.name for n in book] == ["pacs", "orthanc"]
    assert book.default_node is new
    with pytest.raises(dl.ValidationError) as exc:
        book.edit("pacs", port=99999)
    assert "99999" in str(exc.value)
    assert book["pacs"] is new


def test_edit_of_an_unknown_node() -> None:
    book = NodeBook([PACS])
    with pytest.raises(KeyError, match="nobody"):
        book.edit("nobody", port=1)
    assert book.nodes == [PACS]


def test_edit_with_a_new_name_points_to_rename() -> None:
    book = NodeBook([PACS])
    assert book.edit("pacs", name="pacs") == PACS  # the same name is not a rename
    with pytest.raises(dl.ValidationError, match="rename"):
        book.edit("pacs", name="other")
    assert book.nodes == [PACS]


def test_remove_clears_the_default_only_when_it_was_the_default() -> None:
    book = NodeBook([PACS, ORTHANC], default="pacs")
    assert book.remove("orthanc") is ORTHANC
    assert book.default == "pacs"
    assert book.remove("pacs") is PACS
    assert book.default is None and book.default_node is None
    assert len(book) == 0
    with pytest.raises(KeyError):
        book.remove("pacs")


def test_rename_keeps_place_and_default() -> None:
    book = NodeBook([PACS, ORTHANC, SECURE], default="orthanc")
    renamed = book.rename("orthanc", "local-orthanc")
    assert renamed == ORTHANC.replace(name="local-orthanc")
    assert [n.name for n in book] == ["pacs", "local-orthanc", "secure.site"]
    assert book.default == "local-orthanc"
    assert book.default_node == renamed
    assert "orthanc" not in book
    book.rename("pacs", "pacs2")
    assert book.default == "local-orthanc"


def test_rename_refusals_leave_the_book_unchanged() -> None:
    book = NodeBook([PACS, ORTHANC], default="pacs")
    before = book.to_dict()
    with pytest.raises(dl.ValidationError):
        book.rename("pacs", "orthanc")
    with pytest.raises(dl.ValidationError):
        book.rename("pacs", "bad name")
    with pytest.raises(KeyError):
        book.rename("nobody", "x")
    assert book.to_dict() == before
    assert book.rename("pacs", "pacs") == PACS


def test_default_must_name_a_node() -> None:
    book = NodeBook([PACS])
    with pytest.raises(dl.ValidationError) as exc:
        book.default = "orthanc"
    assert repr("orthanc") in str(exc.value)
    assert book.default is None
    book.default = "pacs"
    assert book.default_node is PACS
    book.default = None
    assert book.default_node is None


def test_local_identity_setter() -> None:
    book = NodeBook()
    assert book.local == dl.LocalIdentity()
    book.local = dl.LocalIdentity(ae_title="ME", port=0)
    assert book.local.port == 0
    with pytest.raises(dl.ValidationError):
        book.local = "ME"  # type: ignore[assignment]


def test_find_ae_is_case_sensitive() -> None:
    book = NodeBook([PACS, ORTHANC, PACS.replace(name="pacs-copy")])
    assert book.find_ae("PACS") is PACS  # the first one
    assert book.find_ae("ORTHANC") is ORTHANC
    assert book.find_ae("pacs") is None


# -- save and load --------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    book = NodeBook([PACS, ORTHANC, SECURE], default="secure.site")
    book.local = dl.LocalIdentity(ae_title="MY AE", port=0, host="0.0.0.0")
    path = tmp_path / "sub" / "book.toml"
    assert book.save(path) == path
    assert book.path == path
    loaded = NodeBook.load(path)
    assert loaded.to_dict() == book.to_dict()
    assert loaded.nodes == [PACS, ORTHANC, SECURE]
    assert loaded["secure.site"].tls == SECURE.tls
    assert loaded.default == "secure.site"
    assert loaded.local == book.local
    assert loaded.path == path
    assert path.read_text(encoding="utf-8") == book.dumps()


def test_saved_file_is_readable_toml_with_a_header(tmp_path: Path) -> None:
    path = NodeBook([SECURE]).save(tmp_path / "nodes.toml")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ")
    assert '[nodes."secure.site".tls]' in text
    assert 'charset = "ISO_IR 192"' in text


def test_unicode_survives_a_round_trip(tmp_path: Path) -> None:
    node = dl.Node("n", ae_title='Q"#=[x]', host="müller-pacs.example", port=1)
    path = NodeBook([node]).save(tmp_path / "nodes.toml")
    assert NodeBook.load(path)["n"] == node


def test_load_of_a_missing_file_is_an_empty_book(tmp_path: Path) -> None:
    path = tmp_path / "none" / "nodes.toml"
    book = NodeBook.load(path)
    assert len(book) == 0 and book.default is None
    assert book.local == dl.LocalIdentity()
    assert book.path == path
    assert not path.exists()
    book.add(PACS)
    book.save()
    assert NodeBook.load(path).nodes == [PACS]


def test_dicomlab_home_decides_where_the_book_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "custom-home"
    monkeypatch.setenv("DICOMLAB_HOME", str(folder))
    assert home() == folder
    assert dl.home() == folder
    book = NodeBook.load()
    assert book.path == folder / FILENAME
    assert NodeBook().path == folder / FILENAME
    book.add(PACS)
    assert book.save() == folder / FILENAME
    assert (folder / FILENAME).is_file()
    assert NodeBook.load().nodes == [PACS]

    # The default path follows the variable, it is not frozen at import.
    other = tmp_path / "other-home"
    monkeypatch.setenv("DICOMLAB_HOME", str(other))
    assert NodeBook.load().path == other / FILENAME
    assert len(NodeBook.load()) == 0


def test_home_falls_back_to_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DICOMLAB_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert home() == tmp_path / "xdg" / "dicomlab"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert home() == tmp_path / "user" / ".config" / "dicomlab"


def test_no_stray_temporary_files_after_saves(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    book = NodeBook([PACS], path=path)
    book.save()
    book.add(ORTHANC)
    book.save()
    book.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.toml"]


def test_saving_twice_after_our_own_save_is_not_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    book = NodeBook.load(path)
    book.add(PACS)
    book.save()
    book.edit("pacs", port=1)
    book.save()
    assert NodeBook.load(path)["pacs"].port == 1


# -- errors name the file and the line ------------------------------------------


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        ({"l5": "[local"}, 5),
        ({"l12": "port = 42 42"}, 12),
        ({"l10": 'ae_title = "PACS'}, 10),
        ({"l17": "host = "}, 17),
        ({"l15": "[nodes.pacs]"}, 15),  # the same table twice
        ({"l3": "version = 2"}, 3),  # the same key twice
    ],
)
def test_toml_syntax_error_names_path_and_line(
    tmp_path: Path, lines: dict[str, str], line: int
) -> None:
    err = load_error(tmp_path, book_text(**lines))
    assert_names_line(err, line)
    assert "not valid TOML" in str(err)
    assert isinstance(err, dl.ConfigError) and isinstance(err, ValueError)
    assert not isinstance(err, dl.NodeBookConflict)


def test_syntax_error_on_a_last_line_without_newline_names_the_line(tmp_path: Path) -> None:
    text = book_text(l18='port = "4242').rstrip("\n")  # no newline at the end of the file
    err = load_error(tmp_path, text)
    assert_names_line(err, 18)


def test_hand_edited_bad_port_names_its_line_and_quotes_the_value(tmp_path: Path) -> None:
    err = load_error(tmp_path, book_text(l12="port = 70000"))
    assert_names_line(err, 12)
    assert "70000" in str(err)
    assert repr("pacs") in str(err)

    err = load_error(tmp_path, book_text(l18="port = 0"))
    assert_names_line(err, 18)
    assert repr("orthanc") in str(err)


@pytest.mark.parametrize(
    ("lines", "line", "quoted"),
    [
        ({"l10": r'ae_title = "BAD\\AE"'}, 10, "BAD\\AE"),
        ({"l16": 'ae_title = "WAY_TOO_LONG_AE_TITLE"'}, 16, "WAY_TOO_LONG_AE_TITLE"),
        ({"l11": 'host = "pacs host"'}, 11, "pacs host"),
        ({"l12": 'port = "4242"'}, 12, "4242"),
        ({"l13": 'retrieve = "copy"'}, 13, "copy"),
        ({"l13": "timeout = 0"}, 13, 0),
        ({"l13": "max_connections = 100"}, 13, 100),
        ({"l13": 'allow_store = "yes"'}, 13, "yes"),
        ({"l6": 'ae_title = "ME\\u0007"'}, 6, "ME\x07"),
        ({"l7": "port = -1"}, 7, -1),
        pytest.param(
            {"l13": 'charset = "LATIN1"'},
            13,
            "LATIN1",
        ),
        pytest.param(
            {"l10": "port = 4242", "l12": r'ae_title = "REPORTS\\X"'},
            12,
            "REPORTS\\X",
        ),
    ],
)
def test_bad_values_name_their_line_and_quote_the_value(
    tmp_path: Path, lines: dict[str, str], line: int, quoted: object
) -> None:
    err = load_error(tmp_path, book_text(**lines))
    assert repr(quoted) in str(err)
    assert_names_line(err, line)


@pytest.mark.parametrize(
    ("lines", "line", "key"),
    [
        ({"l13": 'retreive = "get"'}, 13, "retreive"),
        ({"l17": 'hostname = "127.0.0.1"'}, 17, "hostname"),
        ({"l7": "prot = 11112"}, 7, "prot"),
        ({"l3": 'colour = "blue"'}, 3, "colour"),
    ],
)
def test_unknown_key_names_its_line(
    tmp_path: Path, lines: dict[str, str], line: int, key: str
) -> None:
    err = load_error(tmp_path, book_text(**lines))
    assert_names_line(err, line)
    assert f"unknown key {key!r}" in str(err)


def test_unknown_top_level_table_names_its_header_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, book_text(l9="[node.pacs]"))
    assert "unknown key 'node'" in str(err)
    assert_names_line(err, 9)


def test_unsupported_version_and_unknown_default_name_their_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, book_text(l2="version = 7"))
    assert_names_line(err, 2)
    assert "7" in str(err)
    err = load_error(tmp_path, book_text(l3='default = "nobody"'))
    assert_names_line(err, 3)
    assert repr("nobody") in str(err)


def test_bad_tls_table_names_its_header(tmp_path: Path) -> None:
    text = book_text() + '\n[nodes.orthanc.tls]\ncert = "c.pem"\n'  # header on line 20
    err = load_error(tmp_path, text)
    assert_names_line(err, 20)
    assert repr("orthanc") in str(err)


def test_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    data = book_text(l11='host = "pacs-HOST"').encode("utf-8").replace(b"HOST", b"\xe9\xff")
    path.write_bytes(data)
    with pytest.raises(dl.NodeBookError) as exc:
        NodeBook.load(path)
    assert_names_line(exc.value, 11)
    assert "UTF-8" in str(exc.value)
    assert path.read_bytes() == data


def test_loads_without_a_path_still_names_the_line() -> None:
    with pytest.raises(dl.NodeBookError) as exc:
        NodeBook.loads(book_text(l12="port = 0"))
    assert exc.value.line == 12
    assert str(exc.value).startswith("<node book>:12: ")


# -- saving never loses an edit made on disk ------------------------------------


def test_save_refuses_a_file_changed_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    write(path, book_text())
    book = NodeBook.load(path)
    book.remove("orthanc")

    edited = write(path, book_text(l12="port = 5000"))  # another kernel, or a text editor
    with pytest.raises(dl.NodeBookConflict) as exc:
        book.save()
    assert isinstance(exc.value, dl.NodeBookError)
    assert exc.value.path == str(path)
    assert str(path) in str(exc.value)
    assert path.read_bytes() == edited
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.toml"]

    assert book.save(force=True) == path
    assert path.read_bytes() != edited
    reloaded = NodeBook.load(path)
    assert [n.name for n in reloaded] == ["pacs"]
    assert reloaded["pacs"].port == 4242
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.toml"]


def test_two_books_from_one_file_second_save_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    write(path, book_text())
    first, second = NodeBook.load(path), NodeBook.load(path)
    first.edit("pacs", port=1)
    first.save()
    saved = path.read_bytes()
    second.edit("pacs", port=2)
    with pytest.raises(dl.NodeBookConflict):
        second.save()
    assert path.read_bytes() == saved
    assert NodeBook.load(path)["pacs"].port == 1


def test_a_book_never_loaded_does_not_overwrite_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    data = write(path, book_text())
    with pytest.raises(dl.NodeBookConflict):
        NodeBook([SECURE], path=path).save()
    assert path.read_bytes() == data

    # Loaded while the file was missing, then someone created it.
    missing = tmp_path / "later.toml"
    book = NodeBook.load(missing)
    created = write(missing, book_text())
    with pytest.raises(dl.NodeBookConflict):
        book.save()
    assert missing.read_bytes() == created


def test_saving_over_another_existing_file_conflicts(tmp_path: Path) -> None:
    ours = tmp_path / "ours.toml"
    theirs = tmp_path / "theirs.toml"
    NodeBook([PACS], path=ours).save()
    data = write(theirs, book_text())
    book = NodeBook.load(ours)
    with pytest.raises(dl.NodeBookConflict):
        book.save(theirs)
    assert theirs.read_bytes() == data
    assert book.path == ours
    book.save(theirs, force=True)
    assert NodeBook.load(theirs).nodes == [PACS]
    assert book.path == theirs


def test_a_corrupt_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    data = write(path, book_text(l12="port = = 4242"))
    with pytest.raises(dl.NodeBookError) as exc:
        NodeBook.load(path)
    assert exc.value.line == 12
    assert path.read_bytes() == data
    # A fresh book pointed at it (the usual "start again" reflex) does not clobber it either.
    with pytest.raises(dl.NodeBookConflict):
        NodeBook([PACS], path=path).save()
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.toml"]


def test_failed_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nodes.toml"
    data = write(path, book_text())
    book = NodeBook.load(path)
    book.add(SECURE)

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        book.save()
    monkeypatch.undo()
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.toml"]
    book.save()  # the file is still the one it was loaded from
    assert "secure.site" in NodeBook.load(path)


def test_every_book_that_saves_loads_back(tmp_path: Path) -> None:
    with pytest.raises(dl.ValidationError, match="'pacs\\\\x7f'"):
        dl.Node("n", ae_title="A", host="pacs\x7f")  # a host with DEL is refused up front
    # Other strings may hold DEL: the writer must escape it, or load() would refuse the file.
    book = NodeBook([dl.Node("n", ae_title="A", tls=dl.TLS(ca="/certs/ca\x7f.pem"))])
    path = book.save(tmp_path / "nodes.toml")
    assert NodeBook.load(path).to_dict() == book.to_dict()


# -- property: any valid book survives dumps/loads -------------------------------

AE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "\\")
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
ae_titles = st.text(alphabet=AE_CHARS, min_size=1, max_size=16).filter(lambda s: s.strip(" "))
hosts = st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,30}", fullmatch=True) | st.just("::1")
paths = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1
).filter(str.strip)


@st.composite
def tls_settings(draw: st.DrawFn) -> dl.TLS:
    ca = draw(st.none() | paths)
    cert_key = draw(st.none() | st.tuples(paths, paths))
    return dl.TLS(
        ca=ca,
        cert=cert_key[0] if cert_key else None,
        key=cert_key[1] if cert_key else None,
        verify=draw(st.booleans()),
        server_hostname=draw(st.none() | hosts),
        require_client_cert=ca is not None and draw(st.booleans()),
    )


@st.composite
def nodes(draw: st.DrawFn, name: str) -> dl.Node:
    return dl.Node(
        name=name,
        ae_title=draw(ae_titles),
        host=draw(hosts),
        port=draw(st.integers(1, 65535)),
        retrieve=draw(st.sampled_from(["move", "get"])),
        tls=draw(st.none() | tls_settings()),
        max_connections=draw(st.integers(1, 64)),
        timeout=draw(st.floats(min_value=0, max_value=3600, exclude_min=True)),
        charset=draw(st.sampled_from([None, "ISO_IR 192", "ISO_IR 100", "GB18030"])),
        allow_store=draw(st.booleans()),
        allow_query=draw(st.booleans()),
        allow_retrieve=draw(st.booleans()),
    )


@st.composite
def books(draw: st.DrawFn) -> NodeBook:
    node_names = draw(st.lists(names, max_size=5, unique=True))
    book = NodeBook(
        [draw(nodes(n)) for n in node_names],
        local=dl.LocalIdentity(
            ae_title=draw(ae_titles), port=draw(st.integers(0, 65535)), host=draw(hosts)
        ),
    )
    book.default = draw(st.none() | st.sampled_from(node_names)) if node_names else None
    return book


@settings(max_examples=75, deadline=None)
@given(book=books())
def test_any_valid_book_round_trips_through_toml(book: NodeBook) -> None:
    loaded = NodeBook.loads(book.dumps())
    assert loaded.to_dict() == book.to_dict()
    assert loaded.nodes == book.nodes
    assert loaded.default == book.default
    assert loaded.local == book.local
