"""The settlement connector through the sandbox: authorize → capture → refund, void, decline,
outcome events on payments.events with deterministic ids, journal rows, restart without replay.

Each test module gets a fresh database (CREATE DATABASE + migrate) and unique consumer groups
whose stored offsets start at the current end of settlement.commands.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import postgres
from connectors.kafka import Consumed
from connectors.provider_registry import (
    ProviderConfigError,
    ProviderRegistry,
    UnknownProvider,
    load_providers,
    shared_sandbox,
)
from connectors.providers.base import ProviderPaymentState
from connectors.providers.sandbox import SandboxProvider
from entrypoints.bootstrap import App
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    AuthorizationFailed,
    AuthorizeRequested,
    CaptureRequested,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    ProviderRouted,
    RefundRequested,
    RevenueLine,
    VoidRequested,
)
from ledger.money import Money
from ledger.settlement.retry import RetryPolicy
from ledger.settlement.routing import RoutingRule
from processors.settlement import (
    TOPIC,
    ConnectorConfig,
    SettlementConnector,
    build_settlement_processor,
    outcome_event_id,
)
from tests.integration.conftest import create_database, drop_database, end_offsets

# A network of its own, routed only by the test registries: commands other tests and the demo
# publish meanwhile find no route (rejected) and never reach a test's sandbox.
NETWORK = f"test-settlement-{uuid.uuid4().hex[:8]}"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


# ---------------------------------------------------------------------------- shared helpers
def new_group(app: App, url: str, prefix: str = "test-settlement") -> str:
    """A consumer group whose stored offsets start at today's end of settlement.commands, so a
    test replays nothing that earlier runs published."""
    group = f"{prefix}-{uuid.uuid4()}"
    with postgres.connect(url) as conn:
        postgres.store_offsets(conn, group, end_offsets(app, [TOPIC]))
        conn.commit()
    return group


def registry_of(*providers: SandboxProvider, order: Sequence[str] = ()) -> ProviderRegistry:
    """The providers, routed (in ``order``, default: as given) for NETWORK only."""
    names = tuple(order) or tuple(p.name for p in providers)
    return ProviderRegistry.of(*providers, rules=[RoutingRule(providers=names, network_id=NETWORK)])


def connector(
    app: App, url: str, group: str, registry: ProviderRegistry, **config: Any
) -> SettlementConnector:
    settings: dict[str, Any] = {"retry": FAST_RETRY, "seed": 7, "resolve_every": 3600.0}
    settings.update(config)
    return build_settlement_processor(
        app, registry, group=group, database_url=url, config=ConnectorConfig(**settings)
    )


def envelope() -> Envelope:
    return Envelope.new(NETWORK, Source.internal)


def authorize(payment_id: str, minor: int = 5000, token: str = "tok_visa") -> AuthorizeRequested:
    return AuthorizeRequested(
        envelope(), payment_id, Money(minor, "EUR"), "card", token, f"S-{payment_id}", "DE*EVL*E1"
    )


def capture(payment_id: str, minor: int = 3000) -> CaptureRequested:
    net = minor * 100 // 119
    lines = [RevenueLine(Dimension.ENERGY, net, minor - net, "19")]
    return CaptureRequested(
        envelope(), payment_id, Money(minor, "EUR"), lines, True, None, "DE*EVL*E1", "DE"
    )


def refund(payment_id: str, minor: int = 1000) -> RefundRequested:
    return RefundRequested(envelope(), payment_id, f"R-{payment_id}", Money(minor, "EUR"))


def publish(app: App, commands: Sequence[Any]) -> None:
    publisher = app.publisher()
    publisher.publish_many(commands)
    publisher.flush()


def collect(
    app: App,
    topic: str,
    starts: dict[tuple[str, int], int],
    keep: Callable[[Consumed], bool],
    expected: int,
    timeout: float = 20.0,
) -> list[Consumed]:
    """Decoded records on ``topic`` since ``starts`` that ``keep`` accepts; stops at
    ``expected`` (other tests and the demo publish to the same topics concurrently)."""
    consumer = app.consumer(f"test-read-{uuid.uuid4()}")
    consumer.assign_at(starts)
    found: list[Consumed] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            batch = consumer.poll(1000, 0.5)
            found += [r for r in batch if r.event is not None and keep(r)]
    finally:
        consumer.close()
    return found


def outcomes(
    app: App,
    database: str,
    starts: dict[tuple[str, int], int],
    payment_ids: set[str],
    expected: int,
) -> list[Any]:
    """Events for ``payment_ids`` on payments.events since ``starts`` that the connector under
    test published: their bytes are in its outbox. (Another connector, the demo's, may process
    the same commands and publish events with the same deterministic ids.)"""
    with postgres.connect(database) as conn:
        mine = {bytes(row[0]) for row in conn.execute("SELECT value FROM outbox")}
    records = collect(
        app,
        "payments.events",
        starts,
        lambda r: r.value in mine and getattr(r.event, "payment_id", None) in payment_ids,
        expected,
    )
    return [r.event for r in records]


def attempts(url: str) -> dict[str, tuple[str, str, bool]]:
    """payment_id:action → (status, provider, emitted)."""
    with postgres.connect(url) as conn:
        rows = conn.execute(
            "SELECT payment_id, action, status, provider, emitted_at IS NOT NULL"
            " FROM provider_attempts"
        ).fetchall()
    return {f"{p}:{a}": (str(s), str(pr), bool(e)) for p, a, s, pr, e in rows}


# ---------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_settle")
    yield url
    drop_database(app, url)


def test_authorize_capture_refund_void_and_decline(app: App, database: str) -> None:
    sandbox = SandboxProvider("sandbox")
    registry = registry_of(sandbox)
    group = new_group(app, database)
    p1, p2, p3, p4 = (f"P-{uuid.uuid4()}" for _ in range(4))
    commands = [
        authorize(p1), capture(p1, 3000), refund(p1, 1000),
        authorize(p2), VoidRequested(envelope(), p2, "no energy delivered"),
        authorize(p3, token="tok_decline"),
        capture(p4),  # never authorized here: rejected
    ]  # fmt: skip
    starts = end_offsets(app, ["payments.events"])
    rejected_starts = end_offsets(app, [f"{TOPIC}.rejected"])
    publish(app, commands)

    first = connector(app, database, group, registry)
    stats = first.drain(idle_seconds=2)
    first.close()

    # Other tests may publish commands concurrently: count ours through the journal below.
    assert stats.consumed >= 7
    assert stats.applied + stats.duplicates + stats.rejected == stats.consumed
    events = outcomes(app, database, starts, {p1, p2, p3}, expected=9)
    in_order = {p: [type(e).__name__ for e in events if e.payment_id == p] for p in (p1, p2, p3)}
    assert in_order == {
        p1: ["ProviderRouted", "PaymentAuthorized", "PaymentCaptured", "PaymentRefunded"],
        p2: ["ProviderRouted", "PaymentAuthorized", "PaymentVoided"],
        p3: ["ProviderRouted", "AuthorizationFailed"],
    }
    by_type = {(e.payment_id, type(e)): e for e in events}

    routed = by_type[(p1, ProviderRouted)]
    assert (routed.provider, routed.reason, routed.attempt) == ("sandbox", "first in rule order", 1)
    authorized = by_type[(p1, PaymentAuthorized)]
    assert authorized.provider == "sandbox" and authorized.amount == Money(5000, "EUR")
    assert authorized.envelope.causation_id == commands[0].envelope.event_id
    captured = by_type[(p1, PaymentCaptured)]
    capture_cmd = commands[1]
    assert captured.capture_id == capture_cmd.envelope.event_id
    assert captured.envelope.event_id == outcome_event_id(capture_cmd.envelope.event_id, "captured")
    assert captured.provider_reference is not None
    assert captured.provider_reference.startswith("sbx_ch_")
    assert captured.fee == sandbox.fees.fee(Money(3000, "EUR"))
    assert (captured.lines, captured.final) == (capture_cmd.lines, True)
    assert (captured.station_id, captured.country) == ("DE*EVL*E1", "DE")
    refunded = by_type[(p1, PaymentRefunded)]
    assert refunded.refund_id == f"R-{p1}" and refunded.amount == Money(1000, "EUR")
    assert refunded.provider_reference is not None
    assert refunded.provider_reference.startswith("sbx_re_")
    assert isinstance(by_type[(p2, PaymentVoided)], PaymentVoided)
    declined = by_type[(p3, AuthorizationFailed)]
    assert (declined.reason_code, declined.decline_code) == ("PAYMENT_DECLINED", "card_declined")

    # The provider agrees: one capture, one refund, one void.
    status = sandbox.fetch_status(authorized.provider_reference)
    assert (status.captured.amount_minor, status.refunded.amount_minor) == (3000, 1000)
    voided = sandbox.fetch_status(by_type[(p2, PaymentAuthorized)].provider_reference)
    assert voided.state is ProviderPaymentState.VOIDED

    journal = attempts(database)
    assert journal[f"{p1}:capture"] == ("succeeded", "sandbox", True)
    assert journal[f"{p3}:authorize"] == ("failed", "sandbox", True)
    assert f"{p4}:capture" not in journal
    mine = collect(
        app, f"{TOPIC}.rejected", rejected_starts, lambda r: r.event.consumer_group == group, 1
    )
    assert [(r.event.reason_code, r.event.original_event_id) for r in mine] == [
        ("UNKNOWN_AUTHORIZATION", commands[-1].envelope.event_id)
    ]

    # A restarted instance resumes after the stored offsets: nothing is called again.
    second = connector(app, database, group, registry)
    second.drain(idle_seconds=1.5)
    second.close()
    since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    assert [line.type.value for line in sandbox.settlement_report(since, until)] == [
        "charge",
        "refund",
    ]


def test_provider_registry_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "providers.toml"
    config.write_text(
        '[providers.stripe]\nkind = "stripe"\napi_key_env = "MY_STRIPE_KEY"\n'
        'api_base = "http://127.0.0.1:1"\n'
        '[providers.sandbox-b]\nkind = "sandbox"\n'
        '[[routing]]\nnetwork_id = "net-1"\ncurrencies = ["EUR"]\n'
        'providers = ["stripe", "sandbox"]\n'
        '[webhooks]\nstripe_secrets = ["whsec_file"]\n'
    )
    environ = {
        "MY_STRIPE_KEY": "sk_test_x",
        "STRIPE_WEBHOOK_SECRET": "whsec_a,whsec_b",
        "BRAINTREE_MERCHANT_ID": "m",
        "BRAINTREE_PUBLIC_KEY": "pub",
        "BRAINTREE_PRIVATE_KEY": "priv",
        "BRAINTREE_ENVIRONMENT": "http://127.0.0.1:9",
    }
    registry = load_providers(config, environ)
    assert sorted(registry.providers) == ["braintree", "sandbox", "sandbox-b", "stripe"]
    assert registry.get("sandbox") is shared_sandbox("sandbox")
    assert registry.rules[0].providers == ("stripe", "sandbox")
    assert registry.stripe_webhook_secrets == ("whsec_file", "whsec_a", "whsec_b")
    assert [k.public_key for k in registry.braintree_webhook_keys] == ["pub"]
    with pytest.raises(UnknownProvider):
        registry.get("adyen")
    with pytest.raises(ProviderConfigError):
        load_providers(config, {})  # stripe's key variable is missing
    with pytest.raises(ProviderConfigError):
        ProviderRegistry.of(shared_sandbox(), rules=[RoutingRule(providers=("stripe",))])
