"""Retry decisions per failure category, under a retry budget.

Pure: no sleeping, no I/O. The caller records each logical request with
``record_request(now)``, asks ``decide(error, attempt, now)`` after a failed attempt,
logs the returned reason and sleeps ``delay_s`` itself when ``retry`` is true.

Rules (issue 3, part 3):

- RATE_LIMITED never retries here: a 429 is Yahoo asking us to slow down, so the caller
  must go back through the rate limiter (``requeue=True``, ``delay_s`` = Retry-After).
- NOT_FOUND, INVALID_REQUEST (negatively cached by the caller), BREAKER_OPEN and
  BUDGET_EXHAUSTED never retry: the answer would not change, or we chose not to ask.
- UPSTREAM_5XX, CONNECT_FAILURE, CONNECT_TIMEOUT, READ_TIMEOUT retry with full-jitter
  exponential backoff up to ``max_attempts``.
- BAD_PAYLOAD retries once, and only when it is the first attempt's failure: a truncated
  body can be a connection dropped mid-transfer (transient), but an HTML consent/block
  page usually repeats, so one retry bounds what a persistent bad answer costs.
- Every retry also needs the retry budget (Envoy's): retries in the last ``window_s``
  stay <= max(budget_min_retries, budget_ratio x logical requests in that window), so a
  failing Yahoo sees at most ~(1 + ratio) times normal traffic instead of max_attempts times.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from policies.errors import Category, UpstreamError

_NEVER_RETRY = frozenset(
    {Category.NOT_FOUND, Category.INVALID_REQUEST, Category.BREAKER_OPEN, Category.BUDGET_EXHAUSTED}
)
LEGACY_DELAY_S = 2.5


@dataclass(frozen=True, slots=True)
class RetrySettings:
    max_attempts: int = 3  # attempts in total, the first one included
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    budget_ratio: float | None = 0.2  # None: no retry budget (legacy)
    budget_min_retries: int = 3  # retries always allowed per window, so low traffic can retry
    window_s: float = 10.0
    fixed_delay_s: float | None = None  # set: no jitter, no exponential growth (legacy)
    bad_payload_retries: int = 1

    def __post_init__(self) -> None:
        _require(self.max_attempts >= 1, "max_attempts", "an integer >= 1", self.max_attempts)
        _require(self.backoff_base_s >= 0, "backoff_base_s", ">= 0", self.backoff_base_s)
        _require(self.backoff_max_s >= self.backoff_base_s, "backoff_max_s", ">= backoff_base_s",
                 self.backoff_max_s)  # fmt: skip
        ratio = self.budget_ratio
        _require(ratio is None or 0 <= ratio <= 1, "budget_ratio", "between 0 and 1, or None", ratio)
        _require(self.budget_min_retries >= 0, "budget_min_retries", ">= 0", self.budget_min_retries)
        _require(self.window_s > 0, "window_s", "> 0", self.window_s)
        delay = self.fixed_delay_s
        _require(delay is None or delay >= 0, "fixed_delay_s", ">= 0, or None", delay)
        once = self.bad_payload_retries
        _require(once in (0, 1), "bad_payload_retries", "0 or 1", once)

    def backoff_ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt ``attempt`` (1-based)."""
        if self.fixed_delay_s is not None:
            return self.fixed_delay_s
        # Cap the exponent: 2**1000 overflows float multiplication long after the cap applies.
        return min(self.backoff_max_s, self.backoff_base_s * 2.0 ** min(attempt - 1, 64))

    def backoff_allowance(self) -> float:
        """Worst-case total sleep of one request's retries, for deadlines (TimeoutLadder)."""
        return sum(self.backoff_ceiling(n) for n in range(1, self.max_attempts))


def _require(ok: bool, name: str, allowed: str, value: object) -> None:
    if not ok:
        raise ValueError(f"[retry] {name} must be {allowed}, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay_s: float
    reason: str
    # True for 429: do not retry here, go back through the rate limiter after delay_s.
    requeue: bool = False


class RetryPolicy:
    def __init__(self, settings: RetrySettings | None = None, *, rng: random.Random | None = None) -> None:
        self.settings = settings or RetrySettings()
        self._rng = rng or random.Random()
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    @classmethod
    def legacy(cls, *, delay_s: float = LEGACY_DELAY_S) -> RetryPolicy:
        """The old behaviour: 3 attempts, a fixed 2.5 s between them, no jitter, no budget.

        Category rules still apply (a 404 or a 429 is never retried blindly), as the old
        fixed pacing is what backward compatibility is about, not hammering a throttled Yahoo.
        """
        settings = RetrySettings(max_attempts=3, fixed_delay_s=delay_s, budget_ratio=None)
        return cls(settings)

    def record_request(self, now: float) -> None:
        """Count one logical request (its first attempt) towards the retry budget."""
        self._requests.append(now)

    def decide(self, error: UpstreamError, attempt: int, now: float) -> RetryDecision:
        """Whether to retry after ``attempt`` (1-based) failed with ``error``."""
        category = error.category
        if category is Category.RATE_LIMITED:
            return self._requeue(error)
        if category in _NEVER_RETRY:
            return _no(f"{category.value}: never retried")
        # What is left: 5xx, connect failure/timeout, read timeout, and bad payload.
        if category is Category.BAD_PAYLOAD and attempt > self.settings.bad_payload_retries:
            limit = self.settings.bad_payload_retries
            return _no(f"bad_payload: retried at most {limit}x, on the first failure")
        if attempt >= self.settings.max_attempts:
            return _no(f"{category.value}: attempts exhausted ({attempt}/{self.settings.max_attempts})")
        refusal = self._spend_budget(now)
        if refusal:
            return _no(f"{category.value}: {refusal}")
        delay = self._delay(attempt)
        return RetryDecision(
            True, delay, f"{category.value}: retry {attempt + 1}/{self.settings.max_attempts} in {delay:.3f}s"
        )

    def budget(self, now: float) -> dict[str, float]:
        """Requests, retries and allowed retries in the current window, for /status."""
        self._expire(now)
        return {"requests": len(self._requests), "retries": len(self._retries), "allowed": self._allowed()}

    def _requeue(self, error: UpstreamError) -> RetryDecision:
        wait = error.retry_after or 0.0
        hint = f"retry_after={wait:g}s" if error.retry_after is not None else "no Retry-After"
        reason = f"rate_limited: back through the rate limiter ({hint})"
        return RetryDecision(False, wait, reason, requeue=True)

    def _spend_budget(self, now: float) -> str:
        if self.settings.budget_ratio is None:
            return ""
        self._expire(now)
        allowed = self._allowed()
        if len(self._retries) + 1 > allowed:
            return (
                f"retry budget exhausted ({len(self._retries)} retries, {len(self._requests)} requests "
                f"in {self.settings.window_s:g}s; allowed {allowed:g})"
            )
        self._retries.append(now)
        return ""

    def _allowed(self) -> float:
        ratio = self.settings.budget_ratio
        if ratio is None:
            return float("inf")
        return max(float(self.settings.budget_min_retries), ratio * len(self._requests))

    def _expire(self, now: float) -> None:
        horizon = now - self.settings.window_s
        for stamps in (self._requests, self._retries):
            while stamps and stamps[0] <= horizon:
                stamps.popleft()

    def _delay(self, attempt: int) -> float:
        ceiling = self.settings.backoff_ceiling(attempt)
        if self.settings.fixed_delay_s is not None:
            return ceiling
        # Full jitter (AWS architecture blog): spreads the retries of many callers apart.
        return self._rng.uniform(0.0, ceiling)


def _no(reason: str) -> RetryDecision:
    return RetryDecision(False, 0.0, reason)
