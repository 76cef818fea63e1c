"""The settlement connector: settlement.commands → provider calls → outcomes on payments.events.

Per instruction (see docs/settlement.md for the crash analysis):

1. the idempotency key is derived from the instruction's event id and the attempt is written to
   ``provider_attempts`` and committed (own connection) **before** any provider call;
2. the provider is called with that key, with bounded ``ledger.retry`` backoff for retriable
   errors; authorizations are routed by ``ledger.routing`` and fail over only when the provider
   answered definitely that it did nothing;
3. the answer is committed to the journal (succeeded / failed / in_doubt);
4. outcome events with deterministic ids (uuid5 of the instruction's event id and the outcome
   kind) go to the outbox in the batch transaction, with the offsets.

A redelivered instruction finds its journal row: final → the same events again; pending or in
doubt → the same key again (the provider replays its first answer) or a status query; never a
guess. In-doubt rows are applied without an outcome and re-asked by ``resolve()`` until the
provider gives a definite answer.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from connectors.bootstrap import App
from connectors.kafka import Consumed
from connectors.provider_registry import ProviderRegistry, UnknownProvider
from connectors.providers.base import (
    Action,
    AuthorizeCall,
    CaptureCall,
    PaymentProvider,
    PaymentState,
    RefundCall,
    VoidCall,
    idempotency_key,
)
from connectors.providers.errors import PaymentDeclined, ProviderError
from connectors.settlement_store import (
    COMMAND_TYPES,
    Attempt,
    AttemptStatus,
    AttemptStore,
    Command,
    mark_emitted,
    restore_command,
    result_json,
    result_money,
    snapshot_command,
)
from ledger.envelope import Envelope, Source
from ledger.errors import LedgerError
from ledger.events import (
    AuthorizationFailed,
    AuthorizeRequested,
    CaptureFailed,
    CaptureRequested,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    ProviderRouted,
    RefundFailed,
    RefundRequested,
)
from ledger.money import Money
from ledger.retry import RetryPolicy
from ledger.routing import (
    BreakerConfig,
    BreakerState,
    CircuitBreakers,
    NoProviderAvailable,
    RoutingRequest,
    route,
    route_follow_up,
)
from processors.base import BatchStats, PostgresProcessor, Tx

log = logging.getLogger("evledger.settlement")
GROUP = "evledger-settlement"
TOPIC = "settlement.commands"
T = TypeVar("T")

ACTIONS: dict[type, Action] = dict(zip(COMMAND_TYPES, Action, strict=True))


@dataclass(frozen=True)
class ConnectorConfig:
    """Retry, breaker and resolver knobs; clock, sleep and seed are injectable for tests."""

    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=4, max_delay=5.0))
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    resolve_every: float = 30.0  # seconds between resolver passes in step()
    pending_for: timedelta = timedelta(minutes=5)  # a pending row this old lost its process
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    seed: int | None = None


class CommandRefused(LedgerError):
    """The instruction cannot be carried out as sent: the record is rejected with ``code``."""

    def __init__(self, code: str, message: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.code = code


@dataclass
class _Failed(Exception):
    """Retries are over; ``doubt`` says whether any try may have been applied."""

    error: ProviderError
    doubt: bool


class _Excluding:
    """Breaker health, minus the providers that already refused this authorization."""

    def __init__(self, breakers: CircuitBreakers, refused: dict[str, str]) -> None:
        self._breakers = breakers
        self._refused = refused

    def admit(self, provider: str) -> str | None:
        refused = self._refused.get(provider)
        return refused if refused is not None else self._breakers.admit(provider)


class SettlementHandler:
    """The ``processors.base.Handler`` for settlement.commands."""

    def __init__(
        self, providers: ProviderRegistry, store: AttemptStore, config: ConnectorConfig
    ) -> None:
        self.providers = providers
        self.store = store
        self.config = config
        self.breakers = CircuitBreakers(config.breaker, config.clock)
        self._rng = random.Random(config.seed)

    def handle(self, tx: Tx, records: Sequence[Consumed]) -> None:
        for record in records:
            command: Command = record.event
            if not isinstance(command, COMMAND_TYPES):
                tx.reject(record, "NOT_A_SETTLEMENT_COMMAND", f"{type(command).__name__}")
                continue
            try:
                attempt = self.execute(command)
            except CommandRefused as refused:
                tx.reject(record, refused.code, str(refused))
                continue
            events, refusal = outcome_events(command, attempt)
            for event in events:
                tx.emit(event)
            if refusal is not None:
                tx.reject(record, *refusal)
            if attempt.status.final:
                mark_emitted(tx.conn, attempt.idempotency_key)
            log.info(
                "%s %s payment=%s %s[%d]@%d",
                attempt.action.value,
                attempt.status.value,
                attempt.payment_id,
                record.topic,
                record.partition,
                record.offset,
            )

    # -- one instruction ---------------------------------------------------------------------
    def execute(self, command: Command) -> Attempt:
        """Carry out ``command`` at most once at the provider; returns its journal row.
        Raises CommandRefused for instructions that cannot be carried out."""
        action = ACTIONS[type(command)]
        key = idempotency_key(command.envelope.event_id, action)
        attempt = self.store.get(key)
        resumed = attempt is not None  # a row before the call: that call may have happened
        if attempt is None:
            attempt = self._begin(command, action, key)
        if attempt.status.final:
            return attempt
        self._carry_out(command, attempt, resumed=resumed)
        finished = self.store.get(key)
        assert finished is not None
        return finished

    def _begin(self, command: Command, action: Action, key: str) -> Attempt:
        common = dict(
            command_event_id=command.envelope.event_id,
            payment_id=command.payment_id,
            action=action,
            request=snapshot_command(command),
            amount=_amount(command),
        )
        if isinstance(command, AuthorizeRequested):
            try:
                decision = self._route(command, {})
            except NoProviderAvailable as exc:
                attempt = self.store.begin(key, provider="-", **common)  # type: ignore[arg-type]
                self.store.finish(key, AttemptStatus.FAILED, reason_code=exc.code, detail=str(exc))
                return self.store.get(key) or attempt
            except LedgerError as exc:  # NoRouteConfigured
                raise CommandRefused(exc.code, exc.message, **exc.context) from exc
            return self.store.begin(key, provider=decision["provider"], routing=decision, **common)  # type: ignore[arg-type]
        holding = self.store.holding(command.payment_id)
        if holding is None:
            status = self.store.authorization_status(command.payment_id)
            code = {
                None: "UNKNOWN_AUTHORIZATION",
                AttemptStatus.FAILED: "AUTHORIZATION_FAILED",
            }.get(status, "AUTHORIZATION_IN_DOUBT")
            raise CommandRefused(
                code, "no authorization by this connector to act on", payment_id=command.payment_id
            )
        provider, reference = holding
        route_follow_up(command.payment_id, provider)
        return self.store.begin(key, provider=provider, provider_reference=reference, **common)  # type: ignore[arg-type]

    def _route(self, command: AuthorizeRequested, refused: dict[str, str]) -> dict[str, Any]:
        request = RoutingRequest(
            command.envelope.network_id,
            command.amount.currency,
            command.payment_method,
            command.preferred_provider,
        )
        decision = route(request, self.providers.rules, _Excluding(self.breakers, refused))
        return {
            "provider": decision.provider,
            "reason": decision.reason,
            "skipped": [f"{p}: {why}" for p, why in decision.skipped],
        }

    def _carry_out(self, command: Command, attempt: Attempt, *, resumed: bool) -> None:
        key = attempt.idempotency_key
        try:
            provider = self.providers.get(attempt.provider)
        except UnknownProvider as exc:  # configuration changed under a journal row
            status = AttemptStatus.IN_DOUBT if resumed else AttemptStatus.FAILED
            self.store.finish(key, status, reason_code=exc.code, detail=str(exc))
            return
        if isinstance(command, AuthorizeRequested):
            self._authorize(command, attempt, resumed=resumed)
            return
        reference = attempt.provider_reference or ""
        try:
            if attempt.action is Action.CAPTURE:
                capture = CaptureCall(
                    command.payment_id,
                    reference,
                    _amount(command),
                    key,
                    getattr(command, "final", True),
                )
                c = self._call(provider, key, Action.CAPTURE, lambda: provider.capture(capture))
                self.store.finish(
                    key,
                    AttemptStatus.SUCCEEDED,
                    result=result_json(c),
                    outcome_reference=c.capture_reference,
                    fee_minor=c.fee.amount_minor if c.fee else None,
                )
            elif attempt.action is Action.VOID:
                void = VoidCall(command.payment_id, reference, key)
                v = self._call(provider, key, Action.VOID, lambda: provider.void(void))
                self.store.finish(key, AttemptStatus.SUCCEEDED, result=result_json(v))
            else:
                refund = RefundCall(
                    command.payment_id,
                    reference,
                    command.refund_id,  # type: ignore[union-attr]
                    _amount(command),
                    key,
                )
                r = self._call(provider, key, Action.REFUND, lambda: provider.refund(refund))
                self.store.finish(
                    key,
                    AttemptStatus.SUCCEEDED,
                    result=result_json(r),
                    outcome_reference=r.refund_reference,
                )
        except _Failed as failed:
            self._settle_follow_up_failure(command, attempt, provider, failed, resumed=resumed)

    def _settle_follow_up_failure(
        self,
        command: Command,
        attempt: Attempt,
        provider: PaymentProvider,
        failed: _Failed,
        *,
        resumed: bool,
    ) -> None:
        """A capture/void/refund ran out of tries. A definite refusal fails it. If any try may
        have been applied, or a call before a crash may have been (``resumed``), the provider's
        status decides; without a definite answer the attempt is in doubt."""
        key, error = attempt.idempotency_key, failed.error
        if not (failed.doubt or (resumed and not error.declined)):
            self.store.finish(
                key, AttemptStatus.FAILED, reason_code=error.code, detail=error.message
            )
            return
        try:
            status = provider.fetch_status(attempt.provider_reference or "")
        except ProviderError as exc:
            self.store.finish(
                key,
                AttemptStatus.IN_DOUBT,
                reason_code=exc.code,
                detail=f"{error.message}; status query failed: {exc.message}",
            )
            return
        captured = status.state in (PaymentState.CAPTURED, PaymentState.PARTIALLY_CAPTURED)
        done = {
            Action.CAPTURE: captured
            and status.captured.amount_minor >= _amount(command).amount_minor,
            Action.VOID: status.state is PaymentState.VOIDED,
            Action.REFUND: False,  # a status total cannot tell which refund it holds
        }[attempt.action]
        # A refusal in the last try (a stale key: Stripe keeps keys 24 h) or a captured payment
        # for a void is definite: the call did not and will not take effect.
        refused = (not failed.doubt and not error.retriable) or (
            attempt.action is Action.VOID and captured
        )
        detail = f"{error.message}; provider status {status.state.value}"
        if done:
            result = {
                "resolved_by": "fetch_status",
                "state": status.state.value,
                "provider": status.provider,
                "provider_reference": status.provider_reference,
            }
            self.store.finish(key, AttemptStatus.SUCCEEDED, result=result)
        elif refused:
            self.store.finish(key, AttemptStatus.FAILED, reason_code=error.code, detail=detail)
        else:
            self.store.finish(key, AttemptStatus.IN_DOUBT, reason_code=error.code, detail=detail)

    def _authorize(self, command: AuthorizeRequested, attempt: Attempt, *, resumed: bool) -> None:
        key = attempt.idempotency_key
        call = AuthorizeCall(
            command.payment_id,
            _amount(command),
            command.payment_token,
            key,
            command.payment_method,
            {"payment_id": command.payment_id},
        )
        refused: dict[str, str] = {}
        name = attempt.provider
        while True:
            provider = self.providers.get(name)
            try:
                result = self._call(
                    provider, key, Action.AUTHORIZE, partial(provider.authorize, call)
                )
            except _Failed as failed:
                error = failed.error
                if isinstance(error, PaymentDeclined):
                    self.store.finish(
                        key,
                        AttemptStatus.FAILED,
                        reason_code=error.code,
                        detail=error.message,
                        result={"provider": name, "decline_code": error.decline_code},
                    )
                    return
                if failed.doubt or resumed:
                    self._resolve_authorization(command, key, provider, error)
                    return
                if not error.retriable:
                    self.store.finish(
                        key,
                        AttemptStatus.FAILED,
                        reason_code=error.code,
                        detail=error.message,
                        result={"provider": name},
                    )
                    return
                # Definitely not applied here: fail over to the next provider the rule allows.
                refused[name] = f"failed: {error.code}"
                try:
                    decision = self._route(command, refused)
                except NoProviderAvailable as exc:
                    self.store.finish(
                        key,
                        AttemptStatus.FAILED,
                        reason_code=exc.code,
                        detail=str(exc),
                        result={"provider": name},
                    )
                    return
                name = decision["provider"]
                self.store.reroute(key, name, decision)  # committed before the call
                continue
            self.store.finish(
                key,
                AttemptStatus.SUCCEEDED,
                result=result_json(result),
                provider_reference=result.provider_reference,
            )
            return

    def _resolve_authorization(
        self, command: Command, key: str, provider: PaymentProvider, error: ProviderError
    ) -> None:
        """The provider may hold an authorization we never heard about: look it up."""
        try:
            found = provider.find_authorization(command.payment_id)
        except ProviderError as exc:
            self.store.finish(
                key,
                AttemptStatus.IN_DOUBT,
                reason_code=exc.code,
                detail=f"{error.message}; lookup failed: {exc.message}",
            )
            return
        if found is not None and found.state in (
            PaymentState.AUTHORIZED,
            PaymentState.CAPTURED,
            PaymentState.PARTIALLY_CAPTURED,
        ):
            self.store.finish(
                key,
                AttemptStatus.SUCCEEDED,
                result=result_json(found),
                provider_reference=found.provider_reference,
            )
            return
        # Not found (yet): the request may still land, so no failover; ask again later.
        self.store.finish(
            key,
            AttemptStatus.IN_DOUBT,
            reason_code=error.code,
            detail=f"{error.message}; no authorization found yet",
        )

    def _call(self, provider: PaymentProvider, key: str, action: Action, op: Callable[[], T]) -> T:
        """``op`` with retries for retriable errors (same key every time), breaker bookkeeping
        and a journal note per try. Raises _Failed when the tries are over."""
        breaker = self.breakers.breaker(provider.name)
        doubt = False
        attempt = 1
        while True:
            try:
                result = op()
            except ProviderError as error:
                breaker.record_failure(retriable=error.retriable)
                self.store.tried(key, provider.name, error.code)
                doubt = doubt or error.in_doubt
                wait = self.config.retry.delay(attempt, error, self._rng)
                failing_over = (
                    action is Action.AUTHORIZE and not doubt and breaker.state is BreakerState.OPEN
                )
                if wait is None or failing_over:
                    raise _Failed(error, doubt) from error
                log.warning(
                    "%s at %s failed (%s), retry %d in %.2fs",
                    action.value,
                    provider.name,
                    error.code,
                    attempt,
                    wait,
                )
                self.config.sleep(wait)
                attempt += 1
                continue
            breaker.record_success()
            self.store.tried(key, provider.name, "ok")
            return result


def _amount(command: Command) -> Money:
    """The instruction's amount; a void has none (its hold is released whole)."""
    amount = getattr(command, "amount", None)
    return amount if isinstance(amount, Money) else Money.zero("EUR")


# ---------------------------------------------------------------------------- outcome events
OUTCOME_NAMESPACE = uuid.UUID("0c6f2f0e-7d38-4a53-9a43-5be0c0d1f1a7")


def outcome_event_id(command_event_id: str, kind: str) -> str:
    """Deterministic: a redelivered instruction emits the same ids, which downstream dedupes."""
    return str(uuid.uuid5(OUTCOME_NAMESPACE, f"{command_event_id}:{kind}"))


def outcome_events(command: Command, attempt: Attempt) -> tuple[list[Any], tuple[str, str] | None]:
    """The events a finished attempt stands for, and a (reason code, detail) when the record is
    to be rejected instead (a void the provider refused). Pending / in-doubt: nothing yet."""
    if not attempt.status.final:
        return [], None

    def envelope(kind: str) -> Envelope:
        return command.envelope.caused(
            Source.psp, event_id=outcome_event_id(command.envelope.event_id, kind)
        )

    ok = attempt.status is AttemptStatus.SUCCEEDED
    result = attempt.result or {}
    reason, detail = attempt.reason_code or "PROVIDER_ERROR", attempt.detail or ""
    pid = command.payment_id
    if isinstance(command, AuthorizeRequested):
        events: list[Any] = [
            ProviderRouted(
                envelope(f"routed:{n}"), pid, r["provider"], r["reason"], list(r["skipped"]), n
            )
            for n, r in enumerate(attempt.routing, start=1)
        ]
        if ok:
            expires = result.get("expires_at")
            events.append(
                PaymentAuthorized(
                    envelope("authorized"),
                    pid,
                    attempt.provider,
                    attempt.provider_reference or "",
                    result_money(result, "amount") or command.amount,
                    command.payment_method,
                    command.session_id,
                    command.station_id,
                    datetime.fromisoformat(expires) if expires else None,
                )
            )
        else:
            events.append(
                AuthorizationFailed(
                    envelope("authorization_failed"),
                    pid,
                    command.amount,
                    reason,
                    detail,
                    result.get("provider"),
                    result.get("decline_code"),
                )
            )
        return events, None
    if isinstance(command, CaptureRequested):
        if ok:
            return [
                PaymentCaptured(
                    envelope("captured"),
                    pid,
                    command.envelope.event_id,
                    command.amount,
                    list(command.lines),
                    command.final,
                    attempt.provider,
                    attempt.outcome_reference,
                    result_money(result, "fee"),
                    command.station_id,
                    command.country,
                )
            ], None
        return [
            CaptureFailed(envelope("capture_failed"), pid, command.amount, reason, detail)
        ], None
    if isinstance(command, RefundRequested):
        if ok:
            return [
                PaymentRefunded(
                    envelope("refunded"),
                    pid,
                    command.refund_id,
                    command.amount,
                    list(command.lines),
                    attempt.outcome_reference,
                    command.reason,
                )
            ], None
        return [
            RefundFailed(
                envelope("refund_failed"), pid, command.refund_id, command.amount, reason, detail
            )
        ], None
    if ok:
        return [PaymentVoided(envelope("voided"), pid, command.reason)], None
    return [], (reason, f"void refused by {attempt.provider}: {detail}")


class SettlementConnector:
    """The connector process: the base loop over settlement.commands plus the in-doubt resolver."""

    def __init__(
        self,
        app: App,
        providers: ProviderRegistry,
        *,
        group: str = GROUP,
        database_url: str | None = None,
        config: ConnectorConfig | None = None,
        batch_size: int = 200,
    ) -> None:
        self.config = config or ConnectorConfig()
        url = database_url or app.database_url
        self.store = AttemptStore.connect(url)
        self.handler = SettlementHandler(providers, self.store, self.config)
        self.processor = PostgresProcessor(
            app, self.handler, group, [TOPIC], batch_size=batch_size, database_url=url
        )
        self._last_resolve = 0.0

    @property
    def group(self) -> str:
        return self.processor.group

    @property
    def topics(self) -> list[str]:
        return self.processor.topics

    def step(self, timeout: float = 0.5) -> BatchStats:
        """One batch (see ``PostgresProcessor.step``), then a resolver pass when one is due."""
        stats = self.processor.step(timeout)
        now = time.monotonic()
        if now - self._last_resolve >= self.config.resolve_every:
            self._last_resolve = now
            stats.published += self.resolve()
        return stats

    def resolve(self) -> int:
        """Re-ask the provider for every in-doubt (or abandoned pending) attempt, with the same
        key; emit the outcome of those that became definite. Returns events relayed."""
        resolved = 0
        for attempt in self.store.unresolved(self.config.pending_for):
            if self.handler.breakers.breaker(attempt.provider).state is BreakerState.OPEN:
                continue  # the provider is down: ask after its cool-down
            try:
                resolved += self._resolve_one(attempt)
            except Exception:  # one bad row must not stop the connector; it stays unresolved
                log.exception("resolving %s failed", attempt.idempotency_key)
        return self.processor.relay() if resolved else 0

    def _resolve_one(self, attempt: Attempt) -> int:
        command = restore_command(attempt.request)
        if not attempt.status.final:
            self.handler._carry_out(command, attempt, resumed=True)
        done = self.store.get(attempt.idempotency_key)
        if done is None or not done.status.final:
            return 0
        processor = self.processor
        tx = Tx(
            processor.conn,
            processor.publisher.serde.encode,
            processor.group,
            processor.app.settings.network_id,
        )
        events, refusal = outcome_events(command, done)
        with processor.conn.transaction():
            for event in events:
                tx.emit(event)
            mark_emitted(processor.conn, done.idempotency_key)
        if refusal is not None:
            log.warning("%s resolved as refused: %s %s", done.idempotency_key, *refusal)
        return 1

    def drain(self, idle_seconds: float = 3.0, max_seconds: float = 600.0) -> BatchStats:
        """Process until nothing new arrives for ``idle_seconds`` (demo, tests)."""
        total = BatchStats()
        deadline = time.monotonic() + max_seconds
        idle_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - idle_since < idle_seconds:
            stats = self.step()
            total.add(stats)
            if stats.consumed or stats.published:
                idle_since = time.monotonic()
        return total

    def run_forever(self) -> None:
        while True:
            self.step(1.0)

    def close(self) -> None:
        self.processor.close()
        self.store.close()


def build_settlement_processor(
    app: App,
    providers: ProviderRegistry | None = None,
    *,
    group: str = GROUP,
    database_url: str | None = None,
    config: ConnectorConfig | None = None,
) -> SettlementConnector:
    """The settlement connector for ``app``; providers default to ``load_providers()``
    (the shared sandbox plus whatever the environment configures)."""
    if providers is None:
        from connectors.provider_registry import load_providers

        providers = load_providers()
    return SettlementConnector(
        app, providers, group=group, database_url=database_url, config=config
    )
