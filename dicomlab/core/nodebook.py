"""The node book: known nodes, a default node and our own identity, persisted as TOML.

The file lives in :func:`home` (``DICOMLAB_HOME`` or the user config folder) as
``nodes.toml``. Loading a file that cannot be understood raises
:class:`~dicomlab.errors.NodeBookError` naming the line; saving never
overwrites a file that changed on disk since it was loaded (``force=True``
does) and writes through a temporary file and a rename.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dicomlab.core import toml
from dicomlab.core.dicomweb import DICOMweb
from dicomlab.core.nodes import TLS, LocalIdentity, Node
from dicomlab.errors import NodeBookConflict, NodeBookError, ValidationError

__all__ = ["NodeBook", "home"]

FILENAME = "nodes.toml"
FORMAT_VERSION = 1

_NODE_KEYS = {
    "ae_title",
    "host",
    "port",
    "retrieve",
    "max_connections",
    "timeout",
    "charset",
    "allow_store",
    "allow_query",
    "allow_retrieve",
    "query_model",
    "find_cap",
    "tls",
    "dicomweb",
}
_TLS_KEYS = {"ca", "cert", "key", "verify", "server_hostname", "require_client_cert"}
_DICOMWEB_KEYS = {f.name for f in dataclasses.fields(DICOMweb)} - {"token"}  # (not saved)
_LOCAL_KEYS = {"ae_title", "port", "host"}
_TOP_KEYS = {"version", "default", "local", "nodes"}


def home() -> Path:
    """dicomlab's folder: ``$DICOMLAB_HOME``, else ``$XDG_CONFIG_HOME/dicomlab``, else
    ``~/.config/dicomlab``."""
    env = os.environ.get("DICOMLAB_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "dicomlab"


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class NodeBook:
    """Known nodes, the default node and our local identity.

    >>> book = NodeBook()
    >>> book.add(Node("pacs", ae_title="PACS", host="127.0.0.1", port=4242))
    >>> book.default = "pacs"
    >>> book["pacs"].port
    4242
    """

    def __init__(
        self,
        nodes: tuple[Node, ...] | list[Node] = (),
        default: str | None = None,
        local: LocalIdentity | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._nodes: dict[str, Node] = {}
        for node in nodes:
            self.add(node)
        self._default: str | None = None
        self.default = default
        self._local = local or LocalIdentity()
        self._path = Path(path) if path is not None else None
        self._loaded_digest: str | None = None

    # -- mapping-like access -------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}; known: {sorted(self._nodes)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"NodeBook(nodes={sorted(self._nodes)}, default={self._default!r}, path={self.path})"

    @property
    def nodes(self) -> list[Node]:
        """The nodes, in insertion order."""
        return list(self._nodes.values())

    @property
    def path(self) -> Path:
        """Where :meth:`save` writes (``home()/nodes.toml`` unless given)."""
        return self._path if self._path is not None else home() / FILENAME

    @property
    def default(self) -> str | None:
        """Name of the default node, or ``None``."""
        return self._default

    @default.setter
    def default(self, name: str | None) -> None:
        if name is not None and name not in self._nodes:
            raise ValidationError(
                f"default node {name!r} is not in the book; known: {sorted(self._nodes)}"
            )
        self._default = name

    @property
    def default_node(self) -> Node | None:
        """The default :class:`Node`, or ``None``."""
        return None if self._default is None else self._nodes[self._default]

    @property
    def local(self) -> LocalIdentity:
        """Our own AE title, host and port."""
        return self._local

    @local.setter
    def local(self, value: LocalIdentity) -> None:
        if not isinstance(value, LocalIdentity):
            raise ValidationError(f"local must be a dl.LocalIdentity, got {value!r}")
        self._local = value

    def find_ae(self, ae_title: str) -> Node | None:
        """The first node whose AE title is ``ae_title`` (case-sensitive), or ``None``."""
        return next((n for n in self._nodes.values() if n.ae_title == ae_title), None)

    # -- editing -------------------------------------------------------------
    def add(self, node: Node, *, replace: bool = False) -> None:
        """Add ``node``; a name already present is an error unless ``replace=True``."""
        if not isinstance(node, Node):
            raise ValidationError(f"expected a dl.Node, got {node!r}")
        with self._lock:
            if node.name in self._nodes and not replace:
                raise ValidationError(
                    f"a node named {node.name!r} is already in the book",
                    hint="use book.edit(name, ...) or add(node, replace=True)",
                )
            self._nodes[node.name] = node

    def edit(self, name: str, /, **changes: Any) -> Node:
        """Change fields of node ``name`` (validated); returns the new node."""
        with self._lock:
            old = self[name]
            if "name" in changes and changes["name"] != name:
                raise ValidationError("use book.rename(old, new) to change a node's name")
            new = old.replace(**changes)
            self._nodes[name] = new
            return new

    def remove(self, name: str) -> Node:
        """Remove node ``name`` (clearing the default if it was the default)."""
        with self._lock:
            node = self[name]
            del self._nodes[name]
            if self._default == name:
                self._default = None
            return node

    def rename(self, old: str, new: str) -> Node:
        """Rename a node, keeping its place, and the default if it was the default."""
        with self._lock:
            node = self[old]
            if new in self._nodes and new != old:
                raise ValidationError(f"a node named {new!r} is already in the book")
            renamed = node.replace(name=new)
            self._nodes = {
                (new if k == old else k): (renamed if k == old else v)
                for k, v in self._nodes.items()
            }
            if self._default == old:
                self._default = new
            return renamed

    # -- persistence ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The book as plain nested values (what is written to TOML)."""
        nodes: dict[str, Any] = {}
        for n in self._nodes.values():
            entry: dict[str, Any] = {
                "ae_title": n.ae_title,
                "host": n.host,
                "port": n.port,
                "retrieve": n.retrieve,
                "max_connections": n.max_connections,
                "timeout": n.timeout,
                "allow_store": n.allow_store,
                "allow_query": n.allow_query,
                "allow_retrieve": n.allow_retrieve,
                "query_model": n.query_model,
            }
            if n.charset is not None:
                entry["charset"] = n.charset
            if n.find_cap is not None:
                entry["find_cap"] = n.find_cap
            if n.tls is not None:
                entry["tls"] = n.tls.to_dict()
            if n.dicomweb is not None:
                entry["dicomweb"] = n.dicomweb.to_dict()
            nodes[n.name] = entry
        doc: dict[str, Any] = {"version": FORMAT_VERSION}
        if self._default is not None:
            doc["default"] = self._default
        doc["local"] = {
            "ae_title": self._local.ae_title,
            "port": self._local.port,
            "host": self._local.host,
        }
        doc["nodes"] = nodes
        return doc

    def dumps(self) -> str:
        """The TOML text :meth:`save` writes."""
        return toml.dumps(self.to_dict(), header="dicomlab node book (edit with care: see README)")

    @classmethod
    def loads(cls, text: str, path: str | os.PathLike[str] | None = None) -> NodeBook:
        """Parse TOML ``text``; errors name the line (and ``path`` when given)."""
        where = str(path) if path is not None else "<node book>"
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise NodeBookError(
                f"not valid TOML: {exc}",
                path=where,
                line=toml.parse_error_line(str(exc), text),
                hint="fix that line by hand, or move the file away to start a new book",
            ) from None
        return cls._from_doc(doc, text, where, path)

    @classmethod
    def _from_doc(
        cls, doc: dict[str, Any], text: str, where: str, path: str | os.PathLike[str] | None
    ) -> NodeBook:
        def fail(msg: str, table: tuple[str, ...], key: str | None = None) -> NodeBookError:
            return NodeBookError(msg, path=where, line=toml.line_of(text, table, key))

        unknown = set(doc) - _TOP_KEYS
        if unknown:
            k = sorted(unknown)[0]
            raise fail(f"unknown key {k!r} (known: {sorted(_TOP_KEYS)})", (), k)
        version = doc.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise fail(
                f"version {version!r} is not supported (expected {FORMAT_VERSION})", (), "version"
            )

        local_doc = doc.get("local", {})
        if not isinstance(local_doc, dict):
            raise fail(f"'local' must be a table, got {local_doc!r}", (), "local")
        bad = set(local_doc) - _LOCAL_KEYS
        if bad:
            k = sorted(bad)[0]
            raise fail(f"unknown key {k!r} in [local]", ("local",), k)
        try:
            local = LocalIdentity(**local_doc)
        except (ValidationError, TypeError) as exc:
            key = _field_of(exc)
            raise fail(f"[local]: {exc}", ("local",), key) from None

        nodes_doc = doc.get("nodes", {})
        if not isinstance(nodes_doc, dict):
            raise fail(f"'nodes' must be tables, got {nodes_doc!r}", (), "nodes")
        nodes: list[Node] = []
        for name, entry in nodes_doc.items():
            table = ("nodes", name)
            if not isinstance(entry, dict):
                raise fail(f"node {name!r} must be a table, got {entry!r}", ("nodes",), name)
            bad = set(entry) - _NODE_KEYS
            if bad:
                k = sorted(bad)[0]
                raise fail(f"unknown key {k!r} in node {name!r}", table, k)
            fields = dict(entry)
            tls_doc = fields.pop("tls", None)
            tls = None
            if tls_doc is not None:
                if not isinstance(tls_doc, dict) or set(tls_doc) - _TLS_KEYS:
                    raise fail(f"node {name!r}: bad [tls] table {tls_doc!r}", (*table, "tls"))
                try:
                    tls = TLS(**tls_doc)
                except (ValidationError, TypeError) as exc:
                    raise fail(f"node {name!r}: {exc}", (*table, "tls")) from None
            web_doc = fields.pop("dicomweb", None)
            web = None
            if web_doc is not None:
                if not isinstance(web_doc, dict) or set(web_doc) - _DICOMWEB_KEYS:
                    bad_web = f"node {name!r}: bad [dicomweb] table {web_doc!r}"
                    raise fail(bad_web, (*table, "dicomweb"))
                try:
                    web = DICOMweb(**web_doc)
                except (ValidationError, TypeError) as exc:
                    raise fail(f"node {name!r}: {exc}", (*table, "dicomweb")) from None
            try:
                nodes.append(Node(name=name, tls=tls, dicomweb=web, **fields))
            except (ValidationError, TypeError) as exc:
                key = _field_of(exc)
                raise fail(f"node {name!r}: {exc}", table, key) from None

        book = cls(nodes=nodes, local=local, path=path)
        default = doc.get("default")
        if default is not None and default not in book:
            raise fail(
                f"default {default!r} is not one of the nodes {sorted(book._nodes)}", (), "default"
            )
        book._default = default
        return book

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> NodeBook:
        """Load the book from ``path`` (default ``home()/nodes.toml``).

        A missing file gives an empty book that will be saved there.
        """
        p = Path(path) if path is not None else home() / FILENAME
        data = _read_bytes(p)
        if data is None:
            book = cls(path=p)
            return book
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise NodeBookError("not UTF-8 text", path=str(p), line=line) from None
        book = cls.loads(text, path=p)
        book._loaded_digest = _digest(data)
        return book

    def save(self, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
        """Write the book atomically; refuse when the file changed since it was loaded.

        Raises
        ------
        NodeBookConflict
            The file on disk is not the one this book was loaded from (edited by
            hand or by another kernel). ``force=True`` overwrites it.
        """
        p = Path(path) if path is not None else self.path
        with self._lock:
            text = self.dumps()
            current = _digest(_read_bytes(p))
            same_target = path is None or p == self.path
            if (
                not force
                and current is not None
                and (not same_target or current != self._loaded_digest)
            ):
                raise NodeBookConflict(
                    "the file changed on disk since this book was loaded (or was never loaded)",
                    path=str(p),
                    hint="NodeBook.load() it again and redo the edit, or save(force=True)",
                )
            p.parent.mkdir(parents=True, exist_ok=True)
            data = text.encode("utf-8")
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, p)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._path = p
            self._loaded_digest = _digest(data)
            return p


def _field_of(exc: Exception) -> str | None:
    """The field a construction error is about (for its line number), if known."""
    return getattr(exc, "field", None)
