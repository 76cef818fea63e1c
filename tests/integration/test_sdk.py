"""The producer SDK and consumer helper against the real broker and registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.kafka import TOPIC_OF, key_of
from entrypoints.bootstrap import App
from entrypoints.simulate import NetworkSimulator
from ledger import validation
from schemas.topics import TOPIC_EVENTS
from tests.integration.conftest import consume_from, end_offsets
from tests.strategies import strategy_for, valid_strategy_for

TOPICS = list(TOPIC_EVENTS)


def test_simulated_traffic_round_trips_in_order_per_key(app: App) -> None:
    events = list(NetworkSimulator(seed=7).burst(60))
    starts = end_offsets(app, TOPICS)
    publisher = app.publisher()
    publisher.publish_many(events)
    publisher.flush()

    records = consume_from(app, TOPICS, starts, len(events))
    assert [r.error for r in records if r.error] == []
    assert sorted(r.event_id for r in records) == sorted(e.envelope.event_id for e in events)
    # One entity's events share a partition and keep their publish order.
    by_key: dict[tuple[str, bytes], list[str]] = {}
    partitions: dict[tuple[str, bytes], set[int]] = {}
    for r in records:
        assert r.key is not None
        by_key.setdefault((r.topic, r.key), []).append(r.event_id or "")
        partitions.setdefault((r.topic, r.key), set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())
    for event in events:
        key = (TOPIC_OF[type(event)], key_of(event).encode())
        assert event.envelope.event_id in by_key[key]
    for key, ids in by_key.items():
        published = [
            e.envelope.event_id for e in events if (TOPIC_OF[type(e)], key_of(e).encode()) == key
        ]
        assert ids == published


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from([c for cs in TOPIC_EVENTS.values() for c in cs]).flatmap(
            valid_strategy_for
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_event_survives_kafka_unchanged(app: App, events: list[object]) -> None:
    unique = {e.envelope.event_id: e for e in events if key_of(e)}  # type: ignore[attr-defined]
    events = list(unique.values())  # event ids are unique by contract; empty keys cannot partition
    if not events:
        return
    starts = end_offsets(app, TOPICS)
    publisher = app.publisher()
    for event in events:
        publisher.publish(event)
    publisher.flush()
    records = consume_from(app, TOPICS, starts, len(events))
    decoded = {r.event_id: r.event for r in records}
    for event in events:
        assert decoded[event.envelope.event_id] == event  # type: ignore[attr-defined]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from([c for cs in TOPIC_EVENTS.values() for c in cs]).flatmap(strategy_for))
def test_the_sdk_publishes_exactly_the_events_that_obey_the_input_rules(
    app: App, event: Any
) -> None:
    """Arbitrary field values: the SDK refuses, before enqueueing anything, every event the
    consumers would reject under the input rules, and publishes the others."""
    publisher = app.publisher()
    latest = datetime.now(UTC) + timedelta(seconds=app.settings.max_future_skew_seconds)
    try:
        validation.check(event, latest)
    except validation.InvalidInput as expected:
        with pytest.raises(validation.InvalidInput) as refused:
            publisher.publish(event)
        assert refused.value.code == expected.code
        with pytest.raises(validation.InvalidInput):
            publisher.publish_many([event])
    else:
        if key_of(event):
            publisher.publish(event)


def test_delivery_failure_surfaces_as_an_error(app: App) -> None:
    from connectors.kafka import EventPublisher, PublishError

    publisher = EventPublisher(
        app.settings.bootstrap_servers, app.serde, **{"message.timeout.ms": 1000}
    )
    publisher.produce_bytes("no.such.topic.evledger", b"x", b"k")  # auto-create is off
    with pytest.raises(PublishError) as failure:
        publisher.flush(10)
    assert "no.such.topic.evledger" in str(failure.value)
