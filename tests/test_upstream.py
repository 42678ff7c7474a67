"""The upstream client: classification into the taxonomy, retries, breaker, pacing,
and both real transports against a local server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from policies.errors import Category, FailureContext, UpstreamError
from proxy.fetcher import fetch_chunks
from proxy.intervals import DAY, lookup
from proxy.series import SeriesKey
from proxy.transport import AiohttpTransport, CurlCffiTransport, RawResponse, Timeouts, make_transport
from proxy.upstream import UpstreamClient, UpstreamSettings, classify
from tests.recordings import recording

KEY = SeriesKey("MSFT", "1d", False)
GOOD = orjson.dumps(recording("MSFT_89b82124b6").body)


class Script:
    """A transport that plays a list of answers (or exceptions) in order."""

    def __init__(self, *answers: RawResponse | UpstreamError) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def get(self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, UpstreamError):
            raise answer
        return answer

    async def close(self) -> None:
        pass


def settings(**kw: float) -> UpstreamSettings:
    base = {
        "base_url": "http://upstream.test", "max_concurrency": 2, "min_interval_s": 0.0,
        "timeouts": Timeouts(1, 1), "max_attempts": 3, "backoff_base_s": 0.0, "backoff_max_s": 0.0,
        "breaker_fail_max": 3, "breaker_reset_s": 60,
    }  # fmt: skip
    base.update(kw)
    return UpstreamSettings(**base)  # type: ignore[arg-type]


def ok() -> RawResponse:
    return RawResponse(200, {"content-type": "application/json"}, GOOD)


@pytest.mark.parametrize(
    ("raw", "category"),
    [
        (RawResponse(429, {"retry-after": "7"}, b"Edge: Too Many Requests"), Category.RATE_LIMITED),
        (RawResponse(200, {}, b"Edge: Too Many Requests"), Category.RATE_LIMITED),
        (RawResponse(503, {}, b"busy"), Category.UPSTREAM_5XX),
        (RawResponse(200, {}, b"<html>consent</html>"), Category.BAD_PAYLOAD),
        (
            RawResponse(404, {}, b'{"chart":{"error":{"code":"Not Found","description":"gone"}}}'),
            Category.NOT_FOUND,
        ),
        (
            RawResponse(422, {}, b'{"chart":{"error":{"description":"1m data not available"}}}'),
            Category.INVALID_REQUEST,
        ),
        (RawResponse(418, {}, b"teapot"), Category.BAD_PAYLOAD),
    ],
)
def test_answers_map_to_categories(raw: RawResponse, category: Category) -> None:
    with pytest.raises(UpstreamError) as info:
        classify(raw, FailureContext(symbol="X"))
    assert info.value.category is category
    assert info.value.context.excerpt
    if category is Category.RATE_LIMITED and raw.status == 429:
        assert info.value.retry_after == 7


async def test_5xx_is_retried_then_succeeds() -> None:
    script = Script(RawResponse(502, {}, b"bad gateway"), ok())
    client = UpstreamClient(script, settings())
    payload = await client.fetch_chart(KEY, 0, 10)
    assert len(payload.bars) == 20
    assert script.calls == 2
    assert client.stats.failures == {"upstream_5xx": 1}


async def test_429_and_404_are_never_retried_immediately() -> None:
    for raw in (RawResponse(429, {}, b"Edge: Too Many Requests"), RawResponse(404, {}, b"{}")):
        script = Script(raw)
        with pytest.raises(UpstreamError):
            await UpstreamClient(script, settings()).fetch_chart(KEY, 0, 10)
        assert script.calls == 1


async def test_truncated_json_is_bad_payload_retried_once_and_counted_by_the_breaker() -> None:
    truncated = RawResponse(200, {}, GOOD[: len(GOOD) // 2])
    script = Script(truncated)
    client = UpstreamClient(script, settings())
    with pytest.raises(UpstreamError) as info:
        await client.fetch_chart(KEY, 0, 10)
    assert info.value.category is Category.BAD_PAYLOAD
    assert script.calls == 2  # the policy's one retry of a bad payload
    for _ in range(5):
        with pytest.raises(UpstreamError):
            await client.fetch_chart(KEY, 0, 10)
    # A 200 with an unusable body is a failure like a 5xx: the breaker opened and stopped
    # sending (fail_max 3), instead of letting every refresh reach upstream.
    assert client.breaker.state == "open"
    assert script.calls < 2 * 6


async def test_network_status_follows_failures_and_the_breaker() -> None:
    client = UpstreamClient(Script(ok()), settings())
    for _ in range(5):
        await client.fetch_chart(KEY, 0, 10)
    status = client.status()
    assert status["network"] == "ok" and "p50" in status["latency_ms"]  # type: ignore[operator]
    failing = UpstreamClient(Script(UpstreamError(Category.CONNECT_FAILURE, "x")), settings(max_attempts=1))
    for _ in range(5):
        with pytest.raises(UpstreamError):
            await failing.fetch_chart(KEY, 0, 10)
    assert failing.network_status() == "down"  # five failures opened a breaker of fail_max 3
    slow = UpstreamClient(Script(UpstreamError(Category.READ_TIMEOUT, "slow"), ok()), settings())
    await slow.fetch_chart(KEY, 0, 10)
    assert slow.network_status() == "degraded"  # the timeout ladder climbed


async def test_breaker_opens_after_failures_and_stops_calling() -> None:
    script = Script(UpstreamError(Category.CONNECT_FAILURE, "refused"))
    client = UpstreamClient(script, settings(max_attempts=1, breaker_fail_max=3))
    categories = []
    for _ in range(6):
        with pytest.raises(UpstreamError) as info:
            await client.fetch_chart(KEY, 0, 10)
        categories.append(info.value.category)
    assert categories[-1] is Category.BREAKER_OPEN
    assert script.calls == 3
    assert client.breaker.state == "open"


async def test_not_found_does_not_trip_the_breaker() -> None:
    script = Script(RawResponse(404, {}, b"{}"))
    client = UpstreamClient(script, settings(max_attempts=1, breaker_fail_max=2))
    for _ in range(5):
        with pytest.raises(UpstreamError):
            await client.fetch_chart(KEY, 0, 10)
    assert script.calls == 5


async def test_pacing_spaces_request_starts() -> None:
    script = Script(ok())
    client = UpstreamClient(script, settings(min_interval_s=0.05))
    started = time.monotonic()
    await asyncio.gather(*(client.fetch_chart(KEY, 0, 10) for _ in range(4)))
    assert time.monotonic() - started >= 0.14


def test_chunks_respect_yahoo_per_request_limit() -> None:
    one_minute = lookup("1m")
    assert one_minute is not None
    now = 2_000_000_000
    chunks = fetch_chunks(one_minute, now - 20 * DAY, now + 1, now)
    assert chunks[0][1] == now + 1
    assert all(hi - lo < 7 * DAY for lo, hi in chunks)
    assert all(a[0] == b[1] for a, b in itertools.pairwise(chunks))
    assert len(fetch_chunks(one_minute, now - 7 * DAY, now + 1, now)) == 1  # trimmed, not split
    assert fetch_chunks(one_minute, now - 90 * DAY, now + 1, now)[-1][0] > now - 30 * DAY
    daily = lookup("1d")
    assert daily is not None and fetch_chunks(daily, 5, 10, 10) == [(5, 10)]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.mark.parametrize("kind", ["aiohttp", "curl_cffi"])
async def test_real_transports_fetch_and_time_out(kind: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/SLOW"):
            await asyncio.sleep(5)
        return web.Response(body=GOOD, content_type="application/json")

    server = await _serve(handler)
    transport = make_transport(kind, impersonate="chrome", limit=4)
    assert isinstance(transport, AiohttpTransport if kind == "aiohttp" else CurlCffiTransport)
    base = f"http://127.0.0.1:{server.port}"
    try:
        raw = await transport.get(f"{base}/v8/finance/chart/MSFT", params={"a": "b"}, headers={},
                                  timeouts=Timeouts(1, 1))  # fmt: skip
        assert raw.status == 200 and raw.body == GOOD
        with pytest.raises(UpstreamError) as info:
            await transport.get(
                f"{base}/v8/finance/chart/SLOW", params={}, headers={}, timeouts=Timeouts(1, 0.3)
            )
        assert info.value.category is Category.READ_TIMEOUT
    finally:
        await transport.close()
        await server.close()


@pytest.mark.parametrize("kind", ["aiohttp", "curl_cffi"])
async def test_real_transports_report_refused_connections(kind: str) -> None:
    transport = make_transport(kind, impersonate="chrome", limit=4)
    try:
        with pytest.raises(UpstreamError) as info:
            await transport.get("http://127.0.0.1:9/x", params={}, headers={}, timeouts=Timeouts(1, 1))
        assert info.value.category is Category.CONNECT_FAILURE
    finally:
        await transport.close()


async def test_half_open_breaker_lets_at_most_the_pool_through() -> None:
    """The pool slot is taken before the breaker: after the reset timeout, 50 callers
    reach Yahoo at most max_concurrency at a time, and none after a failed probe."""
    in_flight = peak = calls = 0

    class Flaky:
        failing = True

        async def get(self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts):
            nonlocal in_flight, peak, calls
            calls += 1
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            if self.failing:
                raise UpstreamError(Category.CONNECT_FAILURE, "refused")
            return ok()

        async def close(self) -> None:
            pass

    transport = Flaky()
    client = UpstreamClient(transport, settings(max_attempts=1, breaker_fail_max=2, breaker_reset_s=0.2,
                                                max_concurrency=3))  # fmt: skip
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await client.fetch_chart(KEY, 0, 10)
    assert client.breaker.state == "open"
    await asyncio.sleep(0.25)
    calls = peak = 0
    results = await asyncio.gather(
        *(client.fetch_chart(KEY, 0, 10) for _ in range(50)), return_exceptions=True
    )
    assert peak <= 3 and calls <= 3  # the probes failed: the breaker reopened for everyone else
    assert sum(isinstance(r, UpstreamError) and r.category is Category.BREAKER_OPEN for r in results) >= 47
    transport.failing = False
    await asyncio.sleep(0.25)
    calls = peak = 0
    results = await asyncio.gather(
        *(client.fetch_chart(KEY, 0, 10) for _ in range(50)), return_exceptions=True
    )
    assert peak <= 3
    assert client.breaker.state == "closed"


async def _fifty(client: UpstreamClient) -> list[object]:
    return await asyncio.gather(*(client.fetch_chart(KEY, 0, 10) for _ in range(50)), return_exceptions=True)
