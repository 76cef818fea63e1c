"""Routing rules and circuit breakers: outage opens, traffic fails over, cool-down heals."""

from __future__ import annotations

import pytest

from ledger.settlement.routing import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitBreakers,
    NoProviderAvailable,
    NoRouteConfigured,
    RoutingRequest,
    RoutingRule,
    WrongProvider,
    route,
    route_follow_up,
)


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read the state afresh (a property mypy would otherwise narrow across calls)."""
    return breaker.state


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


CONFIG = BreakerConfig(
    consecutive_failures=3, failure_rate=0.5, window=10, min_calls=6, cool_down=30.0
)
RULES = [
    RoutingRule(("braintree",), network_id="net-us", currencies=frozenset({"USD"})),
    RoutingRule(
        ("stripe", "braintree", "sandbox"),
        currencies=frozenset({"EUR", "USD"}),
        payment_methods=frozenset({"card"}),
    ),
    RoutingRule(("sandbox",)),
]
EUR_CARD = RoutingRequest(network_id="net-de", currency="EUR", payment_method="card")


def test_first_matching_rule_and_order_wins() -> None:
    breakers = CircuitBreakers(CONFIG, Clock())
    decision = route(EUR_CARD, RULES, breakers)
    assert (decision.provider, decision.skipped) == ("stripe", ())
    us = RoutingRequest(network_id="net-us", currency="USD", payment_method="card")
    assert route(us, RULES, breakers).provider == "braintree"
    wallet = RoutingRequest(network_id="net-de", currency="EUR", payment_method="wallet")
    assert route(wallet, RULES, breakers).provider == "sandbox"


def test_no_rule_matches() -> None:
    with pytest.raises(NoRouteConfigured):
        route(EUR_CARD, [RoutingRule(("stripe",), currencies=frozenset({"GBP"}))],
              CircuitBreakers(CONFIG, Clock()))  # fmt: skip


def test_preferred_provider_goes_first_only_if_the_rule_allows_it() -> None:
    breakers = CircuitBreakers(CONFIG, Clock())
    preferred = RoutingRequest("net-de", "EUR", "card", preferred_provider="braintree")
    assert route(preferred, RULES, breakers).provider == "braintree"
    outsider = RoutingRequest("net-de", "EUR", "card", preferred_provider="adyen")
    decision = route(outsider, RULES, breakers)
    assert decision.provider == "stripe"
    assert decision.skipped[0][0] == "adyen"


def test_consecutive_retriable_failures_open_the_breaker() -> None:
    breaker = CircuitBreaker(CONFIG, Clock())
    breaker.record_failure()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.admit() is not None


def test_declines_do_not_count_against_health() -> None:
    breaker = CircuitBreaker(CONFIG, Clock())
    for _ in range(10):
        breaker.record_failure(retriable=False)
    assert state_of(breaker) is BreakerState.CLOSED


def test_error_rate_opens_the_breaker_without_a_streak() -> None:
    breaker = CircuitBreaker(CONFIG, Clock())
    for _ in range(3):  # fail, ok, fail, ok, ...: never 3 in a row
        breaker.record_failure()
        breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED  # 3 of 6
    breaker.record_failure()  # 4 of 7 calls failed: over 50%
    assert state_of(breaker) is BreakerState.OPEN


def test_outage_fails_over_then_heals_after_the_cool_down() -> None:
    clock = Clock()
    breakers = CircuitBreakers(CONFIG, clock)
    for _ in range(3):  # stripe is down
        breakers.breaker("stripe").record_failure()

    decision = route(EUR_CARD, RULES, breakers)
    assert decision.provider == "braintree"
    assert [p for p, _ in decision.skipped] == ["stripe"]
    assert "open" in decision.skipped[0][1]

    clock.now += 30.0  # cool-down over: one probe goes to stripe
    assert state_of(breakers.breaker("stripe")) is BreakerState.HALF_OPEN
    assert route(EUR_CARD, RULES, breakers).provider == "stripe"
    # While the probe is in flight, others fail over.
    assert route(EUR_CARD, RULES, breakers).provider == "braintree"

    breakers.breaker("stripe").record_success()
    assert state_of(breakers.breaker("stripe")) is BreakerState.CLOSED
    assert route(EUR_CARD, RULES, breakers).provider == "stripe"


def test_failed_probe_reopens_for_another_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(CONFIG, clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 30.0
    assert breaker.admit() is None
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    clock.now += 29.0
    assert state_of(breaker) is BreakerState.OPEN


def test_every_provider_down_is_retriable() -> None:
    breakers = CircuitBreakers(CONFIG, Clock())
    for name in ("stripe", "braintree", "sandbox"):
        for _ in range(3):
            breakers.breaker(name).record_failure()
    with pytest.raises(NoProviderAvailable) as caught:
        route(EUR_CARD, RULES, breakers)
    assert caught.value.retriable is True


def test_follow_ups_stay_with_the_holding_provider() -> None:
    assert route_follow_up("pay-1", "braintree").provider == "braintree"
    assert route_follow_up("pay-1", "braintree", "braintree").provider == "braintree"
    with pytest.raises(WrongProvider):
        route_follow_up("pay-1", "braintree", "stripe")
