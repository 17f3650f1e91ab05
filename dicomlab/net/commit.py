"""Storage commitment as the SCU: ask for it on an open association, and wait for the
report, which the PACS sends on the same association or on a new one to our AE title
(PS3.4 J.3.3 allows both; Orthanc always opens a new one).

Reports reach the request that waits for them through one table of pending
transactions per process: :func:`report_received` is the N-EVENT-REPORT handler both of
the requesting association and of every LocalPACS (the one a new association reaches).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydicom.uid import generate_uid
from pynetdicom import evt

from dicomlab.core import commitment as sc
from dicomlab.core.nodes import Node
from dicomlab.core.status import decode_status
from dicomlab.errors import ValidationError
from dicomlab.net.transport import quiesce

__all__ = ["Outcome", "report_received", "request", "when_sent"]

log = logging.getLogger(__name__)


def when_sent(assoc: Any, message: str) -> threading.Event:
    """An event set once ``assoc`` has written a ``message`` (e.g. ``"N_EVENT_REPORT_RSP"``)
    to its connection: pynetdicom answers some requests from a thread of its own, and the
    peer must have our answer before anything that follows (a report, a release).

    EVT_DIMSE_SENT comes before the message is handed to the DUL, so a release asked for
    at that point could go out first (pynetdicom's state machine then refuses to send
    the answer after it: "Invalid event 'Evt9' for the current state 'Sta7'"); the event
    is set at the first write that follows it (EVT_DATA_SENT, after the socket took it:
    the answer is one PDU)."""
    sent = threading.Event()
    handed = threading.Event()

    def seen(event: Any) -> None:
        if type(event.message).__name__ == message:
            handed.set()
            assoc.unbind(evt.EVT_DIMSE_SENT, seen)

    def written(event: Any) -> None:
        if handed.is_set():
            sent.set()
            assoc.unbind(evt.EVT_DATA_SENT, written)

    assoc.bind(evt.EVT_DIMSE_SENT, seen)
    assoc.bind(evt.EVT_DATA_SENT, written)
    return sent


_Received = tuple[sc.CommitReport, threading.Event]
"""A report, and the event set once our answer to it has gone."""


class _Pending:
    """Transactions waiting for their report (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list[_Received]]] = {}

    def expect(self, transaction: str) -> threading.Event:
        done = threading.Event()
        with self._lock:
            self._waiting[transaction] = (done, [])
        return done

    def take(self, transaction: str) -> _Received | None:
        with self._lock:
            _, got = self._waiting.pop(transaction, (None, []))
        return got[0] if got else None

    def deliver(self, report: sc.CommitReport, answered: threading.Event) -> bool:
        with self._lock:
            entry = self._waiting.get(report.transaction_uid)
            if entry is None:
                return False
            entry[1].append((report, answered))
        entry[0].set()
        return True


_PENDING = _Pending()


class Outcome:
    """How one commitment request ended: the report, or why there is none."""

    def __init__(self, report: sc.CommitReport | None = None, error: str | None = None) -> None:
        self.report, self.error = report, error

    def verdict(self, sop_instance: str) -> dict[str, Any]:
        """An outcome row's ``committed`` and ``commit_error`` for ``sop_instance``."""
        if self.report is None:
            return {"committed": False, "commit_error": self.error}
        if sop_instance in self.report.committed:
            return {"committed": True, "commit_error": None}
        reason = self.report.reason(sop_instance) or "not in the commitment report"
        return {"committed": False, "commit_error": reason}


def report_received(event: Any) -> tuple[int, None]:
    """EVT_N_EVENT_REPORT: a storage commitment report for a request of this process."""
    try:
        report = sc.parse_report(event.event_information, event.event_type)
    except ValidationError as exc:
        log.warning("storage commitment report refused: %s", exc)
        return 0x0110, None  # Processing failure
    except Exception as exc:  # undecodable event information
        log.warning("storage commitment report refused: cannot decode it: %s", exc)
        return 0x0110, None
    if not _PENDING.deliver(report, when_sent(event.assoc, "N_EVENT_REPORT_RSP")):
        log.warning("storage commitment report for unknown transaction %s", report.transaction_uid)
    return 0x0000, None


def request(assoc: Any, node: Node, references: list[tuple[str, str]], timeout: float) -> Outcome:
    """Ask ``node`` to commit ``references`` (the Push Model context must be accepted on
    ``assoc``) and wait up to ``timeout`` seconds for the report, on this association
    or another. The association stays open while waiting (it is the caller's)."""
    transaction = str(generate_uid(prefix=None))
    info = sc.request_dataset(transaction, references)
    done = _PENDING.expect(transaction)
    try:
        assoc.bind(evt.EVT_N_EVENT_REPORT, report_received)
        quiesce(assoc)
        status, _ = assoc.send_n_action(
            info, sc.ACTION_REQUEST, sc.PUSH_MODEL, sc.PUSH_MODEL_INSTANCE
        )
        if "Status" not in status:
            return Outcome(
                error=f"no answer from {node.address} to the commitment request (it broke "
                f"the association off: a PACS often does for an AE title it does not allow "
                f"storage commitment; register ours, {assoc.requestor.ae_title.strip()!r})"
            )
        code = int(status.Status)
        if decode_status(code).category not in ("success", "warning"):
            return Outcome(
                error=f"{node.address} refused the commitment request: {decode_status(code)}"
            )
        if not done.wait(timeout):
            return Outcome(
                error=f"no storage commitment report from {node.address} within {timeout:g} s "
                "(a PACS that reports on a new association needs our AE title registered "
                "with this machine's address and a running dl.LocalPACS on that port)"
            )
        got = _PENDING.take(transaction)
        if got is None:
            return Outcome(error="report lost")
        report, answered = got
        # pynetdicom answers a report from a thread of its own: our caller may release
        # the association next, and the release must not overtake that answer.
        answered.wait(5.0)
        return Outcome(report)
    finally:
        _PENDING.take(transaction)
