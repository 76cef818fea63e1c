"""The envelope every event carries, documented dataclass fields, and UUIDv7 event ids."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

NAMESPACE = "io.evledger"


def doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field with an Avro ``doc`` string (and optional default)."""
    return dataclasses.field(metadata={"doc": text}, **kwargs)


class Source(StrEnum):
    """Which upstream system an event came from."""

    ocpp16 = "ocpp16"
    ocpp201 = "ocpp201"
    ocpi = "ocpi"
    terminal = "terminal"
    psp = "psp"
    internal = "internal"


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7) as text: 48-bit ms timestamp + 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Envelope:
    """Metadata every event carries, whatever its payload."""

    event_id: str = doc("UUID (v7 preferred); the event's idempotency key everywhere downstream")
    occurred_at: datetime = doc("When it happened, UTC, by the device or upstream clock")
    recorded_at: datetime = doc("When evledger (or the publishing SDK) recorded it, UTC")
    source: Source = doc("Upstream system: ocpp16, ocpp201, ocpi, terminal, psp or internal")
    network_id: str = doc("The charging network (operator / tenant) the event belongs to")
    correlation_id: str | None = doc("Groups every event of one business flow", default=None)
    causation_id: str | None = doc("event_id of the event that caused this one", default=None)

    @classmethod
    def new(
        cls,
        network_id: str,
        source: Source = Source.internal,
        *,
        occurred_at: datetime | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: str | None = None,
    ) -> Envelope:
        """A fresh envelope: new UUIDv7, recorded now, occurred now unless given."""
        now = utcnow()
        return cls(
            event_id=event_id or uuid7(),
            occurred_at=occurred_at or now,
            recorded_at=now,
            source=source,
            network_id=network_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    def caused(self, source: Source = Source.internal, **kw: Any) -> Envelope:
        """Envelope for an event caused by this one: same network and correlation."""
        return Envelope.new(
            self.network_id,
            source,
            correlation_id=self.correlation_id or self.event_id,
            causation_id=self.event_id,
            **kw,
        )
