"""Derived objects, built with highdicom (valid by construction): what a researcher sends
back to the archive after a pull.

* :func:`segmentation`: a binary SEG of a CT series (the voxels above the series'
  median, one segment);
* :func:`measurement_report`: a Comprehensive 3D SR, TID 1500 Measurement Report,
  with the segment's volume, referencing the SEG and its source series;
* :func:`key_objects`: Key Object Selection documents ("Of Interest"), one per study,
  over a selection of instances: a DICOM-native bookmark of a cohort that any PACS
  keeps and that ``dl.store`` sends.

Every UID is derived from the objects referenced (and a name), and every date and time
from the source study, so the same input gives the same bytes; nothing is invented
about patients (their attributes come from the source instances).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pandas as pd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

__all__ = ["key_objects", "measurement_report", "segmentation"]

_MANUFACTURER = "DICOMLAB"
_MODEL = "dicomlab.derived"
_VERSION = "1"
_SERIAL = "0"


def _uid(*parts: object) -> str:
    """A UID under 2.25 derived from ``parts`` (PS3.5 B.2): the same parts, the same UID."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _settle(ds: Dataset, source: Dataset, uid_parts: Sequence[object]) -> Dataset:
    """Make ``ds`` depend only on its inputs: highdicom stamps the creation and
    contribution times (now) and draws random UIDs for the dimension organisation; here
    they come from the source study's date and time and from ``uid_parts``."""
    date, time = str(source.get("StudyDate") or "19700101"), str(source.get("StudyTime") or "")
    time = time or "000000"
    for keyword in ("InstanceCreation", "Content", "Series"):
        if f"{keyword}Date" in ds:
            setattr(ds, f"{keyword}Date", date)
            setattr(ds, f"{keyword}Time", time)
    for item in ds.get("ContributingEquipmentSequence", []):  # highdicom names itself, at now
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time
    if "DimensionOrganizationSequence" in ds:
        fixed = _uid(*uid_parts, "dimensions")
        for item in ds.DimensionOrganizationSequence:
            item.DimensionOrganizationUID = fixed
        for item in ds.get("DimensionIndexSequence", []):
            item.DimensionOrganizationUID = fixed
    return ds


def _sorted_slices(series: Sequence[Dataset]) -> list[Dataset]:
    return sorted(series, key=lambda ds: float(ds.ImagePositionPatient[2]))


def segmentation(series: Sequence[Dataset], *, series_number: int = 100) -> Dataset:
    """A binary SEG of a CT (or MR) series: the voxels brighter than the series' median.

    ``series`` are the series' instances with pixel data (one frame each, one frame of
    reference). Raises ValueError for an empty series or one without image geometry.
    """
    if not series:
        raise ValueError("a segmentation needs the instances of one series")
    slices = _sorted_slices(series)
    volume = np.stack([ds.pixel_array for ds in slices])
    mask = (volume > np.median(volume)).astype(np.uint8)
    first = slices[0]
    series_uid = str(first.SeriesInstanceUID)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Above median",
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="dicomlab threshold", family=codes.cid7162.ArtificialIntelligence, version="1"
        ),
    )
    seg = hd.seg.Segmentation(
        source_images=slices,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=_uid(series_uid, "seg-series"),
        series_number=series_number,
        sop_instance_uid=_uid(series_uid, "seg"),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        manufacturer_model_name=_MODEL,
        software_versions=_VERSION,
        device_serial_number=_SERIAL,
        content_label="THRESHOLD",
        content_description="Voxels above the series median",
        omit_empty_frames=False,
    )
    return _settle(seg, first, (series_uid, "seg"))


def measurement_report(
    seg: Dataset, series: Sequence[Dataset], *, series_number: int = 101
) -> Dataset:
    """A TID 1500 Measurement Report (Comprehensive 3D SR) of ``seg``'s segment 1: its
    volume in mm³, referencing the segment and the source ``series``."""
    slices = _sorted_slices(series)
    first = slices[0]
    spacing = [float(v) for v in first.PixelSpacing]
    thickness = float(first.get("SliceThickness") or 1.0)
    voxels = int(np.count_nonzero(seg.pixel_array))
    volume = voxels * spacing[0] * spacing[1] * thickness
    seg_uid = str(seg.SOPInstanceUID)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_uid("dicomlab", "device"), name="dicomlab"
        ),
    )
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid(seg_uid, "tracking"), identifier="Above median region"
        ),
        # (highdicom's ReferencedSegment.from_segmentation expects per-frame segment
        # identification, which a one-segment SEG keeps in the shared groups)
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg.SOPClassUID),
            sop_instance_uid=seg_uid,
            segment_number=1,
            source_series=hd.sr.SourceSeriesForSegmentation(str(first.SeriesInstanceUID)),
        ),
        measurements=[
            hd.sr.Measurement(
                name=codes.SCT.Volume,
                value=round(volume, 3),
                unit=codes.UCUM.CubicMillimeter,
            )
        ],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*slices, seg],
        content=report,
        series_instance_uid=_uid(seg_uid, "sr-series"),
        series_number=series_number,
        sop_instance_uid=_uid(seg_uid, "sr"),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        is_complete=True,
        is_final=True,
    )
    return _settle(sr, first, (seg_uid, "sr"))


def key_object_selection(
    instances: Sequence[Dataset],
    *,
    description: str | None = None,
    series_number: int = 200,
) -> Dataset:
    """One KOS ("Of Interest") referencing ``instances``, all of one study."""
    if not instances:
        raise ValueError("a key object selection needs at least one instance")
    studies = {str(ds.StudyInstanceUID) for ds in instances}
    if len(studies) != 1:
        raise ValueError(f"one key object selection per study; got {len(studies)} studies")
    refs = sorted(str(ds.SOPInstanceUID) for ds in instances)
    key = (next(iter(studies)), *refs, description or "")
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=list(instances),
        description=description,
    )
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=list(instances),
        content=content,
        series_instance_uid=_uid(*key, "kos-series"),
        series_number=series_number,
        sop_instance_uid=_uid(*key, "kos"),
        instance_number=1,
        manufacturer=_MANUFACTURER,
    )
    return _settle(kos, instances[0], key)


def _headers(selection: pd.DataFrame | Iterable[Any]) -> list[Dataset]:
    if isinstance(selection, pd.DataFrame):
        if "path" not in selection.columns:
            raise ValueError(
                "key_objects needs the files: a DataFrame with a path column "
                "(local.instances() rows, a synthetic manifest) or a list of paths/datasets"
            )
        selection = list(selection["path"])
    out = []
    for item in selection:
        if isinstance(item, Dataset):
            out.append(item)
        else:
            out.append(dcmread(os.fspath(str(item)), stop_before_pixels=True))
    return out


def key_objects(
    selection: pd.DataFrame | Iterable[str | os.PathLike[str] | Path | Dataset],
    *,
    description: str | None = None,
) -> list[Dataset]:
    """Key Object Selection documents bookmarking ``selection``, one per study.

    ``selection``: rows with a ``path`` column (``local.instances()``, a synthetic
    manifest), or files or datasets. Each document references its study's instances
    of the selection and carries its patient and study attributes, so a PACS files it
    in that study; ``dl.store(node, dl.key_objects(rows))`` sends them. The same
    selection and description give the same documents (same UIDs, same bytes).
    """
    by_study: dict[str, list[Dataset]] = {}
    for ds in _headers(selection):
        by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
    return [
        key_object_selection(group, description=description)
        for _, group in sorted(by_study.items())
    ]
