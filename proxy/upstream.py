"""The upstream client: the only code that sends requests to Yahoo.

Every call passes the same ordered chain (STYLE.md): breaker → pacing → transport →
classify → retry. This is the minimal form the core needs; the adaptive limiter,
retry budget and timeout ladder of the policies package replace the pacing and
fixed timeouts behind the same methods.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from aiobreaker import CircuitBreaker, CircuitBreakerError

from policies.errors import Category, FailureContext, UpstreamError
from policies.ratelimit import SharedRateLimiter
from proxy.ingest import ChartPayload, PayloadError, UpstreamChartError, parse_chart_body
from proxy.series import SeriesKey
from proxy.transport import RawResponse, Timeouts, Transport

CHART_EVENTS = "div,splits,capitalGains"
# Each endpoint has its own budget in the shared limiter.
UPSTREAM_ENDPOINTS = ("chart", "passthrough")
_EXCERPT = 200


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    base_url: str
    max_concurrency: int
    min_interval_s: float  # pacing between request starts (1 / rate)
    timeouts: Timeouts
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    breaker_fail_max: int
    breaker_reset_s: float


@dataclass(slots=True)
class UpstreamStats:
    requests: int = 0
    failures: dict[str, int] | None = None

    def failed(self, category: Category) -> None:
        self.failures = self.failures or {}
        self.failures[category.value] = self.failures.get(category.value, 0) + 1


class UpstreamClient:
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
        # The shared adaptive budget; without one (unit tests) a fixed local pacing applies.
        self.limiter = limiter
        self._budget_wait_s = budget_wait_s
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._pace_lock = asyncio.Lock()
        self._next_start = 0.0
        # In memory and only inside the bounded pool: aiobreaker's half-open state is not
        # gated, so the pool's size is what bounds the probes after a reopen (ADR 0003).
        self.breaker = CircuitBreaker(
            fail_max=settings.breaker_fail_max,
            timeout_duration=dt.timedelta(seconds=settings.breaker_reset_s),
            exclude=[lambda exc: isinstance(exc, UpstreamError) and not _counts_for_breaker(exc)],
        )
        self.stats = UpstreamStats()

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
        raw = await self._call(url, params, context, endpoint="chart")
        try:
            return parse_chart_body(raw.body)
        except UpstreamChartError as exc:
            raise _chart_error(raw.status, exc.code, exc.description, context) from exc
        except PayloadError as exc:
            raise UpstreamError(Category.BAD_PAYLOAD, str(exc), context) from exc

    async def passthrough(self, path: str, params: dict[str, str]) -> RawResponse:
        """Forward an allow-listed non-chart GET; any Yahoo answer below 500 is returned as is."""
        context = FailureContext(symbol=path)
        url = f"{self._settings.base_url}{path}"
        return await self._call(url, params, context, endpoint="passthrough", accept_4xx=True)

    async def _call(
        self,
        url: str,
        params: dict[str, str],
        context: FailureContext,
        *,
        endpoint: str,
        accept_4xx: bool = False,
    ) -> RawResponse:
        attempts = self._settings.max_attempts
        for attempt in range(1, attempts + 1):
            context.attempt = attempt
            try:
                return await self._attempt(url, params, context, endpoint, accept_4xx)
            except UpstreamError as exc:
                self.stats.failed(exc.category)
                if not exc.category.retryable or attempt == attempts:
                    raise
                await asyncio.sleep(self._backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, url: str, params: dict[str, str], context: FailureContext, endpoint: str, accept_4xx: bool
    ) -> RawResponse:
        try:
            return await self.breaker.call_async(self._send, url, params, context, endpoint, accept_4xx)
        except CircuitBreakerError as exc:
            raise UpstreamError(Category.BREAKER_OPEN, "circuit breaker open", context) from exc

    async def _send(
        self, url: str, params: dict[str, str], context: FailureContext, endpoint: str, accept_4xx: bool
    ) -> RawResponse:
        async with self._slots:
            await self._wait_for_budget(endpoint, context)
            self.stats.requests += 1
            started = time.monotonic()
            try:
                raw = await self._transport.get(
                    url, params=params, headers=_HEADERS, timeouts=self._settings.timeouts
                )
                context.status = raw.status
                classify(raw, context, accept_4xx=accept_4xx)
            except UpstreamError as exc:
                exc.context = context
                await self._record_failure(endpoint, exc)
                raise
            finally:
                context.latency_ms = (time.monotonic() - started) * 1000
        if self.limiter is not None:
            await self.limiter.record_success(endpoint)
        return raw

    async def _wait_for_budget(self, endpoint: str, context: FailureContext) -> None:
        if self.limiter is None:
            await self._pace()
            return
        try:
            await self.limiter.acquire(endpoint, max_wait_s=self._budget_wait_s)
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

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): spreads retries of many callers apart.
        ceiling = min(self._settings.backoff_max_s, self._settings.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


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


def _counts_for_breaker(exc: UpstreamError) -> bool:
    # Yahoo answering "no such symbol" is Yahoo working; an exhausted budget is our own
    # pacing, not an upstream failure.
    return exc.category not in (Category.NOT_FOUND, Category.INVALID_REQUEST, Category.BUDGET_EXHAUSTED)
