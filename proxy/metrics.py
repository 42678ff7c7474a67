"""Prometheus metrics: the registry behind ``GET /metrics``, grouped by component as /status is.

Two kinds, by how they change:

- Chart requests are counted on the hot path in plain dicts of ints (``ChartTally``) and
  exposed as a counter and a histogram family when Prometheus scrapes. prometheus-client's
  Counter and Histogram take a lock per update: 3.2 µs a request against 0.5 µs here, and
  the hot hit has a budget of a few µs over a bare aiohttp handler (docs/performance.md).
  The event loop is the only writer, so no lock is needed.
- Everything a component already counts or holds (upstream attempts, quarantined batches,
  Redis errors, limiter rate, breaker, timeout ladder, fetch queue, refresher lag, quality
  scores) is read when Prometheus scrapes, by ``AppCollector``: no background task, nothing
  added to the hot path, and the numbers agree with /status.

Each app has its own ``CollectorRegistry``, so tests and several apps in one process do not
collide. With ``[server] workers = N`` each process serves its own /metrics and a scrape
reaches one of them: sum counters over the ``instance`` label, and expect gauges of
process-local state (queue, ladder, quality scores) to differ between processes. This is
not prometheus-client's multiprocess mode, on purpose: it needs a shared directory and
cannot express the scrape-time gauges.

Cardinality is bounded: label values come from fixed sets (cache statuses, the HTTP codes
the proxy answers with, the upstream endpoints, the failure taxonomy, fetch kinds,
quarantine reasons), except ``series`` on the quality score, which is capped at
``proxy.quality.SCORES_KEPT`` (1,000) series, the most recently scored ones.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate

import redis.exceptions
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from policies.errors import Category
from proxy.config import UPSTREAM_ENDPOINTS
from proxy.keys import FETCHER, METRICS, QUALITY, REFRESHER, UPSTREAM

log = structlog.get_logger("yfproxy.metrics")

# A cached answer takes about 0.1–5 ms; a miss waits on upstream for seconds. Fine steps
# below 10 ms resolve the cache (and the 25 ms p99 alert), coarse ones the slow tail.
CHART_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
CACHE_STATUSES = ("hit", "stale", "stale-breaker", "partial", "miss", "collapsed")
NO_CACHE_STATUS = "none"  # a chart request refused or failed before any cache answer
UPSTREAM_OUTCOMES = ("ok", *(c.value for c in Category))
FETCH_KINDS = ("miss", "stale", "backfill")
QUARANTINE_REASONS = ("below_min_quality", "worse_than_stored", "kept_stored_bars")
REDIS_COMPONENTS = ("chart", "fetcher", "refresher", "metrics")
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
# Bounds the Redis reads a scrape makes (the limiter's shared buckets).
SCRAPE_READ_TIMEOUT_S = 0.5


class ChartTally:
    """Chart requests by (cache status, code) and their latency histogram by cache status."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        # Per cache status: one count per bucket of CHART_BUCKETS (value <= bound) and +Inf.
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def declare(self, cache: str, status: int) -> list[int]:
        """Make the (cache, status) series exist at 0; returns the cache status's buckets."""
        self.counts.setdefault((cache, status), 0)
        self.sums.setdefault(cache, 0.0)
        return self.buckets.setdefault(cache, [0] * (len(CHART_BUCKETS) + 1))

    def observe(self, cache: str, status: int, seconds: float) -> None:
        # Bounded: cache is one of CACHE_STATUSES or "none", status one of the few codes the
        # proxy itself answers chart requests with.
        key = (cache, status)
        count = self.counts.get(key)
        buckets = self.declare(cache, status) if count is None else self.buckets[cache]
        self.counts[key] = (count or 0) + 1
        buckets[bisect_left(CHART_BUCKETS, seconds)] += 1
        self.sums[cache] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "yfproxy_chart_requests",
            "Chart requests answered, by cache status (RFC 9211 Cache-Status) and HTTP status code.",
            labels=("cache", "code"),
        )
        for (cache, status), count in sorted(self.counts.items()):
            requests.add_metric((cache, str(status)), count)
        yield requests
        latency = HistogramMetricFamily(
            "yfproxy_chart_request_duration_seconds",
            "Time in the chart handler, from routing to the response object, by cache status.",
            labels=("cache",),
        )
        bounds = [*(floatToGoString(b) for b in CHART_BUCKETS), "+Inf"]
        for cache, buckets in sorted(self.buckets.items()):
            cumulative = list(accumulate(buckets))
            latency.add_metric((cache,), list(zip(bounds, cumulative, strict=True)), self.sums[cache])
        yield latency


class Metrics:
    """One app's registry, its hot-path metrics, and the hooks the chart handler calls."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.chart = ChartTally()
        self.registry.register(self.chart)
        self.chart_redis_errors = 0
        self.scrape_redis_errors = 0
        for cache in CACHE_STATUSES:
            self.chart.declare(cache, 200)  # the common series exist from the start: rate() needs two points

    def observe_chart_error(self, exc: BaseException, seconds: float) -> None:
        """A chart request that left by an exception (Yahoo-shaped 4xx/5xx, or a crash → 500)."""
        status = getattr(exc, "status", 500)
        self.chart.observe(NO_CACHE_STATUS, status if isinstance(status, int) else 500, seconds)
        if isinstance(exc, redis.exceptions.RedisError) or isinstance(
            exc.__cause__, redis.exceptions.RedisError
        ):
            self.chart_redis_errors += 1

    async def refresh(self, app: web.Application) -> None:
        """The few async reads a scrape needs, bounded: the limiter's shared buckets (peeked,
        so a replica that sent nothing lately still reports the rate every replica shares)."""
        upstream = app.get(UPSTREAM)
        limiter = upstream.limiter if upstream is not None else None
        if limiter is None:
            return
        try:
            async with asyncio.timeout(SCRAPE_READ_TIMEOUT_S):
                for endpoint in UPSTREAM_ENDPOINTS:
                    await limiter.state(endpoint)
        except (TimeoutError, redis.exceptions.RedisError) as exc:
            # The gauges keep the last reading; the scrape must still answer.
            self.scrape_redis_errors += 1
            log.warning("metrics.limiter_read_failed", error=f"{type(exc).__name__}: {exc}")

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition body and its content type, as the scraper's Accept header asks
        (Prometheus text by default, OpenMetrics when asked)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class AppCollector:
    """Reads the app's components when Prometheus scrapes; every read is synchronous and O(size
    of a bounded set)."""

    def __init__(self, app: web.Application, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        parts: tuple[Callable[[], Iterable[Metric]], ...] = (
            self._upstream,
            self._limiter,
            self._fetcher,
            self._refresher,
            self._quality,
            self._redis_errors,
        )
        for part in parts:
            yield from part()

    def _upstream(self) -> Iterable[Metric]:
        upstream = self._app.get(UPSTREAM)
        if upstream is None:
            return
        attempts = CounterMetricFamily(
            "yfproxy_upstream_requests",
            "Upstream attempts (each retry counts), by endpoint and outcome: ok or the failure category.",
            labels=("endpoint", "category"),
        )
        counts = dict.fromkeys(((e, o) for e in UPSTREAM_ENDPOINTS for o in UPSTREAM_OUTCOMES), 0)
        counts.update(upstream.stats.attempts)
        for (endpoint, outcome), value in sorted(counts.items()):
            attempts.add_metric((endpoint, outcome), value)
        yield attempts
        yield GaugeMetricFamily(
            "yfproxy_breaker_state",
            "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
            value=BREAKER_STATES[upstream.breaker.state],
        )
        yield GaugeMetricFamily(
            "yfproxy_breaker_failures",
            "Consecutive failures the breaker has counted (it opens at fail_max).",
            value=upstream.breaker.fail_counter,
        )
        ladder = GaugeMetricFamily(
            "yfproxy_timeout_ladder_level",
            "Timeout ladder level per endpoint: 0 the shortest timeouts; each timeout climbs one.",
            labels=("endpoint",),
        )
        levels = dict.fromkeys(UPSTREAM_ENDPOINTS, 0)
        levels.update({kind: int(rung["level"]) for kind, rung in upstream.ladder.snapshot().items()})
        for endpoint, level in sorted(levels.items()):
            ladder.add_metric((endpoint,), level)
        yield ladder

    def _limiter(self) -> Iterable[Metric]:
        upstream = self._app.get(UPSTREAM)
        limiter = upstream.limiter if upstream is not None else None
        if limiter is None:
            return
        rate = GaugeMetricFamily(
            "yfproxy_ratelimit_rate_rps",
            "The adaptive limiter's current rate per endpoint (requests/s), as last read.",
            labels=("endpoint",),
        )
        ceiling = GaugeMetricFamily(
            "yfproxy_ratelimit_ceiling_rps",
            "The rate the last 429 came at per endpoint; 0 before the first 429 (slow start).",
            labels=("endpoint",),
        )
        blocked = GaugeMetricFamily(
            "yfproxy_ratelimit_blocked_seconds",
            "Seconds the endpoint stays blocked after a 429 (Retry-After or lock-out), as last read.",
            labels=("endpoint",),
        )
        for endpoint in UPSTREAM_ENDPOINTS:
            reading = limiter.last_reading(endpoint)
            if reading is not None:
                rate.add_metric((endpoint,), reading.rate)
                ceiling.add_metric((endpoint,), reading.ceiling)
                blocked.add_metric((endpoint,), reading.blocked_for_s)
        yield from (rate, ceiling, blocked)
        yield GaugeMetricFamily(
            "yfproxy_ratelimit_local_fallback",
            "1 while Redis is unreachable and this process paces itself with a local bucket.",
            value=int(limiter.fallback),
        )

    def _fetcher(self) -> Iterable[Metric]:
        fetcher = self._app.get(FETCHER)
        if fetcher is None:
            return
        queue = GaugeMetricFamily(
            "yfproxy_refresher_queue_depth",
            "Fetches queued, by kind: miss (a client waits), stale (fresh data), backfill (gaps).",
            labels=("kind",),
        )
        for kind, depth in sorted(fetcher.queue_by_kind().items()):
            queue.add_metric((kind,), depth)
        yield queue
        yield GaugeMetricFamily(
            "yfproxy_fetches_in_flight",
            "Fetches running now (bounded by the upstream pool).",
            value=fetcher.in_flight,
        )

    def _refresher(self) -> Iterable[Metric]:
        refresher = self._app.get(REFRESHER)
        if refresher is None:
            return
        yield GaugeMetricFamily(
            "yfproxy_refresher_running",
            "1 while the background refresher runs in this process.",
            value=int(refresher.running),
        )
        if refresher.last_lag_s is None:
            return  # no cycle yet (or the refresher is off): no number is better than a wrong 0
        yield GaugeMetricFamily(
            "yfproxy_refresher_lag_seconds",
            "Seconds the most overdue tracked series is past its next refresh, at the last cycle.",
            value=refresher.last_lag_s,
        )
        yield GaugeMetricFamily(
            "yfproxy_refresher_lag_periods",
            "How many of its own refresh periods the most overdue series is late, at the last cycle.",
            value=refresher.last_lag_periods or 0.0,
        )
        if refresher.stats.last_cycle_at is not None:
            yield GaugeMetricFamily(
                "yfproxy_refresher_last_cycle_timestamp_seconds",
                "Unix time of the refresher's last cycle.",
                value=refresher.stats.last_cycle_at,
            )

    def _quality(self) -> Iterable[Metric]:
        gate = self._app.get(QUALITY)
        if gate is None:
            return
        quarantined = CounterMetricFamily(
            "yfproxy_quality_quarantined_batches",
            "Upstream batches kept in quarantine, by reason (refused, or admitted with bars replaced).",
            labels=("reason",),
        )
        reasons = dict.fromkeys(QUARANTINE_REASONS, 0)
        reasons.update(gate.quarantined_by_reason)
        for reason, count in sorted(reasons.items()):
            quarantined.add_metric((reason,), count)
        yield quarantined
        yield GaugeMetricFamily(
            "yfproxy_quality_min_score",
            "[validation] min_quality: batches scoring below it are refused.",
            value=gate.min_quality,
        )
        score = GaugeMetricFamily(
            "yfproxy_series_quality_score",
            "Validators' score (0..1) of each series this process stored last; at most 1,000 series.",
            labels=("series",),
        )
        for tag, value in list(gate.latest.items()):  # bounded by SCORES_KEPT
            score.add_metric((tag,), value)
        yield score

    def _redis_errors(self) -> Iterable[Metric]:
        errors = CounterMetricFamily(
            "yfproxy_redis_errors",
            "Redis failures, by the component that met them (chart reads, fetches, refresher, scrape).",
            labels=("component",),
        )
        fetcher, refresher = self._app.get(FETCHER), self._app.get(REFRESHER)
        counts = {
            "chart": self._metrics.chart_redis_errors,
            "fetcher": fetcher.stats.redis_errors if fetcher is not None else 0,
            "refresher": refresher.stats.redis_errors if refresher is not None else 0,
            "metrics": self._metrics.scrape_redis_errors,
        }
        for component in REDIS_COMPONENTS:
            errors.add_metric((component,), counts[component])
        yield errors


def install_metrics(app: web.Application) -> Metrics:
    """The app's metrics, with the collector that reads its components at scrape time."""
    metrics = Metrics()
    metrics.registry.register(AppCollector(app, metrics))
    return metrics


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    await metrics.refresh(request.app)
    body, content_type = metrics.render(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
