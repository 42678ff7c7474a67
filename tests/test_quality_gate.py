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
from proxy.quality import QualityGate, from_first_bar, keep_better_stored
from proxy.query import parse_chart_query
from proxy.series import VOLUME_NULL, Bars, SeriesKey
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


def null_prices(result: dict[str, Any]) -> None:
    quote = result["indicators"]["quote"][0]
    for i in range(3, len(quote["close"]), 7):
        quote["close"][i] = None
        if i % 2:
            quote["open"][i] = quote["high"][i] = quote["low"][i] = None


def null_volumes(result: dict[str, Any]) -> None:
    quote = result["indicators"]["quote"][0]
    for i in range(0, len(quote["volume"]), 4):
        quote["volume"][i] = None


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


async def _store_then_refetch(rig: Rig, damage: Any) -> tuple[Any, Any]:
    await rig.fetch()
    good = await rig.store.load(KEY)
    rig.upstream.body = body_with(damage)
    rig.now += 3600
    await rig.fetch()
    after = await rig.store.load(KEY)
    assert good is not None and after is not None
    return good, after


async def _served_closes(rig: Rig) -> list[float]:
    answer = await rig.answer()
    return list(orjson.loads(answer.body)["chart"]["result"][0]["indicators"]["quote"][0]["close"])


async def test_a_batch_with_holes_is_refused_and_quarantined(rig: Rig) -> None:
    good, after = await _store_then_refetch(rig, drop_bars)
    assert after.version == good.version  # nothing written
    np.testing.assert_array_equal(after.bars.ts, good.bars.ts)
    assert rig.fetcher.stats.quarantined == 1
    [listed] = await rig.gate.quarantined()
    assert listed["series"] == KEY.tag and listed["count"] == 1
    entry = listed["latest"]
    assert entry["reason"] == "worse_than_stored"
    assert entry["report"]["score"] < entry["stored_score"]
    assert entry["window"][1] > entry["window"][0] and entry["bars"] > 0
    assert "time.gap" in {i["code"] for i in entry["report"]["issues"]}
    assert await _served_closes(rig) == REC.result["indicators"]["quote"][0]["close"]


@pytest.mark.parametrize(
    "damage", [break_ohlc, null_prices, null_volumes], ids=["ohlc", "nulls", "no-volume"]
)
async def test_bad_bars_never_replace_good_stored_ones(rig: Rig, damage: Any) -> None:
    good, after = await _store_then_refetch(rig, damage)
    # The answer is taken (its good bars refresh the series) but every bar worse than the
    # stored one at the same time keeps the stored values.
    np.testing.assert_array_equal(after.bars.ts, good.bars.ts)
    np.testing.assert_array_equal(after.bars.close, good.bars.close)
    np.testing.assert_array_equal(after.bars.volume, good.bars.volume)
    assert after.quality == 1.0
    assert rig.fetcher.stats.quarantined == 0  # nothing refused ...
    [entry] = await rig.gate.entries(KEY)  # ... but the bad answer is kept for inspection
    assert entry["reason"] == "kept_stored_bars" and entry["kept"] > 0
    assert await _served_closes(rig) == REC.result["indicators"]["quote"][0]["close"]


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
    admitted, verdict = gate.judge(KEY, None, bad, (P1, P2))
    assert admitted is bad and verdict.admitted  # nothing stored: take it, flagged
    assert gate.assess(KEY, good, (P1, P2)).score == 1.0


def _bars(ts: list[int], close: list[float], volume: list[int] | None = None) -> Bars:
    t = np.asarray(ts, dtype=np.int64)
    c = np.asarray(close, dtype=np.float64)
    v = np.asarray(volume or [1] * len(ts), dtype=np.int64)
    return Bars(t, c.copy(), c + 1, c - 1, c.copy(), v)


def test_keep_better_stored_replaces_only_worse_bars_at_the_same_time() -> None:
    stored = _bars([60, 120, 180], [10.0, 11.0, 12.0])
    batch = _bars([120, 180, 240], [float("nan"), 12.5, 13.0], [1, VOLUME_NULL, 1])
    repaired, kept = keep_better_stored(stored, batch)
    assert kept == 2  # 120: null price; 180: volume gone where the stored bar had one
    assert repaired.close.tolist() == [11.0, 12.0, 13.0]
    assert repaired.volume.tolist() == [1, 1, 1]
    assert np.isnan(batch.close[0])  # the answer itself is left as sent
    assert keep_better_stored(stored, _bars([300], [1.0]))[1] == 0  # no common times
    assert keep_better_stored(_bars([], []), batch) == (batch, 0)
    same, none_kept = keep_better_stored(stored, _bars([60], [10.5]))
    assert none_kept == 0 and same.close.tolist() == [10.5]  # a sane revision wins


def test_from_first_bar_judges_only_from_where_upstream_has_bars() -> None:
    assert from_first_bar((0, 0), _bars([], [])) is None  # no coverage yet
    assert from_first_bar((100, 500), _bars([], [])) == (100, 500)
    assert from_first_bar((100, 500), _bars([200, 260], [1.0, 2.0])) == (200, 500)
    assert from_first_bar((300, 500), _bars([200, 260], [1.0, 2.0])) == (300, 500)


async def test_summary_lists_the_worst_first_and_forget_clears_a_series(rig: Rig) -> None:
    await rig.fetch()
    gate, other = rig.gate, SeriesKey("ES=F", "1h", False)
    await rig.store.merge(
        other, parse_chart_body(orjson.dumps(body_with(lambda r: break_ohlc(r, every=2)))),
        window_start=P1, window_end=P2, fetched_at=rig.now, annotate=gate.annotate,
    )  # fmt: skip
    stored = await rig.store.load(other)
    assert stored is not None
    await gate.record(stored)
    summary = await gate.summary()
    assert [row["series"] for row in summary["series"]] == [other.tag, KEY.tag]
    assert summary["series"][0]["score"] < summary["series"][1]["score"]
    assert summary["below_threshold"] == (1 if stored.quality is not None and stored.quality < 0.5 else 0)
    await gate.forget(other)
    assert [row["series"] for row in (await gate.summary())["series"]] == [KEY.tag]
