"""Retry policy: full-jitter backoff, Retry-After, only retriable errors, deterministic."""

from __future__ import annotations

import random

import pytest

from connectors.providers.errors import PaymentDeclined, ProviderRateLimited, ProviderTimeout
from ledger.errors import ValidationError
from ledger.settlement.retry import RetryPolicy, call_with_retries


def timeout() -> ProviderTimeout:
    return ProviderTimeout("no answer", provider="sandbox")


def test_ceiling_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, multiplier=2, max_delay=3.0)
    assert [policy.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_within_zero_and_the_ceiling() -> None:
    policy = RetryPolicy(max_attempts=50, base_delay=1.0, max_delay=8.0)
    rng = random.Random(7)
    for attempt in range(1, 20):
        delay = policy.delay(attempt, timeout(), rng)
        assert delay is not None
        assert 0.0 <= delay <= policy.ceiling(attempt)


def test_same_seed_gives_the_same_delays() -> None:
    policy = RetryPolicy(max_attempts=10)
    first = [policy.delay(n, timeout(), random.Random(42)) for n in range(1, 9)]
    second = [policy.delay(n, timeout(), random.Random(42)) for n in range(1, 9)]
    assert first == second


def test_retry_after_is_a_lower_bound() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=0.2)
    error = ProviderRateLimited("slow down", provider="stripe", retry_after=7)
    assert policy.delay(1, error, random.Random(1)) == 7.0


def test_absurd_retry_after_is_ignored() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=0.2, max_retry_after=60)
    error = ProviderRateLimited("slow down", provider="stripe", retry_after=3600)
    delay = policy.delay(1, error, random.Random(1))
    assert delay is not None and delay <= 0.2


def test_non_retriable_errors_are_final() -> None:
    policy = RetryPolicy()
    declined = PaymentDeclined("no", provider="sandbox", decline_code="card_declined")
    assert policy.delay(1, declined, random.Random(1)) is None
    assert policy.delay(1, ValueError("bug"), random.Random(1)) is None


def test_retries_until_success_and_sleeps_between() -> None:
    outcomes: list[Exception | str] = [timeout(), timeout(), "ok"]
    slept: list[float] = []

    def operation() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = call_with_retries(
        operation, RetryPolicy(max_attempts=5), rng=random.Random(3), sleep=slept.append
    )
    assert result == "ok"
    assert len(slept) == 2


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    calls = 0

    def operation() -> None:
        nonlocal calls
        calls += 1
        raise timeout()

    with pytest.raises(ProviderTimeout):
        call_with_retries(
            operation, RetryPolicy(max_attempts=3), rng=random.Random(0), sleep=lambda s: None
        )
    assert calls == 3


def test_a_decline_is_raised_at_once() -> None:
    calls = 0

    def operation() -> None:
        nonlocal calls
        calls += 1
        raise PaymentDeclined("no", provider="sandbox", decline_code="card_declined")

    with pytest.raises(PaymentDeclined):
        call_with_retries(operation, RetryPolicy(), rng=random.Random(0), sleep=lambda s: None)
    assert calls == 1


def test_invalid_policy_is_refused() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
