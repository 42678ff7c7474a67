"""Fault knobs (rate limit, 5xx, latency, hang, outage, malformed bodies), the counters
and the clock, through the admin routes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from loadtests.yahoo_sim import SimConfig, create_app
from tests.sim.conftest import SUNDAY, ClientFactory

CHART = "/v8/finance/chart/IBM"


async def _set(client: TestClient[Any, Any], **knobs: Any) -> dict[str, Any]:
    response = await client.post("/__sim/faults", json=knobs)
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def _counters(client: TestClient[Any, Any]) -> dict[str, Any]:
    return dict(await (await client.get("/__sim/counters")).json())


async def test_token_bucket_rate_limit(sim: TestClient[Any, Any]) -> None:
    await _set(sim, rate_limit_rps=0.5, rate_limit_burst=2)
    statuses = [(await sim.get(CHART)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = await sim.get(CHART)
    assert limited.status == 429
    assert await limited.text() == "Edge: Too Many Requests"
    assert limited.headers["Content-Type"].startswith("text/plain")
    assert "Retry-After" not in limited.headers
    await _set(sim, retry_after_s=7)
    assert (await sim.get(CHART)).headers["Retry-After"] == "7"
    counters = await _counters(sim)
    assert counters["by_kind_outcome"]["chart"]["rate_limited"] == 3
    assert counters["by_kind_outcome"]["chart"]["ok"] == 2


async def test_rate_limit_refills(sim: TestClient[Any, Any]) -> None:
    await _set(sim, rate_limit_rps=2, rate_limit_burst=1)
    assert (await sim.get(CHART)).status == 200
    assert (await sim.get(CHART)).status == 429
    await asyncio.sleep(0.6)  # one token refills in 0.5 s
    assert (await sim.get(CHART)).status == 200


async def test_repeated_429s_lock_the_client_out(sim: TestClient[Any, Any]) -> None:
    await _set(sim, rate_limit_rps=20, rate_limit_burst=1, lockout_after=3, lockout_s=0.6)
    assert [(await sim.get(CHART)).status for _ in range(4)] == [200, 429, 429, 429]
    counters = await _counters(sim)
    assert counters["lockouts"] == 1 and counters["locked_out"] is True
    await asyncio.sleep(0.2)  # the bucket has refilled (20/s), but the lock-out holds
    assert (await sim.get(CHART)).status == 429
    await asyncio.sleep(0.5)
    assert (await sim.get(CHART)).status == 200
    assert (await _counters(sim))["locked_out"] is False
    # An answered request in between resets the count: two 429s, a 200, two 429s, no lock-out.
    await sim.post("/__sim/reset")
    await _set(sim, rate_limit_rps=5, rate_limit_burst=1, lockout_after=3, lockout_s=60)
    assert [(await sim.get(CHART)).status for _ in range(3)] == [200, 429, 429]
    await asyncio.sleep(0.25)
    assert [(await sim.get(CHART)).status for _ in range(3)] == [200, 429, 429]
    assert (await _counters(sim))["lockouts"] == 0
    for bad in ({"lockout_after": -1}, {"lockout_after": 1.5}, {"lockout_s": 0}):
        assert (await sim.post("/__sim/faults", json=bad)).status == 400


async def test_gap_knob_removes_bars_from_chart_answers(sim: TestClient[Any, Any]) -> None:
    url = CHART + "?interval=1h&range=5d"
    full = (await (await sim.get(url)).json())["chart"]["result"][0]
    stamps = full["timestamp"]
    start, end = stamps[3], stamps[6]  # three bars
    await _set(sim, gap_start=start, gap_end=end)
    holed = (await (await sim.get(url)).json())["chart"]["result"][0]
    assert holed["timestamp"] == stamps[:3] + stamps[6:]
    quote, whole = holed["indicators"]["quote"][0], full["indicators"]["quote"][0]
    assert quote["close"] == whole["close"][:3] + whole["close"][6:]
    assert len(quote["volume"]) == len(holed["timestamp"])
    await _set(sim, gap_start=None, gap_end=None)
    assert (await (await sim.get(url)).json())["chart"]["result"][0]["timestamp"] == stamps
    assert (await sim.post("/__sim/faults", json={"gap_start": "noon"})).status == 400


async def test_server_errors(sim: TestClient[Any, Any]) -> None:
    await _set(sim, error_ratio=1.0, error_statuses=[502])
    bad_gateway = await sim.get(CHART)
    assert bad_gateway.status == 502 and "502 Bad Gateway" in await bad_gateway.text()
    assert bad_gateway.headers["Content-Type"].startswith("text/html")
    await _set(sim, error_statuses=[500])
    internal = await sim.get(CHART)
    assert internal.status == 500
    body = await internal.json(content_type=None)
    assert body["chart"]["result"] is None and body["chart"]["error"]["code"] == "Internal Server Error"
    assert (await _counters(sim))["by_outcome"]["server_error"] == 2


async def test_error_ratio_is_reproducible_per_seed(aiohttp_client: ClientFactory) -> None:
    runs = []
    for _ in range(2):
        client = await aiohttp_client(create_app(SimConfig(now=SUNDAY, seed=11)))
        await _set(client, error_ratio=0.5)
        runs.append([(await client.get(CHART)).status for _ in range(20)])
    assert runs[0] == runs[1]
    assert 200 in runs[0] and set(runs[0]) - {200} <= {500, 502, 503} and len(set(runs[0])) > 1


async def test_added_latency(sim: TestClient[Any, Any]) -> None:
    await _set(sim, latency_ms=250)
    started = time.perf_counter()
    assert (await sim.get(CHART)).status == 200
    assert time.perf_counter() - started >= 0.25


async def test_hang_then_drop(sim: TestClient[Any, Any]) -> None:
    await _set(sim, hang_ratio=1.0, hang_s=0.3)
    started = time.perf_counter()
    with pytest.raises(aiohttp.ClientError):
        await sim.get(CHART)
    assert time.perf_counter() - started >= 0.3
    assert (await _counters(sim))["by_outcome"]["hang"] >= 1
    too_long = await sim.post("/__sim/faults", json={"hang_s": 10_000})
    assert too_long.status == 400 and "hang_s" in (await too_long.json())["error"]


async def test_outage_drop_and_503_leave_admin_alone(sim: TestClient[Any, Any]) -> None:
    knobs = await _set(sim, outage_s=30)
    assert knobs["outage_active"] and knobs["outage_mode"] == "drop"
    with pytest.raises(aiohttp.ClientError):
        await sim.get(CHART)
    assert (await sim.get("/__sim/health")).status == 200
    await _set(sim, outage_mode="503")
    unavailable = await sim.get("/v1/test/getcrumb")
    assert unavailable.status == 503
    await _set(sim, outage_s=0)
    assert (await sim.get(CHART)).status == 200
    await _set(sim, outage_until=time.time() - 1)
    assert (await sim.get(CHART)).status == 200
    counters = await _counters(sim)
    assert counters["by_outcome"]["outage"] >= 2 and counters["by_kind_outcome"]["crumb"]["outage"] == 1


async def test_malformed_html_and_truncated(sim: TestClient[Any, Any]) -> None:
    await _set(sim, malformed_ratio=1.0, malformed_kind="html")
    page = await sim.get(CHART)
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Will be right back" in await page.text()
    await _set(sim, malformed_kind="truncated")
    cut = await sim.get(CHART, params={"range": "5d"})
    assert cut.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(await cut.text())
    assert (await _counters(sim))["by_kind_outcome"]["chart"]["malformed"] == 2


async def test_malformed_ohlc_and_nulls(sim: TestClient[Any, Any]) -> None:
    await _set(sim, malformed_ratio=1.0, malformed_kind="ohlc")
    body = await (await sim.get(CHART, params={"range": "1mo"})).json(content_type=None)
    quote = body["chart"]["result"][0]["indicators"]["quote"][0]
    broken = [i for i, c in enumerate(quote["close"]) if c > quote["high"][i]]
    assert broken and all(quote["low"][i] > quote["open"][i] for i in broken)
    await _set(sim, malformed_kind="nulls")
    body = await (await sim.get(CHART, params={"range": "1mo"})).json(content_type=None)
    quote = body["chart"]["result"][0]["indicators"]["quote"][0]
    assert any(v is None for values in quote.values() for v in values)
    crumb = await sim.get("/v1/test/getcrumb")  # nothing to break in a crumb: answered as is
    assert crumb.status == 200 and len(await crumb.text()) == 11
    counters = await _counters(sim)
    assert counters["by_kind_outcome"]["chart"]["malformed"] == 2
    assert counters["by_kind_outcome"]["crumb"]["ok"] == 1


async def test_knob_validation_and_partial_updates(sim: TestClient[Any, Any]) -> None:
    await _set(sim, error_ratio=0.25)
    knobs = await _set(sim, latency_ms=5)
    assert knobs["error_ratio"] == 0.25 and knobs["latency_ms"] == 5
    for bad in ({"nonsense": 1}, {"error_ratio": 2}, {"malformed_kind": "xml"}, {"rate_limit_rps": -1}):
        response = await sim.post("/__sim/faults", json=bad)
        assert response.status == 400
        assert next(iter(bad)) in (await response.json())["error"]
    assert (await (await sim.get("/__sim/faults")).json())["error_ratio"] == 0.25


async def test_reset_clears_knobs_and_counters(sim: TestClient[Any, Any]) -> None:
    await _set(sim, error_ratio=1.0)
    assert (await sim.get(CHART)).status >= 500
    response = await sim.post("/__sim/reset")
    assert response.status == 200
    assert (await (await sim.get("/__sim/faults")).json())["error_ratio"] == 0.0
    assert (await _counters(sim))["total"] == 0
    assert (await sim.get(CHART)).status == 200


async def test_counters_by_kind_outcome_symbol_and_interval(sim: TestClient[Any, Any]) -> None:
    await sim.get("/v8/finance/chart/ibm", params={"interval": "1h", "range": "5d"})
    await sim.get("/v8/finance/chart/IBM", params={"interval": "1d"})
    await sim.get("/v8/finance/chart/ES=F", params={"interval": "1h", "range": "1d"})
    await sim.get("/v8/finance/chart/NOPE")
    await sim.get("/v8/finance/chart/IBM", params={"interval": "1m", "range": "1mo"})
    await sim.get("/v1/test/getcrumb")
    await sim.get("/v10/finance/quoteSummary/IBM", params={"modules": "price"})
    await sim.get("/nothing/here")
    counters = await _counters(sim)
    assert counters["total"] == 8
    assert counters["by_kind"]["chart"] == 5 and counters["by_kind"]["quote_summary"] == 1
    chart = counters["by_kind_outcome"]["chart"]
    assert (chart["ok"], chart["not_found"], chart["unprocessable"]) == (3, 1, 1)
    assert counters["by_kind_outcome"]["other"]["not_found"] == 1
    assert counters["chart_by_symbol"] == {"ES=F": 1, "IBM": 3, "NOPE": 1}
    assert counters["chart_by_symbol_interval"]["IBM"] == {"1d": 1, "1h": 1, "1m": 1}
    assert set(counters["by_outcome"]) >= {"ok", "rate_limited", "hang", "outage", "malformed"}


async def test_clock_freeze_advance_and_release(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_app(SimConfig()))
    assert (await (await client.get("/__sim/clock")).json())["frozen"] is False
    monday_noon = SUNDAY + 86400 - 20 * 3600 + 16 * 3600  # Monday 2026-09-28 12:15 ET
    frozen = await (await client.post("/__sim/clock", json={"now": monday_noon})).json()
    assert frozen == {"now": monday_noon, "frozen": True}
    body = await (await client.get(CHART, params={"interval": "1d", "range": "1d"})).json(content_type=None)
    assert body["chart"]["result"][0]["meta"]["regularMarketTime"] == monday_noon
    advanced = await (await client.post("/__sim/clock", json={"advance": 60})).json()
    assert advanced["now"] == monday_noon + 60
    released = await (await client.post("/__sim/clock", json={"now": None})).json()
    assert released["frozen"] is False and abs(released["now"] - time.time()) < 5
    bad = await client.post("/__sim/clock", json={"now": "noon"})
    assert bad.status == 400
