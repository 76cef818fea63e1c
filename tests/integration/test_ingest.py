"""HTTP ingest against the real broker: one result per event (accepted, duplicate, rejected with
its code and path), exactly the accepted events on Kafka and equal to what was sent, limits,
keys and scopes, and no server error for any JSON body."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.harness import free_port
from connectors import postgres
from connectors.ingest import Ingestor
from connectors.kafka import PublishError
from entrypoints.bootstrap import App
from entrypoints.ingest_app import create_ingest_app
from ledger.access import Principal, Scope
from ledger.envelope import uuid7
from schemas.json_events import JsonLimits
from tests.integration.conftest import (
    api_key,
    consume_from,
    create_database,
    drop_database,
    end_offsets,
)

NETWORK = f"net-ingest-{uuid.uuid4().hex[:8]}"
TOPIC = "payments.events"


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_ingest")
    yield url
    drop_database(app, url)


@pytest.fixture(scope="module")
def client(app: App, database: str) -> Iterator[TestClient]:
    headers = api_key(database, NETWORK, "publish")
    with TestClient(create_ingest_app(app, database), headers=headers) as c:
        yield c


def authorized(amount: Any = 5000, network: str = NETWORK, **fields: Any) -> dict[str, Any]:
    return {
        "type": "PaymentAuthorized",
        "event": {
            "envelope": {"event_id": uuid7(), "occurred_at": "2026-11-20T18:00:00Z",
                         "recorded_at": "2026-11-20T18:00:01Z", "source": "psp",
                         "network_id": network},
            "payment_id": f"P-{uuid.uuid4()}", "provider": "sandbox",
            "provider_reference": f"pi_{uuid.uuid4().hex[:8]}",
            "amount": {"amount_minor": amount, "currency": "EUR"}, "payment_method": "card",
            **fields,
        },
    }  # fmt: skip


def test_a_batch_gets_one_precise_result_per_event_and_kafka_exactly_the_new_one(
    app: App, client: TestClient
) -> None:
    good = authorized()
    reused = copy.deepcopy(good)
    reused["event"]["amount"]["amount_minor"] = 9000
    floats = authorized(amount=50.0)
    foreign = authorized(network="someone-else")
    starts = end_offsets(app, [TOPIC])
    answer = client.post("/v1/events/batch",
                         json={"events": [good, good, floats, reused, foreign]})  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    got = [(r["index"], r["status"], r.get("code"), r.get("path")) for r in body["results"]]
    assert got == [
        (0, "accepted", None, None),
        (1, "duplicate", None, None),
        (2, "rejected", "FLOAT_NOT_ALLOWED", "$.event.amount.amount_minor"),
        (3, "rejected", "EVENT_ID_CONFLICT", "$.event.envelope.event_id"),
        (4, "rejected", "NETWORK_MISMATCH", "$.event.envelope.network_id"),
    ]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 1, 3)

    ours = {good["event"]["envelope"]["event_id"], floats["event"]["envelope"]["event_id"],
            foreign["event"]["envelope"]["event_id"]}  # fmt: skip
    records = [r for r in consume_from(app, [TOPIC], starts, 1, timeout=10) if r.event_id in ours]
    assert len(records) == 1
    event = records[0].event
    assert event.envelope.event_id == good["event"]["envelope"]["event_id"]
    assert event.amount.amount_minor == 5000 and event.envelope.network_id == NETWORK

    again = client.post("/v1/events/batch", json={"events": [good]}).json()
    assert again["results"][0]["status"] == "duplicate"  # remembered across requests


def test_a_single_event_answers_202_200_or_422_with_its_path(client: TestClient) -> None:
    doc = authorized()
    first = client.post("/v1/events", json=doc)
    assert first.status_code == 202 and first.json()["status"] == "accepted", first.text
    assert first.json()["topic"] == TOPIC
    assert client.post("/v1/events", json=doc).status_code == 200
    card = authorized(station_id="4111-1111-1111-1111")
    refused = client.post("/v1/events", json=card)
    assert refused.status_code == 422
    body = refused.json()
    assert (body["code"], body["path"]) == ("CARD_NUMBER", "$.event.station_id")
    assert "4111-1111-1111-1111" not in refused.text and body["request_id"]
    typo = client.post("/v1/events", json={**doc, "event": {**doc["event"], "amout": 1}})
    assert typo.status_code == 422 and typo.json()["path"] == "$.event.amout"


def test_limits_keys_and_scopes(app: App, database: str, client: TestClient) -> None:
    small = dataclasses.replace(app.settings, ingest_max_body_bytes=200, ingest_max_batch=2)
    headers = api_key(database, NETWORK, "publish")
    with TestClient(create_ingest_app(app, database, settings=small), headers=headers) as c:
        big = c.post("/v1/events", json=authorized())
        assert big.status_code == 413 and big.json()["code"] == "BODY_TOO_LARGE"
    assert client.post("/v1/events/batch", json={"events": []}).status_code == 422
    reader = api_key(database, NETWORK, "finance:read")
    assert client.post("/v1/events", json=authorized(), headers=reader).status_code == 403
    anonymous = client.post("/v1/events", json=authorized(), headers={"Authorization": ""})
    assert anonymous.status_code == 401
    spec = client.get("/openapi.json").json()
    assert {"/v1/events", "/v1/events/batch"} <= set(spec["paths"])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(JSON, st.builds(lambda v: {"type": "PaymentAuthorized", "event": v}, JSON),
                 st.binary(max_size=64).map(lambda b: b)))  # fmt: skip
def test_no_json_body_gives_a_server_error(client: TestClient, body: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    for path in ("/v1/events", "/v1/events/batch"):
        answer = client.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert answer.status_code in {200, 202, 413, 422}, (path, raw, answer.text)
        assert "code" in answer.json() or "results" in answer.json() or "status" in answer.json()


def _ingestor(app: App, **publisher_config: Any) -> Ingestor:
    publisher = app.publisher(**publisher_config) if publisher_config else app.publisher()
    return Ingestor(publisher, JsonLimits(), app.settings.max_future_skew_seconds)


WHO = Principal(key_id="tests", network_id=NETWORK, scopes=frozenset([Scope.PUBLISH]))


def test_a_batch_kafka_did_not_confirm_is_not_recorded_and_its_retry_is_accepted(
    app: App, database: str
) -> None:
    docs = [authorized(), authorized()]
    ids = [d["event"]["envelope"]["event_id"] for d in docs]
    nobody = f"127.0.0.1:{free_port()}"  # no broker listens: every delivery times out
    unconfirmed = _ingestor(app, **{"bootstrap.servers": nobody, "message.timeout.ms": 1000})
    with postgres.connect(database, autocommit=True) as conn:
        with pytest.raises(PublishError):
            unconfirmed.ingest(conn, docs, WHO)
        kept = conn.execute("SELECT count(*) FROM ingest_accepted WHERE event_id = ANY(%s)",
                            (ids,)).fetchone()  # fmt: skip
        assert kept == (0,)  # the reservation rolled back: no id is taken
        retried = _ingestor(app).ingest(conn, docs, WHO)
    assert [r.status for r in retried] == ["accepted", "accepted"]


def test_two_requests_racing_with_the_same_ids_publish_each_id_once(
    app: App, database: str
) -> None:
    docs = [authorized() for _ in range(50)]
    ingestors = [_ingestor(app), _ingestor(app, **{"client.id": "second"})]
    start = threading.Barrier(2)

    def send(ingestor: Ingestor) -> list[str]:
        with postgres.connect(database, autocommit=True) as conn:
            start.wait()
            return [r.status for r in ingestor.ingest(conn, docs, WHO)]

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(send, ingestors)
    for a, b in zip(first, second, strict=True):  # per event: one accepted, one duplicate
        assert sorted([a, b]) == ["accepted", "duplicate"]
