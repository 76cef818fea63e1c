"""The content fingerprint of an event: what "the same event" means when an event_id repeats,
and the rule that judges a repeat (``sightings``).

An event_id is an idempotency key, so a record that repeats an id must repeat its content; a
consumer compares fingerprints to tell a redelivery (duplicate, no effect) from a reused id with
other content (``EVENT_ID_CONFLICT``, rejected; docs/errors.md).

The fingerprint is BLAKE2b-128 over a canonical JSON (``orjson``) of the **decoded** event: its
type, every payload field and every envelope field but ``recorded_at``. Decoded, so the same
event written under two schema versions (an upcast, a new optional field at its default) has one
fingerprint; without ``recorded_at``, because that is when a publisher recorded it, and a
publisher that re-creates an event to retry it records it again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from hashlib import blake2b
from operator import attrgetter
from typing import Any

import orjson

DIGEST_BYTES = 16


_PAYLOAD: dict[type, Callable[[Any], Any]] = {}
_HEAD = attrgetter("event_id", "occurred_at", "source", "network_id", "correlation_id",
                   "causation_id")  # fmt: skip


def _payload_of(cls: type) -> Callable[[Any], Any]:
    """A getter of the payload fields of ``cls`` in their order, as a list (always a list,
    also for one field, so the canonical form does not depend on how many there are)."""
    names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "envelope")
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda event: [one(event)]
    many = attrgetter(*names)
    return lambda event: list(many(event))


def fingerprint(event: Any) -> bytes:
    """The 16-byte content fingerprint of ``event`` (a dataclass with an ``envelope``)."""
    cls = type(event)
    payload = _PAYLOAD.get(cls)
    if payload is None:
        payload = _PAYLOAD[cls] = _payload_of(cls)
    head = (cls.__name__, *_HEAD(event.envelope))
    text = orjson.dumps((head, payload(event)), default=str)  # Decimal and the like as text
    return blake2b(text, digest_size=DIGEST_BYTES).digest()


class Sighting(Enum):
    """What a record is, given the ids seen before and earlier in its batch."""

    NEW = "new"
    """the first record of its id, never seen before"""
    REPEAT = "repeat"
    """its id seen before (or earlier in the batch) with the same content: a duplicate"""
    CONFLICT = "conflict"
    """its id seen before with other content: a reused idempotency key, rejected"""


def sightings(
    ids: Sequence[str], prints: Sequence[bytes], seen: Mapping[str, bytes | None]
) -> list[Sighting]:
    """Judge each record of a batch (its event id and content fingerprint, in order) against
    ``seen``: the ids seen before this batch with the fingerprint kept for each (None for a mark
    kept without one, which only a later record of the same batch is compared with). The one
    rule of every consumer and of HTTP ingest."""
    first: dict[str, int] = {}
    out = []
    for i, (event_id, content) in enumerate(zip(ids, prints, strict=True)):
        earlier = first.setdefault(event_id, i)
        kept = seen.get(event_id)
        reference = kept if kept is not None else (prints[earlier] if earlier != i else None)
        if event_id not in seen and earlier == i:
            out.append(Sighting.NEW)
        elif reference is None or reference == content:
            out.append(Sighting.REPEAT)
        else:
            out.append(Sighting.CONFLICT)
    return out
