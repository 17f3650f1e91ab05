"""Storage commitment as the SCP of a LocalPACS: answer N-ACTION at once, then report
what the archive holds in an N-EVENT-REPORT.

The report goes on a new association to the requester when the book knows its AE
title (the asynchronous way Orthanc and IHE RAD-10 expect: the requester may release as
soon as it has our N-ACTION response), else on the requester's own association, which
dicomlab's ``dl.store(commit=...)`` keeps open for it. An instance is committed when the
archive's index holds it with the same SOP class (written whole, and fsynced unless the
LocalPACS was started with ``fsync=False``); the others fail with reason 0x0112 (no
such object instance) or 0x0119 (class-instance conflict).

Each report is sent from a thread of its own, joined when the LocalPACS stops.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import build_role

from dicomlab.core import commitment as sc
from dicomlab.core.nodes import Node
from dicomlab.errors import ValidationError
from dicomlab.net.commit import when_sent
from dicomlab.net.transport import DicomlabAE
from dicomlab.server.handlers import own_connection

__all__ = ["Reporter", "handle_n_action"]

log = logging.getLogger(__name__)

STATUS_NO_SUCH_ACTION = 0x0123
STATUS_INVALID_ARGUMENT = 0x0115
STATUS_INVALID_INSTANCE = 0x0117
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_NOT_AUTHORIZED = 0x0124


@dataclass(frozen=True, slots=True)
class _Job:
    assoc: Any  # the requester's association
    node: Node | None  # the requester in the book: report on a new association
    request: sc.CommitRequest
    answered: threading.Event  # our N-ACTION response has gone


class Reporter:
    """Builds and delivers the reports of one LocalPACS: one short-lived thread per
    request (a peer slow to answer one report holds up no other), all joined at
    :meth:`stop`."""

    def __init__(self, ae_title: str, held: Any) -> None:
        self.ae_title = ae_title
        self._held = held  # SOP Instance UID -> SOP Class UID | None (the archive's index)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self.counters = {"commit_requests": 0, "commit_reports_failed": 0}

    def submit(self, job: _Job) -> None:
        thread = threading.Thread(
            target=self._run, args=(job,), name=f"{self.ae_title}-commitment", daemon=True
        )
        with self._lock:
            self.counters["commit_requests"] += 1
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Wait for the reports being delivered (each bounded by the peer's timeouts), at
        most ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def report(self, request: sc.CommitRequest) -> tuple[int, Any]:
        """The Event Type ID and Event Information for ``request``, from the index."""
        ok, bad = [], []
        for sop_class, sop_instance in request.references:
            held = self._held(sop_instance)
            if held is None:
                bad.append((sop_class, sop_instance, 0x0112))
            elif held != sop_class:
                bad.append((sop_class, sop_instance, 0x0119))
            else:
                ok.append((sop_class, sop_instance))
        return sc.report_dataset(request.transaction_uid, ok, bad)

    def _run(self, job: _Job) -> None:
        try:
            delivered = self._deliver(job)
        except Exception:
            log.exception("storage commitment report %s failed", job.request.transaction_uid)
            delivered = False
        if not delivered:
            with self._lock:
                self.counters["commit_reports_failed"] += 1

    def _deliver(self, job: _Job) -> bool:
        job.answered.wait(5.0)  # the requester sees our N-ACTION response first
        event_type, info = self.report(job.request)
        transaction = job.request.transaction_uid
        if job.node is not None:
            return self._on_new_association(job.node, event_type, info, transaction)
        assoc = job.assoc
        if not assoc.is_established:
            log.error(
                "storage commitment report %s: the requester released its association and "
                "is not in the book, so there is nowhere to send the report",
                transaction,
            )
            return False
        status, _ = assoc.send_n_event_report(
            info, event_type, sc.PUSH_MODEL, sc.PUSH_MODEL_INSTANCE
        )
        return _answered(status, transaction, "its association")

    def _on_new_association(self, node: Node, event_type: int, info: Any, transaction: str) -> bool:
        ae = DicomlabAE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = node.timeout
        ae.add_requested_context(sc.PUSH_MODEL)
        # PS3.4 J.3.3: the SCP opening an association to report proposes the SCP role.
        role = build_role(sc.PUSH_MODEL, scp_role=True)
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=[role])
        if not assoc.is_established:
            log.error(
                "storage commitment report %s: cannot associate with %s", transaction, node.address
            )
            return False
        try:
            status, _ = assoc.send_n_event_report(
                info, event_type, sc.PUSH_MODEL, sc.PUSH_MODEL_INSTANCE
            )
            return _answered(status, transaction, node.address)
        finally:
            if assoc.is_established:
                assoc.release()


def _answered(status: Any, transaction: str, where: str) -> bool:
    if "Status" not in status:
        log.error("storage commitment report %s: no answer from %s", transaction, where)
        return False
    if int(status.Status) != 0:
        log.error(
            "storage commitment report %s: %s answered 0x%04X", transaction, where, status.Status
        )
        return False
    log.info("storage commitment report %s delivered to %s", transaction, where)
    return True


def handle_n_action(event: Any, policy: Any, reporter: Reporter) -> tuple[int, None]:
    """EVT_N_ACTION: a Request Storage Commitment. Checked first (a malformed request gets
    a failure status with the reason logged, and the server goes on); the report follows
    from the reporter's thread."""
    calling = str(event.assoc.requestor.ae_title).strip()
    request = event.request
    if str(request.RequestedSOPClassUID) != str(sc.PUSH_MODEL):
        return STATUS_NO_SUCH_ACTION, None
    if str(request.RequestedSOPInstanceUID) != str(sc.PUSH_MODEL_INSTANCE):
        log.warning("N-ACTION from %s on instance %s", calling, request.RequestedSOPInstanceUID)
        return STATUS_INVALID_INSTANCE, None
    if request.ActionTypeID != sc.ACTION_REQUEST:
        return STATUS_NO_SUCH_ACTION, None
    if not policy.permits(calling, "store", event.assoc):
        log.warning("storage commitment request from %s refused: not authorised", calling)
        return STATUS_NOT_AUTHORIZED, None
    try:
        parsed = sc.parse_request(event.action_information)
    except ValidationError as exc:
        log.warning("storage commitment request from %s refused: %s", calling, exc)
        return STATUS_INVALID_ARGUMENT, None
    except Exception as exc:  # an Action Information that does not decode
        log.warning("storage commitment request from %s refused: cannot decode: %s", calling, exc)
        return STATUS_PROCESSING_FAILURE, None
    node = None if own_connection(event.assoc) else policy.node_for(calling)
    reporter.submit(_Job(event.assoc, node, parsed, when_sent(event.assoc, "N_ACTION_RSP")))
    return 0x0000, None
