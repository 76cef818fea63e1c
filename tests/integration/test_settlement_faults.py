"""Faults around provider calls: whatever fails, a capture happens exactly once at the provider
and exactly one PaymentCaptured event id reaches payments.events.

Timeouts before and after the call, a crash between the call and the commit (a new instance with
the same group and database takes over), a crash after publishing (the outbox relays again),
a provider that stays in doubt (resolved later), and an outage that opens the breaker, fails
authorizations over to a second sandbox and lets traffic return once it heals.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors import postgres
from connectors.provider_registry import ProviderRegistry
from connectors.providers.base import CaptureCall, CaptureResult, PaymentProvider
from connectors.providers.sandbox import Fault, SandboxProvider
from entrypoints.bootstrap import App
from ledger.events import PaymentAuthorized, PaymentCaptured, ProviderRouted
from ledger.settlement.routing import BreakerConfig, RoutingRule
from processors.settlement import outcome_event_id
from tests.integration.conftest import end_offsets
from tests.integration.test_settlement_processor import (
    FAST_RETRY,
    NETWORK,
    authorize,
    capture,
    connector,
    create_database,
    drop_database,
    new_group,
    outcomes,
    publish,
    registry_of,
)

EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_faults")
    yield url
    drop_database(app, url)


def charges(sandbox: SandboxProvider, reference: str) -> list[str]:
    """Capture references the sandbox settled for one authorization."""
    return [
        line.provider_reference
        for line in sandbox.settlement_report(*EVER)
        if line.type.value == "charge" and line.payment_reference == reference
    ]


def run_capture_flow(
    app: App, database: str, sandbox: SandboxProvider, registry: ProviderRegistry | None = None
) -> tuple[str, Any, list[Any]]:
    """Authorize and capture one payment; returns (payment id, capture command, its events)."""
    payment_id = f"P-{uuid.uuid4()}"
    capture_cmd = capture(payment_id, 2500)
    group = new_group(app, database)  # before publishing: it starts at today's end
    starts = end_offsets(app, ["payments.events"])
    publish(app, [authorize(payment_id), capture_cmd])
    instance = connector(app, database, group, registry or registry_of(sandbox))
    instance.drain(idle_seconds=2)
    instance.close()
    return payment_id, capture_cmd, outcomes(app, database, starts, {payment_id}, expected=3)


def only_capture(events: list[Any], capture_cmd: Any) -> PaymentCaptured:
    captured = [e for e in events if isinstance(e, PaymentCaptured)]
    assert {e.envelope.event_id for e in captured} == {
        outcome_event_id(capture_cmd.envelope.event_id, "captured")
    }
    return captured[0]


def hold_reference(events: list[Any]) -> str:
    return next(e.provider_reference for e in events if isinstance(e, PaymentAuthorized))


@pytest.mark.parametrize("fault", [Fault.TIMEOUT_BEFORE, Fault.TIMEOUT_AFTER])
def test_timeout_around_the_call_captures_once(app: App, database: str, fault: Fault) -> None:
    sandbox = SandboxProvider("sandbox")
    sandbox.inject(fault, "capture", times=1)
    _, capture_cmd, events = run_capture_flow(app, database, sandbox)

    captured = only_capture(events, capture_cmd)
    # TIMEOUT_AFTER applied the capture and lost the answer: the retry with the same key got
    # the first outcome back, so the reference is the one the sandbox settled.
    assert charges(sandbox, hold_reference(events)) == [captured.provider_reference]
    with postgres.connect(database) as conn:
        row = conn.execute(
            "SELECT status, tries, history FROM provider_attempts WHERE command_event_id = %s",
            (capture_cmd.envelope.event_id,),
        ).fetchone()
    assert row is not None
    status, tries, history = row
    assert (status, tries) == ("succeeded", 2)
    assert [h["outcome"] for h in history] == ["PROVIDER_TIMEOUT", "ok"]


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing in the processor may catch it."""


class CrashAfterCapture:
    """The real sandbox, but the process 'dies' right after the capture call returned."""

    def __init__(self, sandbox: SandboxProvider) -> None:
        self._sandbox = sandbox

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sandbox, name)

    @property
    def name(self) -> str:
        return self._sandbox.name

    def capture(self, call: CaptureCall) -> CaptureResult:
        self._sandbox.capture(call)
        raise SimulatedCrash("killed between the provider call and the commit")


@pytest.mark.parametrize("down_on_restart", [False, True], ids=["provider-up", "provider-down"])
def test_crash_between_call_and_commit_then_restart(
    app: App, database: str, down_on_restart: bool
) -> None:
    sandbox = SandboxProvider("sandbox")
    crashing: PaymentProvider = CrashAfterCapture(sandbox)  # type: ignore[assignment]
    payment_id = f"P-{uuid.uuid4()}"
    capture_cmd = capture(payment_id, 2500)
    group = new_group(app, database)  # before publishing: it starts at today's end
    starts = end_offsets(app, ["payments.events"])
    publish(app, [authorize(payment_id), capture_cmd])

    doomed = connector(
        app,
        database,
        group,
        ProviderRegistry({"sandbox": crashing}, (RoutingRule(("sandbox",), network_id=NETWORK),)),
    )
    with pytest.raises(SimulatedCrash):
        doomed.drain(idle_seconds=5)
    doomed.close()
    with postgres.connect(database) as conn:
        pending = conn.execute(
            "SELECT status FROM provider_attempts WHERE command_event_id = %s",
            (capture_cmd.envelope.event_id,),
        ).fetchone()
        in_outbox = conn.execute(
            "SELECT count(*) FROM outbox WHERE event_id = %s",
            (outcome_event_id(capture_cmd.envelope.event_id, "captured"),),
        ).fetchone()
    assert pending == ("pending",) and in_outbox == (0,)  # called, nothing committed

    # A new instance, same group and database: the journal row says the call may have
    # happened, so the same key is sent again and the sandbox answers with the first capture.
    now = [0.0]
    successor = connector(app, database, group, registry_of(sandbox), clock=lambda: now[0])
    if down_on_restart:
        # The provider is down when the instance resumes: a definite "unavailable" for the new
        # try says nothing about the call before the crash, so no CaptureFailed: in doubt.
        sandbox.inject(Fault.OUTAGE, "*", times=None)
        successor.drain(idle_seconds=2)
        with postgres.connect(database) as conn:
            row = conn.execute(
                "SELECT status FROM provider_attempts WHERE command_event_id = %s",
                (capture_cmd.envelope.event_id,),
            ).fetchone()
        assert row == ("in_doubt",)
        assert not [e for e in outcomes(app, database, starts, {payment_id}, expected=2)
                    if type(e).__name__ in ("PaymentCaptured", "CaptureFailed")]  # fmt: skip
        sandbox.clear_faults()
        now[0] += 60.0  # past the breaker's cool-down
        assert successor.resolve() == 1
    else:
        successor.drain(idle_seconds=2)
    successor.close()
    events = outcomes(app, database, starts, {payment_id}, expected=3)
    captured = only_capture(events, capture_cmd)
    assert charges(sandbox, hold_reference(events)) == [captured.provider_reference]


def test_crash_after_publish_before_marking_relays_the_same_event_id(
    app: App, database: str
) -> None:
    sandbox = SandboxProvider("sandbox")
    payment_id, capture_cmd, events = run_capture_flow(app, database, sandbox)
    only_capture(events, capture_cmd)
    captured_id = outcome_event_id(capture_cmd.envelope.event_id, "captured")
    # The relay published, then died before marking the rows: they are unpublished again.
    with postgres.connect(database) as conn:
        conn.execute("UPDATE outbox SET published_at = NULL WHERE event_id = %s", (captured_id,))
    starts = end_offsets(app, ["payments.events"])
    group = new_group(app, database)
    again = connector(app, database, group, registry_of(sandbox))
    again.drain(idle_seconds=1.5)
    again.close()

    republished = outcomes(app, database, starts, {payment_id}, expected=1)
    assert {e.envelope.event_id for e in republished} == {captured_id}
    assert len(charges(sandbox, hold_reference(events))) == 1


def test_in_doubt_is_applied_without_outcome_then_resolved(app: App, database: str) -> None:
    sandbox = SandboxProvider("sandbox")
    sandbox.inject(Fault.TIMEOUT_BEFORE, "capture", times=None)  # every try times out
    payment_id = f"P-{uuid.uuid4()}"
    capture_cmd = capture(payment_id, 2500)
    group = new_group(app, database)
    starts = end_offsets(app, ["payments.events"])
    publish(app, [authorize(payment_id), capture_cmd])
    now = [0.0]
    instance = connector(app, database, group, registry_of(sandbox), clock=lambda: now[0])
    stats = instance.drain(idle_seconds=2)
    assert stats.consumed >= 2  # applied (offset stored), not stuck
    with postgres.connect(database) as conn:
        row = conn.execute(
            "SELECT status, reason_code FROM provider_attempts WHERE command_event_id = %s",
            (capture_cmd.envelope.event_id,),
        ).fetchone()
    assert row == ("in_doubt", "PROVIDER_TIMEOUT")
    before = outcomes(app, database, starts, {payment_id}, expected=2)
    assert not [e for e in before if isinstance(e, PaymentCaptured)]

    sandbox.clear_faults()
    now[0] += 60.0  # past any breaker cool-down the timeouts may have caused
    assert instance.resolve() >= 1
    instance.close()
    events = outcomes(app, database, starts, {payment_id}, expected=3)
    captured = only_capture(events, capture_cmd)
    assert charges(sandbox, hold_reference(events)) == [captured.provider_reference]


def test_outage_opens_the_breaker_fails_over_and_traffic_returns(app: App, database: str) -> None:
    primary, secondary = SandboxProvider("sandbox"), SandboxProvider("sandbox-b")
    registry = registry_of(primary, secondary)
    now = [0.0]
    breaker = BreakerConfig(consecutive_failures=2, cool_down=30.0)
    instance = connector(
        app, database, new_group(app, database), registry, breaker=breaker, clock=lambda: now[0]
    )
    primary.inject(Fault.OUTAGE, "authorize", times=None)
    p1, p2, p3, p4 = (f"P-{uuid.uuid4()}" for _ in range(4))
    starts = end_offsets(app, ["payments.events"])
    # One at a time: p1 and p2 may sit on different partitions, whose order is not defined.
    publish(app, [authorize(p1)])
    instance.drain(idle_seconds=2)
    publish(app, [authorize(p2)])
    instance.drain(idle_seconds=2)

    primary.clear_faults()
    now[0] += 31.0  # cool-down over: the breaker lets a probe through
    publish(app, [authorize(p3), authorize(p4), capture(p1, 2000)])
    instance.drain(idle_seconds=2)
    instance.close()

    events = outcomes(app, database, starts, {p1, p2, p3, p4}, expected=10)
    held_by = {e.payment_id: e.provider for e in events if isinstance(e, PaymentAuthorized)}
    assert held_by == {p1: "sandbox-b", p2: "sandbox-b", p3: "sandbox", p4: "sandbox"}
    routed = {}
    for e in events:
        if isinstance(e, ProviderRouted):
            routed.setdefault(e.payment_id, []).append(e)
    assert [(r.provider, r.attempt) for r in routed[p1]] == [("sandbox", 1), ("sandbox-b", 2)]
    assert "sandbox: failed: PROVIDER_UNAVAILABLE" in routed[p1][1].skipped
    assert len(routed[p2]) == 1 and routed[p2][0].provider == "sandbox-b"
    assert routed[p2][0].skipped[0].startswith("sandbox: circuit open")
    assert [r.provider for r in routed[p3]] == ["sandbox"]
    # The capture goes to the provider holding the authorization, not to the healed primary.
    captured = [e for e in events if isinstance(e, PaymentCaptured)]
    assert [(c.payment_id, c.provider) for c in captured] == [(p1, "sandbox-b")]
    assert primary.find_authorization(p1) is None and primary.find_authorization(p2) is None


def test_a_capture_resolved_by_status_keeps_its_fee_and_reference(app: App, database: str) -> None:
    """Every try timed out after the provider applied it, so the tries ran out in doubt; the
    status shows it captured, and the provider's replay under the same key gives the booking
    the capture's own reference and fee (a status carries neither)."""
    sandbox = SandboxProvider("sandbox")
    sandbox.inject(Fault.TIMEOUT_AFTER, "capture", times=FAST_RETRY.max_attempts)  # every try
    _, capture_cmd, events = run_capture_flow(app, database, sandbox)

    captured = only_capture(events, capture_cmd)
    assert charges(sandbox, hold_reference(events)) == [captured.provider_reference]
    assert captured.fee == sandbox.fees.fee(captured.amount)
