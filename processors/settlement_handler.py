"""One settlement instruction carried out at most once at its provider (``processors.settlement``).

``SettlementHandler`` records the attempt before any call, routes authorizations (failing over
only on a definite "not done"), retries with the same idempotency key, and resolves doubt with
the provider's status.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar

from connectors import fraud_store
from connectors.kafka import Consumed
from connectors.logging_setup import record_fields
from connectors.metrics import provider_call
from connectors.provider_registry import ProviderRegistry, UnknownProvider
from connectors.providers.base import (
    Action,
    AuthorizeCall,
    CaptureCall,
    CaptureResult,
    PaymentProvider,
    ProviderPaymentState,
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
    result_json,
    snapshot_command,
)
from ledger.errors import LedgerError
from ledger.events import AuthorizeRequested, CaptureRequested
from ledger.pseudonyms import Pseudonymizer
from ledger.settlement.outcomes import card_fingerprint, instruction_amount
from ledger.settlement.retry import RetryPolicy
from ledger.settlement.routing import (
    BreakerConfig,
    BreakerState,
    CircuitBreakers,
    NoProviderAvailable,
    RoutingRequest,
    route,
    route_follow_up,
)
from processors.base import Effects
from processors.settlement_attempts import outcome_events

log = logging.getLogger("evledger.settlement")
T = TypeVar("T")


class FraudCode(StrEnum):
    """Why the fraud policy stops an instruction (docs/fraud.md)."""

    TOKEN_BLOCKED = "TOKEN_BLOCKED"  # authorization refused: the token or card is blocked
    FRAUD_REVIEW_HOLD = "FRAUD_REVIEW_HOLD"  # capture held: the payment is under review


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
    pseudonyms: Pseudonymizer | None = None
    """The deployment's pseudonym key: card fingerprints are keyed with it
    (``ledger.settlement.outcomes.card_fingerprint``); None: an unkeyed hash."""


class NoHoldCode(StrEnum):
    """Why a capture, void or refund instruction found no authorization to act on."""

    UNKNOWN_AUTHORIZATION = "UNKNOWN_AUTHORIZATION"
    AUTHORIZATION_FAILED = "AUTHORIZATION_FAILED"
    AUTHORIZATION_IN_DOUBT = "AUTHORIZATION_IN_DOUBT"


def no_hold(payment_id: str, status: AttemptStatus | None) -> CommandRefused:
    """The refusal of a capture, void or refund whose payment has no authorization by this
    connector to act on, given the status of its latest authorize attempt (None: none)."""
    code = {
        None: NoHoldCode.UNKNOWN_AUTHORIZATION,
        AttemptStatus.FAILED: NoHoldCode.AUTHORIZATION_FAILED,
    }.get(status, NoHoldCode.AUTHORIZATION_IN_DOUBT)
    return CommandRefused(
        code.value, "no authorization by this connector to act on", payment_id=payment_id
    )


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

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        for record in records:
            command: Command = record.event
            if not isinstance(command, COMMAND_TYPES):
                tx.reject(record, "NOT_A_SETTLEMENT_COMMAND", f"{type(command).__name__}")
                continue
            held = self._held_for_review(command)
            if held is not None:
                tx.reject(record, FraudCode.FRAUD_REVIEW_HOLD, held)
                continue
            try:
                attempt = self.execute(command)
            except CommandRefused as refused:
                tx.reject(record, refused.code, str(refused))
                continue
            events, refusal = outcome_events(command, attempt, self.config.pseudonyms)
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
                extra={**record_fields(record), "provider": attempt.provider},
            )

    # -- one instruction ---------------------------------------------------------------------
    def execute(self, command: Command) -> Attempt:
        """Carry out ``command`` at most once at the provider; returns its attempt row.
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
            amount=instruction_amount(command),
        )
        if isinstance(command, AuthorizeRequested):
            block = self._blocked(command)
            if block is not None:
                attempt = self.store.begin(key, provider="-", **common)  # type: ignore[arg-type]
                self.store.finish(key, AttemptStatus.FAILED, reason_code=FraudCode.TOKEN_BLOCKED,
                                  detail=block)  # fmt: skip
                return self.store.get(key) or attempt
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
            raise no_hold(command.payment_id, status)
        provider, reference = holding
        route_follow_up(command.payment_id, provider)
        return self.store.begin(key, provider=provider, provider_reference=reference, **common)  # type: ignore[arg-type]

    def _blocked(self, command: AuthorizeRequested) -> str | None:
        """Why the command's token or card may not authorize (a fraud block), or None."""
        card = card_fingerprint(command.payment_token, command.envelope.network_id,
                                self.config.pseudonyms)  # fmt: skip
        subjects = [f"card:{card}"]
        if command.token_uid:
            subjects.insert(0, f"token:{command.token_uid}")
        block = fraud_store.blocked(self.store.conn, command.envelope.network_id, subjects)
        if block is None:
            return None
        return (
            f"{block.subject} is blocked since {block.changed_at:%Y-%m-%d %H:%M:%S %Z} by "
            f"{block.actor}: {block.reason}; after review, `evledger fraud unblock "
            f"{block.subject} --network {command.envelope.network_id} --reason ...` lets it "
            "authorize again"
        )

    def _held_for_review(self, command: Command) -> str | None:
        """Why a capture waits for a person (its payment is under fraud review), or None. Only
        a capture not yet begun is held: one already at the provider is carried through."""
        if not isinstance(command, CaptureRequested):
            return None
        network, key = (
            command.envelope.network_id,
            idempotency_key(command.envelope.event_id, Action.CAPTURE),
        )
        alert = fraud_store.open_review(self.store.conn, network, command.payment_id)
        if alert is None or self.store.get(key) is not None:
            return None
        return (
            f"capture of {command.payment_id} held: the payment is under fraud review "
            f"(alert {alert}); `evledger fraud clear {alert} --reason ...` releases it, "
            "re-driving this capture"
        )

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
        except UnknownProvider as exc:  # configuration changed under a attempt row
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
                    instruction_amount(command),
                    key,
                    getattr(command, "final", True),
                )
                c = self._call(provider, key, Action.CAPTURE, lambda: provider.capture(capture))
                self._captured(key, c)
            elif attempt.action is Action.VOID:
                void = VoidCall(command.payment_id, reference, key)
                v = self._call(provider, key, Action.VOID, lambda: provider.void(void))
                self.store.finish(key, AttemptStatus.SUCCEEDED, result=result_json(v))
            else:
                refund = RefundCall(
                    command.payment_id,
                    reference,
                    command.refund_id,  # type: ignore[union-attr]
                    instruction_amount(command),
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
            with provider_call(provider.name, "fetch_status"):
                status = provider.fetch_status(attempt.provider_reference or "")
        except ProviderError as exc:
            self.store.finish(
                key,
                AttemptStatus.IN_DOUBT,
                reason_code=exc.code,
                detail=f"{error.message}; status query failed: {exc.message}",
            )
            return
        captured = status.state in (
            ProviderPaymentState.CAPTURED,
            ProviderPaymentState.PARTIALLY_CAPTURED,
        )
        done = {
            Action.CAPTURE: captured
            and status.captured.amount_minor >= instruction_amount(command).amount_minor,
            Action.VOID: status.state is ProviderPaymentState.VOIDED,
            Action.REFUND: False,  # a status total cannot tell which refund it holds
        }[attempt.action]
        # A refusal in the last try (a stale key: Stripe keeps keys 24 h) or a captured payment
        # for a void is definite: the call did not and will not take effect.
        refused = (not failed.doubt and not error.retriable) or (
            attempt.action is Action.VOID and captured
        )
        detail = f"{error.message}; provider status {status.state.value}"
        replayed = self._replay_capture(command, attempt, provider) if done else None
        if replayed is not None:  # the first answer, with its fee and capture reference
            self._captured(key, replayed)
        elif done:
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

    def _captured(self, key: str, result: CaptureResult) -> None:
        """The attempt succeeded with the provider's capture: its reference and fee kept."""
        self.store.finish(
            key,
            AttemptStatus.SUCCEEDED,
            result=result_json(result),
            outcome_reference=result.capture_reference,
            fee_minor=result.fee.amount_minor if result.fee else None,
        )

    def _replay_capture(
        self, command: Command, attempt: Attempt, provider: PaymentProvider
    ) -> CaptureResult | None:
        """A capture the status shows done, asked once more under its own key: the provider
        replays its first answer (Stripe keeps keys 24 h), so the booking gets the capture's fee
        and reference, which a status does not carry. None when it is not a capture or the
        provider gives no such answer now (the status alone then settles the attempt)."""
        if attempt.action is not Action.CAPTURE:
            return None
        call = CaptureCall(command.payment_id, attempt.provider_reference or "",
                           instruction_amount(command), attempt.idempotency_key,
                           getattr(command, "final", True))  # fmt: skip
        try:
            with provider_call(provider.name, "capture"):
                return provider.capture(call)
        except ProviderError:
            return None

    def _authorize(self, command: AuthorizeRequested, attempt: Attempt, *, resumed: bool) -> None:
        key = attempt.idempotency_key
        call = AuthorizeCall(
            command.payment_id,
            instruction_amount(command),
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
            with provider_call(provider.name, "find_authorization"):
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
            ProviderPaymentState.AUTHORIZED,
            ProviderPaymentState.CAPTURED,
            ProviderPaymentState.PARTIALLY_CAPTURED,
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
        and an attempt note per try. Raises _Failed when the tries are over."""
        breaker = self.breakers.breaker(provider.name)
        doubt = False
        attempt = 1
        while True:
            try:
                with provider_call(provider.name, action.value):
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
                    extra={"provider": provider.name, "action": action.value},
                )
                self.config.sleep(wait)
                attempt += 1
                continue
            breaker.record_success()
            self.store.tried(key, provider.name, "ok")
            return result
