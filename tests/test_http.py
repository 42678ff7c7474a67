"""The HTTP surface: Yahoo's shapes for every answer, bad input never reaches
Redis or upstream, and recordings come back value for value through the proxy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.app import create_app
from proxy.config import load_config
from proxy.keys import STORE
from proxy.transport import RawResponse, Timeouts
from tests.recordings import all_recordings, recording
from tests.test_render_recordings import stored_series

ClientFactory = Callable[..., Awaitable[TestClient]]


class CountingTransport:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def get(self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts):
        self.calls.append(url)
        if "quoteSummary" in url:
            return RawResponse(200, {"content-type": "application/json"}, b'{"quoteSummary":{"result":[]}}')
        rec = recording("MSFT_89b82124b6")
        if url.endswith("/MSFT"):
            return RawResponse(200, {"content-type": "application/json"}, orjson.dumps(rec.body))
        body = b'{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found"}}}'
        return RawResponse(404, {"content-type": "application/json"}, body)

    async def close(self) -> None:
        pass


def make_config(redis_url: str, **env: str) -> Any:
    base = {
        "YFPROXY__REDIS__URL": redis_url,
        "YFPROXY__REDIS__EMBEDDED": "false",
        "YFPROXY__UPSTREAM__BASE_URL": "http://upstream.test",
        "YFPROXY__UPSTREAM__TRANSPORT": "aiohttp",
        "YFPROXY__RATE_LIMIT__MAX_RPS": "1000",
        "YFPROXY__RATE_LIMIT__INITIAL_RPS": "1000",
        # The refresher would fetch [instruments] in the background; its tests turn it on.
        "YFPROXY__BACKGROUND__ENABLED": "false",
    }
    base.update(env)
    return load_config(None, base).config


@pytest.fixture
async def app_client(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> tuple[TestClient, CountingTransport]:
    transport = CountingTransport()
    app = create_app(make_config(redis_url), transport=transport)
    return await aiohttp_client(app), transport


BAD_INPUT = [
    ("/v8/finance/chart/ES%20F", {}, 404),
    ("/v8/finance/chart/..%2F..%2Fetc%2Fpasswd", {}, 404),
    ("/v8/finance/chart/" + "A" * 200, {}, 404),
    ("/v8/finance/chart/ES%00F", {}, 404),
    ("/v8/finance/chart/%E2%82%AC", {}, 404),
    ("/v8/finance/chart/ES=F", {"interval": "4m"}, 400),
    ("/v8/finance/chart/ESF27.CME", {}, 404),  # F is not an E-mini month
    ("/v8/finance/chart/ESH24.CME", {}, 404),  # expired
    ("/v8/finance/chart/ESZ26.NYM", {}, 404),  # ES is not a NYMEX product
    ("/v8/finance/chart/ES=F", {"interval": "1m" * 100}, 400),
    ("/v8/finance/chart/ES=F", {"range": "forever"}, 400),
    ("/v8/finance/chart/ES=F", {"period1": "200", "period2": "100"}, 400),
    ("/v8/finance/chart/ES=F", {"period1": "abc"}, 400),
    ("/v8/finance/chart/ES=F", {"period1": "1e99"}, 400),
    ("/v8/finance/chart/ES=F", {"period1": "-99999999999999"}, 400),
    ("/v8/finance/chart/ES=F", {"interval": "1m", "range": "1mo"}, 422),
    ("/v8/finance/chart/ES=F", {"interval": "1m", "period1": "1000000000", "period2": "1000100000"}, 422),
    ("/v8/finance/chart/ES=F", {"x": "y" * 5000}, 400),
    ("/v8/finance/chart/", {}, 404),
    ("/v8/finance/chart/ES=F/extra", {}, 404),
    ("/v99/finance/nothing", {}, 404),
    ("/etc/passwd", {}, 404),
]


@pytest.mark.parametrize(("path", "params", "status"), BAD_INPUT)
async def test_bad_input_gets_yahoo_shaped_4xx_and_stores_nothing(
    app_client: tuple[TestClient, CountingTransport],
    redis_client: aioredis.Redis,
    path: str,
    params: dict[str, str],
    status: int,
) -> None:
    client, transport = app_client
    resp = await client.get(path, params=params)
    assert resp.status == status
    doc = orjson.loads(await resp.read())
    error = next(iter(doc.values()))["error"]
    assert error["code"] and error["description"]
    assert transport.calls == []
    assert await redis_client.dbsize() == 0


async def test_yahoo_error_texts(app_client: tuple[TestClient, CountingTransport]) -> None:
    client, _ = app_client
    resp = await client.get("/v8/finance/chart/ES=F", params={"interval": "4m"})
    assert orjson.loads(await resp.read()) == {
        "chart": {
            "result": None,
            "error": {
                "code": "Bad Request",
                "description": "Invalid input - interval=4m is not supported. Valid intervals: "
                "[1m, 2m, 5m, 15m, 30m, 60m, 90m, 1h, 4h, 1d, 5d, 1wk, 1mo, 3mo]",
            },
        }
    }


async def test_unlisted_futures_contracts_say_why(app_client: tuple[TestClient, CountingTransport]) -> None:
    client, transport = app_client
    resp = await client.get("/v8/finance/chart/ESF27.CME", params={"interval": "1d"})
    error = orjson.loads(await resp.read())["chart"]["error"]
    assert error["code"] == "Not Found"
    # Starts as Yahoo's own text (yfinance looks for "delisted"), then the reason.
    assert error["description"].startswith("No data found, symbol may be delisted")
    assert "only H M U Z" in error["description"]
    listed = await client.get("/v8/finance/chart/CLF27.NYM", params={"interval": "1d"})
    assert listed.status == 404  # a listed month: asked upstream (the scripted one knows only MSFT)
    assert transport.calls == ["http://upstream.test/v8/finance/chart/CLF27.NYM"]


async def test_unknown_symbol_is_404_and_negatively_cached(
    app_client: tuple[TestClient, CountingTransport],
) -> None:
    client, transport = app_client
    for _ in range(3):
        resp = await client.get("/v8/finance/chart/ZZZZ", params={"interval": "1d"})
        assert resp.status == 404
        assert (await resp.json())["chart"]["error"]["code"] == "Not Found"
    assert len(transport.calls) == 1


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
async def test_recordings_come_back_through_the_proxy(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis, rec: Any
) -> None:
    transport = CountingTransport()
    app = create_app(make_config(redis_url), transport=transport, clock=lambda: float(rec.recorded_at))
    client = await aiohttp_client(app)
    series = stored_series(rec)
    payload_store = app[STORE]
    from proxy.ingest import parse_chart_result

    await payload_store.merge(
        series.key,
        parse_chart_result(rec.result),
        window_start=series.coverage_start,
        window_end=series.coverage_end,
        fetched_at=rec.recorded_at,
    )
    resp = await client.get(f"/v8/finance/chart/{rec.symbol}", params={**rec.params, "crumb": "abc"})
    assert resp.status == 200
    assert resp.headers["Cache-Status"].startswith("yfproxy; hit")
    assert resp.headers["Content-Type"] == "application/json;charset=utf-8"
    assert orjson.loads(await resp.read()) == rec.body
    assert transport.calls == []


async def test_gzip_and_etag_over_http(app_client: tuple[TestClient, CountingTransport]) -> None:
    client, _ = app_client
    params = recording("MSFT_89b82124b6").params
    first = await client.get("/v8/finance/chart/MSFT", params=params, headers={"Accept-Encoding": "gzip"})
    assert first.status == 200
    body = await first.read()  # aiohttp decompresses for us
    assert orjson.loads(body)["chart"]["result"][0]["meta"]["symbol"] == "MSFT"
    etag = first.headers["ETag"]
    again = await client.get("/v8/finance/chart/MSFT", params=params, headers={"If-None-Match": etag})
    assert again.status == 304
    for header in ("Cache-Status", "Age", "Last-Modified", "Cache-Control", "X-Data-Quality"):
        assert header in first.headers


async def test_handshake_hosts_and_crumb_are_answered_locally(
    app_client: tuple[TestClient, CountingTransport],
) -> None:
    client, transport = app_client
    resp = await client.get("/", headers={"X-Forwarded-Host": "fc.yahoo.com"})
    assert resp.status == 200 and "A3" in resp.cookies
    crumb = await client.get("/v1/test/getcrumb", headers={"X-Forwarded-Host": "query1.finance.yahoo.com"})
    assert crumb.status == 200 and len(await crumb.text()) == 11
    assert transport.calls == []


async def test_a_method_a_path_does_not_serve_is_yahoos_405_with_allow(
    app_client: tuple[TestClient, CountingTransport],
) -> None:
    client, transport = app_client
    for method, path in (("POST", "/v8/finance/chart/ES=F"), ("DELETE", "/healthz"), ("PUT", "/v7/x")):
        resp = await client.request(method, path)
        assert resp.status == 405, (method, path)
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
        assert orjson.loads(await resp.read())["chart"]["error"]["code"] == "Method Not Allowed"
    nowhere = await client.post("/nowhere")
    assert nowhere.status == 404 and "Allow" not in nowhere.headers
    assert orjson.loads(await nowhere.read())["chart"]["error"]["code"] == "Not Found"
    # The handshake is answered on any path, the chart route's included.
    for path in ("/v8/finance/chart/ES=F", "/nowhere"):
        shake = await client.get(path, headers={"X-Forwarded-Host": "guce.yahoo.com:443"})
        assert shake.status == 200 and "A3" in shake.cookies
    assert transport.calls == []


async def test_passthrough_is_allow_listed_and_cached(
    app_client: tuple[TestClient, CountingTransport],
) -> None:
    client, transport = app_client
    for crumb in ("a", "b"):
        resp = await client.get("/v10/finance/quoteSummary/MSFT", params={"modules": "price", "crumb": crumb})
        assert resp.status == 200
    assert resp.headers["Cache-Status"] == "yfproxy; hit"
    assert len(transport.calls) == 1
    denied = await client.get("/v7/finance/download/MSFT")
    assert denied.status == 404
    assert len(transport.calls) == 1


async def test_health_and_status(app_client: tuple[TestClient, CountingTransport]) -> None:
    client, _ = app_client
    assert (await client.get("/healthz")).status == 200
    status = await (await client.get("/status")).json()
    assert status["breaker"]["state"] == "closed"
    assert status["rate_limit"]["current_rps"] == 1000
    assert status["rate_limit"]["endpoints"]["chart"]["fallback"] is False
    assert "version" in status
    assert status["redis"]["reachable"] is True and status["redis"]["used_memory"] > 0
    assert status["quality"]["gate"] == "on" and status["quality"]["series"] == []
    # A fetched series shows up with its score and open issues.
    params = recording("MSFT_89b82124b6").params
    assert (await client.get("/v8/finance/chart/MSFT", params=params)).status == 200
    quality = (await (await client.get("/status")).json())["quality"]
    [row] = quality["series"]
    # The scripted upstream answers with a September recording while the proxy asked up to
    # today: the validators see the sessions since then missing, and say so.
    assert row["series"] == "MSFT|1d|0"
    assert [issue["code"] for issue in row["issues"]] == ["time.missing_last_session"]
    assert 0.5 < row["score"] < 1.0 and row["completeness"] < 1.0 and row["below_threshold"] is False
    assert quality["quarantined"] == [] and quality["below_threshold"] == 0
    # A browser gets the page, with the same series in it; JSON clients keep getting JSON.
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = await client.get("/status", headers={"Accept": browser})
    assert page.headers["Content-Type"].startswith("text/html") and page.headers["Vary"] == "Accept"
    assert "MSFT|1d|0" in await page.text()
    assert (await client.get("/status", headers={"Accept": "*/*"})).content_type == "application/json"


async def test_unexpected_errors_leave_in_yahoo_shape(aiohttp_client: ClientFactory) -> None:
    from proxy.routes import yahoo_shaped

    async def boom(_request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app = web.Application()
    app.router.add_get("/x", yahoo_shaped(boom))
    client = await aiohttp_client(app)
    resp = await client.get("/x")
    assert resp.status == 500
    assert (await resp.json())["chart"]["error"]["code"] == "Internal Server Error"


def test_the_chart_route_parses_a_url_once_a_minute_and_keeps_only_that_minute() -> None:
    from aiohttp.test_utils import make_mocked_request

    from proxy.routes import ChartRoute

    route = ChartRoute()
    route._limit = 4096  # what bind() reads from [server] max_query_chars

    def request(path: str) -> web.Request:
        return make_mocked_request("GET", path, match_info={"symbol": "ES=F"})

    path = "/v8/finance/chart/ES=F?interval=1d&range=5d"
    minute = 1_790_000_040.0  # on a minute boundary
    first = route._query(request(path), minute)
    assert route._query(request(path), minute + 59) is first  # the same minute: parsed once
    route._query(request(path + "&includePrePost=false"), minute + 30)
    later = route._query(request(path), minute + 60)
    assert later is not first and later == first
    assert list(route._parsed) == [(path, int(minute + 60) // 60)]  # the older minute is gone
