"""Derived ids never change: each scheme reproduces the ids stored before ``ledger.ids`` existed."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from connectors.webhooks import _event_id
from ledger import ids
from ledger.accounting.journal import EntryKind, entry_id_for
from ledger.settlement.outcomes import outcome_event_id

EVENT = "01a23a94-9f49-7c60-80ea-2bcb1402ded4"


def test_each_scheme_keeps_its_namespace_and_separator() -> None:
    assert ids.JOURNAL_ENTRIES.derive(EVENT, "CAPTURE") == str(
        uuid.uuid5(uuid.UUID("5b0f6a52-3d0e-4c1e-9d53-6c0e2f3e7a10"), f"{EVENT}:CAPTURE")
    )
    assert outcome_event_id(EVENT, "captured") == str(
        uuid.uuid5(uuid.UUID("0c6f2f0e-7d38-4a53-9a43-5be0c0d1f1a7"), f"{EVENT}:captured")
    )
    assert _event_id("stripe", "payout_paid:po_1") == str(
        uuid.uuid5(uuid.UUID("5b0f9a52-6a43-4f0e-9d1c-6a8f0b8e2c11"), "stripe:payout_paid:po_1")
    )
    sessions = uuid.uuid5(uuid.NAMESPACE_URL, "https://evledger.io/processors/sessions")
    assert ids.SESSION_EFFECTS.derive(EVENT, "cdr") == str(uuid.uuid5(sessions, f"{EVENT}/cdr"))


@given(st.uuids().map(str), st.sampled_from(list(EntryKind)))
def test_the_journals_fast_path_equals_its_scheme(event_id: str, kind: EntryKind) -> None:
    assert entry_id_for(event_id, kind) == ids.JOURNAL_ENTRIES.derive(event_id, kind.value)
