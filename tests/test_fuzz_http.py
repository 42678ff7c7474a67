"""Fuzzing the chart route: hypothesis throws symbols, query strings and headers at a
running app (real Redis, scripted upstream). Whatever comes in: an answer within seconds,
never a 5xx, always Yahoo's JSON shape, and no series stored except the one real symbol."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.app import create_app
from tests.test_http import CountingTransport, make_config

KEYS = ["interval", "range", "period1", "period2", "includePrePost", "events", "crumb", "x", "interval"]
VALUES = st.one_of(
    st.sampled_from(["1m", "5m", "1h", "1d", "1wk", "4m", "5d", "max", "ytd", "true", "FALSE", "div,splits"]),
    st.integers(min_value=-(2**63), max_value=2**63).map(str),
    st.text(max_size=40),
)
SYMBOLS = st.one_of(
    st.sampled_from(["MSFT", "msft", "ES=F", "^GSPC", "ESZ26.CME", "ESF27.CME", "..", "%2e%2e", "A" * 300]),
    st.text(min_size=1, max_size=30),
)
HEADERS = st.dictionaries(
    st.sampled_from(["If-None-Match", "Accept-Encoding", "X-Forwarded-Host", "Accept"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    max_size=3,
)


def _request(
    base: str, symbol: str, params: list[tuple[str, str]], headers: dict[str, str]
) -> tuple[int, bytes]:
    query = urllib.parse.urlencode(params)
    url = f"{base}/v8/finance/chart/{urllib.parse.quote(symbol, safe='')}?{query}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_no_input_gets_a_5xx_a_hang_or_a_stored_series(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    app = create_app(make_config(redis_url), transport=CountingTransport())
    seen: list[int] = []
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("")).rstrip("/")

        @settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(
            symbol=SYMBOLS,
            params=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=5),
            headers=HEADERS,
        )
        def one(symbol: str, params: list[tuple[str, str]], headers: dict[str, str]) -> None:
            status, body = _request(base, symbol, params, headers)
            seen.append(status)
            assert status < 500, (symbol, params, headers, status, body[:300])
            if status in (200, 304) or headers.get("X-Forwarded-Host", "").lower().endswith("yahoo.com"):
                return
            doc: Any = json.loads(body)
            error = next(iter(doc.values()))["error"]
            assert error["code"] and error["description"], body[:300]

        # The server runs on this loop; the fuzzing client is synchronous, in a thread.
        await asyncio.to_thread(one)
    assert len(seen) >= 250 and any(s >= 400 for s in seen)
    # Stored series (one hash per series; the registry's own hash is not one).
    stored = [k.decode() for k in await redis_client.keys("*:series") if b"{tracked}" not in k]
    assert stored and all("{MSFT|" in k for k in stored), stored
