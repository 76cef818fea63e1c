"""The content fingerprint that tells a redelivered event from a reused event_id."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.fingerprint import DIGEST_BYTES, fingerprint
from entrypoints.simulate import NetworkSimulator
from ledger.envelope import Envelope, Source
from ledger.events import PaymentAuthorized
from ledger.money import Money
from schemas.topics import TOPIC_EVENTS
from tests.strategies import valid_strategy_for

EVENTS = list(NetworkSimulator(seed=3).burst(20))


def test_equal_events_have_one_fingerprint_and_recording_again_is_not_new_content() -> None:
    for event in EVENTS:
        copy = dataclasses.replace(event)
        later = dataclasses.replace(
            event,
            envelope=dataclasses.replace(
                event.envelope, recorded_at=event.envelope.recorded_at + timedelta(minutes=5)
            ),
        )
        assert fingerprint(copy) == fingerprint(event) == fingerprint(later)
        assert len(fingerprint(event)) == DIGEST_BYTES


def test_any_other_field_is_other_content() -> None:
    auth = next(e for e in EVENTS if isinstance(e, PaymentAuthorized))
    changes = [
        dataclasses.replace(auth, amount=Money(auth.amount.amount_minor + 1, auth.amount.currency)),
        dataclasses.replace(auth, payment_method="wallet"),
        dataclasses.replace(auth, station_id=None),
        dataclasses.replace(
            auth, envelope=dataclasses.replace(auth.envelope, network_id="another-network")
        ),
        dataclasses.replace(
            auth,
            envelope=dataclasses.replace(
                auth.envelope, occurred_at=auth.envelope.occurred_at + timedelta(seconds=1)
            ),
        ),
    ]
    prints = {fingerprint(c) for c in changes}
    assert len(prints) == len(changes) and fingerprint(auth) not in prints


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([c for cs in TOPIC_EVENTS.values() for c in cs]).flatmap(valid_strategy_for))
def test_every_event_type_has_a_deterministic_fingerprint(event: object) -> None:
    assert fingerprint(event) == fingerprint(dataclasses.replace(event))  # type: ignore[type-var]


def test_sightings_judge_repeats_against_what_was_seen_and_earlier_in_the_batch() -> None:
    from connectors.fingerprint import Sighting, sightings

    a, b = b"\x01" * 16, b"\x02" * 16
    ids = ["new", "new", "new", "kept", "kept", "legacy", "legacy"]
    prints = [a, a, b, a, b, b, a]
    seen: dict[str, bytes | None] = {"kept": a, "legacy": None}
    assert sightings(ids, prints, seen) == [
        Sighting.NEW,
        Sighting.REPEAT,  # earlier in the batch, same content
        Sighting.CONFLICT,  # earlier in the batch, other content
        Sighting.REPEAT,  # seen before, same content
        Sighting.CONFLICT,  # seen before, other content
        Sighting.REPEAT,  # a mark without a fingerprint: a duplicate, as before
        Sighting.CONFLICT,  # but the batch's own first copy is compared with
    ]


def test_the_fingerprint_of_a_fixed_event_never_changes() -> None:
    """Fingerprints are stored (``processed_events``, ``ingest_accepted``) and compared with
    those of later deliveries: a change to the canonical form would judge every redelivery of
    an event stored before it a conflict. A new form needs a migration, not a silent change."""
    at = datetime(2026, 11, 3, 8, 15, 30, 123456, tzinfo=UTC)
    env = Envelope("0190f5c4-7a3e-7c1d-9b2a-5e6f7a8b9c0d", at, at, Source.terminal, "net-golden",
                   "S-1", None)  # fmt: skip
    event = PaymentAuthorized(env, "P-1", "sandbox", "pi_1", Money(4200, "EUR"), "card", "S-1",
                              "DE*EVL*E0001", None)  # fmt: skip
    assert fingerprint(event).hex() == "790047e7f5c7b9f84ceb0608752f8367"
