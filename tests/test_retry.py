"""Retry decisions per category, full-jitter backoff, the retry budget and the legacy preset."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.errors import Category, UpstreamError
from policies.retry import RetryPolicy, RetrySettings

BACKOFF = [Category.UPSTREAM_5XX, Category.CONNECT_FAILURE, Category.CONNECT_TIMEOUT, Category.READ_TIMEOUT]
NEVER = [Category.NOT_FOUND, Category.INVALID_REQUEST, Category.BREAKER_OPEN, Category.BUDGET_EXHAUSTED]


def err(category: Category, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(category, "test", retry_after=retry_after)


def policy(**overrides: object) -> RetryPolicy:
    return RetryPolicy(RetrySettings(**overrides), rng=random.Random(7))  # type: ignore[arg-type]


@pytest.mark.parametrize("category", BACKOFF)
def test_transient_failures_retry_with_backoff_until_max_attempts(category: Category) -> None:
    p = policy(max_attempts=3, backoff_base_s=1.0, backoff_max_s=10.0)
    first = p.decide(err(category), attempt=1, now=0.0)
    second = p.decide(err(category), attempt=2, now=0.0)
    third = p.decide(err(category), attempt=3, now=0.0)
    assert first.retry and 0 <= first.delay_s <= 1.0
    assert second.retry and 0 <= second.delay_s <= 2.0
    assert not third.retry and "attempts exhausted (3/3)" in third.reason
    assert category.value in first.reason and "retry 2/3" in first.reason


@pytest.mark.parametrize("category", NEVER)
def test_answers_that_would_not_change_are_never_retried(category: Category) -> None:
    decision = policy().decide(err(category), attempt=1, now=0.0)
    assert not decision.retry and not decision.requeue
    assert decision.reason == f"{category.value}: never retried"


def test_rate_limited_goes_back_through_the_limiter_with_retry_after() -> None:
    decision = policy().decide(err(Category.RATE_LIMITED, retry_after=7.0), attempt=1, now=0.0)
    assert not decision.retry and decision.requeue
    assert decision.delay_s == 7.0
    assert "rate limiter" in decision.reason and "retry_after=7s" in decision.reason


def test_rate_limited_without_retry_after_says_so() -> None:
    decision = policy().decide(err(Category.RATE_LIMITED), attempt=1, now=0.0)
    assert decision.requeue and decision.delay_s == 0.0 and "no Retry-After" in decision.reason


def test_bad_payload_retries_once_on_the_first_failure_only() -> None:
    p = policy(max_attempts=5)
    assert p.decide(err(Category.BAD_PAYLOAD), attempt=1, now=0.0).retry
    second = p.decide(err(Category.BAD_PAYLOAD), attempt=2, now=0.0)
    assert not second.retry and "at most 1x" in second.reason


def test_bad_payload_retry_can_be_switched_off() -> None:
    assert not policy(bad_payload_retries=0).decide(err(Category.BAD_PAYLOAD), attempt=1, now=0.0).retry


def test_full_jitter_uses_the_injected_rng_reproducibly() -> None:
    delays_a = [policy().decide(err(Category.UPSTREAM_5XX), 2, 0.0).delay_s for _ in range(3)]
    delays_b = [policy().decide(err(Category.UPSTREAM_5XX), 2, 0.0).delay_s for _ in range(3)]
    assert delays_a == delays_b
    assert len({policy(max_attempts=9).decide(err(Category.READ_TIMEOUT), 3, 0.0).delay_s}) == 1


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.0, max_value=5.0),
    extra=st.floats(min_value=0.0, max_value=60.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_delay_stays_within_the_full_jitter_bound(attempt: int, base: float, extra: float,
                                                          seed: int) -> None:  # fmt: skip
    settings = RetrySettings(max_attempts=attempt + 1, backoff_base_s=base, backoff_max_s=base + extra,
                             budget_ratio=None)  # fmt: skip
    decision = RetryPolicy(settings, rng=random.Random(seed)).decide(err(Category.UPSTREAM_5XX), attempt, 0.0)
    assert decision.retry
    assert 0.0 <= decision.delay_s <= min(base + extra, base * 2.0 ** min(attempt - 1, 64))


def test_budget_allows_min_retries_per_window_at_low_traffic() -> None:
    p = policy(max_attempts=5, budget_ratio=0.2, budget_min_retries=3, window_s=10.0)
    p.record_request(0.0)
    allowed = [p.decide(err(Category.UPSTREAM_5XX), 1, 1.0).retry for _ in range(4)]
    assert allowed == [True, True, True, False]
    refused = p.decide(err(Category.UPSTREAM_5XX), 1, 1.0)
    assert "retry budget exhausted (3 retries, 1 requests in 10s; allowed 3)" in refused.reason


def test_budget_grows_with_the_share_of_requests() -> None:
    p = policy(budget_ratio=0.2, budget_min_retries=3, window_s=10.0)
    for i in range(50):
        p.record_request(i * 0.1)
    results = [p.decide(err(Category.READ_TIMEOUT), 1, 5.0).retry for _ in range(11)]
    assert results.count(True) == 10  # 0.2 x 50 requests
    assert p.budget(5.0) == {"requests": 50, "retries": 10, "allowed": 10.0}


def test_budget_frees_up_when_the_window_slides() -> None:
    p = policy(budget_ratio=0.0, budget_min_retries=1, window_s=10.0)
    assert p.decide(err(Category.UPSTREAM_5XX), 1, 0.0).retry
    assert not p.decide(err(Category.UPSTREAM_5XX), 1, 9.9).retry
    assert p.decide(err(Category.UPSTREAM_5XX), 1, 10.0).retry


def test_refused_categories_do_not_spend_budget() -> None:
    p = policy(budget_ratio=0.0, budget_min_retries=1)
    p.decide(err(Category.NOT_FOUND), 1, 0.0)
    p.decide(err(Category.RATE_LIMITED), 1, 0.0)
    p.decide(err(Category.UPSTREAM_5XX), 3, 0.0)  # attempts exhausted
    assert p.decide(err(Category.UPSTREAM_5XX), 1, 0.0).retry


def test_legacy_preset_is_three_attempts_fixed_delay_no_budget() -> None:
    p = RetryPolicy.legacy()
    decisions = [p.decide(err(Category.UPSTREAM_5XX), 1, 0.0) for _ in range(100)]
    assert all(d.retry and d.delay_s == 2.5 for d in decisions)  # no budget, no jitter
    assert not p.decide(err(Category.UPSTREAM_5XX), 3, 0.0).retry
    assert p.settings.max_attempts == 3 and p.settings.budget_ratio is None
    assert p.settings.backoff_allowance() == 5.0
    assert p.budget(0.0)["allowed"] == float("inf")


def test_backoff_allowance_sums_the_ceilings_of_the_retries() -> None:
    assert RetrySettings(max_attempts=4, backoff_base_s=1.0, backoff_max_s=3.0).backoff_allowance() == 6.0


def test_default_policy_uses_its_own_rng() -> None:
    decision = RetryPolicy().decide(err(Category.CONNECT_FAILURE), 1, 0.0)
    assert decision.retry and 0 <= decision.delay_s <= 0.5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("backoff_base_s", -1.0),
        ("backoff_max_s", 0.1),
        ("budget_ratio", 1.5),
        ("budget_min_retries", -1),
        ("window_s", 0.0),
        ("fixed_delay_s", -2.5),
        ("bad_payload_retries", 2),
    ],
)
def test_bad_settings_fail_with_the_keys_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"\[retry\] {field} must be"):
        RetrySettings(**{field: value})  # type: ignore[arg-type]
