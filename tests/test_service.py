"""ChartService and the fetcher on a real Redis, with a scripted upstream transport.

These pin the cache semantics (hit / stale / partial / miss / collapsed, on_miss,
negative caching, ETag, gzip, invalidation) without a simulator; the end-to-end tests
prove the same with real yfinance and the simulator.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import gc
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest
import redis.asyncio as aioredis

from policies.errors import Category, UpstreamError
from proxy.activity import ActivityRecorder
from proxy.errors import YahooError
from proxy.fetcher import FetchCoordinator, NegativeCache
from proxy.hot import HotLayer, listen_for_invalidations
from proxy.query import parse_chart_query
from proxy.series import SeriesKey
from proxy.service import ChartService, ServiceSettings
from proxy.store import SeriesStore
from proxy.transport import RawResponse, Timeouts
from proxy.upstream import UpstreamClient, UpstreamSettings
from tests.recordings import recording

REC = recording("MSFT_c62778557c")  # 1h bars, period1/period2, 20 sessions
NOT_FOUND = orjson.dumps(
    {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }
)


@dataclass
class ScriptedTransport:
    """Answers MSFT with the recording, anything else 404; counts and can hold requests."""

    calls: list[dict[str, str]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    status: int = 200

    async def get(self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts):
        self.calls.append({"url": url, **params})
        if self.gate is not None:
            await self.gate.wait()
        if self.status != 200:
            return RawResponse(self.status, {}, b"<html>oops</html>")
        if url.endswith("/MSFT"):
            return RawResponse(200, {"content-type": "application/json"}, orjson.dumps(REC.body))
        return RawResponse(404, {"content-type": "application/json"}, NOT_FOUND)

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    service: ChartService
    transport: ScriptedTransport
    clock: Clock
    store: SeriesStore
    hot: HotLayer
    fetcher: FetchCoordinator

    def query(self, **params: str):
        merged = {k: v for k, v in REC.params.items()}
        merged.update(params)
        return parse_chart_query("MSFT", merged, now=self.clock())


def make_rig(redis_client: aioredis.Redis, *, on_miss: str = "wait", miss_wait_s: float = 5.0) -> Rig:
    clock = Clock(REC.recorded_at)
    transport = ScriptedTransport()
    settings = UpstreamSettings(
        base_url="http://upstream.test", max_concurrency=3, min_interval_s=0.0,
        timeouts=Timeouts(1, 1), max_attempts=2, backoff_base_s=0.0, backoff_max_s=0.0,
        breaker_fail_max=50, breaker_reset_s=30,
    )  # fmt: skip
    store = SeriesStore(redis_client, "t")
    hot = HotLayer(16, 64)
    negative = NegativeCache(store, 300, clock)
    fetcher = FetchCoordinator(
        UpstreamClient(transport, settings), store, hot, negative, workers=3, clock=clock
    )
    service = ChartService(
        store,
        hot,
        fetcher,
        negative,
        ServiceSettings(
            on_miss=on_miss,
            miss_wait_s=miss_wait_s,
            fresh_s=lambda _i: 1800,
            initial_depth_days=lambda _i: 60,
        ),
        clock=clock,
    )
    return Rig(service, transport, clock, store, hot, fetcher)


@pytest.fixture
async def rig(redis_client: aioredis.Redis) -> AsyncIterator[Rig]:
    r = make_rig(redis_client)
    yield r
    await r.fetcher.close()


def chart(body: bytes) -> dict:
    return orjson.loads(body)["chart"]["result"][0]


async def test_miss_waits_for_one_fetch_then_hits(rig: Rig) -> None:
    first = await rig.service.answer(rig.query())
    assert first.status == 200
    assert first.headers["Cache-Status"] == "yfproxy; fwd=miss; stored"
    assert chart(first.body)["timestamp"] == REC.result["timestamp"]
    second = await rig.service.answer(rig.query())
    assert second.headers["Cache-Status"].startswith("yfproxy; hit; ttl=")
    assert second.body is first.body  # the same pre-rendered bytes, not re-encoded
    assert len(rig.transport.calls) == 1
    call = rig.transport.calls[0]
    assert call["interval"] == "1h" and call["includePrePost"] == "false"


async def test_200_concurrent_cold_requests_cost_one_upstream_request(rig: Rig) -> None:
    rig.transport.gate = asyncio.Event()
    tasks = [asyncio.create_task(rig.service.answer(rig.query())) for _ in range(200)]
    await asyncio.sleep(0.05)
    rig.transport.gate.set()
    answers = await asyncio.gather(*tasks)
    assert {a.status for a in answers} == {200}
    statuses = [a.headers["Cache-Status"] for a in answers]
    assert statuses.count("yfproxy; fwd=miss; stored") == 1
    assert statuses.count("yfproxy; fwd=miss; collapsed") == 199
    assert len(rig.transport.calls) == 1


async def test_fresh_hits_cost_no_upstream_request(rig: Rig) -> None:
    await rig.service.answer(rig.query())
    for _ in range(1000):
        answer = await rig.service.answer(rig.query())
        assert answer.headers["Cache-Status"].startswith("yfproxy; hit")
    assert len(rig.transport.calls) == 1


async def test_period2_a_minute_later_is_still_a_hit(rig: Rig) -> None:
    await rig.service.answer(rig.query())
    rig.clock.now += 60
    later = rig.query(period2=str(int(REC.params["period2"]) + 60))
    answer = await rig.service.answer(later)
    assert answer.headers["Cache-Status"].startswith("yfproxy; hit")
    assert len(rig.transport.calls) == 1


async def test_stale_is_served_now_and_refreshed_in_background(rig: Rig) -> None:
    await rig.service.answer(rig.query())
    rig.clock.now += 4000  # beyond fresh_s
    answer = await rig.service.answer(rig.query(range="5d", period1="", period2=""))
    assert answer.status == 200
    assert answer.headers["Cache-Status"] == "yfproxy; hit; fwd=stale"
    await _until(lambda: len(rig.transport.calls) == 2)
    refresh = rig.transport.calls[1]
    assert int(refresh["period1"]) > int(REC.params["period1"])  # a tail fetch, not the whole depth


async def test_stale_while_the_breaker_is_open_says_so(rig: Rig) -> None:
    await rig.service.answer(rig.query())
    rig.clock.now += 4000
    rig.service._upstream_down = lambda: True
    answer = await rig.service.answer(rig.query(range="5d", period1="", period2=""))
    assert answer.headers["Cache-Status"] == "yfproxy; hit; fwd=stale; detail=breaker-open"


async def test_window_before_coverage_is_partial_and_backfilled(rig: Rig) -> None:
    await rig.service.answer(rig.query())
    series = await rig.store.load(rig.query().series_key)
    assert series is not None
    early = str(series.coverage_start - 86400 * 30)
    answer = await rig.service.answer(rig.query(period1=early))
    assert answer.headers["Cache-Status"] == "yfproxy; hit; fwd=partial"
    assert 0 < float(answer.headers["X-Data-Completeness"]) < 1
    await _until(lambda: len(rig.transport.calls) == 2)
    assert int(rig.transport.calls[1]["period1"]) <= int(early)


async def test_unknown_symbol_is_404_and_remembered(rig: Rig) -> None:
    q = parse_chart_query("NOPE", {"interval": "1d"}, now=rig.clock())
    for _ in range(3):
        with pytest.raises(YahooError) as info:
            await rig.service.answer(q)
        assert info.value.status == 404
        assert orjson.loads(info.value.body())["chart"]["error"]["code"] == "Not Found"
    assert len(rig.transport.calls) == 1


async def test_unknown_symbols_are_not_handed_to_the_refresher(rig: Rig) -> None:
    activity = ActivityRecorder()
    rig.service._activity = activity
    await rig.service.answer(rig.query())  # a real symbol: counted for the refresher
    with pytest.raises(YahooError) as info:
        await rig.service.answer(parse_chart_query("NOPE", {"interval": "1d"}, now=rig.clock()))
    assert info.value.status == 404
    sink = RecordingSink()
    await activity.flush(sink)
    assert [key.symbol for key in sink.counts] == ["MSFT"]


async def test_a_hit_is_reused_within_its_second_and_rebuilt_when_anything_changes(rig: Rig) -> None:
    query = rig.query()
    await rig.service.answer(query)  # the miss that stores the series
    first = await rig.service.answer(query)
    assert first.outcome == "hit"
    rig.clock.now += 0.4
    assert await rig.service.answer(query) is first  # same second: the same answer
    assert await rig.service.answer(query, accept_gzip=True) is not first
    rig.clock.now += 1.0
    later = await rig.service.answer(query)
    assert later is not first and int(later.headers["Age"]) == int(first.headers["Age"]) + 1
    # A new version of the series (here: one bar revised) is served at once, same second.
    entry = rig.hot.get(query.series_key)
    assert entry is not None
    revised = copy.deepcopy(entry.series)
    revised.bars.close[-1] += 1.0
    revised.version += 1
    rig.hot.put(revised)
    after = await rig.service.answer(query)
    assert (
        chart(after.body)["indicators"]["quote"][0]["close"][-1]
        != chart(later.body)["indicators"]["quote"][0]["close"][-1]
    )
    # A runtime settings update (here: a shorter freshness) applies to the next request.
    rig.service.settings = dataclasses.replace(rig.service.settings, fresh_s=lambda _i: 1)
    assert (await rig.service.answer(query)).headers["Cache-Status"] == "yfproxy; hit; ttl=0"
    # Revalidation always compares the ETag.
    etag = after.headers["ETag"]
    rig.service.settings = dataclasses.replace(rig.service.settings, fresh_s=lambda _i: 1800)
    assert (await rig.service.answer(query, if_none_match=etag)).status == 304


async def test_reused_answers_do_not_keep_replaced_series_alive(rig: Rig) -> None:
    """A dashboard asks the same URLs all day while the refresher replaces each series every
    few minutes: an answer kept for reuse must not pin the versions it was cut from."""
    from proxy.hot import HotEntry

    await rig.service.answer(rig.query())  # the miss that stores the series
    replaced: set[int] = set()
    for _ in range(30):
        entry = rig.hot.get(rig.query().series_key)
        assert entry is not None
        revised = copy.deepcopy(entry.series)
        revised.version += 1
        rig.hot.put(revised)  # the refresher's new version
        replaced.add(entry.series.version)
        del entry
        # The route parses a URL once a minute: a new query object now and then.
        assert (await rig.service.answer(rig.query())).outcome == "hit"
        rig.clock.now += 1.0
    gc.collect()
    key = rig.query().series_key
    pinned = [
        o.series.version
        for o in gc.get_objects()
        if isinstance(o, HotEntry) and o.series.key == key and o.series.version in replaced
    ]
    assert pinned == []


class RecordingSink:
    def __init__(self) -> None:
        self.counts: dict[SeriesKey, tuple[int, float]] = {}

    async def record_activity(self, counts: dict[SeriesKey, tuple[int, float]], bumps: dict) -> None:
        self.counts.update(counts)


async def test_upstream_failure_on_miss_is_503_with_retry_after(rig: Rig) -> None:
    rig.transport.status = 502
    with pytest.raises(YahooError) as info:
        await rig.service.answer(rig.query())
    assert info.value.status == 503
    assert "Retry-After" in info.value.headers()
    assert await rig.store.load(rig.query().series_key) is None  # nothing stored from a failure


async def test_reject_mode_answers_503_at_once_and_fetches(redis_client: aioredis.Redis) -> None:
    rig = make_rig(redis_client, on_miss="reject")
    try:
        with pytest.raises(YahooError) as info:
            await rig.service.answer(rig.query())
        assert info.value.status == 503 and info.value.retry_after
        await _until(lambda: rig.hot.get(rig.query().series_key) is not None)
        answer = await rig.service.answer(rig.query())
        assert answer.headers["Cache-Status"].startswith("yfproxy; hit")
    finally:
        await rig.fetcher.close()


async def test_miss_wait_is_bounded(redis_client: aioredis.Redis) -> None:
    rig = make_rig(redis_client, miss_wait_s=0.2)
    rig.transport.gate = asyncio.Event()
    try:
        with pytest.raises(YahooError) as info:
            await rig.service.answer(rig.query())
        assert info.value.status == 503
        rig.transport.gate.set()
        await _until(lambda: rig.hot.get(rig.query().series_key) is not None)
    finally:
        await rig.fetcher.close()


async def test_etag_revalidation_and_gzip(rig: Rig) -> None:
    first = await rig.service.answer(rig.query(), accept_gzip=True)
    assert first.headers["Content-Encoding"] == "gzip"
    assert chart(gzip.decompress(first.body))["timestamp"] == REC.result["timestamp"]
    again = await rig.service.answer(rig.query(), if_none_match=first.headers["ETag"])
    assert again.status == 304 and again.body == b""
    other = await rig.service.answer(rig.query(), if_none_match='"nope"')
    assert other.status == 200


async def test_another_writer_invalidates_the_hot_layer(rig: Rig, redis_client: aioredis.Redis) -> None:
    listener = asyncio.create_task(listen_for_invalidations(redis_client, rig.store.channel, rig.hot))
    try:
        await _until(lambda: rig.hot.subscribed)
        await rig.service.answer(rig.query())
        key = rig.query().series_key
        assert rig.hot.get(key) is not None
        # A second replica writes the same series (same store, separate process in real life).
        series = await rig.store.load(key)
        assert series is not None
        await rig.store._write(series, series.version)
        await _until(lambda: rig.hot.get(key) is None)
    finally:
        listener.cancel()


async def test_redis_down_on_cold_series_is_fast_503(rig: Rig, redis_client: aioredis.Redis) -> None:
    broken = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    rig.service._store = SeriesStore(broken, "t")
    with pytest.raises(YahooError) as info:
        await rig.service.answer(rig.query())
    assert info.value.status == 503
    await broken.aclose()


def test_upstream_errors_keep_their_category() -> None:
    exc = UpstreamError(Category.RATE_LIMITED, "429")
    assert "rate_limited" in str(exc) and not exc.category.retryable


async def _until(condition, within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.01)
