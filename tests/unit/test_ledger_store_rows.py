"""What the ledger projector writes is exactly what the plain code it replaces would write.

The store encodes payment states with orjson straight from the dataclasses; the stored form is
``json.dumps(state.to_dict())`` (see test_ledger_fastpath.STORED), and ``from_dict`` reads it.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.kafka import Consumed
from connectors.ledger_store import state_json
from ledger.dimensions import Dimension
from ledger.events import DisputeOutcome
from ledger.payment_state import DisputeRecord, PaymentState, PaymentStatus, RefundRecord
from ledger.posting_rules import RevenueShare
from tests.unit.test_ledger_fastpath import STATE, STORED

TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
MINOR = st.integers(-(2**63), 2**63 - 1)
SHARES = st.lists(
    st.builds(
        RevenueShare,
        st.sampled_from(list(Dimension)),
        st.none() | TEXT,
        st.none() | TEXT,
        MINOR,
        MINOR,
    ),
    max_size=3,
).map(tuple)
STATES = st.builds(
    PaymentState,
    payment_id=TEXT,
    network_id=TEXT,
    provider=TEXT,
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
    authorized=MINOR,
    incremented=MINOR,
    captured=MINOR,
    refunded=MINOR,
    hold=MINOR,
    status=st.sampled_from(list(PaymentStatus)),
    provider_references=st.lists(TEXT, max_size=3).map(tuple),
    capture_ids=st.lists(TEXT, max_size=3).map(tuple),
    revenue=SHARES,
    refunds=st.lists(
        st.builds(RefundRecord, TEXT, MINOR, SHARES, st.none() | TEXT, st.booleans()), max_size=2
    ).map(tuple),
    disputes=st.lists(
        st.builds(DisputeRecord, TEXT, MINOR, st.none() | st.sampled_from(list(DisputeOutcome))),
        max_size=2,
    ).map(tuple),
    applied_event_ids=st.frozensets(TEXT, max_size=4),
)


def test_state_json_is_the_stored_form() -> None:
    assert state_json(STATE) == json.dumps(json.loads(STORED), separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(STATES)
def test_state_json_equals_json_dumps_of_to_dict(state: PaymentState) -> None:
    encoded = state_json(state)
    assert encoded == json.dumps(state.to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert PaymentState.from_dict(json.loads(encoded)) == state


def test_consumed_stays_a_frozen_value() -> None:
    """``Consumed`` has a hand-written constructor (one is built per record)."""
    record = Consumed("payments.events", 3, 42, b"k", b"v")
    assert record == Consumed(topic="payments.events", partition=3, offset=42, key=b"k",
                              value=b"v", event=None, error=None)  # fmt: skip
    assert record.event_id is None and record.error is None
    assert dataclasses.replace(record, offset=43).offset == 43
    assert repr(record).startswith("Consumed(topic='payments.events', partition=3, offset=42")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.offset = 1  # type: ignore[misc]
