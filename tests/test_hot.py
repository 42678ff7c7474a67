"""The hot layer: bounded, version-aware, and coherent through Redis invalidations."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from proxy.hot import HotLayer, RenderedBody, listen_for_invalidations
from proxy.series import Bars, Series, SeriesKey, TradingDays


def _series(symbol: str, version: int = 1) -> Series:
    return Series(SeriesKey(symbol, "1d", False), Bars.empty(True), {}, TradingDays.empty(), version=version)


def test_series_are_evicted_least_recently_used_first() -> None:
    hot = HotLayer(max_series=2, max_bodies=8)
    for name in ("A", "B"):
        hot.put(_series(name))
    hot.get(SeriesKey("A", "1d", False))
    hot.put(_series("C"))
    assert hot.get(SeriesKey("B", "1d", False)) is None
    assert hot.get(SeriesKey("A", "1d", False)) is not None
    assert len(hot) == 2


def test_bodies_are_bounded_per_series_and_overall() -> None:
    hot = HotLayer(max_series=2, max_bodies=4)
    entry = hot.put(_series("A"))
    for i in range(20):
        hot.keep_body(entry, i, RenderedBody.of(b"x" * 10))
    assert hot.body_count <= 4
    assert hot.body(entry, 19) is not None and hot.body(entry, 0) is None


def test_an_older_version_never_replaces_a_newer_one() -> None:
    hot = HotLayer(4, 8)
    hot.put(_series("A", version=3))
    kept = hot.put(_series("A", version=2))
    assert kept.series.version == 3
    hot.invalidate(SeriesKey("A", "1d", False), version=3)  # our own write's echo
    assert hot.get(SeriesKey("A", "1d", False)) is not None
    hot.invalidate(SeriesKey("A", "1d", False), version=4)
    assert hot.get(SeriesKey("A", "1d", False)) is None


def test_bodies_of_an_invalidated_entry_are_not_kept() -> None:
    hot = HotLayer(4, 8)
    entry = hot.put(_series("A"))
    hot.invalidate(SeriesKey("A", "1d", False))
    hot.keep_body(entry, "cut", RenderedBody.of(b"{}"))
    assert hot.body_count == 0


def test_small_bodies_are_not_gzipped() -> None:
    assert RenderedBody.of(b"{}").gzipped is None
    assert RenderedBody.of(b"{" + b" " * 5000 + b"}").gzipped is not None


async def test_listener_clears_everything_after_reconnecting(redis_url: str) -> None:
    hot = HotLayer(4, 8)
    hot.put(_series("A"))
    broken = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1)
    task = asyncio.create_task(listen_for_invalidations(broken, "chan", hot, retry_s=0.05))
    await asyncio.sleep(0.3)
    assert not hot.subscribed and len(hot) == 1  # Redis down: keep serving what we have
    task.cancel()
    await broken.aclose()
    good = aioredis.Redis.from_url(redis_url)
    task = asyncio.create_task(listen_for_invalidations(good, "chan", hot, retry_s=0.05))
    async with asyncio.timeout(5):
        while not hot.subscribed:
            await asyncio.sleep(0.01)
    assert len(hot) == 0  # back: anything may have changed meanwhile
    hot.put(_series("B", version=1))
    await good.publish("chan", "B|1d|0\n2")
    await good.publish("chan", "garbage")
    async with asyncio.timeout(5):
        while len(hot):
            await asyncio.sleep(0.01)
    task.cancel()
    await good.aclose()
