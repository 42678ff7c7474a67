"""/metrics: Prometheus text (or OpenMetrics when asked) from a registry of the app's own;
chart requests counted by cache status and code on the hot path, and component state
(upstream attempts, breaker, ladder, limiter, queue, lag, quality, Redis errors) read
when scraped."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from policies.ratelimit import LimiterSettings, SharedRateLimiter
from proxy.app import create_app
from proxy.fetcher import FetchKind
from proxy.keys import FETCHER, METRICS, QUALITY, REFRESHER, REGISTRY, SETTINGS, STORE, UPSTREAM
from proxy.metrics import AppCollector, Metrics
from proxy.quality import SCORES_KEPT
from proxy.series import SeriesKey
from proxy.transport import RawResponse, Timeouts
from tests.conftest import free_port
from tests.recordings import recording
from tests.test_http import CountingTransport, make_config

ClientFactory = Callable[..., Awaitable[TestClient]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

MSFT = recording("MSFT_89b82124b6").params


async def scrape(client: TestClient) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
async def client(aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis) -> TestClient:
    return await aiohttp_client(create_app(make_config(redis_url), transport=CountingTransport()))


async def test_metrics_is_prometheus_text_with_every_family(client: TestClient) -> None:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-store"
    families = {f.name: f.type for f in text_string_to_metric_families(await resp.text())}
    assert families["yfproxy_chart_requests"] == "counter"
    assert families["yfproxy_chart_request_duration_seconds"] == "histogram"
    assert families["yfproxy_upstream_requests"] == "counter"
    assert families["yfproxy_quality_quarantined_batches"] == "counter"
    assert families["yfproxy_redis_errors"] == "counter"
    for gauge in (
        "yfproxy_breaker_state",
        "yfproxy_breaker_failures",
        "yfproxy_timeout_ladder_level",
        "yfproxy_ratelimit_rate_rps",
        "yfproxy_ratelimit_local_fallback",
        "yfproxy_refresher_queue_depth",
        "yfproxy_fetches_in_flight",
        "yfproxy_refresher_running",
        "yfproxy_quality_min_score",
        "yfproxy_series_quality_score",
    ):
        assert families[gauge] == "gauge", gauge


async def test_openmetrics_when_the_scraper_asks_for_it(client: TestClient) -> None:
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    names = {f.name for f in openmetrics_families(await resp.text())}
    assert {"yfproxy_chart_requests", "yfproxy_upstream_requests", "yfproxy_breaker_state"} <= names


async def test_a_chart_hit_counts_once_under_hit_and_200_with_its_latency(client: TestClient) -> None:
    assert (await client.get("/v8/finance/chart/MSFT", params=MSFT)).status == 200  # the miss
    resp = await client.get("/v8/finance/chart/MSFT", params=MSFT)
    assert resp.headers["Cache-Status"].startswith("yfproxy; hit")
    samples = await scrape(client)
    assert value(samples, "yfproxy_chart_requests_total", cache="hit", code="200") == 1
    assert value(samples, "yfproxy_chart_requests_total", cache="miss", code="200") == 1
    assert value(samples, "yfproxy_chart_requests_total", cache="stale", code="200") == 0
    assert value(samples, "yfproxy_chart_request_duration_seconds_count", cache="hit") == 1
    assert value(samples, "yfproxy_chart_request_duration_seconds_bucket", cache="hit", le="+Inf") == 1
    hit_s = value(samples, "yfproxy_chart_request_duration_seconds_sum", cache="hit")
    assert hit_s is not None and 0 < hit_s < 1
    # The miss went upstream once, and it shows as an ok chart attempt.
    assert value(samples, "yfproxy_upstream_requests_total", endpoint="chart", category="ok") == 1
    assert value(samples, "yfproxy_upstream_requests_total", endpoint="chart", category="rate_limited") == 0
    # Its quality score is exposed per series.
    score = value(samples, "yfproxy_series_quality_score", series="MSFT|1d|0")
    assert score is not None and 0.5 < score < 1


async def test_a_refused_chart_request_counts_under_none_and_its_code(client: TestClient) -> None:
    assert (await client.get("/v8/finance/chart/MSFT", params={"interval": "4m"})).status == 400
    samples = await scrape(client)
    assert value(samples, "yfproxy_chart_requests_total", cache="none", code="400") == 1
    assert value(samples, "yfproxy_chart_request_duration_seconds_count", cache="none") == 1


async def test_an_upstream_failure_shows_up_by_category(client: TestClient) -> None:
    assert (await client.get("/v8/finance/chart/NOPE", params=MSFT)).status == 404
    samples = await scrape(client)
    assert value(samples, "yfproxy_upstream_requests_total", endpoint="chart", category="not_found") == 1
    assert value(samples, "yfproxy_upstream_requests_total", endpoint="chart", category="ok") == 0
    assert value(samples, "yfproxy_chart_requests_total", cache="none", code="404") == 1


class ThrottlingTransport(CountingTransport):
    async def get(self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts):
        self.calls.append(url)
        return RawResponse(429, {"retry-after": "1"}, b"Edge: Too Many Requests")


async def test_a_429_counts_as_rate_limited_and_the_limiter_cuts_its_rate(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    env = {"YFPROXY__CACHE__MISS_WAIT_S": "5"}
    client = await aiohttp_client(create_app(make_config(redis_url, **env), transport=ThrottlingTransport()))
    assert (await client.get("/v8/finance/chart/MSFT", params=MSFT)).status == 503
    samples = await scrape(client)
    throttled = value(samples, "yfproxy_upstream_requests_total", endpoint="chart", category="rate_limited")
    assert throttled is not None and throttled >= 1
    assert value(samples, "yfproxy_ratelimit_rate_rps", endpoint="chart") == pytest.approx(700, rel=0.01)
    assert value(samples, "yfproxy_ratelimit_ceiling_rps", endpoint="chart") == pytest.approx(1000, rel=0.01)
    blocked = value(samples, "yfproxy_ratelimit_blocked_seconds", endpoint="chart")
    assert blocked is not None and 0 < blocked <= 1
    assert value(samples, "yfproxy_ratelimit_rate_rps", endpoint="passthrough") == 1000
    assert value(samples, "yfproxy_ratelimit_local_fallback") == 0


async def test_gauges_mirror_breaker_ladder_and_queue(client: TestClient) -> None:
    app = client.app
    assert app is not None
    samples = await scrape(client)
    assert value(samples, "yfproxy_breaker_state") == 0
    assert value(samples, "yfproxy_timeout_ladder_level", endpoint="chart") == 0
    assert value(samples, "yfproxy_refresher_running") == 0
    assert value(samples, "yfproxy_refresher_queue_depth", kind="backfill") == 0
    assert ("yfproxy_refresher_lag_seconds", frozenset()) not in samples  # no cycle yet: no number

    upstream = app[UPSTREAM]
    upstream.breaker._cb.open()
    upstream.ladder.on_timeout("chart")
    upstream.ladder.on_timeout("chart")
    samples = await scrape(client)
    assert value(samples, "yfproxy_breaker_state") == 2
    assert value(samples, "yfproxy_timeout_ladder_level", endpoint="chart") == 2
    assert value(samples, "yfproxy_timeout_ladder_level", endpoint="passthrough") == 0
    upstream.breaker._cb.half_open()
    assert value(await scrape(client), "yfproxy_breaker_state") == 1
    upstream.breaker._cb.close()

    # Every upstream slot held: each worker takes a job and waits there, the rest stay queued.
    workers = app[SETTINGS].upstream.max_concurrency
    for _ in range(workers):
        await upstream._slots.acquire()
    try:
        fetcher = app[FETCHER]
        kinds = [FetchKind.STALE] * (workers + 1) + [FetchKind.BACKFILL] * 2
        for n, kind in enumerate(kinds):
            fetcher.submit(SeriesKey(f"S{n}", "1d", False), 0, kind)
        samples = await scrape(client)
        assert value(samples, "yfproxy_fetches_in_flight") == workers
        assert value(samples, "yfproxy_refresher_queue_depth", kind="stale") == 1
        assert value(samples, "yfproxy_refresher_queue_depth", kind="backfill") == 2
        assert value(samples, "yfproxy_refresher_queue_depth", kind="miss") == 0
    finally:
        for _ in range(workers):
            upstream._slots.release()


async def test_lag_is_measured_each_cycle_even_when_every_slot_is_busy(client: TestClient) -> None:
    app = client.app
    assert app is not None
    registry, refresher = app[REGISTRY], app[REFRESHER]
    await registry.sync_configured(["MSFT"], [], ["1d"])
    key = SeriesKey("MSFT", "1d", False)
    await registry.reschedule(key, time.time() - 120)
    refresher.settings = replace(refresher.settings, max_concurrent_instruments=0)
    assert await refresher.cycle() == 0
    samples = await scrape(client)
    lag = value(samples, "yfproxy_refresher_lag_seconds")
    periods = value(samples, "yfproxy_refresher_lag_periods")
    assert lag is not None and 120 <= lag < 130
    assert periods is not None and 0 < periods < lag  # a 1d series' period is longer than a second
    last = value(samples, "yfproxy_refresher_last_cycle_timestamp_seconds")
    assert last is not None and abs(last - time.time()) < 10
    # A free slot: the cycle reads the due list and measures from it too.
    refresher.settings = replace(refresher.settings, max_concurrent_instruments=1)
    await registry.reschedule(key, time.time() + 3600)
    await refresher.cycle()
    assert value(await scrape(client), "yfproxy_refresher_lag_seconds") == 0


async def test_redis_errors_count_where_they_are_met(client: TestClient) -> None:
    app = client.app
    assert app is not None

    async def broken_load(_key: SeriesKey) -> None:
        raise redis.exceptions.ConnectionError("redis went away")

    app[STORE].load = broken_load  # type: ignore[method-assign]
    assert (await client.get("/v8/finance/chart/MSFT", params=MSFT)).status == 503
    samples = await scrape(client)
    assert value(samples, "yfproxy_redis_errors_total", component="chart") == 1
    assert value(samples, "yfproxy_redis_errors_total", component="fetcher") == 0
    assert value(samples, "yfproxy_chart_requests_total", cache="none", code="503") == 1

    async def broken_state(_endpoint: str) -> None:
        raise redis.exceptions.ResponseError("NOSCRIPT")

    app[UPSTREAM].limiter.state = broken_state  # type: ignore[method-assign,union-attr]
    samples = await scrape(client)  # still answers
    assert value(samples, "yfproxy_redis_errors_total", component="metrics") == 1


async def test_a_crash_in_the_chart_handler_counts_as_500(client: TestClient) -> None:
    app = client.app
    assert app is not None

    async def crash(_key: SeriesKey) -> None:
        raise RuntimeError("a bug")

    app[STORE].load = crash  # type: ignore[method-assign]
    assert (await client.get("/v8/finance/chart/MSFT", params=MSFT)).status == 500
    assert value(await scrape(client), "yfproxy_chart_requests_total", cache="none", code="500") == 1


async def test_quarantine_reasons_and_threshold_are_exposed(client: TestClient) -> None:
    app = client.app
    assert app is not None
    gate = app[QUALITY]
    gate.quarantined_by_reason["worse_than_stored"] = 2
    samples = await scrape(client)
    assert value(samples, "yfproxy_quality_quarantined_batches_total", reason="worse_than_stored") == 2
    assert value(samples, "yfproxy_quality_quarantined_batches_total", reason="below_min_quality") == 0
    assert value(samples, "yfproxy_quality_min_score") == gate.min_quality


async def test_quality_scores_per_series_are_capped(client: TestClient) -> None:
    app = client.app
    assert app is not None
    gate = app[QUALITY]
    for n in range(SCORES_KEPT + 5):
        gate._remember(f"S{n}|1d|0", 0.5)
    gate._remember("S10|1d|0", 0.25)  # scored again: now the most recent
    await gate.forget(SeriesKey("S11", "1d", False))
    samples = await scrape(client)
    series = {dict(labels)["series"] for name, labels in samples if name == "yfproxy_series_quality_score"}
    assert len(series) == SCORES_KEPT - 1
    assert "S0|1d|0" not in series and f"S{SCORES_KEPT + 4}|1d|0" in series
    assert value(samples, "yfproxy_series_quality_score", series="S10|1d|0") == 0.25


async def test_each_app_has_its_own_registry(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    one = await aiohttp_client(create_app(make_config(redis_url), transport=CountingTransport()))
    two = await aiohttp_client(create_app(make_config(redis_url), transport=CountingTransport()))
    assert (await one.get("/v8/finance/chart/MSFT", params={"interval": "4m"})).status == 400
    assert value(await scrape(one), "yfproxy_chart_requests_total", cache="none", code="400") == 1
    assert value(await scrape(two), "yfproxy_chart_requests_total", cache="none", code="400") is None
    assert one.app is not None and two.app is not None
    assert one.app[METRICS].registry is not two.app[METRICS].registry


async def test_a_collector_without_components_still_answers() -> None:
    app = web.Application()
    metrics = Metrics()
    await metrics.refresh(app)
    names = [family.name for family in AppCollector(app, metrics).collect()]
    assert names == ["yfproxy_redis_errors"]


async def test_the_limiter_reading_comes_from_the_local_bucket_while_redis_is_away() -> None:
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    limiter = SharedRateLimiter(dead, "t", {"chart": LimiterSettings(initial_rps=1.0, max_rps=2.0)})
    try:
        assert limiter.last_reading("chart") is None
        await limiter.acquire("chart")
        assert limiter.fallback
        reading = limiter.last_reading("chart")
        assert reading is not None and reading.rate == 1.0 and reading.tokens == 0.0
    finally:
        await dead.aclose()
