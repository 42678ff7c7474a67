"""Several proxy processes on one Redis share ONE upstream budget: what the simulator
counts stays within the configured rate, however many processes ask."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import start_proxy

RATE = 2.0
BURST = 2.0
SYMBOLS = ["ES=F", "NQ=F", "YM=F", "RTY=F", "CL=F", "GC=F", "SI=F", "HG=F", "NG=F", "ZN=F", "ZB=F", "ZF=F"]


async def _cold_requests(urls: list[str], within_s: float) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(url: str) -> None:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=within_s)) as resp:
                    await resp.read()
            except TimeoutError:
                pass  # the proxies keep fetching; only upstream's count matters here

        await asyncio.gather(*(one(url) for url in urls))


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_share_one_budget(processes: int, simulator: Any, redis_url: str, tmp_path: Path) -> None:
    db_url = redis_url.rsplit("/", 1)[0] + f"/{7 + processes}"
    import redis

    redis.Redis.from_url(db_url).flushdb()
    env = {
        "YFPROXY__RATE_LIMIT__INITIAL_RPS": str(RATE),
        "YFPROXY__RATE_LIMIT__MAX_RPS": str(RATE),
        "YFPROXY__RATE_LIMIT__BURST": str(BURST),
        "YFPROXY__UPSTREAM__MAX_CONCURRENCY": "4",
        "YFPROXY__CACHE__MISS_WAIT_S": "4",
    }
    proxies = [start_proxy(simulator.base_url, db_url, tmp_path, **env) for _ in range(processes)]
    try:
        before = simulator.counters()["by_kind"]["chart"]
        started = time.monotonic()
        urls = [
            f"{proxies[i % processes].url}/v8/finance/chart/{symbol}?interval={interval}&range=5d"
            for i, (symbol, interval) in enumerate((s, iv) for s in SYMBOLS for iv in ("1d", "1h", "15m"))
        ]
        asyncio.run(_cold_requests(urls, within_s=4.0))
        elapsed = time.monotonic() - started
        sent = simulator.counters()["by_kind"]["chart"] - before
    finally:
        for proxy in proxies:
            proxy.stop()
    # Every process alone would send RATE per second; together they must too.
    assert sent <= RATE * elapsed + BURST + 1, (sent, elapsed)
    assert sent >= RATE * elapsed * 0.5  # and the budget is actually used
