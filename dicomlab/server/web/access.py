"""Who may use a LocalPACS's web port: users with roles, share tokens for some studies.

- Users (``view``, ``upload``, ``admin``) are kept in ``ROOT/web.json`` with an scrypt
  hash of their password (hashlib.scrypt, n=2**14, r=8, p=1, a 16-byte salt); a
  password checked once is remembered (as its SHA-256) for five minutes, so a viewer's
  hundreds of requests cost one scrypt.
- Share tokens are 32 random bytes (URL-safe text); only their SHA-256 is kept. A token
  grants viewing and downloading its studies only, until it expires or is revoked.
- Grants that live only as long as the LocalPACS (``ephemeral``): what
  ``viewer_url`` hands this process's own user, never written anywhere.
- Wrong passwords are slowed down: after 3 failures for a user name (or from an
  address), each further attempt waits 0.5 s, doubling to 8 s, until one succeeds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from dicomlab.errors import ValidationError

__all__ = ["ROLES", "Access", "Grant", "ShareToken", "WebUser"]

Role = Literal["view", "upload", "admin"]
ROLES: tuple[Role, ...] = ("view", "upload", "admin")
_CAN = {"view": {"view"}, "upload": {"view", "upload"}, "admin": {"view", "upload", "admin"}}
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_REMEMBER_S = 300.0


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class WebUser:
    name: str
    role: Role
    salt: str  # hex
    hash: str  # hex scrypt


@dataclass(frozen=True, slots=True)
class ShareToken:
    """A share link's token as stored: its public id, the SHA-256 of its secret, the
    studies it opens, when it stops working, whether it was revoked."""

    id: str
    digest: str
    studies: tuple[str, ...]
    created: float
    expires: float
    revoked: bool = False
    label: str = ""

    def valid(self, at: float) -> bool:
        return not self.revoked and at < self.expires


@dataclass(frozen=True, slots=True)
class Grant:
    """What one request may do: who it is (a user name or ``token:<id>``, for the log),
    its permissions, and the studies it may see (None: all)."""

    principal: str
    can: frozenset[str]
    studies: frozenset[str] | None = None

    def sees(self, study: str) -> bool:
        return self.studies is None or study in self.studies


class Access:
    """Users and tokens of one LocalPACS web port (thread-safe; persisted atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._users: dict[str, WebUser] = {}
        self._tokens: dict[str, ShareToken] = {}
        self._ephemeral: dict[str, tuple[Grant, float]] = {}  # digest -> grant, until
        self._remembered: dict[tuple[str, str], float] = {}
        self._failures: defaultdict[str, int] = defaultdict(int)
        self._load()

    # -- persistence -----------------------------------------------------------------
    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self._users = {u["name"]: WebUser(**u) for u in data.get("users", [])}
            tokens = [
                ShareToken(**{**t, "studies": tuple(t["studies"])}) for t in data.get("tokens", [])
            ]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ValidationError(
                f"cannot read the web users and tokens {self.path}: {exc}"
            ) from exc
        now = time.time()
        # expired tokens are kept a day for the record of why a link stopped working
        self._tokens = {t.id: t for t in tokens if t.expires > now - 86_400}

    def _save(self) -> None:
        data = {
            "users": [asdict(u) for u in self._users.values()],
            "tokens": [asdict(t) for t in self._tokens.values()],
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    # -- users -------------------------------------------------------------------------
    def add_user(self, name: str, password: str, role: Role = "view") -> None:
        if not name or not name.isprintable() or ":" in name or len(name) > 64:
            raise ValidationError(f"web user name {name!r}: 1-64 printable characters, no ':'")
        if role not in ROLES:
            raise ValidationError(f"web user role {role!r} must be one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise ValidationError("a web user's password needs at least 8 characters")
        salt = secrets.token_bytes(16)
        user = WebUser(name, role, salt.hex(), _scrypt(password, salt).hex())
        with self._lock:
            self._users[name] = user
            self._remembered = {k: v for k, v in self._remembered.items() if k[0] != name}
            self._save()

    def remove_user(self, name: str) -> None:
        with self._lock:
            if self._users.pop(name, None) is None:
                raise ValidationError(f"no web user {name!r}")
            self._remembered = {k: v for k, v in self._remembered.items() if k[0] != name}
            self._save()

    def users(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(u.name, u.role) for u in self._users.values()]

    def delay(self, name: str, address: str) -> float:
        """Seconds to wait before checking a password for ``name`` from ``address``."""
        with self._lock:
            n = max(self._failures[f"u:{name}"], self._failures[f"a:{address}"])
        return 0.0 if n < 3 else min(8.0, 0.5 * 2 ** (n - 3))

    def login(self, name: str, password: str, address: str) -> Grant | None:
        """The grant of a user whose password is right; None (and a failure counted)."""
        key = (name, _digest(password))
        now = time.monotonic()
        with self._lock:
            user = self._users.get(name)
            known = self._remembered.get(key, 0.0) > now
        if user is not None and not known:
            known = hmac.compare_digest(
                _scrypt(password, bytes.fromhex(user.salt)).hex(), user.hash
            )
        with self._lock:
            if user is None or not known:
                self._failures[f"u:{name}"] += 1
                self._failures[f"a:{address}"] += 1
                return None
            self._failures.pop(f"u:{name}", None)
            self._failures.pop(f"a:{address}", None)
            self._remembered[key] = now + _REMEMBER_S
        return Grant(name, frozenset(_CAN[user.role]))

    # -- tokens ------------------------------------------------------------------------
    def share(
        self, studies: tuple[str, ...], expires: float, label: str = ""
    ) -> tuple[ShareToken, str]:
        """A new share token for ``studies`` until ``expires`` (a time.time()): the stored
        value and the secret (shown once, never kept)."""
        secret = secrets.token_urlsafe(32)
        token = ShareToken(
            secrets.token_hex(4), _digest(secret), studies, time.time(), expires, label=label
        )
        with self._lock:
            self._tokens[token.id] = token
            self._save()
        return token, secret

    def ephemeral(self, studies: frozenset[str] | None, hours: float = 24.0) -> str:
        """A secret valid while this process serves (at most ``hours``): this kernel's own
        viewer links and DICOMweb node, with every permission, over ``studies`` (None:
        all)."""
        return self.session(Grant("owner", frozenset({"view", "upload", "admin"}), studies), hours)

    def session(self, grant: Grant, hours: float = 12.0) -> str:
        """A secret standing for ``grant`` (a logged-in user's cookie), kept in memory."""
        secret = secrets.token_urlsafe(32)
        with self._lock:
            self._ephemeral[_digest(secret)] = (grant, time.time() + hours * 3600)
        return secret

    def forget(self, secret: str) -> None:
        """End a session (``/logout``): its secret no longer grants anything."""
        with self._lock:
            self._ephemeral.pop(_digest(secret), None)

    def revoke(self, token_id: str) -> None:
        with self._lock:
            token = self._tokens.get(token_id)
            if token is None:
                raise ValidationError(f"no share token {token_id!r}")
            self._tokens[token_id] = replace(token, revoked=True)
            self._save()

    def tokens(self) -> list[ShareToken]:
        with self._lock:
            return list(self._tokens.values())

    def by_secret(self, secret: str) -> Grant | str:
        """The grant of a token's secret, or why there is none (``unknown``, ``expired``,
        ``revoked``)."""
        digest = _digest(secret)
        with self._lock:
            held = self._ephemeral.get(digest)
            if held is not None:
                return held[0] if time.time() < held[1] else "expired"
            token = next(
                (t for t in self._tokens.values() if hmac.compare_digest(t.digest, digest)), None
            )
        if token is None:
            return "unknown"
        if token.revoked:
            return "revoked"
        if time.time() >= token.expires:
            return "expired"
        return Grant(f"token:{token.id}", frozenset({"view"}), frozenset(token.studies))

    def describe(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                "id": t.id,
                "studies": len(t.studies),
                "label": t.label,
                "created": t.created,
                "expires": t.expires,
                "state": "revoked" if t.revoked else ("valid" if t.valid(now) else "expired"),
            }
            for t in self.tokens()
        ]
