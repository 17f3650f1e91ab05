"""How to reach a node's DICOMweb service: its root URL, authentication and TLS.

Secrets never live in the value (nor in nodes.toml): a password or a token is read
when a request is made, from an environment variable, a file or a function, so a
token that an outside tool or the function refreshes (as cloud stores need) is used
on the next request.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from dicomlab.errors import ConfigError, ValidationError

__all__ = ["DICOMweb"]

Auth = Literal["none", "basic", "bearer"]


@dataclass(frozen=True, slots=True)
class DICOMweb:
    """A DICOMweb service (QIDO-RS, WADO-RS, STOW-RS under one root).

    Parameters
    ----------
    url
        The service root, e.g. ``http://127.0.0.1:8042/dicom-web`` (``http`` or ``https``).
    auth
        ``"none"``, ``"basic"`` (``username`` and the password in ``secret_env``) or
        ``"bearer"`` (the token from ``token``, ``token_file`` or ``secret_env``).
    username, secret_env, token_file
        The user name; the name of the environment variable holding the password or
        token; a file holding the token (read at each request, so it may be refreshed).
    token
        A function returning the current bearer token, called at each request (for
        example one that refreshes a cloud store's access token when it nears
        expiry). A node with one cannot be saved in a NodeBook.
    verify, ca
        Check the server's TLS certificate (against ``ca``, a CA bundle file, if given).
    cert, key
        A client certificate (PEM) to present, and its private key (PEM; leave it out
        when ``cert`` holds both), for servers that authenticate clients by TLS.
    timeout
        Seconds to wait for a connection and for each response.
    """

    url: str
    auth: Auth = "none"
    username: str | None = None
    secret_env: str | None = None
    token_file: str | None = None
    verify: bool = True
    ca: str | None = None
    timeout: float = 30.0
    cert: str | None = None
    key: str | None = None
    token: Callable[[], str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(str(self.url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(
                f"DICOMweb url {self.url!r} must be http(s)://host[:port]/path",
                hint="for example http://127.0.0.1:8042/dicom-web",
            )
        object.__setattr__(self, "url", str(self.url).rstrip("/"))
        if self.auth not in ("none", "basic", "bearer"):
            raise ValidationError(f"DICOMweb auth {self.auth!r} must be none, basic or bearer")
        if self.auth == "basic" and not (self.username and self.secret_env):
            raise ValidationError(
                "DICOMweb basic auth needs username= and secret_env= (the name of the "
                "environment variable that holds the password; never the password itself)"
            )
        if self.auth == "bearer" and not (self.token or self.token_file or self.secret_env):
            raise ValidationError(
                "DICOMweb bearer auth needs token= (a function giving the token), "
                "token_file= or secret_env= (where the token is read from at each request)"
            )
        if self.token is not None and not callable(self.token):
            raise ValidationError(
                "DICOMweb token= must be a function returning the token (never the token "
                "itself: give token_file= or secret_env= for a fixed one)"
            )
        if self.key and not self.cert:
            raise ValidationError("DICOMweb key= is the private key of cert=: give cert= too")
        t = self.timeout
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 3600:
            raise ValidationError(f"DICOMweb timeout {t!r} must be seconds in (0, 3600]")
        object.__setattr__(self, "timeout", float(t))

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def secret(self) -> str | None:
        """The password or token, read now; raises ConfigError when it is not there."""
        if self.auth == "none":
            return None
        if self.token is not None and self.auth == "bearer":
            try:
                token = self.token()
            except Exception as exc:
                raise ConfigError(f"the DICOMweb token function failed: {exc}") from exc
            if not isinstance(token, str) or not token:
                raise ConfigError(
                    f"the DICOMweb token function gave {type(token).__name__}, not a token"
                )
            return token
        if self.token_file:
            path = Path(self.token_file).expanduser()
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the DICOMweb token file {path}: {exc}") from exc
        assert self.secret_env is not None
        value = os.environ.get(self.secret_env)
        if not value:
            raise ConfigError(
                f"the environment variable {self.secret_env} (the DICOMweb "
                f"{'password' if self.auth == 'basic' else 'token'}) is not set"
            )
        return value

    @property
    def client_cert(self) -> str | tuple[str, str] | None:
        """The client certificate as requests takes it (a path, or cert and key)."""
        if self.cert is None:
            return None
        return (self.cert, self.key) if self.key else self.cert

    def to_dict(self) -> dict[str, Any]:
        """Plain values for persistence (defaults and ``None`` left out; no secret).

        Raises ConfigError for a token function, which no file can hold."""
        if self.token is not None:
            raise ConfigError(
                f"the DICOMweb service {self.url} gets its token from a function, which "
                "cannot be saved: give token_file= or secret_env= to keep it in a NodeBook"
            )
        defaults = DICOMweb("http://x")
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name == "url" or getattr(self, f.name) != getattr(defaults, f.name)
        }
