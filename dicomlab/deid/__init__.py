"""De-identification by PS3.15 Annex E (:class:`Deidentifier`)."""

from dicomlab.deid.deidentifier import Deidentifier

__all__ = ["Deidentifier"]
