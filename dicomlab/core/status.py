"""DIMSE statuses and association rejections, decoded to names and plain words (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "RejectReason",
    "StatusInfo",
    "decode_reject",
    "decode_status",
    "is_refusal",
    "status_category",
]

Category = Literal["success", "pending", "warning", "failure", "cancel"]

# PS3.7 Annex C and the service classes of PS3.4 (the codes users meet most).
_KNOWN: dict[int, tuple[str, str]] = {
    0x0000: ("Success", "the operation completed"),
    0xFF00: ("Pending", "more results follow"),
    0xFF01: ("Pending (optional keys unsupported)", "more results follow; some keys ignored"),
    0xFE00: ("Cancel", "the operation was cancelled"),
    0x0001: ("Warning: attribute list error", "the peer ignored some attributes"),
    0x0107: ("Warning: attribute list error", "the peer ignored some attributes"),
    0x0116: ("Warning: attribute value out of range", "a value was outside its range"),
    0xB000: (
        "Warning: sub-operations completed with failures",
        "some instances failed or gave warnings",
    ),
    0xB006: ("Warning: elements discarded", "the receiver discarded some data elements"),
    0xB007: ("Warning: data set does not match SOP class", "the receiver stored it anyway"),
    0x0105: ("Failure: no such attribute", "the peer does not know an attribute we sent"),
    0x0106: ("Failure: invalid attribute value", "an attribute value was refused"),
    0x0110: ("Failure: processing failure", "the peer failed while processing the request"),
    0x0111: ("Failure: duplicate SOP instance", "the peer already has this instance"),
    0x0112: ("Failure: no such SOP instance", "the instance does not exist on the peer"),
    0x0117: ("Failure: invalid object instance", "the instance UID is not valid"),
    0x0118: ("Failure: no such SOP class", "the peer does not support this SOP class"),
    0x0119: ("Failure: class-instance conflict", "the instance does not match its SOP class"),
    0x0122: ("Failure: SOP class not supported", "the peer does not support this SOP class"),
    0x0124: ("Failure: not authorized", "the peer refused us this operation"),
    0x0210: ("Failure: duplicate invocation", "the message ID was already in use"),
    0x0211: ("Failure: unrecognized operation", "the peer does not know this operation"),
    0x0212: ("Failure: mistyped argument", "the request was malformed"),
    0x0213: ("Failure: resource limitation", "the peer ran out of resources"),
    0xA700: ("Failure: out of resources", "the peer ran out of resources (often disk space)"),
    0xA701: (
        "Failure: out of resources (number of matches)",
        "the peer could not count the matches",
    ),
    0xA702: (
        "Failure: out of resources (sub-operations)",
        "the peer could not perform the sub-operations",
    ),
    0xA801: (
        "Failure: move destination unknown",
        "the PACS does not know our AE title: register it there (AE, host, port)",
    ),
    0xA900: ("Failure: identifier does not match SOP class", "the query keys were refused"),
    0xC000: ("Failure: unable to process", "the peer could not process the request"),
}


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """A decoded DIMSE status."""

    code: int
    category: Category
    name: str
    meaning: str

    def __str__(self) -> str:
        return f"0x{self.code:04X} {self.name}: {self.meaning}"


def status_category(code: int) -> Category:
    """The PS3.7 category of a DIMSE status code."""
    if code == 0x0000:
        return "success"
    if code in (0xFF00, 0xFF01):
        return "pending"
    if code == 0xFE00:
        return "cancel"
    if code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        return "warning"
    return "failure"


_REFUSALS = frozenset({0x0122, 0x0124, 0xA801})


def is_refusal(code: int) -> bool:
    """Whether a failure status is one of PS3.4's refusals (the peer would not do it:
    not authorised, SOP class not supported, out of resources, destination unknown),
    as opposed to a failure while doing it."""
    return code in _REFUSALS or 0xA700 <= code <= 0xA7FF


def decode_status(code: int) -> StatusInfo:
    """Name and meaning of a DIMSE status; unknown codes are decoded by range."""
    if not isinstance(code, int) or not 0 <= code <= 0xFFFF:
        raise ValueError(f"status {code!r} is not a 16-bit DIMSE status")
    category = status_category(code)
    if code in _KNOWN:
        name, meaning = _KNOWN[code]
    elif 0xA700 <= code <= 0xA7FF:
        name, meaning = "Failure: out of resources", "the peer ran out of resources"
    elif 0xA900 <= code <= 0xA9FF:
        name, meaning = "Failure: data set does not match SOP class", "the peer refused the data"
    elif 0xC000 <= code <= 0xCFFF:
        name, meaning = "Failure: cannot understand", "the peer could not process the request"
    elif category == "warning":
        name, meaning = "Warning", "the operation completed with a warning"
    else:
        name, meaning = "Failure", "the operation failed"
    return StatusInfo(code, category, name, meaning)


@dataclass(frozen=True, slots=True)
class RejectReason:
    """A decoded A-ASSOCIATE-RJ (result, source, reason)."""

    result: int
    source: int
    reason: int
    transient: bool
    text: str
    hint: str


_REJECT_TEXT: dict[tuple[int, int], tuple[str, str]] = {
    (1, 1): ("no reason given", "check that the peer knows our AE title, host and port"),
    (1, 2): ("application context name not supported", "the peer does not speak DICOM as asked"),
    (1, 3): (
        "calling AE title not recognised",
        "register our AE title (and host) on the peer, or use the AE title it expects",
    ),
    (1, 7): (
        "called AE title not recognised",
        "the peer's AE title in the node is wrong: check it (AE titles are case-sensitive)",
    ),
    (2, 1): ("no reason given (ACSE)", "check the peer's logs"),
    (2, 2): ("protocol version not supported", "the peer does not support DICOM UL version 1"),
    (3, 1): ("temporary congestion", "the peer is busy: try again later"),
    (3, 2): (
        "local limit exceeded",
        "the peer has too many associations open: lower max_connections or try later",
    ),
}


def decode_reject(result: int, source: int, reason: int) -> RejectReason:
    """Plain-English reading of an association rejection."""
    text, hint = _REJECT_TEXT.get(
        (source, reason), (f"reason {reason} from source {source}", "check the peer's logs")
    )
    return RejectReason(result, source, reason, result == 2, text, hint)
