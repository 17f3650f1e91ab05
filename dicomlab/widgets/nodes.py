"""NodePanel: the node book as a form — insert, edit, delete, default, echo, a C-MOVE
check, our identity."""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from typing import Any

import ipywidgets as w

import dicomlab as dl
from dicomlab.widgets.base import Panel, explain, plural, style
from dicomlab.widgets.webform import DICOMwebForm

__all__ = ["NodePanel"]

_NEW = "(new node)"
_DEFAULTS: dict[str, Any] = {
    "name": "",
    "ae_title": "",
    "host": "127.0.0.1",
    "port": 104,
    "retrieve": "move",
    "max_connections": 4,
    "timeout": 30.0,
    "charset": "",
    "tls_ca": "",
    "tls_cert": "",
    "tls_key": "",
}
"""What a new node's form starts from (a blank form, not the last node's values)."""


class NodePanel(Panel):
    """Known nodes with insert / edit / delete, echo, default node, and our own AE and port.

    Changes are validated field by field (every wrong field at once, highlighted, its
    reason beside it) and saved to the book's file; "(new node)" is a blank form.
    ``echo_results`` keeps the last echo per node.
    """

    css = "dl-nodes"

    def __init__(self, book: dl.NodeBook | None = None, local: dl.LocalPACS | None = None) -> None:
        super().__init__()
        self.book = book if book is not None else dl.NodeBook.load()
        self.local = local
        self.echo_results: dict[str, dl.EchoResult] = {}
        self.move_results: dict[str, dl.MoveCheck] = {}
        self.nodes = w.Select(description="Nodes", rows=8).add_class("dl-node-list")
        self.name = w.Text(description="Name").add_class("dl-node-name")
        self.ae_title = w.Text(description="AE title").add_class("dl-node-ae")
        self.host = w.Text(description="Host", value="127.0.0.1").add_class("dl-node-host")
        self.port = w.BoundedIntText(description="Port", min=1, max=65535, value=104).add_class(
            "dl-node-port"
        )
        self.retrieve = w.Dropdown(description="Retrieve", options=["move", "get"])
        self.max_connections = w.BoundedIntText(description="Max conn.", min=1, max=64, value=4)
        self.timeout = w.BoundedFloatText(description="Timeout s", min=0.1, max=3600, value=30)
        self.charset = w.Text(description="Charset", placeholder="e.g. ISO_IR 192")
        self.tls_ca = w.Text(description="TLS CA", placeholder="ca.pem (empty: no TLS)")
        self.tls_cert = w.Text(description="TLS cert", placeholder="client cert.pem")
        self.tls_key = w.Text(description="TLS key", placeholder="client key.pem")
        self.web = DICOMwebForm()
        self.save_button = w.Button(description="Save", button_style="primary").add_class(
            "dl-node-save"
        )
        self.delete_button = w.Button(description="Delete").add_class("dl-node-delete")
        self.default_button = w.Button(description="Make default").add_class("dl-node-default")
        self.echo_button = w.Button(description="Echo", icon="plug").add_class("dl-node-echo")
        self.echo_status = w.HTML("").add_class("dl-echo-status")
        self.move_button = w.Button(
            description="Check C-MOVE",
            icon="exchange",
            tooltip="ask the node to C-MOVE one small instance to our LocalPACS",
        ).add_class("dl-node-check-move")
        self.move_status = w.HTML("").add_class("dl-move-status")
        self.our_ae = w.Text(description="Our AE", value=self.book.local.ae_title)
        self.our_port = w.BoundedIntText(
            description="Our port", min=0, max=65535, value=self.book.local.port
        )
        self.save_local = w.Button(description="Save our identity").add_class("dl-local-save")

        self.nodes.observe(self._on_select, names="value")
        self.save_button.on_click(lambda _: self.save())
        self.delete_button.on_click(lambda _: self.delete())
        self.default_button.on_click(lambda _: self.make_default())
        self.echo_button.on_click(lambda _: self.echo())
        self.move_button.on_click(lambda _: self.check_move())
        self.save_local.on_click(lambda _: self.save_identity())
        self.fields: dict[str, Any] = {
            "name": self.name,
            "ae_title": self.ae_title,
            "host": self.host,
            "port": self.port,
            "retrieve": self.retrieve,
            "max_connections": self.max_connections,
            "timeout": self.timeout,
            "charset": self.charset,
            "tls_ca": self.tls_ca,
            "tls_cert": self.tls_cert,
            "tls_key": self.tls_key,
            **self.web.fields,
        }
        # An error line beside each field: every problem at once, where it is.
        self.field_errors = {k: w.HTML("").add_class("dl-field-error") for k in self.fields}
        form = w.VBox(
            [
                style(),
                *(w.HBox([field, self.field_errors[k]]) for k, field in self.fields.items()),
                self.web.note,
                w.HBox([self.save_button, self.delete_button, self.default_button]),
                w.HBox([self.echo_button, self.echo_status]),
                w.HBox([self.move_button, self.move_status]),
            ]
        )
        ours = w.VBox([w.HTML("<b>This computer</b>"), self.our_ae, self.our_port, self.save_local])
        self.ui = w.VBox([w.HBox([self.nodes, form]), ours, self.message]).add_class(self.css)
        self._refresh()

    # -- list ----------------------------------------------------------------------
    def _label(self, node: dl.Node) -> str:
        star = " *" if node.name == self.book.default else ""
        return f"{node.name}{star}"

    def _refresh(self, select: str | None = None) -> None:
        options = [(self._label(n), n.name) for n in self.book] + [(_NEW, _NEW)]
        self.nodes.options = options
        self.nodes.value = select if select is not None else _NEW

    def _on_select(self, change: dict[str, Any]) -> None:
        name = change["new"]
        self._mark({})
        if name in (None, _NEW):
            for key, value in _DEFAULTS.items():
                self.fields[key].value = value
            self.web.load(None)
            self.echo_status.value = ""
            self.move_status.value = ""
            return
        node = self.book[name]
        self.name.value, self.ae_title.value = node.name, node.ae_title
        self.host.value, self.port.value = node.host, node.port
        self.retrieve.value = node.retrieve
        self.max_connections.value, self.timeout.value = node.max_connections, node.timeout
        self.charset.value = node.charset or ""
        tls = node.tls
        self.tls_ca.value = (tls.ca or "") if tls else ""
        self.tls_cert.value = (tls.cert or "") if tls else ""
        self.tls_key.value = (tls.key or "") if tls else ""
        self.web.load(node)
        self.echo_status.value = _echo_html(self.echo_results.get(name))
        self.move_status.value = _move_html(self.move_results.get(name))

    # -- actions -------------------------------------------------------------------
    def form_node(self) -> dl.Node:
        """The node the form describes (raises ``dl.ValidationError`` naming the field)."""
        tls = None
        if self.tls_ca.value or self.tls_cert.value or self.tls_key.value:
            tls = dl.TLS(
                ca=self.tls_ca.value or None,
                cert=self.tls_cert.value or None,
                key=self.tls_key.value or None,
            )
        return dl.Node(
            self.name.value.strip(),
            ae_title=self.ae_title.value,
            host=self.host.value.strip(),
            port=int(self.port.value),
            retrieve=self.retrieve.value,
            max_connections=int(self.max_connections.value),
            timeout=float(self.timeout.value),
            charset=self.charset.value.strip() or None,
            tls=tls,
            dicomweb=self.web.build(float(self.timeout.value)),
        )

    def problems(self) -> dict[str, str]:
        """Every field the form has wrong, with why (empty when the form is a valid node)."""
        has_web = bool(self.web.url.value.strip())  # then no AE title is needed
        base = dl.Node(
            "form", ae_title="FORM", dicomweb=dl.DICOMweb("http://form") if has_web else None
        )
        values: dict[str, Any] = {
            "name": self.name.value.strip(),
            "ae_title": self.ae_title.value,
            "host": self.host.value.strip(),
            "port": int(self.port.value),
            "retrieve": self.retrieve.value,
            "max_connections": int(self.max_connections.value),
            "timeout": float(self.timeout.value),
            "charset": self.charset.value.strip() or None,
        }
        found: dict[str, str] = {}
        for key, value in values.items():
            try:
                base.replace(**{key: value})  # each field on its own, through dl.Node
            except dl.ValidationError as exc:
                found[key] = str(exc)
        if "ae_title" in found and not has_web and not values["ae_title"].strip():
            found["ae_title"] += " (give an AE title for DIMSE, a DICOMweb URL, or both)"
        for key, why in self.web.problems(float(self.timeout.value)).items():
            found.setdefault(key, why)
        if not found:
            try:
                self.form_node()
            except dl.ValidationError as exc:  # TLS files, or fields checked together
                if str(exc).startswith("DICOMweb"):
                    found.update(dict.fromkeys(self.web.where(exc), str(exc)))
                    return found
                key = getattr(exc, "field", None) or "tls_ca"
                found["tls_" + key if key in ("ca", "cert", "key") else key] = str(exc)
        return found

    def _mark(self, found: dict[str, str]) -> None:
        for key, field in self.fields.items():
            self.field_errors[key].value = html.escape(found.get(key, ""))
            if key in found:
                field.add_class("dl-invalid")
            else:
                field.remove_class("dl-invalid")

    def save(self) -> dl.Node | None:
        """Insert or update the node in the form and save the book; ``None`` if invalid
        (every wrong field is then marked, with its reason beside it)."""
        found = self.problems()
        self._mark(found)
        if found:
            n = len(found)
            self.say(f"{plural(n, 'field')} to fix: {', '.join(found)}", "error")
            return None
        try:
            node = self.form_node()
            old = self.nodes.value
            if old not in (None, _NEW) and old != node.name:
                self.book.rename(old, node.name)
            self.book.add(node, replace=node.name in self.book)
            self.book.save()
        except (dl.ConfigError, KeyError) as exc:  # ConfigError: also a token function
            field = getattr(exc, "field", None)
            self.say(f"{field + ': ' if field else ''}{explain(exc)}", "error")
            return None
        self._refresh(node.name)
        env = node.dicomweb.secret_env if node.dicomweb else None
        if env and env not in os.environ:
            self.say(f"saved {node.name} ({node.address}); {env} is not set here", "warn")
        else:
            self.say(f"saved {node.name} ({node.address})", "ok")
        return node

    def delete(self) -> None:
        name = self.nodes.value
        if name in (None, _NEW):
            self.say("select a node to delete", "error")
            return
        self.book.remove(name)
        self.book.save()
        self.echo_results.pop(name, None)
        self.move_results.pop(name, None)
        self._refresh()
        self.say(f"deleted {name}", "ok")

    def make_default(self) -> None:
        name = self.nodes.value
        if name in (None, _NEW):
            self.say("select a node first", "error")
            return
        self.book.default = name
        self.book.save()
        self._refresh(name)
        self.say(f"{name} is the default node", "ok")

    def echo(self) -> None:
        """C-ECHO the node in the form (a DICOMweb-only node: the QIDO-RS capability probe),
        in the background; shows online/offline and why."""
        self._check(
            "echo",
            self.echo_status,
            self.echo_results,
            _echo_html,
            lambda node: dl.echo(node, calling_ae=self.book.local.ae_title),
        )

    def check_move(self) -> None:
        """Ask the node in the form to C-MOVE one small instance to our LocalPACS (the
        panel's ``local``, else the kernel's), in the background; shows whether it
        arrived, or what to register where."""

        def work(node: dl.Node) -> dl.MoveCheck:
            local = self.local if self.local is not None else dl.LocalPACS.default(self.book)
            return dl.check_move(node, into=local, calling_ae=self.book.local.ae_title)

        self._check("check C-MOVE from", self.move_status, self.move_results, _move_html, work)

    def _check(
        self,
        label: str,
        status: w.HTML,
        results: dict[str, Any],
        shown: Callable[[Any], str],
        work: Callable[[dl.Node], Any],
    ) -> None:
        """Run a check of the node in the form in the background: its result (with ``ok``
        and ``detail``) kept per node and shown in ``status``; a check that could not run
        (e.g. a secret's variable is not set) says "not checked" and why."""
        try:
            node = self.form_node()
        except dl.ValidationError as exc:
            self.say(explain(exc), "error")
            return
        status.value = "…"

        def done(result: Any) -> None:
            results[node.name] = result
            status.value = shown(result)
            self.say(result.detail, "ok" if result.ok else "error")

        def failed(exc: BaseException) -> None:
            status.value = (
                f"<span style='color:#b42318'>● not checked: {html.escape(str(exc))}</span>"
            )

        self.run(f"{label} {node.address}", lambda: work(node), done, failed)

    def save_identity(self) -> None:
        try:
            self.book.local = dl.LocalIdentity(
                ae_title=self.our_ae.value, port=int(self.our_port.value)
            )
            self.book.save()
        except dl.ValidationError as exc:
            self.say(explain(exc), "error")
            return
        self.say(f"we are {self.book.local.ae_title} on port {self.book.local.port}", "ok")


def _verdict(ok: bool, good: str, bad: str) -> str:
    """A green or red dot and its words (HTML-escaped)."""
    colour, words = ("#1a7f37", good) if ok else ("#b42318", bad)
    return f"<span style='color:{colour}'>● {html.escape(words)}</span>"


def _echo_html(result: dl.EchoResult | None) -> str:
    if result is None:
        return ""
    return _verdict(
        result.ok, f"online ({result.latency_s * 1000:.0f} ms)", f"offline: {result.cause}"
    )


def _move_html(result: dl.MoveCheck | None) -> str:
    if result is None:
        return ""
    return _verdict(result.ok, f"C-MOVE works (from {result.seen_from})", f"C-MOVE: {result.cause}")
