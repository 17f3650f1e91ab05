"""The Query/Retrieve information models (PS3.4 C.6), and the Modality Worklist model
(K.6) as a FIND ``worklist`` root: their SOP Class UIDs and levels.

``MODELS[service][root]`` is the UID of a C-FIND, C-GET or C-MOVE on the Patient or
Study Root model; ``QR_UIDS`` is every one of them (what is not storage on a retrieve's
association). ``DICOM_LEVEL`` maps our level names to Query/Retrieve Level values,
``UNIQUE_KEY`` names each level's unique key.
"""

from __future__ import annotations

from typing import Literal

from pydicom.uid import UID

__all__ = ["DICOM_LEVEL", "MODELS", "QR_UIDS", "UNIQUE_KEY", "Root", "Service", "model"]

Service = Literal["find", "get", "move"]
Root = Literal["study", "patient"]

MODELS: dict[str, dict[str, UID]] = {
    "find": {
        "patient": UID("1.2.840.10008.5.1.4.1.2.1.1"),
        "study": UID("1.2.840.10008.5.1.4.1.2.2.1"),
        "worklist": UID("1.2.840.10008.5.1.4.31"),  # Modality Worklist Information Model
    },
    "move": {
        "patient": UID("1.2.840.10008.5.1.4.1.2.1.2"),
        "study": UID("1.2.840.10008.5.1.4.1.2.2.2"),
    },
    "get": {
        "patient": UID("1.2.840.10008.5.1.4.1.2.1.3"),
        "study": UID("1.2.840.10008.5.1.4.1.2.2.3"),
    },
}

DICOM_LEVEL = {"patient": "PATIENT", "study": "STUDY", "series": "SERIES", "image": "IMAGE"}
"""Our level names (lower case, as in ``dl.Query``) -> (0008,0052) QueryRetrieveLevel."""

UNIQUE_KEY = {
    "patient": "PatientID",
    "study": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
    "image": "SOPInstanceUID",
}
"""Each level's unique key (PS3.4 C.3: a Patient ID at the patient level)."""

QR_UIDS = frozenset(str(uid) for roots in MODELS.values() for uid in roots.values())


def model(service: Service, root: Root = "study") -> UID:
    """The SOP Class UID of ``service`` on the ``root`` model."""
    return MODELS[service][root]
