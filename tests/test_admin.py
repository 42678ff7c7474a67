"""The /admin routes: off without a token, bearer-token guarded with one."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.app import create_app
from proxy.keys import QUALITY, REGISTRY, STORE
from proxy.quality import Verdict
from proxy.series import Bars, SeriesKey
from tests.test_http import ClientFactory, CountingTransport, make_config
from validators.report import QualityIssue, QualityReport, Severity

TOKEN = "s3cret-admin-token"


async def _client(aiohttp_client: ClientFactory, redis_url: str, **env: str) -> TestClient:
    return await aiohttp_client(create_app(make_config(redis_url, **env), transport=CountingTransport()))


async def test_without_a_token_the_admin_routes_do_not_exist(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    client = await _client(aiohttp_client, redis_url)
    resp = await client.get("/admin/quarantine", headers={"Authorization": "Bearer anything"})
    assert resp.status == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x", f"bearer {TOKEN[:-1]}"],
)
async def test_a_wrong_or_missing_token_is_refused(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis, authorization: str | None
) -> None:
    client = await _client(aiohttp_client, redis_url, YFPROXY__ADMIN__TOKEN=TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = await client.get("/admin/quarantine", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in await resp.text()


async def test_quarantine_lists_refused_batches(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    client = await _client(aiohttp_client, redis_url, YFPROXY__ADMIN__TOKEN=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert await (await client.get("/admin/quarantine", headers=auth)).json() == {"quarantined": []}
    key = SeriesKey("ES=F", "1m", False)
    issue = QualityIssue("ohlc.close_above_high", Severity.ERROR, "close above high", 100, 160, 2)
    report = QualityReport(0.4, 1.0, 0.5, 4, 4, (issue,))
    ts = np.array([100, 160], dtype=np.int64)
    f = np.array([1.0, 2.0])
    bars = Bars(ts, f, f, f, f, np.array([1, 1], dtype=np.int64))
    await client.app[QUALITY].quarantine(key, Verdict(False, report, "below_min_quality"), (0, 200), bars)
    listed = await (await client.get("/admin/quarantine", headers=auth)).json()
    [row] = listed["quarantined"]
    assert row["series"] == "ES=F|1m|0" and row["count"] == 1
    assert row["latest"]["reason"] == "below_min_quality"
    assert row["latest"]["report"]["issues"][0]["code"] == "ohlc.close_above_high"
    one = await (await client.get("/admin/quarantine", params={"series": "ES=F|1m|0"}, headers=auth)).json()
    assert one["series"] == "ES=F|1m|0" and len(one["entries"]) == 1
    bad = await client.get("/admin/quarantine", params={"series": "nonsense"}, headers=auth)
    assert bad.status == 400
    status = await (await client.get("/status")).json()
    assert status["quality"]["quarantined"][0]["series"] == "ES=F|1m|0"
    assert TOKEN not in await (await client.get("/status")).text()


async def test_refresh_and_purge_a_series(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    transport = CountingTransport()
    client = await aiohttp_client(
        create_app(make_config(redis_url, YFPROXY__ADMIN__TOKEN=TOKEN), transport=transport)
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    key = SeriesKey("MSFT", "1d", False)
    resp = await client.post("/admin/refresh/MSFT", params={"interval": "1d"}, headers=auth)
    assert resp.status == 202 and await resp.json() == {"queued": ["MSFT|1d|0"]}
    store = client.app[STORE]
    async with asyncio.timeout(5):
        while await store.load(key) is None:
            await asyncio.sleep(0.02)
    assert transport.calls == ["http://upstream.test/v8/finance/chart/MSFT"]
    tracked = await client.app[REGISTRY].get(key)
    assert tracked is not None  # rescheduled: the refresher knows it now
    # Without ?interval the symbol's tracked series are refreshed.
    again = await client.post("/admin/refresh/msft", headers=auth)
    assert again.status == 202 and (await again.json())["queued"] == ["MSFT|1d|0"]
    assert (await client.post("/admin/refresh/AAPL", headers=auth)).status == 404  # nothing tracked
    assert (await client.post("/admin/refresh/..%2Fetc", headers=auth)).status == 400
    assert (await client.post("/admin/refresh/MSFT", params={"interval": "4m"}, headers=auth)).status == 400
    # A CR/LF in the value is a 400 in Yahoo's shape, not a 500 from aiohttp's reason line.
    for value in ("4m\n", "\r"):
        bad = await client.post("/admin/refresh/MSFT", params={"interval": value}, headers=auth)
        assert bad.status == 400 and "Invalid input" in (await bad.json())["chart"]["error"]["description"]
    # An empty interval means none was given: the symbol's tracked series (AAPL has none).
    assert (await client.post("/admin/refresh/AAPL", params={"interval": ""}, headers=auth)).status == 404
    purged = await client.delete("/admin/series/MSFT", params={"interval": "1d"}, headers=auth)
    assert purged.status == 200 and await purged.json() == {"purged": ["MSFT|1d|0"]}
    assert await store.load(key) is None
    assert await client.app[REGISTRY].get(key) is None  # not a listed instrument: untracked
    assert (await client.delete("/admin/series/MSFT", params={"interval": "1d"})).status == 401
