"""The quality gate between upstream and the store (proxy.quality), on a real Redis.

A real Yahoo recording is stored first; then upstream answers the same window with
impossible bars, with holes, or with a revision of the last bar, and the tests check
what is stored, what is quarantined and what clients are told.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from proxy.fetcher import FetchCoordinator, FetchKind, NegativeCache
from proxy.hot import HotLayer
from proxy.ingest import parse_chart_body
from proxy.quality import QualityGate
from proxy.query import parse_chart_query
from proxy.series import SeriesKey
from proxy.service import ChartService, ServiceSettings
from proxy.store import SeriesStore
from proxy.transport import RawResponse, Timeouts
from proxy.upstream import UpstreamClient, UpstreamSettings
from tests.recordings import recording

REC = recording("MSFT_c62778557c")  # 1h bars over 20 sessions, clean
KEY = SeriesKey("MSFT", "1h", False)
P1, P2 = int(REC.params["period1"]), int(REC.params["period2"])


def body_with(change: Any = None) -> dict[str, Any]:
    body = copy.deepcopy(REC.body)
    if change is not None:
        change(body["chart"]["result"][0])
    return body


def break_ohlc(result: dict[str, Any], every: int = 5) -> None:
    quote = result["indicators"]["quote"][0]
    for i in range(0, len(quote["close"]), every):
        if quote["high"][i] is not None:
            quote["close"][i] = quote["high"][i] * 1.05  # close above the high


def drop_bars(result: dict[str, Any], keep_every: int = 3) -> None:
    keep = set(range(0, len(result["timestamp"]), keep_every)) | {len(result["timestamp"]) - 1}
    result["timestamp"] = [t for i, t in enumerate(result["timestamp"]) if i in keep]
    quote = result["indicators"]["quote"][0]
    for name in list(quote):
        quote[name] = [v for i, v in enumerate(quote[name]) if i in keep]


def revise_last_bar(result: dict[str, Any]) -> None:
    quote = result["indicators"]["quote"][0]
    quote["close"][-1] = round((quote["high"][-1] + quote["low"][-1]) / 2, 4)
    quote["volume"][-1] = (quote["volume"][-1] or 0) + 1000


class Upstream:
    """Answers MSFT with whatever body the test set last."""

    def __init__(self) -> None:
        self.body = body_with()
        self.calls = 0

    async def get(self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts):
        self.calls += 1
        return RawResponse(200, {"content-type": "application/json"}, orjson.dumps(self.body))

    async def close(self) -> None:
        pass


class Rig:
    def __init__(
        self, redis_client: aioredis.Redis, *, min_quality: float = 0.5, enabled: bool = True
    ) -> None:
        self.now = float(REC.recorded_at)
        self.upstream = Upstream()
        settings = UpstreamSettings(
            base_url="http://upstream.test", max_concurrency=2, min_interval_s=0.0,
            timeouts=Timeouts(1, 1), max_attempts=1, backoff_base_s=0.0, backoff_max_s=0.0,
            breaker_fail_max=50, breaker_reset_s=30,
        )  # fmt: skip
        self.store = SeriesStore(redis_client, "q")
        self.hot = HotLayer(16, 64)
        negative = NegativeCache(self.store, 300, self.clock)
        self.gate = QualityGate(redis_client, "q", min_quality=min_quality, enabled=enabled, clock=self.clock)
        self.fetcher = FetchCoordinator(
            UpstreamClient(self.upstream, settings), self.store, self.hot, negative,
            workers=2, clock=self.clock, quality=self.gate,
        )  # fmt: skip
        self.service = ChartService(
            self.store, self.hot, self.fetcher, negative,
            ServiceSettings(
                on_miss="wait", miss_wait_s=5.0, fresh_s=lambda _i: 1800, initial_depth_days=lambda _i: 60
            ),
            clock=self.clock,
        )  # fmt: skip

    def clock(self) -> float:
        return self.now

    async def fetch(self) -> None:
        future, _ = self.fetcher.submit(KEY, P1, FetchKind.STALE)
        await future

    async def answer(self) -> Any:
        return await self.service.answer(parse_chart_query("MSFT", dict(REC.params), now=self.now))


@pytest.fixture
async def rig(redis_client: aioredis.Redis) -> AsyncIterator[Rig]:
    r = Rig(redis_client)
    yield r
    await r.fetcher.close()


async def test_a_clean_recording_is_stored_with_its_score(rig: Rig) -> None:
    answer = await rig.answer()
    assert answer.status == 200
    stored = await rig.store.load(KEY)
    assert stored is not None and stored.quality == 1.0 and stored.completeness == 1.0
    assert answer.headers["X-Data-Quality"] == "1"
    assert answer.headers["X-Data-Completeness"] == "1"
    assert await rig.gate.quarantined() == []


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(break_ohlc, "worse_than_stored"), (drop_bars, "worse_than_stored")],
    ids=["impossible-bars", "holes"],
)
async def test_a_worse_batch_never_replaces_good_stored_bars(rig: Rig, damage: Any, reason: str) -> None:
    await rig.fetch()
    good = await rig.store.load(KEY)
    assert good is not None
    rig.upstream.body = body_with(damage)
    rig.now += 3600
    await rig.fetch()
    after = await rig.store.load(KEY)
    assert after is not None
    assert after.version == good.version  # nothing written
    np.testing.assert_array_equal(after.bars.close, good.bars.close)
    np.testing.assert_array_equal(after.bars.ts, good.bars.ts)
    assert rig.fetcher.stats.quarantined == 1
    [listed] = await rig.gate.quarantined()
    assert listed["series"] == KEY.tag and listed["count"] == 1
    entry = listed["latest"]
    assert entry["reason"] == reason
    assert entry["report"]["score"] < entry["stored_score"]
    assert entry["window"][1] > entry["window"][0] and entry["bars"] > 0
    codes = {i["code"] for i in entry["report"]["issues"]}
    assert ("ohlc.close_above_high" in codes) if damage is break_ohlc else ("time.gap" in codes)
    # Clients keep getting the good bars.
    answer = await rig.answer()
    served = orjson.loads(answer.body)["chart"]["result"][0]
    assert served["indicators"]["quote"][0]["close"] == REC.result["indicators"]["quote"][0]["close"]


async def test_a_revision_of_the_live_bar_is_stored(rig: Rig) -> None:
    await rig.fetch()
    rig.upstream.body = body_with(revise_last_bar)
    rig.now += 3600
    await rig.fetch()
    after = await rig.store.load(KEY)
    assert after is not None and after.version == 2
    revised = body_with(revise_last_bar)["chart"]["result"][0]["indicators"]["quote"][0]["close"][-1]
    assert after.bars.close[-1] == pytest.approx(revised)
    assert rig.fetcher.stats.quarantined == 0


async def test_below_min_quality_is_quarantined_once_something_is_stored(
    redis_client: aioredis.Redis,
) -> None:
    rig = Rig(redis_client, min_quality=0.995)  # any ERROR caps a score at 0.99
    try:
        rig.upstream.body = body_with(lambda r: break_ohlc(r, every=50))
        await rig.fetch()  # nothing stored yet: stored anyway, flagged by its score
        first = await rig.store.load(KEY)
        assert first is not None and first.quality is not None and first.quality <= 0.99
        assert any(i["code"] == "ohlc.close_above_high" for i in first.quality_issues)
        answer = await rig.answer()
        assert float(answer.headers["X-Data-Quality"]) == pytest.approx(first.quality, abs=1e-3)
        rig.now += 3600
        await rig.fetch()  # the same defects again: now below the threshold, refused
        assert rig.fetcher.stats.quarantined == 1
        [entry] = await rig.gate.entries(KEY)
        assert entry["reason"] == "below_min_quality"
        rig.upstream.body = body_with()
        rig.now += 3600
        await rig.fetch()  # a clean answer replaces the flagged bars
        fixed = await rig.store.load(KEY)
        assert fixed is not None and fixed.quality == 1.0 and fixed.quality_issues == ()
    finally:
        await rig.fetcher.close()


async def test_with_the_gate_off_every_batch_is_stored(redis_client: aioredis.Redis) -> None:
    rig = Rig(redis_client, enabled=False)
    try:
        await rig.fetch()
        rig.upstream.body = body_with(break_ohlc)
        rig.now += 3600
        await rig.fetch()
        after = await rig.store.load(KEY)
        assert after is not None and after.version == 2
        assert after.quality is not None and after.quality < 0.99  # still scored and shown
        assert rig.fetcher.stats.quarantined == 0
    finally:
        await rig.fetcher.close()


def test_judge_is_pure_and_explains_itself(redis_client: aioredis.Redis) -> None:
    gate = QualityGate(redis_client, "q", min_quality=0.5)
    good = parse_chart_body(orjson.dumps(REC.body))
    bad = parse_chart_body(orjson.dumps(body_with(break_ohlc)))
    assert gate.judge(KEY, None, bad, (P1, P2)).admitted  # nothing stored: take it, flagged
    assert gate.assess(KEY, good, (P1, P2)).score == 1.0
