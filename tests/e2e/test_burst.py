"""What upstream sees: a burst on a cold series costs one chart request, fresh hits cost
none, and the proxy's JSON equals the simulator's for the same request."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import ProxyProcess


def chart_requests(sim: Any, symbol: str) -> int:
    return int(sim.counters()["chart_by_symbol"].get(symbol, 0))


async def _burst(url: str, n: int) -> list[tuple[int, str]]:
    # No client-side connection cap: all n requests must be in flight together.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> tuple[int, str]:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Cache-Status", "")

        return await asyncio.gather(*(one() for _ in range(n)))


def test_200_concurrent_requests_for_a_cold_series_cost_one_upstream_request(
    simulator: Any, proxy: ProxyProcess
) -> None:
    url = f"{proxy.url}/v8/finance/chart/CL=F?interval=5m&range=5d"
    before = chart_requests(simulator, "CL=F")
    answers = asyncio.run(_burst(url, 200))
    assert {status for status, _ in answers} == {200}
    assert chart_requests(simulator, "CL=F") - before == 1
    outcomes = [cache for _, cache in answers]
    assert outcomes.count("yfproxy; fwd=miss; stored") == 1
    assert outcomes.count("yfproxy; fwd=miss; collapsed") == 199


def test_1000_requests_for_a_fresh_series_cost_no_upstream_request(
    simulator: Any, proxy: ProxyProcess
) -> None:
    url = f"{proxy.url}/v8/finance/chart/GC=F?interval=15m&range=5d"
    asyncio.run(_burst(url, 1))
    before = chart_requests(simulator, "GC=F")
    answers = asyncio.run(_burst(url, 1000))
    assert {status for status, _ in answers} == {200}
    assert all(cache.startswith("yfproxy; hit") for _, cache in answers)
    assert chart_requests(simulator, "GC=F") == before


def _get(base: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}{path}", timeout=60) as resp:
        return json.load(resp)


@pytest.mark.parametrize(
    "path",
    [
        "/v8/finance/chart/NQ=F?interval=1m&range=1d",
        "/v8/finance/chart/NQ=F?interval=1h&range=1mo",
        "/v8/finance/chart/NQ=F?interval=1d&range=1y",
        "/v8/finance/chart/AAPL?interval=1d&range=2y&events=div,splits",
        "/v8/finance/chart/AAPL?interval=5m&range=5d&includePrePost=true",
        "/v8/finance/chart/AAPL?interval=1wk&range=5y",
        "/v8/finance/chart/^GSPC?interval=1mo&range=max",
    ],
)
def test_json_equals_the_simulator_value_for_value(path: str, simulator: Any, proxy: ProxyProcess) -> None:
    direct, proxied = _get(simulator.base_url, path), _get(proxy.url, path)
    got, want = proxied["chart"]["result"][0], direct["chart"]["result"][0]
    assert got.get("timestamp") == want.get("timestamp")
    assert got["indicators"] == want["indicators"]
    assert got.get("events") == want.get("events")
    for key in ("symbol", "exchangeTimezoneName", "range", "dataGranularity", "validRanges"):
        assert got["meta"].get(key) == want["meta"].get(key), key
    if "interval=1d" in path or "interval=1wk" in path or "interval=1mo" in path:
        # Intraday cuts take the last regular bar's close instead (docs/api.md, known gaps).
        assert got["meta"]["chartPreviousClose"] == want["meta"]["chartPreviousClose"]
