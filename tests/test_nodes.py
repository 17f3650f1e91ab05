"""Node, TLS and LocalIdentity: values are validated at construction and frozen."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dicomlab as dl
from dicomlab.core.nodes import validate_ae_title, validate_host, validate_port

# -- strategies ---------------------------------------------------------------

# The AE default repertoire we accept: printable ASCII without the backslash.
AE_ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "\\")
AE_EDGE = AE_ALPHABET.replace(" ", "")  # what may start or end a (stripped) AE title
CONTROL_CHARS = [chr(c) for c in range(0x20)] + ["\x7f"]


@st.composite
def ae_titles(draw: st.DrawFn, alphabet: str = AE_ALPHABET) -> str:
    """A valid AE title as stored: 1-16 characters, no leading or trailing spaces."""
    edge = "".join(c for c in AE_EDGE if c in alphabet)
    title = draw(st.sampled_from(edge))
    if draw(st.booleans()):
        title += draw(st.text(alphabet=alphabet, max_size=14)) + draw(st.sampled_from(edge))
    assert title == title.strip(" ") and 1 <= len(title) <= 16
    return title


def _insert(base: str, extra: str, where: int) -> str:
    where = where % (len(base) + 1)
    return base[:where] + extra + base[where:]


printable = st.text(alphabet=AE_ALPHABET, max_size=12)
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(1, 65535)


def assert_quotes(exc: pytest.ExceptionInfo[BaseException], bad: object) -> None:
    assert repr(bad) in str(exc.value), f"{bad!r} not quoted in {str(exc.value)!r}"


# -- AE titles ----------------------------------------------------------------


def test_validation_error_is_a_value_error_and_a_config_error() -> None:
    with pytest.raises(ValueError) as exc:
        dl.Node("pacs", ae_title="BAD\\AE")
    assert isinstance(exc.value, dl.ValidationError)
    assert isinstance(exc.value, dl.ConfigError)
    assert isinstance(exc.value, dl.DicomlabError)


@given(title=ae_titles(), left=st.integers(0, 3), right=st.integers(0, 3))
def test_valid_ae_title_round_trips(title: str, left: int, right: int) -> None:
    assert validate_ae_title(title) == title
    padded = " " * left + title + " " * right
    # Leading and trailing spaces are not significant (PS3.5) and are removed.
    assert validate_ae_title(padded) == title
    assert dl.Node("n", ae_title=padded).ae_title == title
    assert dl.LocalIdentity(ae_title=padded).ae_title == title


def test_ae_title_limits() -> None:
    assert validate_ae_title("A") == "A"
    assert validate_ae_title("X" * 16) == "X" * 16
    assert validate_ae_title("  MY AE  ") == "MY AE"
    with pytest.raises(dl.ValidationError) as exc:
        validate_ae_title("X" * 17)
    assert_quotes(exc, "X" * 17)
    assert "17 characters" in str(exc.value)


@given(base=printable, where=st.integers(0, 20))
def test_ae_title_with_backslash_is_refused(base: str, where: int) -> None:
    bad = _insert(base, "\\", where)
    with pytest.raises(dl.ValidationError) as exc:
        validate_ae_title(bad)
    assert_quotes(exc, bad)
    assert "backslash" in str(exc.value)


@given(base=printable, ctrl=st.sampled_from(CONTROL_CHARS), where=st.integers(0, 20))
def test_ae_title_with_control_character_is_refused(base: str, ctrl: str, where: int) -> None:
    bad = _insert(base, ctrl, where)
    with pytest.raises(dl.ValidationError) as exc:
        validate_ae_title(bad)
    assert_quotes(exc, bad)
    assert "control" in str(exc.value)


@given(core=st.text(alphabet=AE_ALPHABET, min_size=17, max_size=40))
def test_ae_title_over_16_characters_is_refused(core: str) -> None:
    bad = "A" + core + "Z"  # significant length is at least 19
    with pytest.raises(dl.ValidationError) as exc:
        validate_ae_title(bad)
    assert_quotes(exc, bad)


@given(
    base=printable,
    char=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, exclude_categories=["Cs"]),
    where=st.integers(0, 20),
)
def test_ae_title_with_non_ascii_is_refused(base: str, char: str, where: int) -> None:
    bad = _insert(base, char, where)
    with pytest.raises(dl.ValidationError) as exc:
        validate_ae_title(bad)
    assert_quotes(exc, bad)


@pytest.mark.parametrize("bad", ["", " ", "                ", " " * 20])
def test_blank_ae_title_is_refused(bad: str) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("pacs", ae_title=bad)
    assert_quotes(exc, bad)


@pytest.mark.parametrize("bad", [None, 104, b"PACS", ["PACS"]])
def test_non_string_ae_title_is_refused(bad: object) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("pacs", ae_title=bad)  # type: ignore[arg-type]
    assert_quotes(exc, bad)


def test_local_identity_ae_title_error_says_whose() -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.LocalIdentity(ae_title="TOO_LONG_FOR_AN_AE")
    assert "our AE title" in str(exc.value)
    assert_quotes(exc, "TOO_LONG_FOR_AN_AE")


# -- ports and hosts ----------------------------------------------------------


@given(port=ports)
def test_valid_ports_are_accepted(port: int) -> None:
    assert validate_port(port) == port
    assert dl.Node("n", ae_title="A", port=port).port == port


@given(port=st.integers(max_value=0) | st.integers(min_value=65536))
def test_out_of_range_ports_are_refused(port: int) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("n", ae_title="A", port=port)
    assert_quotes(exc, port)


@pytest.mark.parametrize("bad", [True, False, "104", 104.0, None])
def test_non_integer_ports_are_refused(bad: object) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("n", ae_title="A", port=bad)  # type: ignore[arg-type]
    assert_quotes(exc, bad)


def test_port_zero_only_for_local_identity() -> None:
    assert dl.LocalIdentity(port=0).port == 0
    assert validate_port(0, allow_zero=True) == 0
    with pytest.raises(dl.ValidationError):
        dl.Node("n", ae_title="A", port=0)
    with pytest.raises(dl.ValidationError) as exc:
        dl.LocalIdentity(port=65536)
    assert_quotes(exc, 65536)
    assert "our port" in str(exc.value)


@given(host=hostnames | ipv4)
def test_valid_hosts_are_accepted_and_stripped(host: str) -> None:
    assert validate_host(host) == host
    assert dl.Node("n", ae_title="A", host=f"  {host} ").host == host


@pytest.mark.parametrize("bad", ["", "   ", "pacs host", "pacs\thost", "a" * 254, None, 127])
def test_bad_hosts_are_refused(bad: object) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("n", ae_title="A", host=bad)  # type: ignore[arg-type]
    assert_quotes(exc, bad)
    with pytest.raises(dl.ValidationError):
        dl.LocalIdentity(host=bad)  # type: ignore[arg-type]


# -- other node fields --------------------------------------------------------


@pytest.mark.parametrize("method", ["move", "get"])
def test_retrieve_methods(method: str) -> None:
    assert dl.Node("n", ae_title="A", retrieve=method).retrieve == method  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["MOVE", "Get", "copy", "", None])
def test_bad_retrieve_is_refused(bad: object) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("n", ae_title="A", retrieve=bad)  # type: ignore[arg-type]
    assert_quotes(exc, bad)


@given(mc=st.integers(1, 64))
def test_max_connections_in_range(mc: int) -> None:
    assert dl.Node("n", ae_title="A", max_connections=mc).max_connections == mc


@pytest.mark.parametrize("bad", [0, -1, 65, 1000, True, 2.0, "4"])
def test_max_connections_out_of_range(bad: object) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("n", ae_title="A", max_connections=bad)  # type: ignore[arg-type]
    assert_quotes(exc, bad)


@given(t=st.floats(min_value=0, max_value=3600, exclude_min=True) | st.integers(1, 3600))
def test_timeout_in_range_is_stored_as_float(t: float) -> None:
    node = dl.Node("n", ae_title="A", timeout=t)
    assert type(node.timeout) is float
    assert node.timeout == t


@pytest.mark.parametrize(
    "bad", [0, 0.0, -1, -0.5, 3600.001, 3601, math.inf, math.nan, True, "30", None]
)
def test_timeout_out_of_range(bad: object) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("n", ae_title="A", timeout=bad)  # type: ignore[arg-type]
    assert_quotes(exc, bad)


@pytest.mark.parametrize("charset", [None, "ISO_IR 192", "ISO_IR 100", "ISO_IR 6", "GB18030"])
def test_defined_charsets_are_accepted(charset: str | None) -> None:
    assert dl.Node("n", ae_title="A", charset=charset).charset == charset


@pytest.mark.parametrize(
    "bad", ["UTF-8", "utf8", "latin1", "iso_ir 192", "ISO_IR 999", "ISO_IR192"]
)
def test_unknown_charsets_are_refused(bad: str) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("n", ae_title="A", charset=bad)
    assert_quotes(exc, bad)
    assert exc.value.hint is not None and "ISO_IR" in exc.value.hint


@pytest.mark.parametrize("flag", ["allow_store", "allow_query", "allow_retrieve"])
def test_permission_flags_must_be_booleans(flag: str) -> None:
    assert getattr(dl.Node("n", ae_title="A", **{flag: False}), flag) is False
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node("n", ae_title="A", **{flag: 1})
    assert flag in str(exc.value)


@pytest.mark.parametrize("name", ["pacs", "P", "orthanc-1", "site_a.pacs", "0", "x" * 64])
def test_valid_node_names(name: str) -> None:
    assert dl.Node(name, ae_title="A").name == name


@pytest.mark.parametrize(
    "bad", ["", "-pacs", ".pacs", "_pacs", "my pacs", "pacs!", "pâcs", "x" * 65, None]
)
def test_bad_node_names_are_refused(bad: object) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node(bad, ae_title="A")  # type: ignore[arg-type]
    assert_quotes(exc, bad)


@pytest.mark.parametrize("bad", ["pacs\n", "\npacs", "pa\ncs"])
def test_node_name_with_newline_is_refused(bad: str) -> None:
    # A regex ending in '$' used with .match() would let "pacs\n" through.
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node(bad, ae_title="A")
    assert_quotes(exc, bad)


# -- frozen values, replace, defaults -----------------------------------------


def test_node_defaults() -> None:
    node = dl.Node("pacs", ae_title="PACS")
    assert (node.host, node.port, node.retrieve, node.tls) == ("127.0.0.1", 104, "move", None)
    assert (node.max_connections, node.timeout, node.charset) == (4, 30.0, None)
    assert node.allow_store and node.allow_query and node.allow_retrieve
    assert node.address == "PACS@127.0.0.1:104"


@pytest.mark.parametrize(
    ("obj", "field", "value"),
    [
        (dl.Node("pacs", ae_title="PACS"), "port", 1),
        (dl.Node("pacs", ae_title="PACS"), "ae_title", "OTHER"),
        (dl.LocalIdentity(), "ae_title", "OTHER"),
        (dl.TLS(ca="/ca.pem"), "verify", False),
    ],
)
def test_values_are_frozen(obj: object, field: str, value: object) -> None:
    before = getattr(obj, field)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, value)
    assert getattr(obj, field) == before


def test_replace_validates_and_leaves_the_original_alone() -> None:
    node = dl.Node("pacs", ae_title="PACS", port=4242)
    moved = node.replace(port=11112, ae_title=" NEW ")
    assert (moved.port, moved.ae_title, moved.name) == (11112, "NEW", "pacs")
    assert (node.port, node.ae_title) == (4242, "PACS")
    with pytest.raises(dl.ValidationError) as exc:
        node.replace(port=70000)
    assert_quotes(exc, 70000)
    assert node.port == 4242


def test_nodes_compare_by_value() -> None:
    a = dl.Node("pacs", ae_title="PACS", host="h", port=1)
    b = dl.Node("pacs", ae_title=" PACS", host="h ", port=1)
    assert a == b
    assert hash(a) == hash(b)
    assert a != a.replace(port=2)


# -- TLS ------------------------------------------------------------------------


def test_tls_defaults_and_to_dict() -> None:
    tls = dl.TLS()
    assert tls.verify is True and tls.require_client_cert is False
    assert tls.to_dict() == {"verify": True, "require_client_cert": False}
    full = dl.TLS(ca="ca.pem", cert="c.pem", key="k.pem", server_hostname="pacs.example.org")
    assert full.to_dict() == {
        "ca": "ca.pem",
        "cert": "c.pem",
        "key": "k.pem",
        "verify": True,
        "server_hostname": "pacs.example.org",
        "require_client_cert": False,
    }


@pytest.mark.parametrize(("cert", "key"), [("c.pem", None), (None, "k.pem")])
def test_tls_cert_and_key_go_together(cert: str | None, key: str | None) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.TLS(cert=cert, key=key)
    assert_quotes(exc, cert if cert is not None else key)


def test_tls_require_client_cert_needs_a_ca() -> None:
    with pytest.raises(dl.ValidationError, match="require_client_cert"):
        dl.TLS(cert="c.pem", key="k.pem", require_client_cert=True)
    tls = dl.TLS(cert="c.pem", key="k.pem", ca="ca.pem", require_client_cert=True)
    assert tls.require_client_cert is True


@pytest.mark.parametrize("field", ["ca", "cert", "key"])
@pytest.mark.parametrize("bad", ["", "   ", 5])
def test_tls_paths_must_be_non_empty_strings(field: str, bad: object) -> None:
    # cert and key must come together: give the other one a good value.
    kwargs: dict[str, object] = {"cert": "c.pem", "key": "k.pem"} if field != "ca" else {}
    kwargs[field] = bad
    with pytest.raises(dl.ValidationError) as exc:
        dl.TLS(**kwargs)  # type: ignore[arg-type]
    assert_quotes(exc, bad)


def test_tls_server_hostname_is_validated() -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.TLS(server_hostname="not a host")
    assert_quotes(exc, "not a host")


def test_node_tls_must_be_a_tls_object() -> None:
    with pytest.raises(dl.ValidationError):
        dl.Node("n", ae_title="A", tls={"ca": "ca.pem"})  # type: ignore[arg-type]
    tls = dl.TLS(ca="ca.pem")
    assert dl.Node("n", ae_title="A", tls=tls).tls is tls


# -- LocalIdentity ------------------------------------------------------------


def test_local_identity_defaults() -> None:
    me = dl.LocalIdentity()
    assert (me.ae_title, me.port, me.host) == ("DICOMLAB", 11112, "127.0.0.1")


# -- Node.parse -----------------------------------------------------------------


def test_parse_ae_host_port() -> None:
    node = dl.Node.parse("ORTHANC@127.0.0.1:4242")
    assert (node.ae_title, node.host, node.port, node.name) == (
        "ORTHANC",
        "127.0.0.1",
        4242,
        "adhoc",
    )
    named = dl.Node.parse("PACS@pacs.example.org:104", name="main")
    assert (named.name, named.host, named.port) == ("main", "pacs.example.org", 104)


def test_parse_bracketed_ipv6() -> None:
    node = dl.Node.parse("PACS@[::1]:11112")
    assert (node.ae_title, node.host, node.port) == ("PACS", "::1", 11112)


@pytest.mark.parametrize(
    "bad",
    [
        "ORTHANC@127.0.0.1",
        "127.0.0.1:4242",
        "ORTHANC",
        "@127.0.0.1:4242",
        "ORTHANC@:4242",
        "ORTHANC@127.0.0.1:",
        "ORTHANC@127.0.0.1:port",
        "ORTHANC@127.0.0.1:-1",
        "ORTHANC@127.0.0.1:4242 extra",
    ],
)
def test_parse_refuses_malformed_addresses(bad: str) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node.parse(bad)
    assert_quotes(exc, bad)
    assert "AE@HOST:PORT" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("PACS@host:70000", 70000),
        ("PACS@host:0", 0),
        ("WAY_TOO_LONG_AE_TITLE@host:104", "WAY_TOO_LONG_AE_TITLE"),
    ],
)
def test_parse_validates_the_parts(text: str, bad: object) -> None:
    with pytest.raises(dl.ValidationError) as exc:
        dl.Node.parse(text)
    assert_quotes(exc, bad)


@given(ae=ae_titles(), host=hostnames | ipv4 | ipv6, port=ports)
def test_parse_of_address_round_trips(ae: str, host: str, port: int) -> None:
    node = dl.Node("n", ae_title=ae, host=host, port=port)
    assert dl.Node.parse(node.address, name="n") == node


def test_address_brackets_ipv6_hosts() -> None:
    node = dl.Node("n", ae_title="PACS", host="::1", port=4242)
    assert node.address == "PACS@[::1]:4242"
    assert dl.Node.parse(node.address, name="n") == node
    assert dl.Node("n", ae_title="PACS", host="pacs", port=104).address == "PACS@pacs:104"


def test_parse_ae_title_containing_at_sign() -> None:
    # '@' is a legal AE title character: the host starts after the last '@'.
    node = dl.Node("n", ae_title="RAD@SITE", host="pacs", port=104)
    assert node.address == "RAD@SITE@pacs:104"
    parsed = dl.Node.parse(node.address, name="n")
    assert (parsed.ae_title, parsed.host) == ("RAD@SITE", "pacs")
