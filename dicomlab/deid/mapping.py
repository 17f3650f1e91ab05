"""The pseudonym map: original -> replacement, kept apart from the data, the originals
encrypted with a key derived from the user's secret.

One Parquet table in a folder of parts (``part-*.parquet``, each written whole under a
temporary name and renamed, so a crash never leaves half of one): ``kind``
(``patient``, ``uid``, ``date_shift``), ``replacement`` (the pseudonym, the new UID, or
the shift in days: in clear, to join on), ``patient`` (the pseudonym it belongs to)
and ``original`` (Fernet-encrypted: only the secret's holder reads it). DuckDB or
pandas read the folder as it is.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dicomlab.errors import DeidentificationError

__all__ = ["MAP_COLUMNS", "MapStore", "fernet_for"]

log = logging.getLogger(__name__)

MAP_COLUMNS = ("kind", "replacement", "patient", "original", "created_at")


def fernet_for(secret: bytes) -> Fernet:
    """The map's cipher, derived from the secret (HKDF-SHA256), never stored."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dicomlab deid map").derive(
        secret
    )
    return Fernet(base64.urlsafe_b64encode(key))


class MapStore:
    """The map of one folder: entries gathered in memory, written as parts by
    :meth:`flush` (every ``every`` new entries, and at close). Thread-safe."""

    def __init__(self, folder: Path, secret: bytes, every: int = 500) -> None:
        self.folder = folder
        self._fernet = fernet_for(secret)
        self._every = every
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()
        self._pending: list[dict[str, object]] = []

    def add(self, kind: str, original: str, replacement: str, patient: str) -> None:
        key = (kind, replacement)
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            token = self._fernet.encrypt(original.encode("utf-8")).decode("ascii")
            self._pending.append(
                {
                    "kind": kind,
                    "replacement": replacement,
                    "patient": patient,
                    "original": token,
                    "created_at": pd.Timestamp.now(tz="UTC"),
                }
            )
            full = len(self._pending) >= self._every
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.folder / f".{name}.tmp"
        frame = pd.DataFrame(rows, columns=list(MAP_COLUMNS)).astype(
            {"kind": "string", "replacement": "string", "patient": "string", "original": "string"}
        )
        try:
            frame.to_parquet(tmp, index=False)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            with self._lock:
                self._pending = rows + self._pending  # kept for the next flush
            raise

    def read(self) -> pd.DataFrame:
        """Every entry written so far (newest last), originals still encrypted."""
        self.flush()
        parts = sorted(self.folder.glob("part-*.parquet"))
        if not parts:
            return pd.DataFrame(columns=list(MAP_COLUMNS))
        df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        return df.drop_duplicates(["kind", "replacement"], keep="first").reset_index(drop=True)

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise DeidentificationError(
                f"this secret does not open the pseudonym map in {self.folder}",
                hint="use the secret the data was de-identified with",
            ) from None
