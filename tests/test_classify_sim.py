"""Every failure category, classified from the simulator's real answers over HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from loadtests.yahoo_sim import SimConfig
from loadtests.yahoo_sim.testing import InProcessSimulator, start_in_process
from policies.errors import Category, UpstreamError
from policies.retry import RetryPolicy, RetrySettings
from proxy.series import SeriesKey
from proxy.transport import AiohttpTransport, Timeouts
from proxy.upstream import UpstreamClient, UpstreamSettings

NOW = int(time.time()) // 60 * 60


@pytest.fixture
async def sim() -> AsyncIterator[InProcessSimulator]:
    started = await start_in_process(SimConfig(now=NOW, warm=False))
    try:
        yield started
    finally:
        await started.close()


def client(sim: InProcessSimulator, **kw: Any) -> UpstreamClient:
    settings = UpstreamSettings(
        base_url=sim.base_url, max_concurrency=2, min_interval_s=0.0, timeouts=Timeouts(1, 0.5),
        max_attempts=1, backoff_base_s=0.01, backoff_max_s=0.01, breaker_fail_max=100, breaker_reset_s=30,
    )  # fmt: skip
    return UpstreamClient(AiohttpTransport(), settings, **kw)


async def _category(up: UpstreamClient, symbol: str = "ES=F", interval: str = "1d") -> Category:
    try:
        await up.fetch_chart(SeriesKey(symbol, interval, False), NOW - 5 * 86400, NOW)
    except UpstreamError as exc:
        return exc.category
    finally:
        await up.close()
    raise AssertionError("no failure")


@pytest.mark.parametrize(
    ("knobs", "category"),
    [
        ({"error_ratio": 1.0}, Category.UPSTREAM_5XX),
        ({"malformed_ratio": 1.0, "malformed_kind": "html"}, Category.BAD_PAYLOAD),
        ({"malformed_ratio": 1.0, "malformed_kind": "truncated"}, Category.BAD_PAYLOAD),
        ({"hang_ratio": 1.0, "hang_s": 3}, Category.READ_TIMEOUT),
    ],
)
async def test_simulator_faults_map_to_their_category(
    sim: InProcessSimulator, knobs: dict[str, Any], category: Category
) -> None:
    sim.set_faults(**knobs)
    assert await _category(client(sim)) is category


async def test_a_throttled_simulator_is_rate_limited_with_retry_after(sim: InProcessSimulator) -> None:
    sim.set_faults(rate_limit_rps=0.001, rate_limit_burst=1, retry_after_s=7)
    up = client(sim)
    await up.fetch_chart(SeriesKey("ES=F", "1d", False), NOW - 5 * 86400, NOW)  # the one token
    with pytest.raises(UpstreamError) as info:
        await up.fetch_chart(SeriesKey("ES=F", "1d", False), NOW - 5 * 86400, NOW)
    await up.close()
    assert info.value.category is Category.RATE_LIMITED
    assert info.value.retry_after == 7
    assert "Too Many Requests" in info.value.context.excerpt


async def test_unknown_symbol_and_window_limits(sim: InProcessSimulator) -> None:
    assert await _category(client(sim), symbol="NOPE") is Category.NOT_FOUND
    up = client(sim)
    with pytest.raises(UpstreamError) as info:
        await up.fetch_chart(SeriesKey("ES=F", "1m", False), NOW - 40 * 86400, NOW - 39 * 86400)
    await up.close()
    assert info.value.category is Category.INVALID_REQUEST
    assert "within the last 30 days" in (info.value.yahoo_description or "")


async def test_refused_connection_is_connect_failure() -> None:
    settings = UpstreamSettings(
        base_url="http://127.0.0.1:9", max_concurrency=1, min_interval_s=0.0, timeouts=Timeouts(1, 1),
        max_attempts=1, backoff_base_s=0.01, backoff_max_s=0.01, breaker_fail_max=100, breaker_reset_s=30,
    )  # fmt: skip
    up = UpstreamClient(AiohttpTransport(), settings)
    assert await _category(up) is Category.CONNECT_FAILURE


async def test_5xx_is_retried_under_the_budget_and_then_succeeds(sim: InProcessSimulator) -> None:
    sim.set_faults(error_ratio=0.5)
    up = client(sim)
    up.retry = RetryPolicy(RetrySettings(max_attempts=6, backoff_base_s=0.01, backoff_max_s=0.02))
    payload = await up.fetch_chart(SeriesKey("ES=F", "1d", False), NOW - 5 * 86400, NOW)
    await up.close()
    assert len(payload.bars) > 0
