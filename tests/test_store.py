"""SeriesStore on a real redis-server: atomic CAS merges, invalidations, compact storage."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from proxy.ingest import parse_chart_result
from proxy.series import SeriesKey
from proxy.store import SeriesStore, parse_invalidation, parse_tag
from tests.recordings import recording

KEY = SeriesKey("MSFT", "1h", False)
OTHER = SeriesKey("IBM", "1h", False)


@pytest.fixture
def store(redis_client: aioredis.Redis) -> SeriesStore:
    return SeriesStore(redis_client, "yfp")


def _payload(name: str = "MSFT_c62778557c"):
    return parse_chart_result(recording(name).result)


async def test_merge_then_load_round_trips(store: SeriesStore) -> None:
    payload = _payload()
    merged = await store.merge(KEY, payload, window_start=1, window_end=2, fetched_at=3.5)
    loaded = await store.load(KEY)
    assert loaded is not None
    assert merged.version == loaded.version == 1
    np.testing.assert_array_equal(loaded.bars.close, payload.bars.close)
    assert loaded.meta == payload.meta
    assert (loaded.coverage_start, loaded.coverage_end, loaded.fetched_at) == (1, 2, 3.5)
    assert loaded.quote_order == payload.quote_order
    assert loaded.prev_close == payload.prev_close
    assert await store.known_series() == [KEY]


async def test_key_uses_one_cluster_slot_per_series(store: SeriesStore) -> None:
    assert store.key(KEY) == "yfp:{MSFT|1h|0}:series"


async def test_write_publishes_invalidation_with_version(store: SeriesStore, redis_url: str) -> None:
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(store.channel)
    try:
        await store.merge(KEY, _payload(), window_start=1, window_end=2, fetched_at=3)
        message = await pubsub.get_message(timeout=2.0)
        while message is None:
            message = await pubsub.get_message(timeout=2.0)
        assert parse_invalidation(message["data"].decode()) == (KEY, 1)
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_concurrent_merges_both_land(store: SeriesStore) -> None:
    payload = _payload()
    first, second = payload, _payload()
    second.bars.ts[:] = second.bars.ts + 10**7  # disjoint bars, later in time
    await asyncio.gather(
        store.merge(KEY, first, window_start=0, window_end=10**10, fetched_at=1),
        store.merge(KEY, second, window_start=0, window_end=10**10, fetched_at=2),
    )
    loaded = await store.load(KEY)
    assert loaded is not None and loaded.version == 2
    assert len(loaded.bars) == 2 * len(payload.bars)


async def test_stale_version_write_is_refused(store: SeriesStore) -> None:
    series = await store.merge(KEY, _payload(), window_start=0, window_end=1, fetched_at=1)
    assert await store._write(series, expected_version=0) == -1  # someone else wrote first
    assert (await store.load(KEY)).version == 1  # type: ignore[union-attr]


async def test_gate_refusal_keeps_stored_series(store: SeriesStore) -> None:
    await store.merge(KEY, _payload(), window_start=0, window_end=1, fetched_at=1)
    kept = await store.merge(
        KEY, _payload(), window_start=0, window_end=5, fetched_at=9, gate=lambda old, new: None
    )
    assert kept.fetched_at == 1 and kept.coverage_end == 1
    with pytest.raises(ValueError, match="nothing is stored"):
        await store.merge(OTHER, _payload(), window_start=0, window_end=5, fetched_at=9, gate=lambda *_: None)


async def test_corrupt_series_reads_as_missing(store: SeriesStore, redis_client: aioredis.Redis) -> None:
    await store.merge(KEY, _payload(), window_start=0, window_end=1, fetched_at=1)
    await redis_client.hset(store.key(KEY), "bars", b"not zlib")
    assert await store.load(KEY) is None


async def test_delete_removes_and_announces(store: SeriesStore) -> None:
    await store.merge(KEY, _payload(), window_start=0, window_end=1, fetched_at=1)
    await store.delete(KEY)
    assert await store.load(KEY) is None
    assert await store.known_series() == []


def test_tags_parse_back() -> None:
    assert parse_tag("ES=F|1m|1") == SeriesKey("ES=F", "1m", True)
    assert parse_tag("nonsense") is None
    assert parse_invalidation("ES=F|1m|0\nabc") is None


async def test_bytes_per_bar_of_a_minute_series(store: SeriesStore, redis_client: aioredis.Redis) -> None:
    """The figure the README states for sizing Redis (7 days of 1m bars)."""
    base = _payload()
    n = 7 * 23 * 60
    rng = np.random.default_rng(7)
    price = (5000 + np.cumsum(rng.normal(0, 0.5, n))).astype(np.float32).astype(np.float64)
    base.bars = type(base.bars)(
        ts=1_790_000_000 + 60 * np.arange(n, dtype=np.int64),
        open=price, high=price + 0.25, low=price - 0.25, close=price,
        volume=rng.integers(0, 3000, n).astype(np.int64), adjclose=None,
    )  # fmt: skip
    await store.merge(KEY, base, window_start=0, window_end=1, fetched_at=1)
    used = await store.bytes_used(KEY)
    per_bar = used / n
    print(f"\nredis bytes per 1m bar: {per_bar:.1f} ({used} bytes for {n} bars)")
    assert per_bar < 30
    assert orjson.loads(await redis_client.hget(store.key(KEY), "info"))["coverage_end"] == 1
