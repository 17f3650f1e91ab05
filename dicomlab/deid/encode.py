"""A rewritten data set encoded again, fast: the elements de-identification left alone
are written back from their raw bytes, the others by pydicom.

pydicom's ``dcmwrite`` walks every element through its writers (about 25 us each);
most elements of a de-identified header are untouched and still raw (pydicom never
decoded them), so their bytes go out as they came in. Little endian only (every
transfer syntax but the retired big endian one); otherwise, and for a deflated data
set, pydicom writes the whole file. The output is byte-identical to ``dcmwrite``'s
(``tests/test_deid.py`` checks it).
"""

from __future__ import annotations

import io
import struct

from pydicom import dcmwrite
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import UID

__all__ = ["encode"]

_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_IMPLICIT = "1.2.840.10008.1.2"
_SLOW = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflated
_UNDEFINED = 0xFFFFFFFF


def _pydicom(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def encode(ds: Dataset) -> bytes:
    """``ds`` as a whole DICOM file (preamble, meta, data set)."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if meta is None or not syntax or syntax in _SLOW or not UID(syntax).is_little_endian:
        return _pydicom(ds)
    implicit = syntax == _IMPLICIT
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = implicit
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian = True
    body.is_implicit_VR = implicit
    encodings = ds._character_set
    for tag in sorted(ds.keys()):
        if tag.group == 0x0002:
            continue
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.value is not None and raw.length != _UNDEFINED:
            value = raw.value
            if implicit:
                body.write(struct.pack("<HHL", tag.group, tag.element, len(value)))
            elif raw.VR in _LONG:
                body.write(
                    struct.pack("<HH2sHL", tag.group, tag.element, raw.VR.encode(), 0, len(value))
                )
            elif raw.VR:
                body.write(
                    struct.pack("<HH2sH", tag.group, tag.element, raw.VR.encode(), len(value))
                )
            else:
                return _pydicom(ds)  # an explicit VR element without its VR: let pydicom say
            body.write(value)
        else:
            write_data_element(body, ds[tag], encodings)
    out.write(body.getvalue())
    return bytes(out.getvalue())
