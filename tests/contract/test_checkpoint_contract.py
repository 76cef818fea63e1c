"""One contract for every Checkpoint adapter (connectors.checkpoint): PostgreSQL (a scratch
database on the local stack) and memory. What the exactly-once loop relies on, step by step of
the commit order: claims, first sightings, savepoints, rejections, the outbox and its relay,
offsets and counts, and that a batch which raises leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from connectors import postgres
from connectors.checkpoint import (
    Checkpoint,
    InMemoryCheckpoint,
    Position,
    PostgresCheckpoint,
    Rejection,
)

GROUP = "contract-group"


@pytest.fixture(params=["memory", "postgres"])
def checkpoint(request: pytest.FixtureRequest) -> Iterator[Checkpoint]:
    if request.param == "memory":
        yield InMemoryCheckpoint()
        return
    app = request.getfixturevalue("app")
    name = f"checkpoint_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(app.database_url, name)
    adapter = PostgresCheckpoint(postgres.connect(url))
    try:
        yield adapter
    finally:
        adapter.close()
        postgres.drop_database(app.database_url, name)


def at(offset: int, event_id: str | None = None, partition: int = 0) -> Position:
    return Position("payments.events", partition, offset, event_id or f"ev-{offset}")


class Boom(Exception):
    pass


def test_offsets_advance_only_when_the_batch_commits(checkpoint: Checkpoint) -> None:
    with checkpoint.batch() as batch:
        batch.advance(GROUP, {("payments.events", 0): 5, ("payments.events", 1): 2})
    with pytest.raises(Boom), checkpoint.batch() as batch:
        batch.advance(GROUP, {("payments.events", 0): 99})
        raise Boom
    stored = checkpoint.stored_offsets(GROUP, ["payments.events"])
    assert stored == {("payments.events", 0): 5, ("payments.events", 1): 2}
    assert checkpoint.stored_offsets("another-group", ["payments.events"]) == {}


def test_a_claim_returns_the_stored_offsets_of_the_batchs_partitions(
    checkpoint: Checkpoint,
) -> None:
    with checkpoint.batch() as batch:
        batch.advance(GROUP, {("payments.events", 0): 7, ("payments.events", 3): 1})
    with checkpoint.batch() as batch:
        claimed = batch.claim(GROUP, {("payments.events", 0), ("payments.events", 2)})
        assert claimed == {("payments.events", 0): 7}


def test_first_sightings_are_new_once_per_group(checkpoint: Checkpoint) -> None:
    with checkpoint.batch() as batch:
        assert batch.mark_seen(GROUP, [at(1, "a"), at(2, "b")]) == {"a", "b"}
    with checkpoint.batch() as batch:
        assert batch.mark_seen(GROUP, [at(3, "b"), at(4, "c")]) == {"c"}
        assert batch.mark_seen("another-group", [at(3, "b")]) == {"b"}
    with pytest.raises(Boom), checkpoint.batch() as batch:
        assert batch.mark_seen(GROUP, [at(5, "d")]) == {"d"}
        raise Boom
    with checkpoint.batch() as batch:  # the failed batch's mark is gone with it
        assert batch.mark_seen(GROUP, [at(5, "d")]) == {"d"}


def test_a_mark_keeps_the_first_fingerprint_and_can_be_forgotten(checkpoint: Checkpoint) -> None:
    first, other = b"\x01" * 16, b"\x02" * 16
    with checkpoint.batch() as batch:
        batch.mark_seen(GROUP, [Position("t", 0, 1, "a", first), Position("t", 0, 2, "b")])
    with checkpoint.batch() as batch:
        assert batch.mark_seen(GROUP, [Position("t", 0, 3, "a", other)]) == set()
        assert batch.fingerprints(GROUP, ["a", "b", "c"]) == {"a": first, "b": None}
        assert batch.fingerprints("another-group", ["a"]) == {}
        batch.unmark(GROUP, ["a"])
        assert batch.fingerprints(GROUP, ["a"]) == {}
        assert batch.mark_seen(GROUP, [Position("t", 0, 3, "a", other)]) == {"a"}
        assert batch.fingerprints(GROUP, ["a"]) == {"a": other}


def test_a_savepoint_undoes_only_what_happened_inside_it(checkpoint: Checkpoint) -> None:
    with checkpoint.batch() as batch:
        batch.enqueue("billing.events", b"k1", b"kept", "out-1")
        with pytest.raises(Boom), batch.savepoint():
            batch.enqueue("billing.events", b"k2", b"undone", "out-2")
            batch.mark_seen(GROUP, [at(1, "x")])
            batch.reject(GROUP, Rejection(at(1, "x"), "TEST", "undone", None, None))
            raise Boom
        with batch.savepoint():
            batch.enqueue("billing.events", b"k3", b"kept too", "out-3")
    published: list[tuple[str, bytes, bytes | None]] = []
    checkpoint.relay(lambda t, v, k: published.append((t, v, k)), lambda: None)
    assert [v for _, v, _ in published] == [b"kept", b"kept too"]
    assert checkpoint.rejections(GROUP) == []
    with checkpoint.batch() as batch:
        assert batch.mark_seen(GROUP, [at(1, "x")]) == {"x"}


def test_rejections_are_kept_once_per_position_with_their_bytes(checkpoint: Checkpoint) -> None:
    first = Rejection(at(4, "e4"), "INVALID_AMOUNT", "amount must be > 0", b"pay-1", b"\x00raw")
    with checkpoint.batch() as batch:
        batch.reject(GROUP, first)
        batch.reject(GROUP, Rejection(at(4, "e4"), "OTHER", "second verdict", b"k", b"v"))
        undecodable = Position("payments.events", 0, 2, None)
        batch.reject(GROUP, Rejection(undecodable, "UNDECODABLE", "garbage", None, b"zz"))
    kept = checkpoint.rejections(GROUP)
    assert [r.position.offset for r in kept] == [2, 4]
    assert kept[1] == first
    assert kept[0].position.event_id is None and kept[0].key is None


def test_the_relay_publishes_in_order_once_and_retries_after_a_failure(
    checkpoint: Checkpoint,
) -> None:
    with checkpoint.batch() as batch:
        for i in range(5):
            batch.enqueue("settlement.commands", f"k{i}".encode(), f"v{i}".encode(), f"e{i}")
    with pytest.raises(Boom):
        checkpoint.relay(lambda t, v, k: None, _raise)  # the flush fails: nothing is marked
    sent: list[bytes] = []
    assert checkpoint.relay(lambda t, v, k: sent.append(v), lambda: None, limit=3) == 3
    assert checkpoint.relay(lambda t, v, k: sent.append(v), lambda: None) == 2
    assert checkpoint.relay(lambda t, v, k: sent.append(v), lambda: None) == 0
    assert sent == [b"v0", b"v1", b"v2", b"v3", b"v4"]


def test_counts_accumulate_per_group(checkpoint: Checkpoint) -> None:
    assert checkpoint.counts(GROUP) == (0, 0, 0)
    with checkpoint.batch() as batch:
        batch.count(GROUP, 10, 2, 1)
    with checkpoint.batch() as batch:
        batch.count(GROUP, 5, 0, 3)
    with pytest.raises(Boom), checkpoint.batch() as batch:
        batch.count(GROUP, 100, 100, 100)
        raise Boom
    assert checkpoint.counts(GROUP) == (15, 2, 4)


def test_nothing_enqueued_in_a_failed_batch_is_ever_relayed(checkpoint: Checkpoint) -> None:
    with pytest.raises(Boom), checkpoint.batch() as batch:
        batch.enqueue("billing.events", None, b"never", "e-never")
        raise Boom
    assert checkpoint.relay(lambda t, v, k: pytest.fail("relayed"), lambda: None) == 0


def _raise() -> None:
    raise Boom
