"""The structural check that keeps cut-short data sets out of the archive (pure, no sockets).

A data set cut anywhere but between two top-level elements must be refused, and one
cut there is a shorter but well-formed data set: the test finds those boundaries by
encoding the first k elements with pydicom, in every encoding LocalPACS receives.
"""

from __future__ import annotations

import itertools
import zlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import RLELossless

import dicomlab as dl
from dicomlab.core.structure import DEFLATED, instance_problem, structure_error

IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
SYNTAXES = {"implicit": IMPLICIT, "explicit": EXPLICIT, "big-endian": BIG}


def _with_sequences(modality: str) -> Dataset:
    ds = next(iter(dl.synth.generate(1, 5, modalities=(modality,), max_instances=1)))
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D1100", "SRT", "Head"
    nested = Dataset()
    nested.ConceptNameCodeSequence = [code]
    ds.AnatomicRegionSequence = [code, code]
    ds.ContentSequence = [nested]  # a sequence inside a sequence
    return ds


def _encode(ds: Dataset, syntax: str) -> bytes:
    out = DicomBytesIO()
    out.is_implicit_VR, out.is_little_endian = syntax == IMPLICIT, syntax != BIG
    write_dataset(out, ds)
    return out.getvalue()


@cache
def _case(modality: str, name: str) -> tuple[bytes, frozenset[int]]:
    """The encoded data set and the offsets where a top-level element ends."""
    ds = _with_sequences(modality)
    syntax = SYNTAXES[name]
    body = _encode(ds, syntax)
    boundaries = set()
    for k in range(1, len(ds) + 1):
        part = Dataset()
        for elem in list(ds)[:k]:
            part.add(elem)
        boundaries.add(len(_encode(part, syntax)))
    assert max(boundaries) == len(body)
    return body, frozenset(boundaries)


@pytest.mark.parametrize("modality", ["CT", "MR", "CR"])
@pytest.mark.parametrize("name", list(SYNTAXES))
def test_whole_data_sets_pass_in_every_encoding(modality: str, name: str) -> None:
    body, _ = _case(modality, name)
    assert structure_error(body, SYNTAXES[name]) is None


@settings(max_examples=300, deadline=None)
@given(
    modality=st.sampled_from(["CT", "MR"]),
    name=st.sampled_from(list(SYNTAXES)),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_a_cut_is_refused_unless_it_falls_between_two_elements(
    modality: str, name: str, where: float
) -> None:
    body, boundaries = _case(modality, name)
    cut = max(1, int(where * len(body)))
    problem = structure_error(body[:cut], SYNTAXES[name])
    if cut in boundaries:
        assert problem is None, (cut, problem)
    else:
        assert problem is not None, cut


def test_every_cut_inside_the_pixel_data_names_it() -> None:
    body, boundaries = _case("CT", "explicit")
    start = sorted(boundaries)[-2]  # where the last element, the pixel data, begins
    for cut in range(start + 1, start + 12):  # inside its 12-byte header (OB/OW)
        assert "header" in str(structure_error(body[:cut], EXPLICIT)), cut
    for cut in range(start + 12, len(body)):  # inside its value
        problem = structure_error(body[:cut], EXPLICIT)
        assert problem == f"(7FE0,0010) declares {len(body) - start - 12} bytes, " + (
            f"{cut - start - 12} follow"
        ), cut


def test_deflated_and_encapsulated_data_sets() -> None:
    ds = _with_sequences("CT")
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = deflater.compress(_encode(ds, EXPLICIT)) + deflater.flush()
    assert structure_error(deflated, DEFLATED[0]) is None
    assert structure_error(deflated[:-10], DEFLATED[0]) is not None
    assert structure_error(b"not deflate data", DEFLATED[0]) is not None

    rle = next(iter(dl.synth.generate(1, 6, modalities=("CT",), max_instances=1)))
    rle.compress(RLELossless)
    body = _encode(rle, EXPLICIT)
    assert structure_error(body, str(RLELossless)) is None
    assert "never closed" in str(structure_error(body[:-8], str(RLELossless)))
    assert "fragment" in str(structure_error(body[:-20], str(RLELossless)))


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400), syntax=st.sampled_from([*SYNTAXES.values(), DEFLATED[0]]))
def test_garbage_never_raises(data: bytes, syntax: str) -> None:
    problem = structure_error(data, syntax)
    assert problem is None or isinstance(problem, str)


def test_uids_must_be_the_ones_announced() -> None:
    body, _ = _case("CT", "explicit")
    row = {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": "1.2.3"}
    ok = instance_problem(body, EXPLICIT, row, row["SOPClassUID"], "1.2.3", row["SOPClassUID"])
    assert ok is None
    status, why = instance_problem(body, EXPLICIT, row, sop_instance="1.2.4") or (0, "")
    assert status == 0xA900 and "SOP Instance UID 1.2.3 is not the command's 1.2.4" in why
    status, why = instance_problem(body, EXPLICIT, row, context_class="1.2.840.10008.5.1.4.1.1.4")
    assert status == 0xA900 and "presentation context" in why
    status, _ = instance_problem(body[:-1], EXPLICIT, row) or (0, "")
    assert status == 0xC000


# -- walk_parts: a data set in fragments, as a C-STORE brings it ------------------------------


def _split(data: bytes, cuts: list[int]) -> list[memoryview]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    view = memoryview(data)
    return [view[a:b] for a, b in itertools.pairwise(points)]


def _rle_body() -> bytes:
    rle = next(iter(dl.synth.generate(1, 6, modalities=("CT",), max_instances=1)))
    rle.compress(RLELossless)
    return _encode(rle, EXPLICIT)


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from([(m, n) for m in ("CT", "MR") for n in SYNTAXES] + [("RLE", "explicit")]),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), min_size=1, max_size=4),
    cut_short=st.integers(min_value=0, max_value=40),
)
def test_walk_parts_answers_as_the_joined_walk(
    case: tuple[str, str], cuts: list[int], cut_short: int
) -> None:
    """Whatever the fragments, and whether the data set is whole or cut short, the walk
    over the parts finds what the walk over the joined bytes finds (refusal, reason and
    the wanted values)."""
    from dicomlab.core.header import wanted_tags
    from dicomlab.core.indexrow import HEADER_KEYWORDS
    from dicomlab.core.structure import walk, walk_parts

    modality, name = case
    body = _rle_body() if modality == "RLE" else _case(modality, name)[0]
    syntax = str(RLELossless) if modality == "RLE" else SYNTAXES[name]
    data = body[: len(body) - cut_short]
    wanted = wanted_tags(tuple(HEADER_KEYWORDS))
    assert walk_parts(_split(data, cuts), syntax, wanted) == walk(data, syntax, wanted)


def test_walk_parts_reads_only_the_first_part_of_a_plain_instance() -> None:
    """The common case costs no join: an instance whose header lies in the first part is
    walked there (the other parts can be anything of the right length)."""
    from dicomlab.core.header import wanted_tags
    from dicomlab.core.indexrow import HEADER_KEYWORDS
    from dicomlab.core.structure import walk, walk_parts

    body, _ = _case("CT", "explicit")
    pixels = body.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010), the last element
    head = body[: pixels + 12 + 8]
    rest = len(body) - len(head)
    wanted = wanted_tags(tuple(HEADER_KEYWORDS))
    whole = walk(body, EXPLICIT, wanted)
    assert whole.error is None and whole.found
    assert walk_parts([head, b"\x00" * rest], EXPLICIT, wanted) == whole
    assert walk_parts([head, b"\x00" * (rest - 1)], EXPLICIT, wanted).error is not None
