"""The drivers projector: ``drivers.events`` into PostgreSQL (``connectors.drivers_store``) on
the shared exactly-once loop. It never opens a sealed field: profiles are stored as sealed on
the log, so a replay after an erasure rebuilds them unchanged, and they read as erased."""

from __future__ import annotations

from collections.abc import Sequence

from connectors import drivers_store
from connectors.kafka import Consumed
from ledger import events as ev
from processors.base import Effects, PostgresProcessor, Wiring

GROUP = "evledger-drivers-projector"
TOPICS = ("drivers.events",)


class DriverProjection:
    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        for record in records:
            if isinstance(record.event, ev.DriverProfileUpdated):
                drivers_store.record_profile(tx.conn, record.event)


def build_drivers_projector(
    app: Wiring, *, group: str = GROUP, database_url: str | None = None, batch_size: int = 2000
) -> PostgresProcessor:
    """The drivers projector on the shared exactly-once loop (``processors.base``)."""
    return PostgresProcessor(
        app, DriverProjection(), group, TOPICS, batch_size, database_url=database_url
    )
