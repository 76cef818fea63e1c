"""An event_id is an idempotency key, at every consumer: the same id with the same content is a
duplicate (no effect), the same id with other content is rejected ``EVENT_ID_CONFLICT`` (never
skipped), in the same batch and in a later one. Each processor runs on a fresh database with a
consumer group that starts at the current end of its topics."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors import postgres
from connectors.provider_registry import ProviderRegistry
from connectors.providers.sandbox import SandboxProvider
from entrypoints.bootstrap import App
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    AuthorizeRequested,
    PaymentAuthorized,
    PaymentCaptured,
    RevenueLine,
    TariffPublished,
)
from ledger.money import Money
from ledger.settlement.routing import RoutingRule
from processors import ledger_projector, sessions, settlement
from processors.base import PostgresProcessor
from tests.integration.conftest import create_database, drop_database, end_offsets

NETWORK = f"test-idc-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_idc")
    yield url
    drop_database(app, url)


def _changed(event: Any, **fields: Any) -> Any:
    """``event`` with other content under the same envelope (the same event_id)."""
    return dataclasses.replace(event, **fields)


def _energy(price: str) -> dict[str, Any]:
    return {"type": "ENERGY", "price": price, "vat": 19, "step_size": 1}


def _tariff(tariff_id: str, price: str) -> str:
    return json.dumps(
        {
            "id": tariff_id,
            "currency": "EUR",
            "country_code": "DE",
            "party_id": "EVL",
            "elements": [{"price_components": [_energy(price)]}],
            "last_updated": "2026-01-01T00:00:00Z",
        }
    )


def _ledger(app: App, url: str, group: str) -> PostgresProcessor:
    return ledger_projector.build_ledger_processor(app, group=group, database_url=url)


def _sessions(app: App, url: str, group: str) -> PostgresProcessor:
    return sessions.build_sessions_processor(app, group=group, database_url=url)


def _settlement(app: App, url: str, group: str) -> PostgresProcessor:
    registry = ProviderRegistry.of(
        SandboxProvider("sandbox"), rules=[RoutingRule(providers=("sandbox",), network_id=NETWORK)]
    )
    return settlement.build_settlement_processor(app, registry, group=group, database_url=url)


def _authorized() -> tuple[Any, Any]:
    pid = f"P-{uuid.uuid4()}"
    event = PaymentAuthorized(Envelope.new(NETWORK, Source.psp), pid, "sandbox", f"pi_{pid}",
                              Money(5000, "EUR"), "card")  # fmt: skip
    return event, _changed(event, amount=Money(9000, "EUR"))


def _tariff_published() -> tuple[Any, Any]:
    tid = f"T-{uuid.uuid4().hex[:12]}"
    event = TariffPublished(Envelope.new(NETWORK, Source.ocpi), tid, 1, "EUR", _tariff(tid, "0.40"))
    return event, _changed(event, ocpi_tariff_json=_tariff(tid, "0.04"))


def _authorize_requested() -> tuple[Any, Any]:
    pid = f"P-{uuid.uuid4()}"
    event = AuthorizeRequested(Envelope.new(NETWORK, Source.internal), pid, Money(5000, "EUR"),
                               "card", "tok_visa", f"S-{pid}", "DE*EVL*E1")  # fmt: skip
    return event, _changed(event, amount=Money(50, "EUR"))


CONSUMERS: dict[str, tuple[Callable[[App, str, str], PostgresProcessor], Callable[[], Any]]] = {
    "ledger": (_ledger, _authorized),
    "sessions": (_sessions, _tariff_published),
    "settlement": (_settlement, _authorize_requested),
}


@pytest.mark.parametrize("name", list(CONSUMERS))
def test_a_reused_event_id_is_rejected_and_a_repeat_is_a_duplicate(
    app: App, database: str, name: str
) -> None:
    build, make = CONSUMERS[name]
    original, reused = make()
    group = f"test-idc-{name}-{uuid.uuid4()}"
    processor = build(app, database, group)
    with postgres.connect(database) as conn:  # the group reads only what is published from now
        postgres.store_offsets(conn, group, end_offsets(app, processor.topics))
        conn.commit()
    publisher = app.publisher()
    # One batch: the original, the id reused with other content, the original again; then,
    # in a later batch, both again.
    for round_ in ([original, reused, original], [reused, original]):
        for event in round_:
            publisher.publish(event)
        publisher.flush()
        processor.drain(idle_seconds=1.5)
    processor.close()

    with postgres.connect(database) as conn:
        reasons = conn.execute(
            "SELECT reason_code, detail FROM rejections WHERE consumer_group = %s"
            " AND event_id = %s",
            (group, original.envelope.event_id),
        ).fetchall()
        mark = conn.execute(
            "SELECT fingerprint FROM processed_events WHERE consumer_group = %s AND event_id = %s",
            (group, original.envelope.event_id),
        ).fetchone()
        applied, duplicates, rejected = conn.execute(
            "SELECT applied, duplicates, rejected FROM processing_counts WHERE consumer_group=%s",
            (group,),
        ).fetchone()
    assert [code for code, _ in reasons] == ["EVENT_ID_CONFLICT"] * 2
    assert "already used for an event with other content" in reasons[0][1]
    assert mark is not None and len(mark[0]) == 16  # the first content's fingerprint
    # Other tests may publish to the same topics meanwhile: ours are at least these.
    assert applied >= 1 and duplicates >= 2 and rejected >= 2
    assert _effect(database, name, original) == _expected(name, original)


def _effect(url: str, name: str, event: Any) -> Any:
    """What the consumer kept of ``event``: it must be the original's content, once."""
    with postgres.connect(url) as conn:
        if name == "ledger":
            return conn.execute(
                "SELECT state->>'authorized' FROM payments WHERE payment_id = %s",
                (event.payment_id,),
            ).fetchone()
        if name == "sessions":
            rows = conn.execute(
                "SELECT ocpi_json FROM tariff_versions WHERE tariff_id = %s", (event.tariff_id,)
            ).fetchall()
            return [json.loads(r[0])["elements"][0]["price_components"][0]["price"] for r in rows]
        return conn.execute(
            "SELECT count(*) FROM provider_attempts WHERE payment_id = %s AND action = 'authorize'",
            (event.payment_id,),
        ).fetchone()


def _expected(name: str, event: Any) -> Any:
    return {"ledger": ("5000",), "sessions": ["0.40"], "settlement": (1,)}[name]


def test_a_payment_event_refused_before_its_authorization_applies_when_re_driven(
    app: App, database: str
) -> None:
    """Payment events are deduplicated by the payment's state, and now marked with their
    fingerprint too: a capture refused (``UNKNOWN_PAYMENT``) before its authorization leaves
    no mark, so the same bytes published again once the authorization is in apply."""
    authorized, _ = _authorized()
    capture = PaymentCaptured(Envelope.new(NETWORK, Source.psp), authorized.payment_id, "cap-1",
                              Money(3000, "EUR"), [RevenueLine(Dimension.ENERGY, 2521, 479, "19")],
                              True, "sandbox", "ch_1")  # fmt: skip
    group = f"test-idc-redrive-{uuid.uuid4()}"
    processor = _ledger(app, database, group)
    with postgres.connect(database) as conn:
        postgres.store_offsets(conn, group, end_offsets(app, processor.topics))
        conn.commit()
    publisher = app.publisher()
    for batch in ([capture], [authorized], [capture]):
        publisher.publish_many(batch)
        publisher.flush()
        processor.drain(idle_seconds=1.5)
    processor.close()
    with postgres.connect(database) as conn:
        reasons = conn.execute(
            "SELECT reason_code FROM rejections WHERE consumer_group = %s AND event_id = %s",
            (group, capture.envelope.event_id),
        ).fetchall()
        captured = conn.execute(
            "SELECT state->>'captured' FROM payments WHERE payment_id = %s",
            (authorized.payment_id,),
        ).fetchone()
    assert reasons == [("UNKNOWN_PAYMENT",)]
    assert captured == ("3000",)
