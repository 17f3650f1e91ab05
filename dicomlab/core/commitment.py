"""Storage Commitment Push Model (PS3.4 J, PS3.3 C.14.1): the request and the report
as data sets, built and read apart from any network (pure).

>>> ds = request_dataset("2.25.1", [("1.2.840.10008.5.1.4.1.1.2", "1.2.3")])
>>> parse_request(ds).references
(('1.2.840.10008.5.1.4.1.1.2', '1.2.3'),)
>>> event, report = report_dataset("2.25.1", [("1.2.840.10008.5.1.4.1.1.2", "1.2.3")], [])
>>> event, parse_report(report, event).committed
(1, frozenset({'1.2.3'}))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicomlab.core.indexrow import is_valid_uid
from dicomlab.errors import ValidationError

__all__ = [
    "FAILURE_REASONS",
    "PUSH_MODEL",
    "PUSH_MODEL_INSTANCE",
    "CommitReport",
    "CommitRequest",
    "parse_report",
    "parse_request",
    "report_dataset",
    "request_dataset",
]

PUSH_MODEL = UID("1.2.840.10008.1.20.1")
"""Storage Commitment Push Model SOP Class."""
PUSH_MODEL_INSTANCE = UID("1.2.840.10008.1.20.1.1")
"""Its well-known SOP Instance, the one N-ACTION and N-EVENT-REPORT address."""
ACTION_REQUEST = 1
"""Action Type ID: Request Storage Commitment."""
EVENT_ALL_COMMITTED = 1
EVENT_SOME_FAILED = 2

FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0119: "class-instance conflict",
    0x0122: "referenced SOP class not supported",
    0x0131: "duplicate transaction UID",
    0x0213: "resource limitation",
}
"""Failure Reason (0008,1197) values (PS3.3 C.14.1.1)."""

Reference = tuple[str, str]
"""(SOP Class UID, SOP Instance UID)."""


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """An N-ACTION's Action Information: the transaction and the instances."""

    transaction_uid: str
    references: tuple[Reference, ...]


@dataclass(frozen=True, slots=True)
class CommitReport:
    """An N-EVENT-REPORT's Event Information: what was committed, and what failed with
    which Failure Reason."""

    transaction_uid: str
    committed: frozenset[str]
    failed: dict[str, int] = field(default_factory=dict)

    def reason(self, sop_instance: str) -> str | None:
        """Why ``sop_instance`` was not committed (None: it was, or it is not in the
        report)."""
        code = self.failed.get(sop_instance)
        if code is None:
            return None
        return f"0x{code:04X} {FAILURE_REASONS.get(code, 'failure')}"


def _sequence(refs: Iterable[Reference], reasons: dict[str, int] | None = None) -> list[Dataset]:
    items = []
    for sop_class, sop_instance in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        if reasons is not None:
            item.FailureReason = reasons[sop_instance]
        items.append(item)
    return items


def request_dataset(transaction_uid: str, references: Iterable[Reference]) -> Dataset:
    """The Action Information of a Request Storage Commitment N-ACTION."""
    refs = list(references)
    if not is_valid_uid(transaction_uid):
        raise ValidationError(f"transaction UID {transaction_uid!r} is not a UID")
    if not refs:
        raise ValidationError("a storage commitment request needs at least one instance")
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = _sequence(refs)
    return ds


def _refs(ds: Dataset, keyword: str, what: str) -> list[tuple[str, str, Dataset]]:
    out = []
    for n, item in enumerate(ds.get(keyword) or []):
        sop_class = str(item.get("ReferencedSOPClassUID", "") or "").strip()
        sop_instance = str(item.get("ReferencedSOPInstanceUID", "") or "").strip()
        if not is_valid_uid(sop_class) or not is_valid_uid(sop_instance):
            raise ValidationError(
                f"{what} item {n}: ReferencedSOPClassUID {sop_class!r} and "
                f"ReferencedSOPInstanceUID {sop_instance!r} must both be UIDs"
            )
        out.append((sop_class, sop_instance, item))
    return out


def parse_request(ds: Dataset | None) -> CommitRequest:
    """Read an N-ACTION's Action Information; a ValidationError says what is wrong."""
    if ds is None:
        raise ValidationError("the storage commitment request carries no data set")
    transaction = str(ds.get("TransactionUID", "") or "").strip()
    if not is_valid_uid(transaction):
        raise ValidationError(f"TransactionUID {transaction!r} is missing or not a UID")
    refs = _refs(ds, "ReferencedSOPSequence", "ReferencedSOPSequence")
    if not refs:
        raise ValidationError("ReferencedSOPSequence is missing or empty")
    return CommitRequest(transaction, tuple((c, i) for c, i, _ in refs))


def report_dataset(
    transaction_uid: str, committed: Iterable[Reference], failed: Iterable[tuple[str, str, int]]
) -> tuple[int, Dataset]:
    """The Event Type ID and Event Information of the report: 1 when every instance was
    committed, else 2 with the Failed SOP Sequence and each Failure Reason."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ok = list(committed)
    bad = list(failed)
    if ok:
        ds.ReferencedSOPSequence = _sequence(ok)
    if not bad:
        return EVENT_ALL_COMMITTED, ds
    ds.FailedSOPSequence = _sequence(((c, i) for c, i, _ in bad), {i: r for _, i, r in bad})
    return EVENT_SOME_FAILED, ds


def parse_report(ds: Dataset | None, event_type: int | None) -> CommitReport:
    """Read an N-EVENT-REPORT's Event Information; a ValidationError says what is wrong."""
    if ds is None:
        raise ValidationError("the storage commitment report carries no data set")
    if event_type not in (EVENT_ALL_COMMITTED, EVENT_SOME_FAILED):
        raise ValidationError(f"Event Type ID {event_type!r} is not a storage commitment result")
    transaction = str(ds.get("TransactionUID", "") or "").strip()
    if not is_valid_uid(transaction):
        raise ValidationError(f"TransactionUID {transaction!r} is missing or not a UID")
    committed = frozenset(i for _, i, _ in _refs(ds, "ReferencedSOPSequence", "committed"))
    failed = {
        i: int(item.get("FailureReason", 0x0110) or 0x0110)
        for _, i, item in _refs(ds, "FailedSOPSequence", "FailedSOPSequence")
    }
    return CommitReport(transaction, committed, failed)
