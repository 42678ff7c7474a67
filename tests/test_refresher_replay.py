"""Dashboard traffic against the refresher on a simulated clock (bench/refresher_replay.py,
shortened): fresh hits, one tail request per series per due period, tail bytes."""

from __future__ import annotations

import redis.asyncio as aioredis

from bench.refresher_replay import SYMBOLS, replay


async def test_a_dashboard_gets_fresh_hits_and_upstream_sees_only_tails(redis_client: aioredis.Redis) -> None:
    report = await replay(redis_client, minutes=6)
    assert report["warm_up_requests"] == report["series"] == 50
    assert report["fresh_hit_ratio"] >= 0.99, report["not_fresh_by_series"]
    assert report["series_over_one_per_period"] == {}
    assert report["steady_requests_all_tails"]
    # Each 1m series is refreshed about every 67.5 s, the others less often; nothing else.
    assert report["steady_requests"] <= len(SYMBOLS) * (6 * 60 / 67.5 + 6 * 60 / 150 + 2 + 2 + 2)
    assert report["tail_vs_full_bytes"] < 0.05
