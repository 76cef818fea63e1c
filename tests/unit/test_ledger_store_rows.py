"""What the ledger projector writes is exactly what the plain code it replaces would write.

The store encodes payment states with orjson straight from the dataclasses; the stored form is
``json.dumps(state_to_dict(state))`` (see test_ledger_fastpath.STORED), and ``state_from_dict``
reads it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from connectors import ledger_store as store
from connectors.kafka import Consumed
from connectors.ledger_store import state_json
from connectors.payment_state_form import state_from_dict, state_to_dict
from ledger.accounting import accounts
from ledger.accounting.journal import EntryKind, JournalEntry, Posting
from ledger.accounting.posting_rules import RevenueShare
from ledger.dimensions import Dimension
from ledger.events import DisputeOutcome
from ledger.money import Money
from ledger.payments.state import (
    DisputeRecord,
    PaymentState,
    PaymentStatus,
    ReceivableRecord,
    RefundRecord,
)
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
    authorized_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    receivables=st.lists(
        st.builds(
            ReceivableRecord,
            TEXT,
            MINOR,
            st.datetimes(timezones=st.just(UTC)),
            SHARES,
            MINOR,
            MINOR,
        ),
        max_size=2,
    ).map(tuple),
)


def test_state_json_is_the_stored_form() -> None:
    assert state_json(STATE) == json.dumps(json.loads(STORED), separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(STATES)
def test_state_json_equals_json_dumps_of_to_dict(state: PaymentState) -> None:
    encoded = state_json(state)
    assert encoded == json.dumps(state_to_dict(state), separators=(",", ":"), ensure_ascii=False)
    assert state_from_dict(json.loads(encoded)) == state


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


# -- journal COPY text: the compiled formatter against the Python one ---------------------------
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=10)
SEGMENT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
AT = st.datetimes(
    min_value=datetime(2000, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)


@st.composite
def stored_entries(draw: st.DrawFn) -> list[store.StoredEntry]:
    out = []
    for _ in range(draw(st.integers(0, 4))):  # events
        event_id, at = draw(ANY_TEXT), draw(AT)
        payment_id, network = draw(st.none() | ANY_TEXT), draw(ANY_TEXT)
        event_type, provider = draw(ANY_TEXT), draw(st.none() | ANY_TEXT)
        for kind in draw(st.lists(st.sampled_from(list(EntryKind)), min_size=1, max_size=3)):
            amount = Money(draw(st.integers(1, 2**62)), draw(st.sampled_from(["EUR", "JPY"])))
            debit = accounts.provider_clearing(draw(SEGMENT))
            credit = accounts.revenue(Dimension.ENERGY, draw(SEGMENT), draw(SEGMENT))
            station = draw(st.none() | ANY_TEXT)  # a posting dimension: any text, or none
            postings = [Posting.debit(debit, amount), Posting.credit(credit, amount, station)]
            if draw(st.booleans()):
                vat = accounts.vat_payable(draw(SEGMENT), draw(st.sampled_from(["19", "5.5"])))
                postings.append(Posting.credit(vat, amount, draw(st.none() | ANY_TEXT)))
                postings.append(Posting.debit(accounts.bank(), amount))
            entry = JournalEntry.for_event(
                event_id=event_id, kind=kind, payment_id=payment_id, network_id=network,
                occurred_at=at, postings=postings,
            )  # fmt: skip
            out.append(store.StoredEntry(entry, event_type, provider))
    return out


@pytest.mark.skipif(store._copytext is None, reason="connectors._copytext is not built")
@settings(max_examples=400, deadline=None)
@given(stored_entries())
def test_compiled_journal_text_is_the_python_text(entries: list[store.StoredEntry]) -> None:
    assert store.entry_text(entries) == "".join(store._entry_lines(entries)).encode()


@settings(max_examples=200, deadline=None)
@given(stored_entries())
def test_a_stored_row_rebuilds_the_line_the_hash_chain_covers(
    entries: list[store.StoredEntry],
) -> None:
    """The audit verifier's copy_line, from the columns the table stores (the date read back
    in UTC), is the COPY line the projector hashed, for entries dated in UTC. (Two events never
    share an event id; the generator may draw one twice, which the formatter's once-per-event
    columns would then share.)"""
    shared: dict[str, tuple[object, ...]] = {}
    for s in entries:
        columns = (s.event_type, s.entry.payment_id, s.entry.network_id, s.provider)
        assume(shared.setdefault(s.entry.event_id, columns) == columns)
    utc = [
        s._replace(entry=JournalEntry(s.entry.entry_id, s.entry.event_id, s.entry.payment_id,
                                      s.entry.network_id, s.entry.occurred_at.astimezone(UTC),
                                      s.entry.kind, s.entry.postings))
        for s in entries
    ]  # fmt: skip
    rebuilt = [
        store.copy_line(
            s.entry.entry_id, s.entry.event_id, s.event_type, s.entry.payment_id,
            s.entry.network_id, s.provider, s.entry.kind.value, s.entry.occurred_at,
            [p.account.code for p in s.entry.postings],
            [p.amount.currency for p in s.entry.postings],
            [p.amount.amount_minor for p in s.entry.postings],
            [p.station for p in s.entry.postings],
        )
        for s in utc
    ]  # fmt: skip
    assert rebuilt == store._entry_lines(utc)


@pytest.mark.skipif(store._copytext is None, reason="connectors._copytext is not built")
def test_compiled_journal_text_refuses_what_it_cannot_format() -> None:
    with pytest.raises(TypeError):
        store.entry_text([("not", "a stored entry")])  # type: ignore[list-item]
    with pytest.raises(AttributeError):
        store.entry_text([store.StoredEntry(object(), "X", None)])  # type: ignore[arg-type]


@pytest.mark.skipif(not os.environ.get("CI"), reason="a developer may build without a compiler")
def test_ci_builds_the_compiled_parts() -> None:
    """setup.py builds the C modules as optional; in CI (gcc present) a failed build must show
    as a failure here, not as silently skipped byte-for-byte tests."""
    from schemas.encoder import compiled_available

    assert store._copytext is not None and compiled_available()


def test_entries_of_one_event_dated_apart_keep_their_own_dates_in_the_copy_text() -> None:
    """A capture supplied before it was captured: CAPTURE on the supply date and
    CAPTURE_SETTLED on the capture date, one event. Each line carries its entry's date, from
    the compiled formatter and from the Python one alike."""
    from ledger.accounting.posting_rules import EntryContext, captured

    supplied, settled = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    share = RevenueShare(Dimension.ENERGY, "ST", "DE", 1000, 190)
    ctx = EntryContext("ev-split", "P-1", "net", settled)
    entries = [
        store.StoredEntry(e, "PaymentCaptured", "sandbox")
        for e in captured(ctx, "sandbox", Money(1190, "EUR"), [share], supplied)
    ]
    python_lines = store._entry_lines(entries)
    dates = [line.split("\t")[7] for line in python_lines]
    assert dates == [supplied.isoformat(), settled.isoformat()]
    if store._copytext is not None:
        assert store.entry_text(entries) == "".join(python_lines).encode()
