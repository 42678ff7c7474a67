"""Runtime configuration: POST /admin/config and SIGHUP apply a validated update to the
running components atomically, or refuse it whole."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.app import create_app
from proxy.config import load_config
from proxy.keys import LIVE_CONFIG, PASSTHROUGH, QUALITY, REFRESHER, SERVICE, UPSTREAM
from tests.test_http import ClientFactory, CountingTransport, make_config

TOKEN = "runtime-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _client(aiohttp_client: ClientFactory, redis_url: str, **kwargs: Any) -> TestClient:
    config = make_config(redis_url, YFPROXY__ADMIN__TOKEN=TOKEN)
    return await aiohttp_client(create_app(config, transport=CountingTransport(), **kwargs))


async def _post(client: TestClient, body: str, content_type: str = "application/toml") -> tuple[int, Any]:
    resp = await client.post("/admin/config", data=body, headers={**AUTH, "Content-Type": content_type})
    return resp.status, await resp.json()


async def test_an_update_reaches_every_component_and_counts_a_generation(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    client = await _client(aiohttp_client, redis_url)
    app = client.app
    current = await (await client.get("/admin/config", headers=AUTH)).json()
    assert current["generation"] == 0 and current["config"]["admin"]["token"] == "**********"
    status, body = await _post(
        client,
        "[rate_limit]\ninitial_rps = 1\nmax_rps = 1.5\nmax_wait_s = 12\n[validation]\nmin_quality = 0.8\n"
        "[cache]\nfresh_s = {1m = 45}\n[background]\nmax_concurrent_instruments = 5\n",
    )
    assert status == 200, body
    assert body["generation"] == 1 and body["source"] == "admin"
    assert body["changed"] == [
        "background.max_concurrent_instruments", "cache.fresh_s", "rate_limit.initial_rps",
        "rate_limit.max_rps", "rate_limit.max_wait_s", "validation.min_quality",
    ]  # fmt: skip
    limiter = app[UPSTREAM].limiter
    assert limiter is not None and limiter.settings_for("chart").max_rps == 1.5
    assert app[UPSTREAM].budget_wait_s == 12
    assert app[QUALITY].min_quality == 0.8
    assert app[SERVICE].settings.fresh_s("1m") == 45 and app[SERVICE].settings.fresh_s("5m") == 300
    assert app[REFRESHER].settings.max_concurrent_instruments == 5
    status_doc = await (await client.get("/status")).json()
    assert status_doc["config"]["generation"] == 1
    assert status_doc["rate_limit"]["endpoints"]["chart"]["settings"]["max_rps"] == 1.5


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        ("[rate_limit]\nmax_rps = -1\n", "application/toml", 400, "rate_limit.max_rps"),
        ("[rate_limit]\ninitial_rps = 0.01\n", "application/toml", 400, "min_rps <= initial_rps"),
        ("[nope]\nx = 1\n", "application/toml", 400, "unknown section"),
        ("[server]\nport = 9999\n", "application/toml", 400, "read only at start"),
        ("[background]\nlease_ttl_s = 5\n", "application/toml", 400, "read only at start"),
        ("rate_limit = ", "application/toml", 400, "not valid TOML"),
        ('{"rate_limit": {"max_rps": "fast"}}', "application/json", 400, "rate_limit.max_rps"),
        ("[1, 2]", "application/json", 400, "table of sections"),
        ("# " + "x" * 70_000, "application/toml", 413, "bytes"),
    ],
)
async def test_a_bad_update_is_refused_whole(
    aiohttp_client: ClientFactory,
    redis_url: str,
    redis_client: aioredis.Redis,
    body: str,
    content_type: str,
    status: int,
    reason: str,
) -> None:
    client = await _client(aiohttp_client, redis_url)
    before = client.app[LIVE_CONFIG].current
    # A good key next to the bad one must not be applied either.
    if content_type == "application/toml" and status == 400 and "TOML" not in reason:
        body = "[validation]\nmin_quality = 0.9\n" + body
    got, answer = await _post(client, body, content_type)
    assert got == status, answer
    assert any(reason in p for p in answer["problems"]), answer
    assert answer["error"].startswith("configuration refused")
    assert client.app[LIVE_CONFIG].current is before and client.app[LIVE_CONFIG].generation == 0
    assert client.app[QUALITY].min_quality == before.validation.min_quality


async def test_json_updates_and_feature_flags_switch_at_runtime(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    client = await _client(aiohttp_client, redis_url)
    app = client.app
    status, body = await _post(
        client, '{"features": {"adaptive_limiter": false, "passthrough": false, "validation_gate": false}}',
        "application/json",
    )  # fmt: skip
    assert status == 200, body
    chart = app[UPSTREAM].limiter.settings_for("chart")  # type: ignore[union-attr]
    assert chart.min_rps == chart.max_rps == chart.initial_rps  # fixed pacing
    assert app[PASSTHROUGH].allow == () and app[QUALITY].enabled is False
    assert (await client.get("/v10/finance/quoteSummary/MSFT")).status == 404
    status, _ = await _post(client, '{"features": {"passthrough": true}}', "application/json")
    assert status == 200 and app[PASSTHROUGH].allow
    assert (await client.get("/v10/finance/quoteSummary/MSFT")).status == 200


async def test_concurrent_updates_all_land_in_order(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    client = await _client(aiohttp_client, redis_url)
    values = [round(0.51 + i / 100, 2) for i in range(12)]  # none equal to the current 0.5
    answers = await asyncio.gather(*(_post(client, f"[validation]\nmin_quality = {v}\n") for v in values))
    assert all(status == 200 for status, _ in answers)
    assert sorted(body["generation"] for _, body in answers) == list(range(1, 13))
    live = client.app[LIVE_CONFIG]
    assert live.generation == 12
    last = max(answers, key=lambda a: a[1]["generation"])
    assert client.app[QUALITY].min_quality == live.current.validation.min_quality
    assert str(live.current.validation.min_quality) in str(values) and last[0] == 200


async def test_admin_config_needs_the_token(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    client = await _client(aiohttp_client, redis_url)
    assert (await client.post("/admin/config", data="[validation]\nmin_quality = 0.9\n")).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.get("/admin/config", headers=wrong)).status == 401
    assert client.app[LIVE_CONFIG].generation == 0
    plain = await aiohttp_client(create_app(make_config(redis_url), transport=CountingTransport()))
    assert (await plain.get("/admin/config", headers=AUTH)).status == 404


async def test_sighup_rereads_the_file_and_keeps_the_old_config_when_it_is_bad(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text("[validation]\nmin_quality = 0.5\n")
    env = {
        "YFPROXY__REDIS__URL": redis_url, "YFPROXY__REDIS__EMBEDDED": "false",
        "YFPROXY__UPSTREAM__BASE_URL": "http://upstream.test", "YFPROXY__UPSTREAM__TRANSPORT": "aiohttp",
        "YFPROXY__BACKGROUND__ENABLED": "false",
    }  # fmt: skip
    os.environ.update(env)
    try:
        config = load_config(path, os.environ).config
        client = await aiohttp_client(create_app(config, transport=CountingTransport(), config_source=path))
        live = client.app[LIVE_CONFIG]
        path.write_text("[validation]\nmin_quality = 0.75\n")
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(5):
            while live.generation < 1:
                await asyncio.sleep(0.02)
        assert live.source == "sighup" and client.app[QUALITY].min_quality == 0.75
        path.write_text("[validation]\nmin_quality = 7\n")  # out of range: refused, logged
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.3)
        assert live.generation == 1 and client.app[QUALITY].min_quality == 0.75
    finally:
        for name in env:
            os.environ.pop(name, None)


async def test_strict_cache_only_never_fetches_from_a_chart_request(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis
) -> None:
    client = await _client(aiohttp_client, redis_url)
    transport = client.app[UPSTREAM]._transport  # the CountingTransport
    status, _ = await _post(client, "[features]\nstrict_cache_only = true\n")
    assert status == 200
    resp = await client.get("/v8/finance/chart/MSFT", params={"interval": "1d", "range": "1mo"})
    assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0
    await asyncio.sleep(0.1)
    assert transport.calls == []  # no fetch started by the request
    status, _ = await _post(client, "[features]\nstrict_cache_only = false\n")
    resp = await client.get("/v8/finance/chart/MSFT", params={"interval": "1d", "range": "1mo"})
    assert resp.status == 200 and len(transport.calls) == 1
