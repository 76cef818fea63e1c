"""The fraud policy where money moves: the settlement connector refuses a blocked token or card
(TOKEN_BLOCKED, naming who blocked it and how to unblock), authorizes it again once unblocked,
and holds the capture of a payment under review (FRAUD_REVIEW_HOLD) until `evledger fraud
clear` releases it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from connectors import fraud_store, postgres
from connectors.personal_data import read_pseudonymizer
from connectors.providers.sandbox import SandboxProvider
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from ledger.events import (
    AuthorizationFailed,
    FraudAlertRaised,
    PaymentAuthorized,
    PaymentCaptured,
    TokenBlocked,
    TokenUnblocked,
)
from ledger.settlement.outcomes import card_fingerprint
from tests.integration.conftest import create_database, drop_database, end_offsets
from tests.integration.test_settlement_processor import (
    NETWORK,
    authorize,
    capture,
    connector,
    envelope,
    new_group,
    outcomes,
    publish,
    registry_of,
)


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_fraud_policy")
    yield url
    drop_database(app, url)


def record(url: str, *events: object) -> None:
    with postgres.connect(url, autocommit=True) as conn:
        for e in events:
            if isinstance(e, TokenBlocked | TokenUnblocked):
                fraud_store.record_block(conn, e)
            elif isinstance(e, FraudAlertRaised):
                fraud_store.record_alert(conn, e)


def card(app: App, payment_token: str) -> str:
    """The card fingerprint the connector derives: keyed with the stack's pseudonym key."""
    keyed = read_pseudonymizer(app.settings.pseudonym_key_path)
    fingerprint = card_fingerprint(payment_token, NETWORK, keyed)
    assert fingerprint.startswith("cd1_") and payment_token not in fingerprint
    return fingerprint


def test_a_blocked_token_or_card_is_refused_until_unblocked(app: App, database: str) -> None:
    registry = registry_of(SandboxProvider("sandbox"))
    token = f"DE-EVL-C{uuid.uuid4().hex[:8]}"
    stolen = f"tok_visa_{uuid.uuid4().hex[:8]}"
    record(
        database,
        TokenBlocked(envelope(), f"token:{token}", "cloned_token (alert)", "fraud-policy"),
        TokenBlocked(envelope(), f"card:{card(app, stolen)}", "card testing", "risk-team"),
    )
    p1, p2, p3 = (f"P-{uuid.uuid4()}" for _ in range(3))
    by_token = replace(authorize(p1), token_uid=token)
    by_card = authorize(p2, token=stolen)
    group = new_group(app, database)
    starts = end_offsets(app, ["payments.events"])
    publish(app, [by_token, by_card])
    first = connector(app, database, group, registry)
    first.drain(idle_seconds=2)
    first.close()
    refused = [e for e in outcomes(app, database, starts, {p1, p2}, 2)
               if isinstance(e, AuthorizationFailed)]  # fmt: skip
    assert sorted(e.reason_code for e in refused) == ["TOKEN_BLOCKED", "TOKEN_BLOCKED"]
    detail = next(e.detail for e in refused if e.payment_id == p1)
    assert f"token:{token} is blocked" in detail and "by fraud-policy" in detail
    assert "evledger fraud unblock" in detail
    assert next(e for e in refused if e.payment_id == p2).card_fingerprint == card(app, stolen)

    record(database, TokenUnblocked(envelope(), f"token:{token}", "customer verified", "ana"))
    group = new_group(app, database)
    starts = end_offsets(app, ["payments.events"])
    publish(app, [replace(authorize(p3), token_uid=token)])
    second = connector(app, database, group, registry)
    second.drain(idle_seconds=2)
    second.close()
    authorized = [e for e in outcomes(app, database, starts, {p3}, 2)
                  if isinstance(e, PaymentAuthorized)]  # fmt: skip
    assert [(e.token_uid, e.card_fingerprint) for e in authorized] == [
        (token, card(app, "tok_visa"))
    ]


def test_a_capture_under_review_waits_for_clear(
    app: App, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry_of(SandboxProvider("sandbox"))
    group = new_group(app, database)
    payment = f"P-{uuid.uuid4()}"
    starts = end_offsets(app, ["payments.events"])
    publish(app, [authorize(payment)])
    held = connector(app, database, group, registry)
    held.drain(idle_seconds=1.5)
    alert = FraudAlertRaised(envelope(), "token:T", 0.9, "velocity", "review", ["velocity"],
                             None, payment, None)  # fmt: skip
    record(database, alert)
    publish(app, [capture(payment)])
    held.drain(idle_seconds=1.5)
    with postgres.connect(database) as conn:
        reasons = conn.execute(
            "SELECT reason_code, detail FROM rejections WHERE consumer_group = %s", (group,)
        ).fetchall()
    assert [r[0] for r in reasons] == ["FRAUD_REVIEW_HOLD"]
    assert "evledger fraud clear" in reasons[0][1]

    monkeypatch.setenv("EVLEDGER_DATABASE_URL", database)
    result = CliRunner().invoke(
        cli, ["fraud", "clear", alert.envelope.event_id, "--reason", "driver verified"]
    )
    assert result.exit_code == 0, result.output
    assert "1 held capture(s) sent again" in " ".join(result.output.split())
    held.drain(idle_seconds=2)
    held.close()
    captured = [e for e in outcomes(app, database, starts, {payment}, 3)
                if isinstance(e, PaymentCaptured)]  # fmt: skip
    assert len(captured) == 1
    with postgres.connect(database) as conn:
        status = conn.execute(
            "SELECT review_status, cleared_by FROM fraud_alerts WHERE payment_id = %s", (payment,)
        ).fetchone()
    assert status is not None and status[0] == "cleared"
