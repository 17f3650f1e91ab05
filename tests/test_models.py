"""The Q/R information model table (core/models.py) is pynetdicom's, UID for UID."""

from __future__ import annotations

from pynetdicom import sop_class

from dicomlab.core.models import MODELS, QR_UIDS, model


def test_every_model_uid_is_the_one_pynetdicom_names() -> None:
    for service, suffix in (("find", "Find"), ("get", "Get"), ("move", "Move")):
        for root, prefix in (("study", "StudyRoot"), ("patient", "PatientRoot")):
            expected = getattr(sop_class, f"{prefix}QueryRetrieveInformationModel{suffix}")
            assert model(service, root) == expected  # type: ignore[arg-type]
    worklist = sop_class.ModalityWorklistInformationFind  # type: ignore[attr-defined]
    assert MODELS["find"]["worklist"] == worklist
    assert len(QR_UIDS) == 7 == sum(len(v) for v in MODELS.values())
