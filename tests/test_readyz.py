"""/readyz: 200 when Redis answers and the refresher runs (if on); 503 with reasons."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import redis.exceptions

from proxy.app import create_app
from proxy.keys import REDIS, REFRESHER
from tests.test_http import ClientFactory, CountingTransport, make_config


async def test_ready_with_the_refresher_off(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    client = await aiohttp_client(create_app(make_config(redis_url), transport=CountingTransport()))
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ready",
        "checks": {"redis": "ok", "refresher": "off", "config": "ok"},
    }


async def test_unready_says_why_and_recovers(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    config = make_config(redis_url, YFPROXY__BACKGROUND__ENABLED="true", YFPROXY__INSTRUMENTS__ACTIVE="")
    client = await aiohttp_client(create_app(config, transport=CountingTransport()))
    async with asyncio.timeout(5):
        while not client.app[REFRESHER].running:
            await asyncio.sleep(0.02)
    assert (await client.get("/readyz")).status == 200
    real_ping = client.app[REDIS].ping

    async def down() -> bool:
        raise redis.exceptions.ConnectionError("Connection refused")

    client.app[REDIS].ping = down  # type: ignore[method-assign]
    resp = await client.get("/readyz")
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    body = await resp.json()
    assert body["status"] == "unready" and "Connection refused" in body["checks"]["redis"]
    assert body["checks"]["refresher"] == "ok"
    client.app[REDIS].ping = real_ping  # type: ignore[method-assign]
    assert (await client.get("/readyz")).status == 200
