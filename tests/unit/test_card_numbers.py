"""No card number enters evledger: found plain, spaced or dashed, refused by the input rules with
the value masked, and masked in place in raw bytes. Ids that merely contain digits pass."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.card_numbers import (
    contains_card_number,
    luhn_valid,
    mask_card_numbers,
    mask_card_numbers_bytes,
)
from ledger.envelope import Envelope
from ledger.errors import LedgerError
from ledger.events import PaymentAuthorized
from ledger.money import Money
from ledger.validation import check

VISA = "4111111111111111"  # a public test number


@pytest.mark.parametrize(
    "text",
    [VISA, "4111 1111 1111 1111", "4111-1111-1111-1111", "CS-4111111111111111", "3782 822463 10005",
     "(4111-1111-1111-1111)", "6011111111111117", "4222222222222"],
)  # fmt: skip
def test_card_numbers_are_found_however_they_are_written(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    ["4111111111111112", "41111111111111111111", "1234-5678-9012", "DE*EVL*E0001",
     "12345678-1234-1234-1234-123456789012", "c1b50d56-6471-0149-1546-3b9859409311",
     "+49 170 1234567", "411111111111", "x4111-1111-1111-1111y"],
)  # fmt: skip
def test_other_digit_runs_are_not_card_numbers(text: str) -> None:
    assert not contains_card_number(text)


@given(st.builds(lambda u: str(u), st.uuids()))
def test_uuids_are_never_card_numbers(value: str) -> None:
    assert not contains_card_number(value)
    assert not contains_card_number(f"P-{uuid.UUID(value).hex}")


def test_masking_keeps_the_last_four_digits_and_the_length() -> None:
    assert mask_card_numbers(f"station {VISA}!") == "station ************1111!"
    assert mask_card_numbers("4111 1111 1111 1111") == "**** **** **** 1111"
    raw = b"\x02\x20" + VISA.encode() + b"\x00tail 4111-1111-1111-1111"
    masked = mask_card_numbers_bytes(raw)
    assert len(masked) == len(raw) and b"4111" not in masked.replace(b"1111", b"")
    assert masked.endswith(b"****-****-****-1111") and VISA.encode() not in masked


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_the_input_rules_refuse_a_card_number_in_any_string_and_never_echo_it() -> None:
    event = PaymentAuthorized(Envelope.new("net"), "P-1", "sandbox", "ref", Money(100, "EUR"),
                              f"card-{VISA}")  # fmt: skip
    with pytest.raises(LedgerError) as caught:
        check(event, event.envelope.recorded_at)
    assert caught.value.code == "CARD_NUMBER"
    assert VISA not in str(caught.value) and "1111" in str(caught.value)
    assert caught.value.context["field"] == "payment_method"
