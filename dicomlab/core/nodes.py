"""Nodes: who we talk to, and who we are. Frozen values validated at construction."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from pydicom.charset import python_encoding

from dicomlab.core.dicomweb import DICOMweb
from dicomlab.errors import ValidationError

__all__ = [
    "TLS",
    "LocalIdentity",
    "Node",
    "RetrieveMethod",
    "validate_ae_title",
    "validate_host",
    "validate_port",
]

RetrieveMethod = Literal["move", "get"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_MAX_TIMEOUT_S = 3600.0
_MAX_CONNECTIONS = 64


@contextmanager
def _field(name: str) -> Iterator[None]:
    """Tag a ValidationError raised inside with the field it is about."""
    try:
        yield
    except ValidationError as exc:
        if exc.field is None:
            exc.field = name
        raise


def validate_ae_title(value: object, what: str = "AE title") -> str:
    """Return ``value`` as a valid AE title or raise :class:`ValidationError` quoting it.

    PS3.5 AE (Application Entity): 1-16 characters of the default character
    repertoire, no backslash, no control characters, not blank. Leading and
    trailing spaces are not significant and are removed.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {value!r}")
    if any(ord(c) > 127 for c in value):
        raise ValidationError(
            f"{what} {value!r} contains non-ASCII characters",
            hint="AE titles use plain ASCII letters, digits and a few symbols",
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError(f"{what} {value!r} contains control characters")
    if "\\" in value:
        raise ValidationError(f"{what} {value!r} contains a backslash, which DICOM forbids")
    stripped = value.strip(" ")
    if not stripped:
        raise ValidationError(f"{what} {value!r} is blank")
    if len(stripped) > 16:
        raise ValidationError(
            f"{what} {value!r} is {len(stripped)} characters long; the limit is 16"
        )
    return stripped


def validate_port(value: object, what: str = "port", allow_zero: bool = False) -> int:
    """Return ``value`` as a TCP port (1-65535, or 0 where allowed) or raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be an integer, got {value!r}")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise ValidationError(f"{what} {value!r} is outside {low}-65535")
    return value


def validate_host(value: object) -> str:
    """Return ``value`` as a host name or address, or raise."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"host must be a non-empty string, got {value!r}")
    host = value.strip()
    if len(host) > 253 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in host):
        raise ValidationError(f"host {value!r} is not a valid host name or address")
    return host


def _validate_charset(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or value not in python_encoding:
        known = ", ".join(sorted(k for k in python_encoding if k.startswith("ISO_IR"))[:6])
        raise ValidationError(
            f"character set {value!r} is not a DICOM Specific Character Set term",
            hint=f"use a defined term such as {known}, ...",
        )
    return value


def _optional_path(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"TLS {what} must be a file path, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class TLS:
    """TLS settings for one side of an association.

    For a node (we are the client): ``ca`` verifies the server, ``cert``/``key``
    are our client certificate when the server asks for one. For LocalPACS (we are
    the server): ``cert``/``key`` are the server's, ``ca`` verifies clients and
    ``require_client_cert`` demands one.

    Paths are checked when the connection is made, not here, so a book can be
    loaded on a machine where the files live elsewhere.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True
    server_hostname: str | None = None
    require_client_cert: bool = False

    def __post_init__(self) -> None:
        for field in ("ca", "cert", "key"):
            value = getattr(self, field)
            object.__setattr__(self, field, _optional_path(value, field))
        if (self.cert is None) != (self.key is None):
            raise ValidationError(
                f"TLS cert {self.cert!r} and key {self.key!r} go together: give both or neither"
            )
        if self.require_client_cert and self.ca is None:
            raise ValidationError(
                "TLS require_client_cert=True needs ca= to verify client certificates"
            )
        if self.server_hostname is not None:
            validate_host(self.server_hostname)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for persistence (``None`` fields left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class Node:
    """A DICOM node (a remote application entity) we talk to.

    Parameters
    ----------
    name
        Short name used in the node book and in logs (letters, digits, ``_.-``).
    ae_title, host, port
        The peer's AE title, host name or address, and port.
    retrieve
        ``"move"`` (C-MOVE to our LocalPACS; the peer must know our AE) or ``"get"``.
    tls
        :class:`TLS` settings, or ``None`` for plain TCP.
    max_connections
        Concurrent associations we open to this node (1-64).
    timeout
        Seconds to wait for connect, association and each DIMSE response.
    charset
        Specific Character Set to send in queries (``None``: default repertoire).
    allow_store, allow_query, allow_retrieve
        What this node may do when it calls our LocalPACS.
    query_model
        Preferred Query/Retrieve information model, ``"study"`` (Study Root) or
        ``"patient"`` (Patient Root); the other is proposed too, as a fallback.
    dicomweb
        The node's DICOMweb service (:class:`DICOMweb`), if it has one. A node with a
        DICOMweb service needs no AE title: it then speaks only DICOMweb.
    find_cap
        The most matches the node returns for one query, when known (its archive's
        result limit): ``dl.find(..., plan="auto")`` splits a query whose answer reaches
        it. ``None``: learned from the node's answers (see :func:`dicomlab.find`).
    """

    name: str
    ae_title: str = ""
    host: str = "127.0.0.1"
    port: int = 104
    retrieve: RetrieveMethod = "move"
    tls: TLS | None = None
    max_connections: int = 4
    timeout: float = 30.0
    charset: str | None = None
    allow_store: bool = True
    allow_query: bool = True
    allow_retrieve: bool = True
    query_model: Literal["study", "patient"] = "study"
    dicomweb: DICOMweb | None = None
    find_cap: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ValidationError(
                f"node name {self.name!r} is not valid",
                hint="use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        with _field("dicomweb"):
            if self.dicomweb is not None and not isinstance(self.dicomweb, DICOMweb):
                raise ValidationError(f"dicomweb must be a dl.DICOMweb, got {self.dicomweb!r}")
        if self.ae_title or self.dicomweb is None:  # a DICOMweb-only node has no AE title
            with _field("ae_title"):
                object.__setattr__(self, "ae_title", validate_ae_title(self.ae_title))
        with _field("host"):
            object.__setattr__(self, "host", validate_host(self.host))
        with _field("port"):
            validate_port(self.port)
        with _field("retrieve"):
            if self.retrieve not in ("move", "get"):
                raise ValidationError(f"retrieve {self.retrieve!r} must be 'move' or 'get'")
        with _field("query_model"):
            if self.query_model not in ("study", "patient"):
                raise ValidationError(
                    f"query_model {self.query_model!r} must be 'study' or 'patient'"
                )
        with _field("tls"):
            if self.tls is not None and not isinstance(self.tls, TLS):
                raise ValidationError(f"tls must be a dl.TLS or None, got {self.tls!r}")
        mc = self.max_connections
        with _field("max_connections"):
            if isinstance(mc, bool) or not isinstance(mc, int) or not 1 <= mc <= _MAX_CONNECTIONS:
                raise ValidationError(f"max_connections {mc!r} must be an integer in 1-64")
        t = self.timeout
        with _field("timeout"):
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= _MAX_TIMEOUT_S:
                raise ValidationError(f"timeout {t!r} must be a number of seconds in (0, 3600]")
        object.__setattr__(self, "timeout", float(t))
        with _field("charset"):
            object.__setattr__(self, "charset", _validate_charset(self.charset))
        cap = self.find_cap
        with _field("find_cap"):
            if cap is not None and (
                isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 10_000_000
            ):
                raise ValidationError(f"find_cap {cap!r} must be None or an integer in 1-10000000")
        for flag in ("allow_store", "allow_query", "allow_retrieve"):
            with _field(flag):
                if not isinstance(getattr(self, flag), bool):
                    value = getattr(self, flag)
                    raise ValidationError(f"{flag} must be True or False, got {value!r}")

    @property
    def address(self) -> str:
        """``AE@host:port``, the form the CLI accepts (a DICOMweb-only node: its URL)."""
        if not self.ae_title and self.dicomweb is not None:
            return self.dicomweb.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"

    @property
    def speaks_dimse(self) -> bool:
        return bool(self.ae_title)

    def replace(self, **changes: Any) -> Node:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def parse(cls, text: str, name: str | None = None) -> Node:
        """Build a node from ``AE@HOST:PORT`` (``ORTHANC@127.0.0.1:4242``, ``PACS@[::1]:104``)."""
        # The AE title may itself contain '@': the host starts after the last one.
        match = re.fullmatch(r"(?P<ae>.+)@(?P<host>\[[^\]@]+\]|[^:@\[\]]+):(?P<port>\d+)", text)
        if not match:
            raise ValidationError(f"{text!r} is not of the form AE@HOST:PORT")
        host = match["host"].strip("[]")
        return cls(
            name=name or "adhoc",
            ae_title=match["ae"],
            host=host,
            port=int(match["port"]),
        )


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """Who we are: our AE title, and the host/port our LocalPACS listens on.

    ``port=0`` means "no fixed port" (a LocalPACS picks a free one).
    """

    ae_title: str = "DICOMLAB"
    port: int = 11112
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        with _field("ae_title"):
            object.__setattr__(self, "ae_title", validate_ae_title(self.ae_title, "our AE title"))
        with _field("port"):
            validate_port(self.port, "our port", allow_zero=True)
        with _field("host"):
            object.__setattr__(self, "host", validate_host(self.host))
