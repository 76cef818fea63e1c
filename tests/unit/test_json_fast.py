"""The fast JSON path of HTTP ingest only ever accepts what the reference parser accepts, and
then gives the same events: on generated valid events of every type, on documents mutated
the ways senders get them wrong, and on limits."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas.json_events import (
    EVENT_TYPES,
    JsonEventError,
    JsonLimits,
    loads,
    parse_document,
    to_document,
)
from schemas.json_fast import FastDecoder
from tests.strategies import strategy_for

LIMITS = JsonLimits()
FAST = FastDecoder(LIMITS)
EVENTS = st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda n: strategy_for(EVENT_TYPES[n]))


def reference(body: bytes, limits: JsonLimits = LIMITS) -> list[Any] | None:
    """The events the reference parser reads from a batch body, or None if it refuses any."""
    try:
        doc = loads(body)
        if not isinstance(doc, dict) or set(doc) != {"events"}:
            return None
        return [parse_document(d, limits, f"$.events[{i}]") for i, d in enumerate(doc["events"])]
    except (JsonEventError, TypeError, AttributeError):
        return None


def agrees(body: bytes, fast: FastDecoder = FAST, limits: JsonLimits = LIMITS) -> None:
    got = fast.batch(body)
    if got is not None:
        assert got == reference(body, limits)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENTS, min_size=1, max_size=5))
def test_valid_events_of_every_type_decode_to_the_reference_events(events: list[Any]) -> None:
    body = orjson.dumps({"events": [to_document(e) for e in events]})
    want = reference(body)
    got = FAST.batch(body)
    if want is None:  # e.g. a time the reference cannot read back: the fast path must refuse
        assert got is None
    else:
        assert got == want


def authorized() -> dict[str, Any]:
    """A valid PaymentAuthorized document, for the mutations below to break."""
    return {"type": "PaymentAuthorized", "event": {
        "envelope": {"event_id": "01a2406e-b9be-7f78-a40e-8a009b36dcd5",
                     "occurred_at": "2026-11-20T18:00:00Z", "recorded_at": "2026-11-20T18:00:01Z",
                     "source": "psp", "network_id": "n"},
        "payment_id": "P-1", "provider": "sandbox", "provider_reference": "pi_1",
        "amount": {"amount_minor": 5000, "currency": "EUR"}, "payment_method": "card"}}  # fmt: skip


MUTATIONS = [
    lambda d: d["event"].update(unknown_member=1),
    lambda d: d.update(extra=1),
    lambda d: d.update(type="NoSuchEvent"),
    lambda d: d.pop("type"),
    lambda d: d["event"]["envelope"].update(occurred_at="2026-11-20T18:00:00"),
    lambda d: d["event"]["envelope"].update(occurred_at="yesterday"),
    lambda d: d["event"]["envelope"].update(source="carrier-pigeon"),
    lambda d: d["event"]["envelope"].update(event_id=None),
    lambda d: d["event"]["amount"].update(amount_minor=50.0),
    lambda d: d["event"]["amount"].update(amount_minor=True),
    lambda d: d["event"]["amount"].update(amount_minor="5000"),
    lambda d: d["event"]["amount"].update(currency="XXX"),
    lambda d: d["event"]["amount"].update(extra=1),
    lambda d: d["event"].update(payment_id=12),
    lambda d: d["event"].pop("payment_id"),
    lambda d: d["event"].update(token_uid=None),
    lambda d: d["event"].update(amount=None),
]


@pytest.mark.parametrize("mutate", MUTATIONS)
def test_a_mutated_document_goes_to_the_reference(mutate: Any) -> None:
    good = authorized()
    bad = copy.deepcopy(good)
    mutate(bad)
    agrees(orjson.dumps({"events": [good, bad]}))
    agrees(json.dumps({"events": [bad]}).encode())
    assert FAST.batch(orjson.dumps({"events": [good]})) is not None


def test_limits_send_the_body_to_the_reference() -> None:
    long_id = {"type": "VoidRequested", "event": {
        "envelope": {"event_id": "01a2406e-b9be-7f78-a40e-8a009b36dcd5",
                     "occurred_at": "2026-11-20T18:00:00Z", "recorded_at": "2026-11-20T18:00:01Z",
                     "source": "psp", "network_id": "n"},
        "payment_id": "P" * 300, "provider": "sandbox", "reason": "r"}}  # fmt: skip
    body = orjson.dumps({"events": [long_id]})
    small = JsonLimits(max_string=100)
    assert FastDecoder(small).batch(body) is None
    shallow = JsonLimits(max_depth=2)
    assert FastDecoder(shallow).batch(body) is None
    assert FAST.batch(body) == reference(body)


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b"{}", b'{"events": 1}', b'{"events": []}', b'{"events": [1]}', b"\xff",
     b'{"events": [], "more": 1}', b'{"events": [{"type": "PaymentAuthorized"}]}'],
)  # fmt: skip
def test_malformed_bodies_go_to_the_reference(body: bytes) -> None:
    got = FAST.batch(body)
    assert got is None or got == reference(body)


@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_an_exception(body: bytes) -> None:
    agrees(body)


def test_repeated_members_and_wide_characters_read_as_the_reference_reads_them() -> None:
    event = ('{"envelope": {"event_id": "e1", "occurred_at": "2026-11-20T18:00:00Z",'
             ' "recorded_at": "2026-11-20T18:00:01Z", "source": "psp", "network_id": "n"},'
             ' "payment_id": "P-1", "payment_id": "P-2", "provider": "sandbox",'
             ' "reason": "%s"}')  # fmt: skip
    for reason in ("a" * 10, "\U0001f600" * 60, "\\ud800", "\\u0000"):
        body = ('{"events": [{"type": "VoidRequested", "event": %s}]}' % (event % reason)).encode()
        for fast, limits in ((FAST, LIMITS), (FastDecoder(JsonLimits(max_string=100)),
                                              JsonLimits(max_string=100))):  # fmt: skip
            agrees(body, fast, limits)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_a_single_document_decodes_to_the_reference_event(event: Any) -> None:
    """Accepted: the reference's event; refused by the reference: refused here too."""
    body = orjson.dumps(to_document(event))
    try:
        want = parse_document(loads(body), LIMITS)
    except JsonEventError:
        assert FAST.single(body) is None
    else:
        assert FAST.single(body) == want


@pytest.mark.parametrize("mutate", MUTATIONS)
def test_a_mutated_single_document_goes_to_the_reference(mutate: Any) -> None:
    doc = authorized()
    assert FAST.single(orjson.dumps(doc)) == parse_document(doc, LIMITS)
    mutate(doc)
    got = FAST.single(orjson.dumps(doc))
    if got is not None:
        assert got == parse_document(loads(orjson.dumps(doc)), LIMITS)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_events_built_slot_by_slot_stay_frozen_hashable_values(event: Any) -> None:
    """The builders write each slot of an event once instead of calling its generated
    ``__init__`` (ledger.fastpaths): what they build is the same frozen value."""
    got = FAST.batch(orjson.dumps({"events": [to_document(event)]}))
    assume(got is not None)  # the reference reads it (the tests above)
    (built,) = got or [None]
    assert built == event and type(built) is type(event)
    assert hash(built.envelope) == hash(event.envelope)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.envelope = event.envelope
