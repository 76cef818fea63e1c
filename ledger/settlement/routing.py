"""Which payment provider gets an authorization, and which ones are healthy enough to try.

Routing rules are per network: the first rule whose network, currency and payment method match
gives an ordered list of providers. A circuit breaker per provider (closed → open → half-open →
closed) takes a failing provider out of rotation; routing falls back to the next one and records
every provider it skipped and why, so the decision can be stored as an event.

Follow-up instructions (capture, void, refund) never fail over: only the provider holding the
authorization can act on it (``route_follow_up``).

Pure: no I/O; the clock is injected. Breakers are not thread-safe: one set per processor thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ledger.errors import LedgerError, ValidationError


class NoRouteConfigured(ValidationError):
    """No routing rule covers the network, currency and payment method."""

    code = "NO_ROUTE_CONFIGURED"


class NoProviderAvailable(LedgerError):
    """Every provider the rule allows is out of rotation; try again after the cool-down."""

    code = "NO_PROVIDER_AVAILABLE"
    retriable = True


class WrongProvider(ValidationError):
    """A follow-up instruction was sent to a provider that does not hold the authorization."""

    code = "WRONG_PROVIDER"


# ---------------------------------------------------------------------------- circuit breaker
class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When a breaker opens and when it lets a probe through.

    Opens after ``consecutive_failures`` retriable failures in a row, or when at least
    ``min_calls`` of the last ``window`` calls were made and their failure rate reaches
    ``failure_rate``. After ``cool_down`` seconds open, ``half_open_probes`` calls may pass;
    a success closes the breaker, a failure re-opens it for another cool-down.
    """

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    cool_down: float = 30.0
    half_open_probes: int = 1


class CircuitBreaker:
    """Health of one provider as seen from this process."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._consecutive = 0
        self._outcomes: deque[bool] = deque(maxlen=config.window)
        self._probes_in_flight = 0

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.config.cool_down
        ):
            self._state = BreakerState.HALF_OPEN
            self._probes_in_flight = 0
        return self._state

    def admit(self) -> str | None:
        """None when a call may go ahead (taking a probe slot when half-open), else why not."""
        state = self.state
        if state is BreakerState.CLOSED:
            return None
        if state is BreakerState.OPEN:
            remaining = self.config.cool_down - (self._clock() - self._opened_at)
            return f"circuit open ({remaining:.0f}s of cool-down left)"
        if self._probes_in_flight >= self.config.half_open_probes:
            return "circuit half-open, probe already in flight"
        self._probes_in_flight += 1
        return None

    def record_success(self) -> None:
        self._consecutive = 0
        self._outcomes.append(True)
        if self.state is BreakerState.HALF_OPEN:
            self._close()

    def record_failure(self, *, retriable: bool = True) -> None:
        """Count a failed call. Non-retriable failures (declines, bad requests) say nothing
        about the provider's health and count as successes of the transport."""
        if not retriable:
            self.record_success()
            return
        self._consecutive += 1
        self._outcomes.append(False)
        if self.state is BreakerState.HALF_OPEN or self._should_open():
            self._open()

    def _should_open(self) -> bool:
        if self._consecutive >= self.config.consecutive_failures:
            return True
        calls = len(self._outcomes)
        if calls < self.config.min_calls:
            return False
        failures = sum(1 for ok in self._outcomes if not ok)
        return failures / calls >= self.config.failure_rate

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probes_in_flight = 0

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._outcomes.clear()
        self._probes_in_flight = 0


class ProviderHealth(Protocol):
    """What routing needs to know about health: may a call go to ``provider`` now?"""

    def admit(self, provider: str) -> str | None: ...


class CircuitBreakers:
    """One breaker per provider, created on first use; implements ``ProviderHealth``."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, provider: str) -> CircuitBreaker:
        if provider not in self._breakers:
            self._breakers[provider] = CircuitBreaker(self._config, self._clock)
        return self._breakers[provider]

    def admit(self, provider: str) -> str | None:
        return self.breaker(provider).admit()

    def states(self) -> Mapping[str, BreakerState]:
        return {name: b.state for name, b in self._breakers.items()}


# ---------------------------------------------------------------------------- routing rules
@dataclass(frozen=True, slots=True)
class RoutingRule:
    """Providers to try, in order, for payments matching every non-empty criterion."""

    providers: tuple[str, ...]
    network_id: str | None = None
    currencies: frozenset[str] = field(default_factory=frozenset)
    payment_methods: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.providers:
            raise ValidationError("a routing rule needs at least one provider")

    def matches(self, request: RoutingRequest) -> bool:
        return (
            (self.network_id is None or self.network_id == request.network_id)
            and (not self.currencies or request.currency in self.currencies)
            and (not self.payment_methods or request.payment_method in self.payment_methods)
        )


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    network_id: str
    currency: str
    payment_method: str
    preferred_provider: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The provider chosen, why, and every provider passed over with the reason."""

    provider: str
    reason: str
    skipped: tuple[tuple[str, str], ...] = ()


def route(
    request: RoutingRequest, rules: Sequence[RoutingRule], health: ProviderHealth
) -> RoutingDecision:
    """Choose a provider for a new authorization.

    Raises NoRouteConfigured when no rule matches and NoProviderAvailable (retriable) when every
    allowed provider's breaker refuses the call.
    """
    rule = next((r for r in rules if r.matches(request)), None)
    if rule is None:
        raise NoRouteConfigured(
            "no routing rule matches",
            network_id=request.network_id,
            currency=request.currency,
            payment_method=request.payment_method,
        )
    order = list(rule.providers)
    preferred = request.preferred_provider
    if preferred is not None and preferred in order:
        order.remove(preferred)
        order.insert(0, preferred)
    skipped: list[tuple[str, str]] = []
    if preferred is not None and preferred not in rule.providers:
        skipped.append((preferred, "preferred provider not allowed by the routing rule"))
    for position, provider in enumerate(order):
        refusal = health.admit(provider)
        if refusal is not None:
            skipped.append((provider, refusal))
            continue
        if position == 0:
            reason = "preferred provider" if provider == preferred else "first in rule order"
        else:
            reason = f"fallback: {len(skipped)} provider(s) skipped"
        return RoutingDecision(provider, reason, tuple(skipped))
    raise NoProviderAvailable(
        "every provider allowed for this payment is unavailable",
        network_id=request.network_id,
        skipped="; ".join(f"{p}: {why}" for p, why in skipped),
    )


def route_follow_up(
    payment_id: str, holding_provider: str, requested_provider: str | None = None
) -> RoutingDecision:
    """Capture, void and refund go to the provider that holds the authorization, whatever its
    health: no other provider can act on it. Raises WrongProvider if another one was asked for."""
    if requested_provider is not None and requested_provider != holding_provider:
        raise WrongProvider(
            "follow-up instructions must go to the provider holding the authorization",
            payment_id=payment_id,
            holding_provider=holding_provider,
            requested_provider=requested_provider,
        )
    return RoutingDecision(holding_provider, "holds the authorization")
