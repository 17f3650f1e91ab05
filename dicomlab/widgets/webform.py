"""The DICOMweb part of the node form (:class:`DICOMwebForm`, used by the NodePanel)."""

from __future__ import annotations

import re
from typing import Any

import ipywidgets as w

import dicomlab as dl

__all__ = ["DICOMwebForm"]

_WEB_TEXT = ("username", "secret_env", "token_file", "ca", "cert", "key")
_WEB_NEEDLES = {
    "web_url": "DICOMweb url",
    "web_auth": "DICOMweb auth",
    "web_username": "username=",
    "web_secret_env": "secret_env=",
    "web_token_file": "token_file=",
    "web_cert": "cert=",
    "web_key": "key=",
    "timeout": "DICOMweb timeout",
}
"""Form field -> what a ``dl.DICOMweb`` error message says when it is about that field."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOTE = (
    "<span style='color:#667085;font-size:0.9em'>No password or token is stored: it is "
    "read from the environment variable (Secret env) or the token file at each request. "
    "The DICOMweb timeout is the node's Timeout.</span>"
)


class DICOMwebForm:
    """The DICOMweb part of the node form: a widget per field of ``dl.DICOMweb``.

    There is no field for a secret, only for the name of the environment variable
    holding it or the path of a token file (``token=``, a function, cannot be saved,
    so it is not offered). ``fields`` and ``problems()`` use the keys ``web_<field>``.
    """

    def __init__(self) -> None:
        def text(label: str, css: str, placeholder: str = "") -> w.Text:
            return w.Text(description=label, placeholder=placeholder).add_class(
                f"dl-node-web-{css}"
            )

        self.url = text("DICOMweb URL", "url", "http://host:8042/dicom-web (empty: DIMSE only)")
        self.auth = w.Dropdown(
            description="Web auth", options=["none", "basic", "bearer"], value="none"
        ).add_class("dl-node-web-auth")
        self.username = text("Web user", "user", "user name (basic auth)")
        self.secret_env = text(
            "Secret env",
            "secret-env",
            "name of the environment variable holding the password or token",
        )
        self.token_file = text("Token file", "token-file", "file holding the bearer token")
        self.ca = text("Web CA", "ca", "CA bundle .pem (empty: the system's)")
        self.cert = text("Web cert", "cert", "client cert.pem")
        self.key = text("Web key", "key", "client key.pem (empty: in the cert)")
        self.verify = w.Checkbox(description="Verify TLS", value=True).add_class(
            "dl-node-web-verify"
        )
        self.note = w.HTML(_NOTE).add_class("dl-node-web-note")
        self.fields: dict[str, Any] = {
            "web_url": self.url,
            "web_auth": self.auth,
            **{f"web_{k}": getattr(self, k) for k in _WEB_TEXT},
            "web_verify": self.verify,
        }

    def load(self, node: dl.Node | None) -> None:
        """Show ``node``'s DICOMweb settings (blank for a DIMSE-only node or ``None``)."""
        web = node.dicomweb if node is not None else None
        self.url.value = web.url if web else ""
        self.auth.value = web.auth if web else "none"
        for key in _WEB_TEXT:
            self.fields[f"web_{key}"].value = (getattr(web, key) or "") if web else ""
        self.verify.value = web.verify if web else True

    def given(self) -> dict[str, Any]:
        """The form's values as ``dl.DICOMweb`` arguments (an empty text: ``None``)."""
        values: dict[str, Any] = {"url": self.url.value.strip(), "auth": self.auth.value}
        values.update({k: self.fields[f"web_{k}"].value.strip() or None for k in _WEB_TEXT})
        values["verify"] = bool(self.verify.value)
        return values

    def build(self, timeout: float) -> dl.DICOMweb | None:
        """The service the form describes, ``None`` with no URL (raises ValidationError)."""
        given = self.given()
        return dl.DICOMweb(**given, timeout=timeout) if given["url"] else None

    def problems(self, timeout: float) -> dict[str, str]:
        """Every wrong DICOMweb field, with why (nothing is checked without a URL)."""
        given = self.given()
        if not given["url"]:
            return {}
        found: dict[str, str] = {}
        env = given["secret_env"]
        if env is not None and not _ENV_NAME.fullmatch(env):
            found["web_secret_env"] = (
                f"{env!r} is not an environment variable name: give the NAME of the "
                "variable holding the password or token (letters, digits, _), never the secret"
            )
        groups = (("url",), ("auth", "username", "secret_env", "token_file"), ("ca", "cert", "key"))
        for group in groups:  # each group on its own, through dl.DICOMweb
            try:
                dl.DICOMweb(
                    **{"url": "http://form", **{k: given[k] for k in group}}, timeout=timeout
                )
            except dl.ValidationError as exc:
                for key in self.where(exc, group):
                    found.setdefault(key, str(exc))
        if not found:
            try:
                self.build(timeout)
            except dl.ValidationError as exc:  # fields checked together
                found.update(dict.fromkeys(self.where(exc), str(exc)))
        return found

    def where(self, exc: BaseException, among: tuple[str, ...] = ()) -> list[str]:
        """The fields a ``dl.DICOMweb`` error is about (of ``among``, if given): those it
        names that are empty (basic auth without a user marks the user), else all it names."""
        given, text = self.given(), str(exc)
        keys = [f"web_{k}" for k in among] or list(_WEB_NEEDLES)
        named = [k for k in keys if k in _WEB_NEEDLES and _WEB_NEEDLES[k] in text]
        empty = [k for k in named if not given.get(k.removeprefix("web_"))]
        return empty or named or keys[:1]
