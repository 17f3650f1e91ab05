"""Synthetic archive index rows (test and benchmark helper): what LocalPACS's index holds
for an instance, without a file, for loading 100,000 or 1,000,000 of them quickly through
``Index.add_many``."""

from __future__ import annotations

from typing import Any

__all__ = ["MODALITIES", "index_row"]

MODALITIES = ("CT", "MR", "CR", "US", "DX")


def index_row(i: int, per_study: int = 20, per_series: int = 4) -> dict[str, Any]:
    """Instance ``i``: ``per_study`` instances a study, ``per_series`` a series, the
    series' modalities in turn, 700 patients, study dates spread over 2025."""
    study, series = i // per_study, i // per_series
    return {
        "SOPInstanceUID": f"2.25.1{i}",
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
        "TransferSyntaxUID": "1.2.840.10008.1.2.1",
        "StudyInstanceUID": f"2.25.2{study}",
        "SeriesInstanceUID": f"2.25.3{series}",
        "PatientID": f"P{study % 700:05d}",
        "PatientName": f"SYNTH^PATIENT{study % 700}",
        "StudyDate": f"2025{1 + study % 12:02d}{1 + (study // 12) % 28:02d}",
        "StudyDescription": "SYNTHETIC STUDY",
        "AccessionNumber": f"A{study:08d}",
        "Modality": MODALITIES[series % len(MODALITIES)],
        "InstanceNumber": str(i % per_series + 1),
        "path": f"files/{study}/{i}.dcm",
        "size": 524_288,
        "received_at": "2026-01-01T00:00:00Z",
    }
