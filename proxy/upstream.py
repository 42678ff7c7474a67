"""The upstream client: the only code that sends requests to Yahoo.

Every call passes the same ordered chain (STYLE.md): breaker → pacing → transport →
classify → retry. This is the minimal form the core needs; the adaptive limiter,
retry budget and timeout ladder of the policies package replace the pacing and
fixed timeouts behind the same methods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
import structlog

from policies.breaker import Breaker
from policies.errors import Category, FailureContext, UpstreamError
from policies.ratelimit import SharedRateLimiter
from policies.retry import RetryPolicy, RetrySettings
from policies.stats import LatencyWindow, SlidingWindow
from policies.timeouts import TimeoutLadder, default_levels
from proxy.ingest import ChartPayload, PayloadError, UpstreamChartError, parse_chart_body
from proxy.series import SeriesKey
from proxy.transport import RawResponse, Timeouts, Transport

log = structlog.get_logger("yfproxy.upstream")

_T = TypeVar("_T")
_ANSWERED = (Category.NOT_FOUND, Category.INVALID_REQUEST)
_DEGRADED_ERROR_SHARE = 0.2

CHART_EVENTS = "div,splits,capitalGains"
# Each endpoint has its own budget in the shared limiter.
_EXCERPT = 200


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    base_url: str
    max_concurrency: int
    min_interval_s: float  # local pacing, used only without a shared limiter (unit tests)
    timeouts: Timeouts  # the first rung of the timeout ladder
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    breaker_fail_max: int
    breaker_reset_s: float
    retry_budget_ratio: float | None = 0.2
    retry_budget_min: int = 3
    retry_window_s: float = 10.0
    legacy_retry_delay_s: float | None = None  # the old fixed-delay retries, when set
    ladder_steps: int = 3
    ladder_decay_after: int = 5


@dataclass(slots=True)
class UpstreamStats:
    requests: int = 0
    failures: dict[str, int] | None = None
    # (endpoint, "ok" or a Category value) -> attempts; /metrics exposes it as a counter.
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)

    def failed(self, category: Category) -> None:
        self.failures = self.failures or {}
        self.failures[category.value] = self.failures.get(category.value, 0) + 1

    def attempted(self, endpoint: str, outcome: str) -> None:
        key = (endpoint, outcome)
        self.attempts[key] = self.attempts.get(key, 0) + 1


class UpstreamClient:
    """Every upstream call: pool slot → shared budget → breaker → transport (with the
    timeout ladder's rung) → classify, and the retry policy around all of it.

    The order is the point: a caller holds a pool slot before it reaches the breaker,
    so a half-open breaker lets at most ``max_concurrency`` probes through (ADR 0003);
    the budget wait sits outside the breaker, so our own pacing never counts as Yahoo
    failing.
    """

    def __init__(
        self,
        transport: Transport,
        settings: UpstreamSettings,
        limiter: SharedRateLimiter | None = None,
        *,
        budget_wait_s: float = 30.0,
    ) -> None:
        self._transport = transport
        self._settings = settings
        self.limiter = limiter
        self.budget_wait_s = budget_wait_s
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._pace_lock = asyncio.Lock()
        self._next_start = 0.0
        self.breaker = Breaker(settings.breaker_fail_max, settings.breaker_reset_s)
        self.retry = _retry_policy(settings)
        base = settings.timeouts
        self.ladder = TimeoutLadder(
            default_levels(base.connect_s, base.read_s, settings.ladder_steps),
            decay_after=settings.ladder_decay_after,
        )
        self.stats = UpstreamStats()
        self._outcomes = SlidingWindow(60, outcomes=("success", "error"))
        self._latency = LatencyWindow(1024)

    async def close(self) -> None:
        await self._transport.close()

    async def fetch_chart(self, key: SeriesKey, start: int, end: int) -> ChartPayload:
        params = {
            "period1": str(start),
            "period2": str(end),
            "interval": key.interval,
            "includePrePost": "true" if key.prepost else "false",
            "events": CHART_EVENTS,
        }
        url = f"{self._settings.base_url}/v8/finance/chart/{quote(key.symbol, safe='')}"
        context = FailureContext(symbol=key.symbol, interval=key.interval)
        return await self._call(url, params, context, _parse_chart, endpoint="chart")

    async def passthrough(self, path: str, params: dict[str, str]) -> RawResponse:
        """Forward an allow-listed non-chart GET; any Yahoo answer below 500 is returned as is."""
        context = FailureContext(symbol=path)
        url = f"{self._settings.base_url}{path}"
        return await self._call(url, params, context, _as_is, endpoint="passthrough", accept_4xx=True)

    async def _call(
        self,
        url: str,
        params: dict[str, str],
        context: FailureContext,
        parse: Callable[[RawResponse, FailureContext], _T],
        *,
        endpoint: str,
        accept_4xx: bool = False,
    ) -> _T:
        self.retry.record_request(time.monotonic())
        attempt = 0
        while True:
            attempt += 1
            context.attempt = attempt
            try:
                answer = await self._attempt(url, params, context, parse, endpoint, accept_4xx)
            except UpstreamError as exc:
                self.stats.failed(exc.category)
                self.stats.attempted(endpoint, exc.category.value)
                if exc.category in (Category.CONNECT_TIMEOUT, Category.READ_TIMEOUT):
                    self.ladder.on_timeout(endpoint)
                decision = self.retry.decide(exc, attempt, time.monotonic())
                log.info(
                    "upstream_attempt_failed", **exc.to_log(), retry=decision.retry, reason=decision.reason
                )
                if not decision.retry:
                    raise
                await asyncio.sleep(decision.delay_s)
            else:
                self.stats.attempted(endpoint, "ok")
                self.ladder.on_success(endpoint)
                return answer

    async def _attempt(
        self,
        url: str,
        params: dict[str, str],
        context: FailureContext,
        parse: Callable[[RawResponse, FailureContext], _T],
        endpoint: str,
        accept_4xx: bool,
    ) -> _T:
        async with self._slots:
            await self._wait_for_budget(endpoint, context)
            connect_s, read_s, _level = self.ladder.current(endpoint)
            timeouts = Timeouts(connect_s, read_s)
            return await self.breaker.call(
                self._send, url, params, context, parse, endpoint, accept_4xx, timeouts, context=context
            )

    async def _send(
        self,
        url: str,
        params: dict[str, str],
        context: FailureContext,
        parse: Callable[[RawResponse, FailureContext], _T],
        endpoint: str,
        accept_4xx: bool,
        timeouts: Timeouts,
    ) -> _T:
        self.stats.requests += 1
        started = time.monotonic()
        try:
            raw = await self._transport.get(url, params=params, headers=_HEADERS, timeouts=timeouts)
            context.status = raw.status
            classify(raw, context, accept_4xx=accept_4xx)
            # Inside the breaker's call: a 200 whose body is unusable (truncated, not a chart)
            # is a failure like a 5xx for the breaker, the limiter and the retry policy.
            answer = parse(raw, context)
        except UpstreamError as exc:
            exc.context = context
            # A 404 or 400 is Yahoo answering correctly; only real failures degrade the network.
            self._outcomes.add("success" if exc.category in _ANSWERED else "error")
            await self._record_failure(endpoint, exc)
            raise
        finally:
            context.latency_ms = (time.monotonic() - started) * 1000
        self._outcomes.add("success")
        self._latency.add(context.latency_ms)
        if self.limiter is not None:
            await self.limiter.record_success(endpoint)
        return answer

    async def _wait_for_budget(self, endpoint: str, context: FailureContext) -> None:
        if self.limiter is None:
            await self._pace()
            return
        try:
            await self.limiter.acquire(endpoint, max_wait_s=self.budget_wait_s)
        except UpstreamError as exc:
            exc.context = context
            raise

    async def _record_failure(self, endpoint: str, exc: UpstreamError) -> None:
        if self.limiter is None:
            return
        if exc.category is Category.RATE_LIMITED:
            await self.limiter.record_throttle(endpoint, exc.retry_after)
        else:
            self.limiter.record_error(endpoint)

    async def _pace(self) -> None:
        async with self._pace_lock:
            now = time.monotonic()
            wait = self._next_start - now
            self._next_start = max(now, self._next_start) + self._settings.min_interval_s
        if wait > 0:
            await asyncio.sleep(wait)

    def status(self) -> dict[str, object]:
        return {
            "network": self.network_status(),
            "requests": self.stats.requests,
            "failures": self.stats.failures or {},
            "last_60s": self._outcomes.snapshot(),
            "latency_ms": self._latency.percentiles((50, 90, 99)),
            "retry_budget": self.retry.budget(time.monotonic()),
        }

    def network_status(self) -> str:
        """ok / degraded / down, from the breaker and the last minute of upstream answers."""
        if self.breaker.state == "open":
            return "down"
        window = self._outcomes.snapshot()
        total = window["success"] + window["error"]
        climbed = any(rung["level"] > 0 for rung in self.ladder.snapshot().values())
        if climbed or (total >= 5 and window["error"] / total > _DEGRADED_ERROR_SHARE):
            return "degraded"
        return "ok"


def _parse_chart(raw: RawResponse, context: FailureContext) -> ChartPayload:
    try:
        return parse_chart_body(raw.body)
    except UpstreamChartError as exc:
        raise _chart_error(raw.status, exc.code, exc.description, context) from exc
    except PayloadError as exc:
        raise UpstreamError(Category.BAD_PAYLOAD, str(exc), context) from exc


def _as_is(raw: RawResponse, _context: FailureContext) -> RawResponse:
    return raw


def _retry_policy(settings: UpstreamSettings) -> RetryPolicy:
    if settings.legacy_retry_delay_s is not None:
        return RetryPolicy.legacy(delay_s=settings.legacy_retry_delay_s)
    return RetryPolicy(
        RetrySettings(
            max_attempts=settings.max_attempts,
            backoff_base_s=settings.backoff_base_s,
            backoff_max_s=settings.backoff_max_s,
            budget_ratio=settings.retry_budget_ratio,
            budget_min_retries=settings.retry_budget_min,
            window_s=settings.retry_window_s,
        )
    )


_HEADERS = {"Accept": "application/json,text/plain,*/*"}


def classify(raw: RawResponse, context: FailureContext, *, accept_4xx: bool = False) -> None:
    """Raise the taxonomy's error for an answer that is not a usable success."""
    status = raw.status
    head = raw.body[:_EXCERPT]
    throttled = b"Too Many Requests" in head
    if status == 200 and not throttled and not head.lstrip().startswith(b"<"):
        return
    context.excerpt = head.decode("utf-8", "replace")
    if status == 429 or throttled:
        raise UpstreamError(Category.RATE_LIMITED, "429 Too Many Requests", context, _retry_after(raw))
    if status >= 500:
        raise UpstreamError(Category.UPSTREAM_5XX, f"status {status}", context)
    if status == 200:
        raise UpstreamError(Category.BAD_PAYLOAD, "HTML instead of JSON", context)
    if accept_4xx:
        return
    description = _error_description(raw.body)
    raise _chart_error(status, "", description, context)


def _chart_error(status: int, code: str, description: str, context: FailureContext) -> UpstreamError:
    if status == 404 or code == "Not Found":
        return UpstreamError(Category.NOT_FOUND, description or "not found", context)
    if status in (400, 422) or code in ("Bad Request", "Unprocessable Entity"):
        return UpstreamError(Category.INVALID_REQUEST, description, context, yahoo_description=description)
    return UpstreamError(Category.BAD_PAYLOAD, f"status {status} {code}: {description}", context)


def _error_description(body: bytes) -> str:
    try:
        doc: Any = orjson.loads(body)
        return str(doc["chart"]["error"]["description"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:_EXCERPT].decode("utf-8", "replace")


def _retry_after(raw: RawResponse) -> float | None:
    value = raw.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
