"""Synthetic, deterministic DICOM studies for demos, tests and benchmarks.

No patient data: names, IDs and dates are invented from a seed. The same
``seed`` and ``today`` always give the same objects, byte for byte.

>>> from datetime import date
>>> sets = list(generate(2, seed=1, today=date(2026, 1, 15)))
>>> sets[0].StudyDate
'20260115'
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
)

__all__ = ["MANIFEST_COLUMNS", "Modality", "generate", "uid", "worklist", "write_studies"]

_ROOT = "2.25."


def uid(*parts: object) -> str:
    """A deterministic UID under the UUID-derived root 2.25 (PS3.5 B.2)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return _ROOT + str(int.from_bytes(digest[:16], "big"))


@dataclass(frozen=True, slots=True)
class Modality:
    """What a synthetic series of one modality looks like."""

    code: str
    sop_class: str
    body_parts: tuple[str, ...]
    descriptions: tuple[str, ...]
    photometric: str = "MONOCHROME2"


MODALITIES: tuple[Modality, ...] = (
    Modality(
        "CT",
        CTImageStorage,
        ("CHEST", "ABDOMEN", "HEAD"),
        ("CT CHEST W/O", "CT ABD/PELVIS", "CT HEAD"),
    ),
    Modality(
        "MR", MRImageStorage, ("BRAIN", "KNEE", "SPINE"), ("MR BRAIN", "MR KNEE LEFT", "MR L-SPINE")
    ),
    Modality("CR", ComputedRadiographyImageStorage, ("CHEST", "HAND"), ("CR CHEST PA", "CR HAND")),
    Modality(
        "DX", DigitalXRayImageStorageForPresentation, ("CHEST", "FOOT"), ("DX CHEST", "DX FOOT")
    ),
    Modality("US", UltrasoundImageStorage, ("ABDOMEN", "THYROID"), ("US ABDOMEN", "US THYROID")),
)

# Invented names. Some need a Specific Character Set: (charset, family, given).
_NAMES: tuple[tuple[str | None, str, str], ...] = (
    (None, "DOE", "JANE"),
    (None, "SMITH", "ALEX"),
    ("ISO_IR 192", "Müller", "Jürgen"),
    ("ISO_IR 100", "Gómez", "José"),
    (None, "NGUYEN", "LINH"),
    ("ISO_IR 192", "Ødegård", "Åse"),
    ("ISO_IR 100", "Lefèvre", "Hélène"),
    (None, "TANAKA", "KEN"),
    ("ISO_IR 192", "Παπαδόπουλος", "Νίκος"),
    (None, "OKAFOR", "CHIDI"),
)
_REFERRERS = ("HOUSE^GREG", "GREY^MEREDITH", "WHO^JOHN", "")
_INSTITUTIONS = ("SYNTHETIC GENERAL", "DICOMLAB TEACHING HOSPITAL")

MANIFEST_COLUMNS = [
    "path",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "StudyDate",
    "AccessionNumber",
]


def _study_offset(index: int, rng: random.Random) -> int:
    """Days before today: the first studies are today, yesterday and this week."""
    if index == 0:
        return 0
    if index == 1:
        return 1
    if index < 6:
        return rng.randint(2, 6)
    if index % 3 == 0:
        return rng.randint(0, 6)
    return rng.randint(30, 365 * 8)


def _pixels(rows: int, cols: int, seed_value: int) -> np.ndarray:
    rng = np.random.default_rng(seed_value)
    y, x = np.mgrid[0:rows, 0:cols]
    base = ((x + y) * (3000 // max(rows + cols, 1))).astype(np.uint16)
    noise = rng.integers(0, 64, size=(rows, cols), dtype=np.uint16)
    out: np.ndarray = (base + noise) & 0x0FFF
    return out


_PAIRED = frozenset({"KNEE", "HAND", "FOOT"})
"""The synthetic body parts that are paired structures (they have a side)."""
_ANATOMY = {  # SNOMED CT codes of the body parts, for DX's Anatomic Region Sequence
    "CHEST": ("51185008", "Thorax"),
    "FOOT": ("56459004", "Foot"),
}


def _side(body: str, patient: int) -> str:
    """The side of a paired body part (the same for a patient), else empty."""
    return "LR"[patient % 2] if body in _PAIRED else ""


def _code(value: str, meaning: str, scheme: str = "SCT") -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _modality_attributes(ds: Dataset, code: str, body: str, patient: int) -> None:
    """What each modality's IOD requires beyond the common modules (PS3.3 A.3 CT, A.4 MR,
    A.2 CR, A.26 DX, A.6 US), with plausible values for a synthetic acquisition."""
    if code == "CT":
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.KVP = 120
        ds.AcquisitionNumber = 1  # CT Image, Type 2
    elif code == "MR":  # MR Image: a plain 2D spin echo
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""  # Type 2: none
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 500
        ds.EchoTime = 20
        ds.EchoTrainLength = 1
    elif code == "CR":
        ds.ViewPosition = "PA" if body == "CHEST" else ""  # CR Series, Type 2
    elif code == "DX":  # DX Image (for presentation), DX Anatomy Imaged, DX Detector
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = _side(body, patient) or "U"  # U: unpaired
        value, meaning = _ANATOMY[body]
        ds.AnatomicRegionSequence = [_code(value, meaning)]
        ds.PatientOrientation = ["L", "F"] if body == "CHEST" else ["A", "F"]
        ds.PixelIntensityRelationship = "LIN"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"  # unspecified
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
        ds.BurnedInAnnotation = "NO"
        ds.WindowCenter = 2048
        ds.WindowWidth = 4096
        ds.DetectorType = "DIRECT"
        ds.ImagerPixelSpacing = [0.15, 0.15]
        ds.AcquisitionContextSequence = []  # Type 2: nothing to say


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DICOMLAB_SYNTH"
    return meta


def generate(
    n_studies: int,
    seed: int = 0,
    *,
    today: date | None = None,
    image_size: int = 16,
    max_series: int = 3,
    max_instances: int = 4,
    modalities: tuple[str, ...] | None = None,
    derived: bool = False,
) -> Iterator[Dataset]:
    """Yield synthetic instances (pydicom Datasets with file meta), study by study.

    Parameters
    ----------
    n_studies
        How many studies.
    seed
        Everything derives from it (UIDs, names, dates, pixels).
    today
        The calendar day the "today"/"yesterday"/"last 7 days" studies fall on
        (default: the local date).
    image_size
        Rows and columns of each image (16 for tests, 512 for 512x512 16-bit CT benchmarks).
    max_series, max_instances
        Upper bounds per study and per series (at least 1 each).
    modalities
        Restrict to these modality codes (default: CT, MR, CR, DX, US in turn).
    derived
        Also, in every CT study, what a researcher would send back after analysing its
        first series (built with highdicom, :mod:`dicomlab.derived`): a segmentation
        (SEG), a TID 1500 measurement report on it (SR) and a Key Object Selection
        of the series' images, each in its own series of the study.
    """
    if n_studies < 0:
        raise ValueError(f"n_studies {n_studies!r} must be >= 0")
    if not 1 <= image_size <= 4096:
        raise ValueError(f"image_size {image_size!r} must be in 1-4096")
    mods = [m for m in MODALITIES if modalities is None or m.code in modalities]
    if not mods:
        raise ValueError(
            f"no known modality in {modalities!r}; known: {[m.code for m in MODALITIES]}"
        )
    today = today or date.today()
    rng = random.Random(seed)
    n_patients = max(1, (n_studies * 7 + 9) // 10)
    for s in range(n_studies):
        mod = mods[s % len(mods)]
        p = rng.randrange(n_patients) if s >= n_patients else s
        charset, family, given = _NAMES[p % len(_NAMES)]
        study_date = today - timedelta(days=_study_offset(s, rng))
        study_uid = uid(seed, "study", s)
        n_series = rng.randint(1, max(1, max_series))
        study_time = f"{rng.randint(7, 18):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}"
        accession = f"ACC{seed % 1000:03d}{s:06d}"  # SH: at most 16 characters
        referrer = _REFERRERS[s % len(_REFERRERS)]
        body = mod.body_parts[s % len(mod.body_parts)]
        description = mod.descriptions[s % len(mod.descriptions)]
        birth = date(1940 + (p * 7) % 60, 1 + p % 12, 1 + (p * 3) % 28)
        first_series: list[Dataset] = []
        for se in range(n_series):
            series_uid = uid(seed, "series", s, se)
            n_inst = rng.randint(1, max(1, max_instances))
            for i in range(n_inst):
                sop_uid = uid(seed, "instance", s, se, i)
                ds = Dataset()
                ds.file_meta = _file_meta(mod.sop_class, sop_uid)
                if charset:
                    ds.SpecificCharacterSet = charset
                ds.SOPClassUID = mod.sop_class
                ds.SOPInstanceUID = sop_uid
                ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
                ds.StudyTime = ds.SeriesTime = ds.ContentTime = study_time
                ds.AccessionNumber = accession
                ds.Modality = mod.code
                ds.Manufacturer = "DICOMLAB"
                ds.InstitutionName = _INSTITUTIONS[p % len(_INSTITUTIONS)]
                ds.ReferringPhysicianName = referrer
                ds.StudyDescription = description
                ds.SeriesDescription = f"{description} S{se + 1}"
                ds.PatientName = f"{family}^{given}"
                ds.PatientID = f"SYN{seed:02d}{p:05d}"
                ds.PatientBirthDate = birth.strftime("%Y%m%d")
                ds.PatientSex = "FM"[p % 2]
                ds.BodyPartExamined = body
                ds.StudyInstanceUID = study_uid
                ds.SeriesInstanceUID = series_uid
                ds.StudyID = f"{s + 1}"
                ds.SeriesNumber = se + 1
                ds.InstanceNumber = i + 1
                ds.PatientOrientation = ""
                if body in _PAIRED and mod.code != "DX":  # DX says Image Laterality instead
                    ds.Laterality = _side(body, p)  # General Series, 2C: paired parts only
                if mod.code in ("CT", "MR"):
                    ds.PatientPosition = "HFS"  # General Series, 2C for CT and MR
                    ds.PositionReferenceIndicator = ""  # Frame of Reference, Type 2
                    ds.FrameOfReferenceUID = uid(seed, "for", s, se)
                    ds.ImagePositionPatient = [0.0, 0.0, float(i) * 2.5]
                    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
                    ds.PixelSpacing = [0.7, 0.7]
                    ds.SliceThickness = 2.5
                    # value 3 is a defined term of the CT IOD only (MR has its own list)
                    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if mod.code == "CT" else "OTHER"]
                else:
                    ds.ImageType = ["ORIGINAL", "PRIMARY"]
                _modality_attributes(ds, mod.code, body, p)
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = mod.photometric
                ds.Rows = ds.Columns = image_size
                bits = 8 if mod.code == "US" else 16  # US Image: 8 bits for monochrome
                ds.BitsAllocated = bits
                ds.BitsStored = 8 if bits == 8 else 12
                ds.HighBit = ds.BitsStored - 1
                ds.PixelRepresentation = 0
                pixel_seed = int.from_bytes(hashlib.sha256(sop_uid.encode()).digest()[:8], "big")
                pixels = _pixels(image_size, image_size, pixel_seed)
                ds.PixelData = (
                    (pixels >> 4).astype(np.uint8).tobytes() if bits == 8 else pixels.tobytes()
                )
                if se == 0:
                    first_series.append(ds)
                yield ds
        if derived and mod.code == "CT":
            yield from _derived_objects(first_series)


def worklist(
    n_studies: int,
    seed: int = 0,
    *,
    today: date | None = None,
    modalities: tuple[str, ...] | None = None,
    max_series: int = 3,
    max_instances: int = 4,
) -> pd.DataFrame:
    """The modality worklist that scheduled the studies :func:`generate` makes with the
    same arguments (the image size aside): one step per study, with
    its patient, accession number, Study Instance UID, modality and description, on the
    study's date and time, at station ``<modality>01`` (for ``local.worklist.add``)."""
    rows: dict[str, dict[str, Any]] = {}
    made = generate(
        n_studies,
        seed,
        today=today,
        image_size=1,
        max_series=max_series,
        max_instances=max_instances,
        modalities=modalities,
    )
    for ds in made:
        if ds.StudyInstanceUID in rows:
            continue
        rows[ds.StudyInstanceUID] = {
            "PatientName": str(ds.PatientName),
            "PatientID": ds.PatientID,
            "PatientBirthDate": ds.PatientBirthDate,
            "PatientSex": ds.PatientSex,
            "AccessionNumber": ds.AccessionNumber,
            "ReferringPhysicianName": str(ds.ReferringPhysicianName),
            "StudyInstanceUID": ds.StudyInstanceUID,
            "RequestedProcedureDescription": ds.StudyDescription,
            "Modality": ds.Modality,
            "ScheduledStationAETitle": f"{ds.Modality}01",
            "ScheduledProcedureStepStartDate": ds.StudyDate,
            "ScheduledProcedureStepStartTime": ds.StudyTime,
            "ScheduledProcedureStepDescription": ds.StudyDescription,
        }
    return pd.DataFrame(list(rows.values()))


def _derived_objects(series: list[Dataset]) -> Iterator[Dataset]:
    """A SEG of ``series``, an SR measuring it and a KOS of its images (with file meta)."""
    import dicomlab.derived as derived  # highdicom: imported only when asked for

    seg = derived.segmentation(series)
    for ds in (seg, derived.measurement_report(seg, series), derived.key_objects(series)[0]):
        ds.file_meta = _file_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        yield ds


def _atomic_save(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".synth-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_studies(
    folder: str | os.PathLike[str],
    n_studies: int = 20,
    seed: int = 0,
    *,
    today: date | None = None,
    image_size: int = 16,
    max_series: int = 3,
    max_instances: int = 4,
    modalities: tuple[str, ...] | None = None,
    derived: bool = False,
) -> pd.DataFrame:
    """Write synthetic studies under ``folder`` and return their manifest (``derived``:
    SEG, SR and KOS objects in every CT study too, as :func:`generate` says).

    Files are laid out as ``study_NNNN/series_NNN/NNNN.dcm``. The manifest has one
    row per instance with the columns :data:`MANIFEST_COLUMNS`.
    """
    root = Path(folder)
    rows: list[dict[str, object]] = []
    study_index: dict[str, int] = {}
    series_index: dict[str, dict[str, int]] = {}
    for ds in generate(
        n_studies,
        seed,
        today=today,
        image_size=image_size,
        max_series=max_series,
        max_instances=max_instances,
        modalities=modalities,
        derived=derived,
    ):
        s = study_index.setdefault(ds.StudyInstanceUID, len(study_index))
        in_study = series_index.setdefault(ds.StudyInstanceUID, {})
        se = in_study.setdefault(ds.SeriesInstanceUID, len(in_study))
        path = root / f"study_{s:04d}" / f"series_{se:03d}" / f"{int(ds.InstanceNumber):04d}.dcm"
        _atomic_save(ds, path)
        rows.append(
            {
                "path": str(path),
                "PatientID": ds.PatientID,
                "StudyInstanceUID": ds.StudyInstanceUID,
                "SeriesInstanceUID": ds.SeriesInstanceUID,
                "SOPInstanceUID": ds.SOPInstanceUID,
                "SOPClassUID": str(ds.SOPClassUID),
                "Modality": ds.Modality,
                "StudyDate": ds.StudyDate,
                "AccessionNumber": ds.AccessionNumber,
            }
        )
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    df["StudyDate"] = pd.to_datetime(df["StudyDate"], format="%Y%m%d")
    return df
