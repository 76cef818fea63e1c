"""fraud.scores into PostgreSQL, exactly once, and the risk team's reads of it: the alerts, a
subject's scores with every rule's evidence, its block history (a late, older change does not
undo a newer one), through the API under the risk scope and one network only."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from connectors import postgres
from entrypoints.api import create_app
from entrypoints.bootstrap import App
from ledger.envelope import Envelope
from ledger.events import (
    FraudAlertRaised,
    FraudScored,
    RuleContribution,
    TokenBlocked,
    TokenUnblocked,
)
from processors.fraud.projector import TOPICS, build_fraud_projector
from tests.integration.conftest import api_key, create_database, drop_database, end_offsets

NETWORK = f"test-fraud-proj-{uuid.uuid4().hex[:8]}"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def env(minutes: int) -> Envelope:
    return Envelope.new(NETWORK, occurred_at=T0 + timedelta(minutes=minutes))


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_fraud_proj")
    yield url
    drop_database(app, url)


def test_projection_and_the_risk_api(app: App, database: str) -> None:
    group = f"test-fraud-projector-{uuid.uuid4()}"
    with postgres.connect(database) as conn:
        postgres.store_offsets(conn, group, end_offsets(app, list(TOPICS)))
        conn.commit()
    evidence = json.dumps({"km": 878.4, "kmh": 1757})
    rule = RuleContribution("impossible_travel", 0.9, 1.0, evidence)
    scored = FraudScored(env(0), "token:T1", 0.9, ["impossible_travel"], [rule], "in-1", 0.8)
    alert = FraudAlertRaised(env(0), "token:T1", 0.9, "score 0.90: impossible_travel (km=878.4)",
                             "block", ["impossible_travel"], "in-1", "P-1", "S-1")  # fmt: skip
    blocked = TokenBlocked(
        env(0), "token:T1", alert.reason, "fraud-policy", alert.envelope.event_id
    )
    unblocked = TokenUnblocked(env(30), "token:T1", "driver flew, verified", "ana")
    stale = TokenBlocked(env(10), "token:T1", "older block arriving late", "bob")
    publisher = app.publisher()
    for e in (scored, alert, blocked, unblocked, stale, scored):  # the score twice: a redelivery
        publisher.publish(e)
    publisher.flush()
    projector = build_fraud_projector(app, group=group, database_url=database)
    stats = projector.drain(idle_seconds=1.5)
    projector.close()
    assert stats.consumed >= 6 and stats.duplicates >= 1

    risk = api_key(database, NETWORK, "risk")
    with TestClient(create_app(app.settings, database_url=database), headers=risk) as client:
        listed = client.get("/fraud/alerts").json()
        assert [(a["subject"], a["action"], a["payment_id"]) for a in listed["items"]] == [
            ("token:T1", "block", "P-1")
        ]
        view = client.get("/fraud/subjects/token:T1").json()
        assert view["block"]["blocked"] is False and view["block"]["actor"] == "ana"
        assert [c["actor"] for c in view["block_history"]] == ["fraud-policy", "bob", "ana"]
        assert view["scores"][0]["contributions"][0]["evidence"] == {"km": 878.4, "kmh": 1757}
        assert len(view["scores"]) == 1
        missing = client.get("/fraud/subjects/token:NOPE")
        assert (missing.status_code, missing.json()["code"]) == (404, "UNKNOWN_FRAUD_SUBJECT")

    other = api_key(database, f"{NETWORK}-other", "risk")
    with TestClient(create_app(app.settings, database_url=database), headers=other) as client:
        assert client.get("/fraud/alerts").json()["items"] == []
        assert client.get("/fraud/subjects/token:T1").status_code == 404
    finance = api_key(database, NETWORK, "finance:read")
    with TestClient(create_app(app.settings, database_url=database), headers=finance) as client:
        assert client.get("/fraud/alerts").status_code == 403
