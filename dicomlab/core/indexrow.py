"""The index row of a DICOM instance: which attributes LocalPACS indexes, and how they
are read from a file or a received data set and checked before anything is stored.

``COLUMNS`` is the index's schema. ``file_header`` gives a whole file's row and transfer
syntax (the fast scan of :mod:`dicomlab.core.header`, else pydicom), ``prefix_header``
the same from the start of a file, ``header_row`` the row of a decoded header, and
``file_problem`` why a file must not be archived. ``dl.store`` and the archive share
them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomlab.core.header import decode_values, scan_header, wanted_tags
from dicomlab.core.structure import announced_mismatch, instance_problem, walk

__all__ = [
    "COLUMNS",
    "HEADER_KEYWORDS",
    "WANTED",
    "HeaderError",
    "checked_file",
    "file_header",
    "file_problem",
    "header_row",
    "is_valid_uid",
    "prefix_header",
    "prefix_uids",
    "read_header",
]

# keyword -> (VR, SQL type); order is the table's column order.
COLUMNS: dict[str, tuple[str, str]] = {
    "SOPInstanceUID": ("UI", "TEXT PRIMARY KEY"),
    "SOPClassUID": ("UI", "TEXT"),
    "TransferSyntaxUID": ("UI", "TEXT"),
    "StudyInstanceUID": ("UI", "TEXT NOT NULL"),
    "SeriesInstanceUID": ("UI", "TEXT NOT NULL"),
    "PatientID": ("LO", "TEXT"),
    "PatientName": ("PN", "TEXT"),
    "PatientBirthDate": ("DA", "TEXT"),
    "PatientSex": ("CS", "TEXT"),
    "StudyDate": ("DA", "TEXT"),
    "StudyTime": ("TM", "TEXT"),
    "AccessionNumber": ("SH", "TEXT"),
    "StudyID": ("SH", "TEXT"),
    "StudyDescription": ("LO", "TEXT"),
    "ReferringPhysicianName": ("PN", "TEXT"),
    "InstitutionName": ("LO", "TEXT"),
    "Modality": ("CS", "TEXT"),
    "SeriesNumber": ("IS", "TEXT"),
    "SeriesDescription": ("LO", "TEXT"),
    "SeriesDate": ("DA", "TEXT"),
    "SeriesTime": ("TM", "TEXT"),
    "BodyPartExamined": ("CS", "TEXT"),
    "InstanceNumber": ("IS", "TEXT"),
    "SpecificCharacterSet": ("CS", "TEXT"),
    "path": ("", "TEXT NOT NULL"),
    "size": ("", "INTEGER"),
    "received_at": ("", "TEXT"),
    "source_ae": ("", "TEXT"),
}


EXPLICIT_LE_UID = "1.2.840.10008.1.2.1"
IMPLICIT_LE_UID = "1.2.840.10008.1.2"
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_HEADER_KEYWORDS = [k for k, (vr, _) in COLUMNS.items() if vr and k != "TransferSyntaxUID"]


class HeaderError(ValueError):
    """A dataset that cannot be archived (missing or invalid UIDs)."""


def is_valid_uid(value: object) -> bool:
    """A UID as PS3.5 9.1 allows: digits and dots, at most 64 characters."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID_RE.match(value))


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


HEADER_KEYWORDS = _HEADER_KEYWORDS
WANTED = wanted_tags(tuple(HEADER_KEYWORDS))
"""Tag -> keyword of what the index holds, as the one-walk readers want it (read only)."""


def header_row(ds: Dataset | dict[str, str]) -> dict[str, Any]:
    """Index values of a (header-only) dataset or of already decoded values.

    Raises :class:`HeaderError` when a UID is missing or invalid.
    """
    if isinstance(ds, Dataset):
        row: dict[str, Any] = {k: _text(ds, k) for k in _HEADER_KEYWORDS}
    else:
        row = {k: ds.get(k, "") for k in _HEADER_KEYWORDS}
    _check_uids(row)
    return row


_UID_KEYWORDS = ["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"]
"""The UIDs every archived or sent instance must carry, in the order they are checked."""


def _check_uids(values: Mapping[str, Any]) -> None:
    """Raise :class:`HeaderError` for the first of :data:`_UID_KEYWORDS` missing or invalid."""
    for key in _UID_KEYWORDS:
        if not is_valid_uid(values[key]):
            raise HeaderError(f"{key} {values[key]!r} is missing or not a valid UID")


def read_header(data: bytes | BytesIO | str | Path) -> tuple[Dataset, str]:
    """Read only the index attributes of a DICOM file (no pixel data): dataset, TS UID."""
    src: Any = BytesIO(data) if isinstance(data, bytes) else data
    ds = dcmread(
        src, stop_before_pixels=True, specific_tags=["SpecificCharacterSet", *_HEADER_KEYWORDS]
    )
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    return ds, ts


def _meta(data: bytes) -> tuple[int, dict[str, str]] | None:
    """Where the data set starts, and the file meta's UIDs, for a PS3.10 file (else None)."""
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        return None
    meta_end = 144 + int.from_bytes(data[140:144], "little")  # after the meta group length
    meta = scan_header(memoryview(data)[132:meta_end], EXPLICIT_LE_UID, _META_KEYWORDS)
    return (meta_end, meta) if meta is not None else None


_META_KEYWORDS = ["MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"]


def _prefix_scan(
    data: bytes, keywords: list[str], whole: bool
) -> tuple[dict[str, str], str] | None:
    """The decoded ``keywords`` of a PS3.10 file's data set and its transfer syntax, by
    the fast scan from the file's start, or ``None`` when the scan cannot answer."""
    found = _meta(data)
    if found is None:
        return None
    meta_end, meta = found
    ts = meta.get("TransferSyntaxUID", "")
    if not ts:
        return None
    values = scan_header(memoryview(data)[meta_end:], ts, keywords, whole)
    return (values, ts) if values is not None else None


def prefix_header(data: bytes, whole: bool = True) -> tuple[dict[str, Any], str] | None:
    """Index row and transfer syntax by the fast scan, or ``None`` (then use pydicom).

    ``whole=False``: ``data`` is only the start of the file.
    """
    scanned = _prefix_scan(data, _HEADER_KEYWORDS, whole)
    return (header_row(scanned[0]), scanned[1]) if scanned is not None else None


def prefix_uids(data: bytes, whole: bool = True) -> tuple[str, str, str] | None:
    """SOP Class UID, SOP Instance UID and transfer syntax of a file from its start, by
    the fast scan (what sending it needs), or ``None`` (then use :func:`prefix_header`).

    The scan stops after the Series Instance UID and decodes the four UIDs only; like
    :func:`header_row` it raises :class:`HeaderError` when one is missing or invalid.
    ``whole=False``: ``data`` is only the start of the file."""
    scanned = _prefix_scan(data, _UID_KEYWORDS, whole)
    if scanned is None:
        return None
    values, ts = scanned
    _check_uids(values)
    return values["SOPClassUID"], values["SOPInstanceUID"], ts


def file_problem(data: bytes, row: dict[str, Any], ts: str) -> str | None:
    """Why a whole file must not be archived: its data set does not parse to its end, or
    its meta information names another SOP class or instance (None: it may be)."""
    found = _meta(data)
    if found is None and data[128:132] == b"DICM":
        return None  # a meta group without its group length: pydicom read it, we cannot walk
    start, meta = found if found is not None else (0, {})
    problem = instance_problem(
        memoryview(data)[start:],
        ts or IMPLICIT_LE_UID,
        row,
        sop_class=meta.get("MediaStorageSOPClassUID") or None,
        sop_instance=meta.get("MediaStorageSOPInstanceUID") or None,
        announced_by="the file meta",
    )
    return None if problem is None else problem[1]


def checked_file(data: bytes) -> tuple[dict[str, Any], str, str | None]:
    """:func:`file_header` and :func:`file_problem` of a whole file in one walk of its
    data set (an import, a STOW-RS or WADO-RS part): index row, transfer syntax, and why
    it must not be archived (None: it may be), as a received C-STORE is checked.

    A file without a meta group the walk can read is read by pydicom, then walked.
    Raises :class:`HeaderError` (missing or invalid UIDs; a data set broken before them
    says where it breaks) and pydicom's ``InvalidDicomError``, as :func:`file_header`.
    """
    found = _meta(data)
    ts = found[1].get("TransferSyntaxUID", "") if found is not None else ""
    if found is None or not ts:
        row, ts = file_header(data)
        return row, ts, file_problem(data, row, ts)
    start, meta = found
    walked = walk(memoryview(data)[start:], ts, WANTED)
    try:
        row = header_row(decode_values(walked.found, WANTED))
    except HeaderError:
        if walked.error is not None:
            raise HeaderError(walked.error) from None
        raise
    if walked.error is not None:
        return row, ts, walked.error
    mismatch = announced_mismatch(
        row,
        sop_class=meta.get("MediaStorageSOPClassUID") or None,
        sop_instance=meta.get("MediaStorageSOPInstanceUID") or None,
        announced_by="the file meta",
    )
    return row, ts, None if mismatch is None else mismatch[1]


def file_header(data: bytes) -> tuple[dict[str, Any], str]:
    """Index row and transfer syntax of a whole DICOM file (fast path, then pydicom)."""
    fast = prefix_header(data)
    if fast is not None:
        return fast
    ds, ts = read_header(data)
    return header_row(ds), ts
