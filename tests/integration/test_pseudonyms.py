"""Token pseudonyms at the front door, on the real stack: HTTP ingest and a front-door SDK
publisher write the same pseudonym for the same token and never the token itself; a token an
operator types into `evledger fraud block` becomes that pseudonym, and the risk API finds its
record from the token as typed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from connectors import postgres
from entrypoints.api import create_app
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from entrypoints.ingest_app import create_ingest_app
from ledger import pseudonyms
from ledger.envelope import Envelope, uuid7
from ledger.events import SessionStarted
from processors.fraud.projector import TOPICS as FRAUD_TOPICS
from processors.fraud.projector import build_fraud_projector
from tests.integration.conftest import api_key, consume_from, end_offsets
from tests.integration.test_ledger_projector import scratch_book

NETWORK = f"net-pseudo-{uuid.uuid4().hex[:8]}"
RFID = f"04A2B3{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture
def book(app: App) -> Iterator[str]:
    with scratch_book(app) as url:
        yield url


def session_doc(session_id: str) -> dict[str, object]:
    return {"type": "SessionStarted", "event": {
        "envelope": {"event_id": uuid7(), "occurred_at": "2026-11-20T18:00:00Z",
                     "recorded_at": "2026-11-20T18:00:01Z", "source": "ocpp201",
                     "network_id": NETWORK},
        "session_id": session_id, "station_id": "DE*EVL*E0001", "evse_id": "EVSE-1",
        "connector_id": "1", "transaction_id": "TX-1", "tariff_id": "TAR-1", "country": "DE",
        "time_zone": "Europe/Berlin", "token_uid": RFID}}  # fmt: skip


def test_ingest_and_the_sdk_at_the_door_write_one_pseudonym_and_never_the_token(
    app: App, book: str
) -> None:
    starts = end_offsets(app, ["sessions.events"])
    doc = session_doc(f"S-{uuid.uuid4()}")
    with TestClient(create_ingest_app(app, book),
                    headers=api_key(book, NETWORK, "publish")) as client:  # fmt: skip
        first = client.post("/v1/events", json=doc)
        again = client.post("/v1/events", json=doc)
    assert (first.status_code, again.json()["status"]) == (202, "duplicate")
    door = app.publisher(pseudonymize=True)
    started = SessionStarted(Envelope.new(NETWORK), f"S-{uuid.uuid4()}", "DE*EVL*E0002",
                             "EVSE-2", "1", "TX-2", "TAR-1", "DE", "Europe/Berlin",
                             token_uid=RFID)  # fmt: skip
    door.publish(started)
    door.flush()
    records = consume_from(app, ["sessions.events"], starts, 2)
    ours = [r for r in records if r.event.envelope.network_id == NETWORK]
    assert len(ours) == 2
    (pseudonym,) = {r.event.token_uid for r in ours}
    assert pseudonyms.is_pseudonym(pseudonym) and pseudonym == app.pseudonymizer().value(
        NETWORK, RFID
    )
    assert all(RFID.encode() not in (r.value or b"") for r in ours)


def test_a_token_typed_by_an_operator_is_blocked_and_found_under_its_pseudonym(
    app: App, book: str
) -> None:
    group = f"test-fraud-pseudo-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(book) as conn:
        postgres.store_offsets(conn, group, end_offsets(app, list(FRAUD_TOPICS)))
    typed = f"token:{RFID}"
    result = CliRunner().invoke(cli, ["fraud", "block", typed, "--network", NETWORK,
                                      "--reason", "card reported stolen", "--actor", "ana"],
                                env={"COLUMNS": "300"})  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = app.pseudonymizer().subject(NETWORK, typed)
    assert expected in result.output and RFID in result.output
    projector = build_fraud_projector(app, group=group, database_url=book)
    try:
        projector.drain(idle_seconds=1.0)
    finally:
        projector.close()
    with psycopg.connect(book) as conn:
        stored = conn.execute("SELECT subject, blocked FROM fraud_blocks WHERE network_id = %s",
                              (NETWORK,)).fetchall()  # fmt: skip
    assert stored == [(expected, True)]
    risk = api_key(book, NETWORK, "risk")
    with TestClient(create_app(app.settings, database_url=book), headers=risk) as client:
        view = client.get(f"/fraud/subjects/{typed}").json()
    assert view["subject"] == expected and view["block"]["blocked"] is True
