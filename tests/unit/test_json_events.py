"""Events from JSON for HTTP publishers: every event type round-trips, floats are refused for
integer amounts, and every error names the field's path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from schemas.json_events import (
    EVENT_TYPES,
    JsonEventError,
    JsonLimits,
    loads,
    parse_document,
    to_document,
)
from schemas.topics import TOPIC_EVENTS
from tests.strategies import valid_strategy_for

ALL = [c for cs in TOPIC_EVENTS.values() for c in cs]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ALL).flatmap(valid_strategy_for))
def test_every_event_round_trips_through_json(event: Any) -> None:
    try:
        text = json.dumps(to_document(event), allow_nan=False)
    except ValueError:  # an infinite or NaN float: JSON has no such number
        assume(False)
    assert parse_document(loads(text)) == event


def authorized() -> dict[str, Any]:
    return {
        "type": "PaymentAuthorized",
        "event": {
            "envelope": {"event_id": "01a23e4b-a1ea-7362-9e8a-fd402f425890",
                         "occurred_at": "2026-11-20T18:00:00Z",
                         "recorded_at": "2026-11-20T18:00:01+01:00",
                         "source": "psp", "network_id": "acme"},
            "payment_id": "P-1", "provider": "sandbox", "provider_reference": "pi_1",
            "amount": {"amount_minor": 5000, "currency": "EUR"}, "payment_method": "card",
        },
    }  # fmt: skip


DEFAULT = JsonLimits()


def error(doc: Any, limits: JsonLimits = DEFAULT) -> JsonEventError:
    with pytest.raises(JsonEventError) as caught:
        parse_document(doc, limits)
    return caught.value


def test_a_minimal_document_parses_with_optional_fields_left_out() -> None:
    event = parse_document(loads(json.dumps(authorized())))
    assert (event.payment_id, event.amount.amount_minor, event.session_id) == ("P-1", 5000, None)
    assert event.envelope.recorded_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("change", "path", "code"),
    [
        (lambda d: d["event"]["amount"].update(amount_minor=50.0), "$.event.amount.amount_minor",
         "FLOAT_NOT_ALLOWED"),
        (lambda d: d["event"]["amount"].update(amount_minor="5000"),
         "$.event.amount.amount_minor", "INVALID_JSON_EVENT"),
        (lambda d: d["event"].update(amout=1), "$.event.amout", "INVALID_JSON_EVENT"),
        (lambda d: d["event"].pop("payment_id"), "$.event.payment_id", "INVALID_JSON_EVENT"),
        (lambda d: d["event"]["envelope"].update(occurred_at="2026-11-20T18:00:00"),
         "$.event.envelope.occurred_at", "INVALID_JSON_EVENT"),
        (lambda d: d["event"]["envelope"].update(source="fax"), "$.event.envelope.source",
         "INVALID_JSON_EVENT"),
        (lambda d: d.update(type="PaymentAuthorised"), "$.type", "UNKNOWN_EVENT_TYPE"),
        (lambda d: d["event"].update(payment_method=None), "$.event.payment_method",
         "INVALID_JSON_EVENT"),
    ],
)  # fmt: skip
def test_each_error_names_its_path_and_code(change: Any, path: str, code: str) -> None:
    doc = loads(json.dumps(authorized()))
    change(doc)
    found = error(loads(json.dumps(doc)))
    assert (found.path, found.code) == (path, code), found


def test_limits_on_depth_length_and_strings() -> None:
    # Only what a field reads is descended into: depth counts the event's own nesting.
    found = error(authorized(), JsonLimits(max_depth=2))
    assert (found.code, found.path) == ("JSON_TOO_DEEP", "$.event.envelope")
    assert parse_document(authorized(), JsonLimits(max_depth=3)).payment_id == "P-1"
    nested: Any = 1
    for _ in range(40):
        nested = [nested]
    assert error({"type": "PaymentAuthorized", "event": nested}).code == "INVALID_JSON_EVENT"
    doc = authorized()
    doc["event"]["payment_id"] = "x" * 101
    assert error(doc, JsonLimits(max_string=100)).code == "STRING_TOO_LONG"
    with pytest.raises(JsonEventError) as caught:
        loads(b"[" * 1_000_000)
    assert caught.value.code in {"JSON_TOO_DEEP", "INVALID_JSON"}
    with pytest.raises(JsonEventError, match="not JSON"):
        loads(b'{"a": NaN}')


def test_a_card_number_in_an_error_is_masked() -> None:
    found = error({"type": "4111 1111 1111 1111", "event": {}})
    assert "4111 1111 1111 1111" not in str(found) and "1111" in str(found)


def test_every_event_type_is_known() -> None:
    assert set(EVENT_TYPES) == {c.__name__ for c in ALL}
