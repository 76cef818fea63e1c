"""The webhook app's edge on the real stack: limits come from the environment through the app
factory, a negative payout reaches provider.events with its sign, and what is refused (a
fractional amount, deep JSON, an oversized body) publishes nothing."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from connectors.settings import SettingsError
from entrypoints.bootstrap import App
from entrypoints.webhooks_app import create_webhooks_app
from ledger.money import Money
from tests.integration.conftest import create_database, drop_database, end_offsets
from tests.integration.test_webhooks_app import payouts, providers, signed


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_hook_edges")
    yield url
    drop_database(app, url)


@pytest.fixture
def web(app: App, database: str) -> TestClient:
    limited = dataclasses.replace(
        app.settings, webhook_max_body_bytes=2048, webhook_max_json_depth=6
    )
    return TestClient(
        create_webhooks_app(
            app=dataclasses.replace(app, settings=limited),
            providers=providers(),
            database_url=database,
        )
    )


def payout_body(payout_id: str, amount: object, **extra: object) -> bytes:
    obj = {"id": payout_id, "object": "payout", "amount": amount, "currency": "eur", **extra}
    event = {"id": f"evt_{payout_id}", "type": "payout.paid", "created": int(time.time()),
             "data": {"object": obj}}  # fmt: skip
    return json.dumps(event).encode()


def test_a_negative_payout_reaches_kafka_with_its_sign(app: App, web: TestClient) -> None:
    tag = uuid.uuid4().hex[:10]
    starts = end_offsets(app, ["provider.events"])
    body = payout_body(f"po_neg_{tag}", -4_200)
    assert web.post("/webhooks/stripe", content=body, headers=signed(body)).status_code == 200
    [event] = payouts(app, starts, {f"po_neg_{tag}"})
    assert event.amount == Money(-4_200, "EUR")


def test_refused_deliveries_publish_nothing(app: App, web: TestClient) -> None:
    tag = uuid.uuid4().hex[:10]
    starts = end_offsets(app, ["provider.events"])
    fractional = payout_body(f"po_frac_{tag}", 12.5)
    deep = payout_body(f"po_deep_{tag}", 100, meta={"a": {"b": {"c": {"d": [1]}}}})
    large = payout_body(f"po_large_{tag}", 100, pad="x" * 3000)
    answers = {
        name: web.post("/webhooks/stripe", content=body, headers=signed(body))
        for name, body in (("fractional", fractional), ("deep", deep), ("large", large))
    }
    assert {name: a.status_code for name, a in answers.items()} == {
        "fractional": 400, "deep": 400, "large": 413,
    }  # fmt: skip
    assert "nested deeper than 6" in answers["deep"].json()["detail"]
    assert all(set(a.json()) == {"code", "detail", "request_id"} for a in answers.values())
    ids = {f"po_frac_{tag}", f"po_deep_{tag}", f"po_large_{tag}"}
    assert payouts(app, starts, ids) == []


def test_a_limit_that_is_not_a_number_stops_the_app(
    app: App, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVLEDGER_WEBHOOK_MAX_BODY_BYTES", "1MB")
    with pytest.raises(SettingsError, match="EVLEDGER_WEBHOOK_MAX_BODY_BYTES"):
        create_webhooks_app(providers=providers(), database_url=database)
