"""The non-chart endpoints yfinance calls: crumb, cookie handshake, quoteSummary, quote,
fundamentals timeseries, and Yahoo-shaped errors for unknown symbols and paths."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient


async def test_crumb_is_stable_plain_text(sim: TestClient[Any, Any]) -> None:
    first = await sim.get("/v1/test/getcrumb")
    assert first.status == 200 and first.headers["Content-Type"].startswith("text/plain")
    crumb = await first.text()
    assert len(crumb) == 11 and crumb == await (await sim.get("/v1/test/getcrumb")).text()


@pytest.mark.parametrize("host", ["fc.yahoo.com", "guce.yahoo.com", "consent.yahoo.com", "login.yahoo.com"])
async def test_handshake_hosts_get_a_cookie_on_any_path(sim: TestClient[Any, Any], host: str) -> None:
    for path in ("/", "/consent", "/v8/finance/chart/IBM"):
        response = await sim.get(path, headers={"X-Forwarded-Host": host})
        assert response.status == 200
        assert response.headers["Set-Cookie"].startswith("A3=")
        assert len(await response.read()) < 500
    counters = await (await sim.get("/__sim/counters")).json()
    assert counters["by_kind"]["handshake"] == 3 and counters["by_kind"]["chart"] == 0


async def test_query_host_is_not_a_handshake(sim: TestClient[Any, Any]) -> None:
    response = await sim.get(
        "/v8/finance/chart/IBM", headers={"X-Forwarded-Host": "query2.finance.yahoo.com"}
    )
    assert response.status == 200 and "Set-Cookie" not in response.headers


async def test_quote_summary_modules(sim: TestClient[Any, Any]) -> None:
    response = await sim.get(
        "/v10/finance/quoteSummary/msft", params={"modules": "price,summaryDetail,quoteType"}
    )
    assert response.status == 200
    body = await response.json(content_type=None)
    assert body["quoteSummary"]["error"] is None
    (result,) = body["quoteSummary"]["result"]
    assert list(result) == ["price", "summaryDetail", "quoteType"]
    assert result["price"]["symbol"] == "MSFT" and result["price"]["regularMarketPrice"]["raw"] > 0
    assert result["quoteType"]["timeZoneFullName"] == "America/New_York"
    missing = await sim.get("/v10/finance/quoteSummary/NOPE", params={"modules": "price"})
    assert missing.status == 404
    error = (await missing.json(content_type=None))["quoteSummary"]
    assert error["result"] is None and error["error"]["code"] == "Not Found"


async def test_quote_leaves_unknown_symbols_out(sim: TestClient[Any, Any]) -> None:
    response = await sim.get("/v7/finance/quote", params={"symbols": "ES=F,NOPE,^GSPC"})
    body = await response.json(content_type=None)
    assert response.status == 200 and body["quoteResponse"]["error"] is None
    assert [q["symbol"] for q in body["quoteResponse"]["result"]] == ["ES=F", "^GSPC"]
    assert body["quoteResponse"]["result"][0]["quoteType"] == "FUTURE"
    no_symbols = await sim.get("/v7/finance/quote")
    assert no_symbols.status == 400


async def test_timeseries_and_unknown_paths(sim: TestClient[Any, Any]) -> None:
    path = "/ws/fundamentals-timeseries/v1/finance/timeseries/"
    known = await sim.get(path + "AAPL", params={"type": "annualTotalRevenue"})
    assert known.status == 200
    assert await known.json(content_type=None) == {"timeseries": {"result": [], "error": None}}
    unknown = await sim.get(path + "NOPE")
    assert unknown.status == 404
    assert (await unknown.json(content_type=None))["timeseries"]["error"]["code"] == "Not Found"
    other = await sim.get("/v6/finance/whatever")
    assert other.status == 404 and (await other.json(content_type=None))["finance"]["result"] is None


async def test_faults_apply_to_passthrough_paths(sim: TestClient[Any, Any]) -> None:
    await sim.post("/__sim/faults", json={"error_ratio": 1.0, "error_statuses": [503]})
    assert (await sim.get("/v1/test/getcrumb")).status == 503
    assert (await sim.get("/v7/finance/quote", params={"symbols": "IBM"})).status == 503
    assert (await sim.get("/__sim/counters")).status == 200
