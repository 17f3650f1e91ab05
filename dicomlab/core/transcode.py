"""Transcoding on send: an instance goes in its own transfer syntax when the peer accepts
it; otherwise it is converted to one the peer accepted, never with a loss of our own.

- Compressed and refused: decompressed (pydicom with its plugins: pylibjpeg-openjpeg for
  JPEG 2000, pyjpegls for JPEG-LS, its own RLE and JPEG decoders) to an accepted
  uncompressed syntax; where the peer accepts no uncompressed one, compressed again to
  a lossless one it accepts.
- Uncompressed and refused: compressed to a lossless syntax the peer accepts (JPEG 2000
  lossless, JPEG-LS lossless, RLE lossless, in that order), or sent in the other
  uncompressed syntax (pynetdicom re-encodes between those).
- ``transcode=False``: sent as it is or not at all, the row saying why.

A lossy source (e.g. JPEG baseline) decompressed keeps its own loss; nothing is ever
encoded lossily here. PS3.5 Section 10 and Annex A list the syntaxes.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

__all__ = ["LOSSLESS", "UNCOMPRESSED", "offered", "payload"]

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
LOSSLESS = (JPEG2000Lossless, JPEGLSLossless, RLELossless)
"""What an uncompressed image is compressed to when the peer takes nothing else (the
syntaxes pydicom encodes, losslessly)."""


def offered(own: Iterable[str]) -> list[list[str]]:
    """The transfer syntax groups to propose for one SOP class (one presentation
    context each): the files' own syntaxes, uncompressed ones and lossless compressed
    ones, so that the peer accepts something (even under ``transcode=False``: each file
    then gets a row saying why it was not sent, not an association that failed)."""
    groups: list[list[str]] = [
        list(dict.fromkeys(own)),
        [str(ts) for ts in UNCOMPRESSED],
        [str(ts) for ts in LOSSLESS],
    ]
    return [g for g in groups if g]


Source = str | Dataset


def payload(
    source: Source, syntax: str, accepted: set[str], transcode: bool, sop_class: str
) -> tuple[Source, str] | str:
    """What to send for an instance in ``syntax`` (a path or a data set) to a peer that
    accepted ``accepted`` for its class: the data and the syntax it goes in, or why it
    cannot go."""
    if syntax in accepted:
        return source, syntax
    what = UID(syntax).name if syntax else "its transfer syntax"
    klass = UID(sop_class).name
    if not transcode:
        return f"the peer does not accept {what} for {klass}, and transcode=False: not converted"
    ds = source if isinstance(source, Dataset) else dcmread(source)
    compressed = bool(syntax) and UID(syntax).is_compressed
    plain = [ts for ts in UNCOMPRESSED if ts in accepted]
    packed = [ts for ts in LOSSLESS if ts in accepted]
    if not compressed and plain:
        return ds, plain[0]  # pynetdicom re-encodes between uncompressed syntaxes
    if "PixelData" not in ds:
        return f"the peer accepts no syntax this {klass} can be sent in"
    if compressed:
        try:
            ds.decompress(generate_instance_uid=False)
        except Exception as exc:  # a codec's own errors: no common base class
            return f"the peer does not accept {what} for {klass}, and it cannot be decoded ({exc})"
        if plain:
            return ds, plain[0]
    if not packed:
        return f"the peer accepts no syntax {klass} can be converted to losslessly"
    problems = []
    for target in packed:  # e.g. OpenJPEG refuses images under 32 pixels a side
        try:
            ds.compress(target, generate_instance_uid=False)
        except Exception as exc:
            problems.append(f"{UID(target).name}: {exc}")
            continue
        return ds, target
    return f"cannot compress losslessly to what the peer accepts ({'; '.join(problems)})"
