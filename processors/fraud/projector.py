"""The fraud projector: ``fraud.scores`` into PostgreSQL (``connectors.fraud_store``) on the
shared exactly-once loop, for the risk team's CLI and API and for the settlement connector's
checks (a blocked token, a payment under review)."""

from __future__ import annotations

from collections.abc import Sequence

from connectors import fraud_store
from connectors.kafka import Consumed
from ledger import events as ev
from processors.base import Effects, PostgresProcessor, Wiring

GROUP = "evledger-fraud-projector"
TOPICS = ("fraud.scores",)


class FraudProjection:
    """Writes each fraud event to its table; every write is idempotent by event id."""

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        conn = tx.conn
        for record in records:
            e = record.event
            if isinstance(e, ev.FraudScored):
                fraud_store.record_score(conn, e)
            elif isinstance(e, ev.FraudAlertRaised):
                fraud_store.record_alert(conn, e)
            elif isinstance(e, ev.TokenBlocked | ev.TokenUnblocked):
                fraud_store.record_block(conn, e)
            elif isinstance(e, ev.FraudReviewCleared):
                fraud_store.record_review_cleared(conn, e)


def build_fraud_projector(
    app: Wiring, *, group: str = GROUP, database_url: str | None = None, batch_size: int = 2000
) -> PostgresProcessor:
    """The fraud projector on the shared exactly-once loop (``processors.base``)."""
    return PostgresProcessor(
        app, FraudProjection(), group, TOPICS, batch_size, database_url=database_url
    )
