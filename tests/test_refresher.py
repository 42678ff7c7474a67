"""The background refresher against the in-process simulator and a real Redis.

A controllable clock drives the proxy side and the simulator's frozen clock together, so
"five minutes later" and "the market closed" are exact. Upstream requests are seen at
the transport: which series, which window.
"""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import pytest
import redis.asyncio as aioredis

from bench.refresher_replay import SimClock as Clock
from loadtests.yahoo_sim.config import SimConfig
from loadtests.yahoo_sim.testing import InProcessSimulator, start_in_process
from proxy.activity import ActivityRecorder
from proxy.fetcher import FetchCoordinator, FetchKind, NegativeCache
from proxy.hot import HotLayer
from proxy.lease import lease_factory
from proxy.quality import QualityGate
from proxy.refresher import Refresher, RefresherSettings
from proxy.registry import TrackedRegistry
from proxy.schedule import ScheduleSettings
from proxy.series import SeriesKey
from proxy.store import SeriesStore
from proxy.tasks import cancel_all
from proxy.transport import AiohttpTransport, RawResponse, Timeouts
from proxy.upstream import UpstreamClient, UpstreamSettings

WEDNESDAY = calendar.timegm((2026, 11, 18, 15, 0, 0))  # 10:00 New York: CME and NYSE open
SATURDAY = calendar.timegm((2026, 11, 21, 12, 0, 0))  # everything closed
PREFIX = "r"


class Seen:
    """The transport's view: every chart request with its window, and the concurrency."""

    def __init__(self, inner: AiohttpTransport) -> None:
        self.inner = inner
        self.calls: list[dict[str, str]] = []
        self.symbols_in_flight: dict[str, int] = {}
        self.max_symbols_at_once = 0

    async def get(self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts):
        symbol = unquote(url.rsplit("/", 1)[1])
        self.calls.append({"symbol": symbol, **params})
        self.symbols_in_flight[symbol] = self.symbols_in_flight.get(symbol, 0) + 1
        self.max_symbols_at_once = max(self.max_symbols_at_once, len(self.symbols_in_flight))
        try:
            response: RawResponse = await self.inner.get(
                url, params=params, headers=headers, timeouts=timeouts
            )
            return response
        finally:
            self.symbols_in_flight[symbol] -= 1
            if not self.symbols_in_flight[symbol]:
                del self.symbols_in_flight[symbol]

    async def close(self) -> None:
        await self.inner.close()

    def of(self, symbol: str, interval: str) -> list[dict[str, str]]:
        return [c for c in self.calls if c["symbol"] == symbol and c["interval"] == interval]


class Rig:
    def __init__(
        self, redis_client: aioredis.Redis, sim: InProcessSimulator, now: float, **settings: Any
    ) -> None:
        self.sim = sim
        self.clock = Clock(now, sim)
        self.seen = Seen(AiohttpTransport())
        upstream = UpstreamSettings(
            base_url=sim.base_url, max_concurrency=4, min_interval_s=0.0, timeouts=Timeouts(2, 2),
            max_attempts=1, backoff_base_s=0.0, backoff_max_s=0.0, breaker_fail_max=1000, breaker_reset_s=30,
        )  # fmt: skip
        self.store = SeriesStore(redis_client, PREFIX)
        self.registry = TrackedRegistry(redis_client, PREFIX, clock=self.clock)
        self.fetcher = FetchCoordinator(
            UpstreamClient(self.seen, upstream), self.store, HotLayer(64, 64),
            NegativeCache(self.store, 300, self.clock), workers=4, clock=self.clock,
            quality=QualityGate(redis_client, PREFIX, min_quality=0.5, clock=self.clock),
            lease=lease_factory(redis_client, PREFIX, ttl_ms=5000),
        )  # fmt: skip
        base = RefresherSettings(
            active=("ES=F", "NQ=F"), intervals=("5m", "1h", "1d"), warm_on_start=True, poll_s=0.05,
            initial_depth_days=lambda interval: {"1d": 60}.get(interval, 5),
        )  # fmt: skip
        self.refresher = Refresher(
            self.registry, self.store, self.fetcher, replace(base, **settings), clock=self.clock
        )

    async def settle(self, timeout_s: float = 20.0) -> None:
        """Run cycles until nothing is due, running or queued."""
        async with asyncio.timeout(timeout_s):
            while True:
                await self.refresher.cycle()
                await asyncio.sleep(0.02)
                due = await self.registry.due(self.clock(), 1)
                if not due and not self.refresher.instruments_in_flight and not self.fetcher.in_flight and \
                        not self.fetcher.queue_depth:  # fmt: skip
                    return

    async def close(self) -> None:
        await self.fetcher.close()
        await self.seen.close()


@pytest.fixture
async def sim() -> AsyncIterator[InProcessSimulator]:
    started = await start_in_process(SimConfig(now=WEDNESDAY, warm=False))
    yield started
    await started.close()


@pytest.fixture
async def rig(redis_client: aioredis.Redis, sim: InProcessSimulator) -> AsyncIterator[Rig]:
    r = Rig(redis_client, sim, WEDNESDAY)
    yield r
    await r.close()


async def test_start_fetches_every_configured_series_once_then_schedules_them(rig: Rig) -> None:
    await rig.refresher._start()
    await rig.settle()
    for symbol in ("ES=F", "NQ=F"):
        for interval in ("5m", "1h", "1d"):
            assert len(rig.seen.of(symbol, interval)) == 1, (symbol, interval)
            stored = await rig.store.load(SeriesKey(symbol, interval, False))
            assert stored is not None and len(stored.bars) > 0
    tracked = {t.key.tag: t for t in await rig.registry.all()}
    assert set(tracked) == {f"{s}|{i}|0" for s in ("ES=F", "NQ=F") for i in ("5m", "1h", "1d")}
    assert all(t.last_outcome == "ok" and t.configured for t in tracked.values())
    # Active tier, market open: 5 min for 5m, 15 min for 1h (its floor), 30 min for 1d.
    assert tracked["ES=F|5m|0"].next_due == pytest.approx(WEDNESDAY + 300, abs=2)
    assert tracked["ES=F|1h|0"].next_due == pytest.approx(WEDNESDAY + 900, abs=2)
    assert tracked["ES=F|1d|0"].next_due == pytest.approx(WEDNESDAY + 1800, abs=2)
    # A second start (another replica, a restart) with fresh data fetches nothing.
    before = len(rig.seen.calls)
    assert await rig.refresher.warm() == 0
    await rig.settle()
    assert len(rig.seen.calls) == before


async def test_refreshes_ask_only_for_the_tail(rig: Rig) -> None:
    await rig.refresher._start()
    await rig.settle()
    stored = await rig.store.load(SeriesKey("ES=F", "5m", False))
    assert stored is not None
    last_bar = int(stored.bars.ts[-1])
    rig.clock.advance(301)
    await rig.settle()
    [first, second] = rig.seen.of("ES=F", "5m")
    assert int(second["period1"]) >= last_bar - 900  # 3 bars or 15 min of overlap, no more
    assert int(second["period1"]) > int(first["period1"]) + 4 * 86400
    assert len(rig.seen.of("ES=F", "1h")) == 1  # not due yet (15 min floor)
    after = await rig.store.load(SeriesKey("ES=F", "5m", False))
    assert after is not None and int(after.bars.ts[-1]) > last_bar  # new bars appended
    assert int(after.bars.ts[0]) == int(stored.bars.ts[0])  # nothing older lost


async def test_a_series_a_client_refreshed_since_it_became_due_is_not_fetched_again(rig: Rig) -> None:
    key = SeriesKey("ES=F", "5m", False)
    rig.refresher.settings = replace(rig.refresher.settings, active=("ES=F",), intervals=("5m",))
    await rig.refresher._start()
    await rig.settle()
    tracked = await rig.registry.get(key)
    assert tracked is not None
    rig.clock.advance(tracked.next_due - rig.clock() + 1)  # due now
    # A client's stale hit refreshed it first (on this replica or another one).
    stored = await rig.store.load(key)
    assert stored is not None
    start = rig.refresher.start_of(key, stored, int(rig.clock()))
    future, _ = rig.fetcher.submit(key, start, FetchKind.STALE)
    await future
    assert len(rig.seen.of("ES=F", "5m")) == 2
    await rig.settle()
    assert len(rig.seen.of("ES=F", "5m")) == 2  # the refresher did not fetch it a third time
    after = await rig.registry.get(key)
    assert after is not None and after.last_outcome == "unchanged" and after.next_due > rig.clock()
    # And a stale job queued before that refresh landed answers with what is stored.
    asked = rig.clock()
    rig.clock.advance(1)
    job, _ = rig.fetcher.submit(key, int(asked) - 900, FetchKind.STALE)
    rig.fetcher._pending[key].asked_at = asked - 5  # asked before the stored fetch
    await job
    assert len(rig.seen.of("ES=F", "5m")) == 2


async def test_at_most_max_concurrent_instruments_are_refreshed_at_once(
    redis_client: aioredis.Redis, sim: InProcessSimulator
) -> None:
    sim.set_faults(latency_ms=150)
    symbols = ("ES=F", "NQ=F", "YM=F", "CL=F", "GC=F", "ZN=F")
    rig = Rig(
        redis_client, sim, WEDNESDAY, active=symbols, intervals=("5m", "1h"), max_concurrent_instruments=2
    )
    try:
        await rig.refresher._start()
        await rig.settle(timeout_s=30)
        assert len(rig.seen.calls) == 12
        assert rig.seen.max_symbols_at_once == 2
        # Each instrument's intervals ran back to back in one batch: shorter bars first.
        order = [(c["symbol"], c["interval"]) for c in rig.seen.calls]
        for symbol in symbols:
            assert [i for s, i in order if s == symbol] == ["5m", "1h"]
    finally:
        await rig.close()


async def test_a_closed_market_waits_for_the_next_open(
    redis_client: aioredis.Redis, sim: InProcessSimulator
) -> None:
    rig = Rig(redis_client, sim, SATURDAY, active=("ES=F",), intervals=("5m",))
    try:
        await rig.refresher._start()
        await rig.settle()
        [tracked] = await rig.registry.all()
        sunday_open = calendar.timegm((2026, 11, 22, 23, 0, 0))  # Globex reopens 18:00 New York
        assert tracked.next_due == pytest.approx(sunday_open + ScheduleSettings().open_delay_s, abs=1)
        rig.clock.advance(6 * 3600)  # still Saturday: nothing is due, nothing is fetched
        await rig.settle()
        assert len(rig.seen.calls) == 1
    finally:
        await rig.close()


async def test_failures_back_off_and_record_their_category(rig: Rig) -> None:
    rig.sim.set_faults(error_ratio=1.0, error_statuses=[502])
    rig.refresher.settings = replace(rig.refresher.settings, active=("ES=F",), intervals=("5m",))
    await rig.refresher._start()
    await rig.settle()
    [tracked] = await rig.registry.all()
    assert tracked.last_outcome == "failed" and tracked.last_category == "upstream_5xx"
    assert tracked.fails_in_a_row == 1
    assert tracked.next_due == pytest.approx(WEDNESDAY + 30, abs=1)
    rig.clock.advance(31)
    await rig.settle()
    [tracked] = await rig.registry.all()
    assert tracked.fails_in_a_row == 2
    assert tracked.next_due == pytest.approx(rig.clock() + 60, abs=1)  # doubled
    rig.sim.set_faults(error_ratio=0.0)
    rig.clock.advance(61)
    await rig.settle()
    [tracked] = await rig.registry.all()
    assert tracked.last_outcome == "ok" and tracked.fails_in_a_row == 0
    status = await rig.refresher.status()
    assert status["outcomes"] == {"failed": 2, "ok": 1}
    assert status["series"][0]["last_outcome"] == "ok"


async def test_requested_series_are_tracked_then_age_out(rig: Rig) -> None:
    activity = ActivityRecorder()
    key = SeriesKey("CL=F", "15m", False)
    rig.refresher.settings = replace(
        rig.refresher.settings, active=(), intervals=("5m",), dormant_after_s=600, idle_untrack_s=1800
    )
    await rig.refresher._start()
    activity.note(key, rig.clock())
    activity.bump(key, rig.clock())
    await activity.flush(rig.registry)
    await rig.settle()
    assert len(rig.seen.of("CL=F", "15m")) == 1
    tracked = await rig.registry.get(key)
    assert tracked is not None and tracked.tier == "requested" and not tracked.configured
    # Asked for within the priority window: the priority period (2 min), floored to 450 s.
    assert tracked.next_due == pytest.approx(rig.clock() + 450, abs=2)
    rig.clock.advance(700)
    rig.refresher._last_expire = 0
    await rig.refresher.cycle()
    tracked = await rig.registry.get(key)
    assert tracked is not None and tracked.tier == "dormant"
    rig.clock.advance(1200)
    rig.refresher._last_expire = 0
    await rig.refresher.cycle()
    assert await rig.registry.get(key) is None


async def test_a_requested_symbol_upstream_does_not_know_is_untracked(rig: Rig) -> None:
    activity = ActivityRecorder()
    unknown, known = SeriesKey("NOPE", "15m", False), SeriesKey("CL=F", "15m", False)
    rig.refresher.settings = replace(rig.refresher.settings, active=(), intervals=("5m",))
    await rig.refresher._start()
    for key in (unknown, known):
        activity.note(key, rig.clock())
    await activity.flush(rig.registry)
    await rig.settle()
    assert await rig.registry.get(unknown) is None
    assert await rig.registry.get(known) is not None
    assert len(rig.seen.of("NOPE", "15m")) == 1  # asked once, never again
    rig.clock.advance(3600)
    await rig.settle()
    assert len(rig.seen.of("NOPE", "15m")) == 1
    assert (await rig.refresher.status())["outcomes"]["untracked"] == 1


async def test_gaps_become_backfills_that_fill_them(rig: Rig) -> None:
    key = SeriesKey("ES=F", "5m", False)
    gap_start = WEDNESDAY - 86400  # Tuesday 10:00-11:00 New York
    rig.sim.set_faults(gap_start=gap_start, gap_end=gap_start + 3600)
    rig.refresher.settings = replace(rig.refresher.settings, active=("ES=F",), intervals=("5m",))
    await rig.refresher._start()
    await rig.settle()
    stored = await rig.store.load(key)
    assert stored is not None
    assert any(i["code"] == "time.gap" for i in stored.quality_issues)
    assert rig.refresher.stats.backfills_queued >= 1
    # The gap was still there for the backfill too; once upstream has the bars, the next
    # refresh queues the backfill again and it fills the hole.
    rig.sim.set_faults(gap_start=None, gap_end=None)
    rig.clock.advance(301)
    await rig.settle()
    filled = await rig.store.load(key)
    assert filled is not None
    inside = [t for t in filled.bars.ts.tolist() if gap_start <= t < gap_start + 3600]
    assert len(inside) == 12
    assert not any(i["code"] == "time.gap" for i in filled.quality_issues)
    backfills = [c for c in rig.seen.of("ES=F", "5m") if int(c["period2"]) < rig.clock() - 3600]
    assert backfills and all(int(c["period1"]) <= gap_start for c in backfills)


async def test_two_replicas_refresh_a_series_once(
    redis_client: aioredis.Redis, sim: InProcessSimulator
) -> None:
    one = Rig(redis_client, sim, WEDNESDAY, active=("ES=F",), intervals=("5m",))
    two = Rig(redis_client, sim, WEDNESDAY, active=("ES=F",), intervals=("5m",))
    try:
        await one.refresher._start()
        await one.settle()
        key = SeriesKey("ES=F", "5m", False)
        stored = await one.store.load(key)
        assert stored is not None
        sim.set_faults(latency_ms=300)
        one.clock.advance(301)
        two.clock.now = one.clock.now
        start = int(stored.bars.ts[-1]) - 900
        futures = [rig.fetcher.submit(key, start, FetchKind.STALE)[0] for rig in (one, two)]
        results = await asyncio.gather(*futures)
        assert len(one.seen.of("ES=F", "5m")) + len(two.seen.of("ES=F", "5m")) == 2  # first fetch + one
        assert one.fetcher.stats.leased_elsewhere + two.fetcher.stats.leased_elsewhere == 1
        assert {r.key for r in results} == {key}
    finally:
        await one.close()
        await two.close()


async def test_a_batch_that_runs_out_of_time_leaves_the_rest_due(
    redis_client: aioredis.Redis, sim: InProcessSimulator
) -> None:
    sim.set_faults(latency_ms=400)
    rig = Rig(
        redis_client, sim, WEDNESDAY, active=("ES=F",), intervals=("5m", "1h", "1d"), batch_timeout_s=0.6
    )
    try:
        await rig.refresher._start()
        await rig.refresher.cycle()
        async with asyncio.timeout(10):
            while rig.refresher.instruments_in_flight:
                await asyncio.sleep(0.05)
        assert rig.refresher.stats.batches_timed_out == 1
        due = {t.key.interval for t in await rig.registry.due(rig.clock(), 10)}
        assert "1d" in due and "5m" not in due
    finally:
        await rig.close()


async def test_run_survives_redis_errors_and_stops_when_cancelled(rig: Rig) -> None:
    calls = 0
    real_due = rig.registry.due

    async def flaky(now: float, limit: int) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise aioredis.ConnectionError("Redis went away")
        return await real_due(now, limit)

    rig.registry.due = flaky  # type: ignore[method-assign]
    rig.refresher.settings = replace(rig.refresher.settings, poll_s=0.01)
    task = asyncio.create_task(rig.refresher.run())
    async with asyncio.timeout(15):
        while calls < 3:
            await asyncio.sleep(0.05)
    assert rig.refresher.running
    assert "Redis went away" in (rig.refresher.stats.last_error or "")
    await cancel_all([task])  # as the app stops it: redis-py may swallow one cancellation
    assert task.cancelled()
    assert not rig.refresher.running


async def test_a_bar_revised_upstream_is_revised_in_the_cache(rig: Rig) -> None:
    from loadtests.yahoo_sim import chart

    key = SeriesKey("ES=F", "5m", False)
    rig.refresher.settings = replace(rig.refresher.settings, active=("ES=F",), intervals=("5m",))
    rig.clock.advance(90)  # 15:01:30: the 15:00 bar is live, with 90 s of trades in it
    await rig.refresher._start()
    await rig.settle()
    live = await rig.store.load(key)
    assert live is not None and int(live.bars.ts[-1]) == WEDNESDAY
    rig.clock.advance(301)  # 15:06:31: the 15:00 bar is final, and differs from what was live
    await rig.settle()
    stored = await rig.store.load(key)
    assert stored is not None
    params = {"interval": "5m", "period1": str(WEDNESDAY - 600), "period2": str(int(rig.clock()) + 1)}
    upstream = chart.answer("ES=F", params, rig.clock(), 7).body["chart"]["result"][0]
    final = upstream["indicators"]["quote"][0]
    at = upstream["timestamp"].index(WEDNESDAY)
    index = stored.bars.ts.tolist().index(WEDNESDAY)
    assert (stored.bars.close[index], stored.bars.volume[index]) == (final["close"][at], final["volume"][at])
    assert (final["close"][at], final["volume"][at]) != (live.bars.close[-1], live.bars.volume[-1])
