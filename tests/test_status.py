"""DIMSE statuses and association rejections decoded to categories, names and advice."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dicomlab as dl
from dicomlab.core.status import StatusInfo, decode_reject, decode_status, status_category


@pytest.mark.parametrize(
    ("code", "category", "name"),
    [
        (0x0000, "success", "Success"),
        (0xFF00, "pending", "Pending"),
        (0xFF01, "pending", "Pending (optional keys unsupported)"),
        (0xFE00, "cancel", "Cancel"),
        (0xB000, "warning", "Warning: sub-operations completed with failures"),
        (0x0107, "warning", "Warning: attribute list error"),
        (0xA801, "failure", "Failure: move destination unknown"),
        (0xA700, "failure", "Failure: out of resources"),
        (0xA702, "failure", "Failure: out of resources (sub-operations)"),
        (0x0122, "failure", "Failure: SOP class not supported"),
        (0xC000, "failure", "Failure: unable to process"),
    ],
)
def test_known_statuses(code: int, category: str, name: str) -> None:
    info = decode_status(code)
    assert info.code == code
    assert info.category == category
    assert info.name == name
    assert info.meaning
    assert status_category(code) == category


def test_decode_status_is_exported_at_top_level() -> None:
    assert dl.decode_status is decode_status


def test_move_destination_unknown_says_what_to_do() -> None:
    info = decode_status(0xA801)
    assert "AE title" in info.meaning
    assert str(info).startswith("0xA801 Failure: move destination unknown: ")


@pytest.mark.parametrize("code", [0xA710, 0xA7FF, 0xA7A5])
def test_a7xx_range_is_out_of_resources(code: int) -> None:
    info = decode_status(code)
    assert info.category == "failure"
    assert info.name == "Failure: out of resources"


@pytest.mark.parametrize("code", [0xC123, 0xC001, 0xCFFF])
def test_cxxx_range_is_cannot_understand(code: int) -> None:
    info = decode_status(code)
    assert info.category == "failure"
    assert info.name == "Failure: cannot understand"
    assert str(info) == f"0x{code:04X} Failure: cannot understand: {info.meaning}"


def test_a9xx_range_is_data_set_mismatch() -> None:
    info = decode_status(0xA9F0)
    assert info.category == "failure"
    assert "does not match SOP class" in info.name


@pytest.mark.parametrize("code", [0xB001, 0xB123, 0xBFFF])
def test_unknown_bxxx_codes_are_warnings(code: int) -> None:
    info = decode_status(code)
    assert info.category == "warning"
    assert info.name == "Warning"


@pytest.mark.parametrize("code", [0x0002, 0x0300, 0xD000, 0xFE01, 0xFF02, 0xFFFF])
def test_unknown_codes_outside_the_ranges_are_plain_failures(code: int) -> None:
    info = decode_status(code)
    assert info.category == "failure"
    assert info.name == "Failure"


def test_str_of_success() -> None:
    assert str(decode_status(0)) == "0x0000 Success: the operation completed"


@pytest.mark.parametrize("bad", [-1, 0x10000, 1 << 32, "0x0000", 0.0, None])
def test_out_of_range_or_non_integer_status_raises(bad: object) -> None:
    with pytest.raises(ValueError) as exc:
        decode_status(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(exc.value)


@given(code=st.integers(0, 0xFFFF))
def test_every_16_bit_code_decodes_consistently(code: int) -> None:
    info = decode_status(code)
    assert isinstance(info, StatusInfo)
    assert info.code == code
    assert info.category == status_category(code)
    assert info.category in ("success", "pending", "warning", "failure", "cancel")
    assert info.name and info.meaning
    # The name starts with its category ("Failure: ...", "Warning: ...", "Pending", ...).
    assert info.name.lower().startswith(info.category)
    assert str(info).startswith(f"0x{code:04X} ")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.code = 1  # type: ignore[misc]


@given(code=st.integers(0, 0xFFFF))
def test_only_the_defined_codes_are_success_pending_or_cancel(code: int) -> None:
    category = status_category(code)
    assert (category == "success") == (code == 0x0000)
    assert (category == "pending") == (code in (0xFF00, 0xFF01))
    assert (category == "cancel") == (code == 0xFE00)


# -- association rejections -------------------------------------------------------


def test_reject_calling_ae_not_recognised() -> None:
    r = decode_reject(1, 1, 3)
    assert (r.result, r.source, r.reason) == (1, 1, 3)
    assert r.transient is False
    assert r.text == "calling AE title not recognised"
    assert "register our AE title" in r.hint


def test_reject_called_ae_not_recognised() -> None:
    r = decode_reject(1, 1, 7)
    assert r.transient is False
    assert r.text == "called AE title not recognised"
    assert "case-sensitive" in r.hint


def test_reject_transient_local_limit_exceeded() -> None:
    r = decode_reject(2, 3, 2)
    assert (r.result, r.source, r.reason) == (2, 3, 2)
    assert r.transient is True
    assert r.text == "local limit exceeded"
    assert "max_connections" in r.hint


def test_reject_transient_congestion() -> None:
    r = decode_reject(2, 3, 1)
    assert r.transient is True
    assert r.text == "temporary congestion"


def test_same_reason_in_another_source_means_something_else() -> None:
    # Reason 2 from the service user (1) is not reason 2 from the presentation provider (3).
    assert decode_reject(1, 1, 2).text == "application context name not supported"
    assert decode_reject(1, 2, 2).text == "protocol version not supported"
    assert decode_reject(1, 3, 2).text == "local limit exceeded"


def test_unknown_reject_reason_is_described_by_numbers() -> None:
    r = decode_reject(1, 1, 9)
    assert r.transient is False
    assert r.text == "reason 9 from source 1"
    assert r.hint == "check the peer's logs"


def test_association_rejected_error_transient_matches_decode_reject() -> None:
    for result in (1, 2):
        err = dl.AssociationRejected("rejected", result=result, source=3, reason=2)
        assert err.transient == decode_reject(result, 3, 2).transient == (result == 2)
