"""The network log's rows for DICOMweb, in the same two tables as DIMSE.

One HTTP client session (one worker's connection pool to one service) is one
``associations`` row (``peer_host``/``peer_port`` of the service, ``tls`` for https,
outcome ``released`` when it closes); each request is one ``operations`` row whose
``service`` is ``QIDO-RS``, ``WADO-RS`` or ``STOW-RS``, ``status`` the HTTP status, and
``n_matches``/``n_completed``/``bytes`` what it carried. As for DIMSE, nothing patient
identifying is logged: never a query's values, only UIDs, statuses, counts, bytes and
timings.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dicomlab.core.logschema import http_category
from dicomlab.log import writer as _writer
from dicomlab.log.record import current_redaction, new_row, now

__all__ = ["WebLog"]

_COUNTS = frozenset({"n_matches", "n_completed", "n_failed", "bytes"})


class WebLog:
    """The log of one DICOMweb client session (thread-safe; a no-op when the log is off)."""

    def __init__(self, url: str, role: str = "SCU", local_ae: str | None = None) -> None:
        """``url``: the service (ours, for ``role="SCP"``: a LocalPACS's web port)."""
        self.where = _writer.folder()
        self.role = role
        parts = urlsplit(url)
        self.row = new_row(role, tls=parts.scheme == "https")
        self.row.update(
            peer_host=parts.hostname,
            peer_port=parts.port or (443 if parts.scheme == "https" else 80),
        )
        if local_ae is not None:
            self.row["local_ae"] = local_ae
        self._lock = threading.Lock()
        self._closed = False
        self._announced: set[Path] = set()

    def request(
        self,
        service: str,
        status: int | None,
        started: datetime,
        *,
        counts: Mapping[str, int] | None = None,
        study: str | None = None,
        error: str | None = None,
        principal: str | None = None,
        duration: float | None = None,
    ) -> None:
        """One request that ``started`` and ended now (``status`` None: no answer);
        ``counts``: any of ``n_matches``, ``n_completed``, ``n_failed`` and ``bytes``;
        ``principal``: the web user or ``token:<id>`` a server answered (never a secret)."""
        where = self._where()
        if where is None:
            return
        counts = counts or {}
        unknown = set(counts) - _COUNTS
        if unknown:
            raise ValueError(f"unknown log counts {sorted(unknown)}")
        nbytes = counts.get("bytes")
        ended = now()
        redact = current_redaction()
        if redact is not None and study:
            study = redact(study)
        op: dict[str, Any] = {
            "association_id": self.row["association_id"],
            "role": self.role,
            "service": service,
            "study_instance_uid": study,
            "started_at": started,
            "ended_at": ended,
            "duration_s": duration if duration is not None else (ended - started).total_seconds(),
            "status": status,
            "status_category": http_category(status) if status is not None else None,
            "n_matches": counts.get("n_matches"),
            "n_completed": counts.get("n_completed"),
            "n_failed": counts.get("n_failed"),
            "bytes": nbytes,
            "job_id": self.row["job_id"],
            "error": error,
            "principal": principal,
        }
        with self._lock:
            if self.row.get("established_at") is None and status is not None:
                self.row["established_at"] = started
            if (service == "STOW-RS") == (self.role == "SCU"):
                self.row["bytes_sent"] += nbytes or 0
            else:
                self.row["bytes_received"] += nbytes or 0
        if self.role == "SCP" and where not in self._announced:
            # A server lives as long as the kernel: its associations row goes out with its
            # first request to each log folder (open: no end, no outcome), so that its
            # requests join their server (local_ae) from the start.
            self._announced.add(where)
            row = dict(self.row, established_at=started, bytes_sent=None, bytes_received=None)
            _writer.writer().add("associations", row, where)
        _writer.writer().add("operations", op, where)

    def _where(self) -> Path | None:
        """Where rows go: a client session's folder is that of its start; a server, which
        lives for the kernel's life, follows ``dl.log.configure`` as it changes."""
        return self.where if self.role == "SCU" else _writer.folder()

    def close(self) -> None:
        """The session ended: its associations row (idempotent; a server's went out with
        its first request)."""
        where = self._where()
        if self.role == "SCP":
            return
        with self._lock:
            if self._closed or where is None:
                return
            self._closed = True
            row = dict(self.row)
        row["ended_at"] = now()
        row["outcome"] = "released" if row.get("established_at") else "failed"
        _writer.writer().add("associations", row, where)
