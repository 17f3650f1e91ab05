"""Tiny synthetic CT instances (8x8 pixels) in bulk, for cohort-sized tests and
benchmarks: thousands of studies made in seconds, added straight to an archive."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from dicomlab.server.localpacs import LocalPACS

__all__ = ["study_uid", "tiny_archive", "tiny_instance"]


def study_uid(study: int) -> str:
    return f"2.25.7{study}"


def tiny_instance(study: int, k: int) -> bytes:
    """Study ``study``'s instance ``k`` (one series a study), as a DICOM file's bytes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(f"2.25.9{study}.{k}")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"2.25.9{study}.{k}"
    ds.StudyInstanceUID = study_uid(study)
    ds.SeriesInstanceUID = f"2.25.8{study}"
    ds.PatientID = f"SYN{study % 500:04d}"
    ds.PatientName = f"SYNTH^COHORT{study % 500}"
    ds.StudyDate = f"2025{1 + study % 12:02d}{1 + study % 28:02d}"
    ds.Modality = "CT"
    ds.InstanceNumber = k + 1
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.full((8, 8), study % 4096, dtype=np.uint16).tobytes()
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def tiny_archive(root: str | Path, n_studies: int, per_study: int = 2, **options: Any) -> LocalPACS:
    """A LocalPACS (not started) at ``root`` holding ``n_studies`` tiny studies."""
    lp = LocalPACS(root, **options)
    for s in range(n_studies):
        for k in range(per_study):
            added = lp.archive.add_file(tiny_instance(s, k), "SYNTH")
            if added.status not in ("stored", "duplicate"):
                raise RuntimeError(f"tiny instance {s}.{k} not added: {added.error}")
    return lp
