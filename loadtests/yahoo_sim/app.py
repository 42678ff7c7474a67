"""aiohttp application: Yahoo's routes, the fault middleware in front of them, and the
``/__sim/*`` admin routes (knobs, counters, clock) that faults never touch."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from . import chart, passthrough, sessions
from .clock import SimClock
from .config import SimConfig
from .counters import Counters, Outcome, RouteKind, outcome_for_status
from .faults import (
    RATE_LIMITED_BODY,
    Decision,
    FaultEngine,
    cut_gap,
    malform,
    server_error_body,
    update_knobs,
)
from .render import JSON_CONTENT_TYPE

ADMIN_PREFIX = "/__sim/"
_CHART = re.compile(r"^/v\d+/finance/chart/(?P<symbol>[^/]+)/?$")
_QUOTE_SUMMARY = re.compile(r"^/v\d+/finance/quoteSummary/(?P<symbol>[^/]+)/?$")
_QUOTE = re.compile(r"^/v\d+/finance/quote/?$")
_TIMESERIES = re.compile(r"^/ws/fundamentals-timeseries/v\d+/finance/timeseries/(?P<symbol>[^/]+)/?$")
_JSON_ROOTS: dict[RouteKind, str] = {
    "chart": "chart",
    "quote_summary": "quoteSummary",
    "quote": "quoteResponse",
    "timeseries": "timeseries",
}


@dataclass
class SimState:
    config: SimConfig
    clock: SimClock
    faults: FaultEngine
    counters: Counters = field(default_factory=Counters)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def seed(self) -> int:
        return self.config.seed

    def reset(self) -> None:
        self.faults.reset()
        self.counters.reset()

    async def pause(self, seconds: float) -> None:
        """Sleep that ends early when the server shuts down, so hangs never block exit."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.shutdown.wait(), seconds)


STATE = web.AppKey("yahoo_sim_state", SimState)


def route_kind(request: web.Request) -> RouteKind:
    if passthrough.is_handshake(request.headers.get("X-Forwarded-Host")):
        return "handshake"
    path = request.path
    if _CHART.match(path):
        return "chart"
    if path.rstrip("/") == "/v1/test/getcrumb":
        return "crumb"
    if _QUOTE_SUMMARY.match(path):
        return "quote_summary"
    if _QUOTE.match(path):
        return "quote"
    if _TIMESERIES.match(path):
        return "timeseries"
    return "other"


def _chart_labels(request: web.Request) -> tuple[str | None, str | None]:
    match = _CHART.match(request.path)
    if match is None:
        return None, None
    return match["symbol"].strip().upper(), request.query.get("interval") or "1d"


def json_response(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), headers={"Content-Type": JSON_CONTENT_TYPE})


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer; the client sees a disconnect."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=444)


@web.middleware
async def fault_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path.startswith(ADMIN_PREFIX):
        return await handler(request)
    state = request.app[STATE]
    kind = route_kind(request)
    symbol, interval = _chart_labels(request) if kind == "chart" else (None, None)

    def record(outcome: Outcome) -> None:
        state.counters.record(kind, outcome, symbol, interval)

    state.counters.arrive(kind)
    decision = state.faults.decide(time.time(), time.monotonic())
    early = await _fault_response(request, state, decision, kind, record)
    if early is not None:
        return early
    await state.pause(decision.latency_s)
    response = handshake(request) if kind == "handshake" else await handler(request)
    body = response.body if isinstance(response, web.Response) else None
    knobs = state.faults.knobs
    if kind == "chart" and knobs.gap_start is not None and isinstance(body, bytes) and response.status == 200:
        holed = cut_gap(body, knobs.gap_start, knobs.gap_end or knobs.gap_start)
        if holed is not None:
            body = holed
            response = web.Response(status=200, body=holed, headers={"Content-Type": JSON_CONTENT_TYPE})
    if decision.malformed is not None and isinstance(body, bytes) and response.status == 200:
        changed = malform(decision.malformed, body, state.faults.rng)
        if changed is not None:
            record("malformed")
            return web.Response(status=200, body=changed[1], headers={"Content-Type": changed[0]})
    record(outcome_for_status(response.status))
    return response


async def _fault_response(
    request: web.Request,
    state: SimState,
    decision: Decision,
    kind: RouteKind,
    record: Callable[[Outcome], None],
) -> web.StreamResponse | None:
    knobs = state.faults.knobs
    if decision.action == "outage":
        record("outage")
        if knobs.outage_mode == "drop":
            return _drop(request)
        content_type, body = server_error_body(503, "")
        return web.Response(status=503, body=body, headers={"Content-Type": content_type})
    if decision.action == "rate_limited":
        record("rate_limited")
        headers = {"Content-Type": "text/plain;charset=utf-8"}
        if knobs.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(knobs.retry_after_s)))
        return web.Response(status=429, body=RATE_LIMITED_BODY.encode(), headers=headers)
    if decision.action == "hang":
        record("hang")  # visible in the counters while the request hangs
        await state.pause(decision.latency_s)
        return _drop(request)
    if decision.action == "server_error":
        await state.pause(decision.latency_s)
        record("server_error")
        content_type, body = server_error_body(decision.status, _JSON_ROOTS.get(kind, "finance"))
        return web.Response(status=decision.status, body=body, headers={"Content-Type": content_type})
    return None


# Yahoo routes ---------------------------------------------------------------------------


async def chart_route(request: web.Request) -> web.Response:
    state = request.app[STATE]
    answer = chart.answer(request.match_info["symbol"], request.query, state.clock.now(), state.seed)
    return json_response(answer.status, answer.body)


async def crumb_route(request: web.Request) -> web.Response:
    return web.Response(text=passthrough.crumb(request.app[STATE].seed), content_type="text/plain")


def handshake(request: web.Request) -> web.Response:
    state = request.app[STATE]
    response = web.Response(text=passthrough.HANDSHAKE_BODY, content_type="text/html")
    response.headers["Set-Cookie"] = passthrough.cookie(state.seed, time.time())
    return response


async def quote_summary_route(request: web.Request) -> web.Response:
    state = request.app[STATE]
    status, body = passthrough.quote_summary(
        request.match_info["symbol"], request.query, state.clock.now(), state.seed
    )
    return json_response(status, body)


async def quote_route(request: web.Request) -> web.Response:
    state = request.app[STATE]
    status, body = passthrough.quote(request.query, state.clock.now(), state.seed)
    return json_response(status, body)


async def timeseries_route(request: web.Request) -> web.Response:
    status, body = passthrough.timeseries(request.match_info["symbol"], request.app[STATE].clock.now())
    return json_response(status, body)


async def other_route(request: web.Request) -> web.Response:
    status, body = passthrough.not_found_path()
    return json_response(status, body)


# Admin routes ---------------------------------------------------------------------------


async def _json_payload(request: web.Request) -> dict[str, Any]:
    try:
        payload = await request.json(loads=orjson.loads) if request.can_read_body else {}
    except orjson.JSONDecodeError as err:
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": f"body is not JSON: {err}"}).decode(), content_type="application/json"
        ) from err
    if not isinstance(payload, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        )
    return payload


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].faults.knobs.as_json(time.time()))


async def post_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    payload = await _json_payload(request)
    try:
        knobs = update_knobs(state.faults.knobs, payload, time.time())
    except ValueError as err:
        return web.json_response({"error": str(err)}, status=400)
    state.faults.set_knobs(knobs)
    return web.json_response(knobs.as_json(time.time()))


async def post_reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.reset()
    return web.json_response({"ok": True, "faults": state.faults.knobs.as_json(time.time())})


async def get_counters(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = state.counters.as_json()
    # Lock-outs are the client's fault the bench must show: how many, and whether one runs now.
    body["lockouts"] = state.faults.lockouts
    body["locked_out"] = (
        state.faults.locked_until is not None and time.monotonic() < state.faults.locked_until
    )
    return web.json_response(body)


async def get_clock(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].clock.as_json())


async def post_clock(request: web.Request) -> web.Response:
    """{"now": EPOCH} freezes, {"now": null} lets it run, {"advance": SECONDS} moves a
    frozen clock forward."""
    clock = request.app[STATE].clock
    payload = await _json_payload(request)
    if "now" in payload:
        value = payload["now"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return web.json_response({"error": "now must be epoch seconds or null"}, status=400)
        clock.freeze(value)
    if "advance" in payload:
        step = payload["advance"]
        if isinstance(step, bool) or not isinstance(step, int | float):
            return web.json_response({"error": "advance must be a number of seconds"}, status=400)
        clock.advance(step)
    return web.json_response(clock.as_json())


async def get_health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"ok": True, "seed": state.seed, **state.clock.as_json()})


def create_app(config: SimConfig | None = None) -> web.Application:
    config = config or SimConfig()
    state = SimState(config, SimClock(config.now), FaultEngine(config.seed, config.faults))
    app = web.Application(middlewares=[fault_middleware])
    app[STATE] = state
    if config.warm:
        sessions.warm(state.clock.now())

    async def wake_hangs(_: web.Application) -> None:
        state.shutdown.set()

    app.on_shutdown.append(wake_hangs)
    admin = [
        web.get(ADMIN_PREFIX + "faults", get_faults),
        web.post(ADMIN_PREFIX + "faults", post_faults),
        web.post(ADMIN_PREFIX + "reset", post_reset),
        web.get(ADMIN_PREFIX + "counters", get_counters),
        web.get(ADMIN_PREFIX + "clock", get_clock),
        web.post(ADMIN_PREFIX + "clock", post_clock),
        web.get(ADMIN_PREFIX + "health", get_health),
    ]
    yahoo = [
        web.get("/v{version:\\d+}/finance/chart/{symbol}", chart_route),
        web.get("/v1/test/getcrumb", crumb_route),
        web.get("/v{version:\\d+}/finance/quoteSummary/{symbol}", quote_summary_route),
        web.get("/v{version:\\d+}/finance/quote", quote_route),
        web.get("/ws/fundamentals-timeseries/v{version:\\d+}/finance/timeseries/{symbol}", timeseries_route),
        web.route("*", "/{tail:.*}", other_route),
    ]
    app.add_routes(admin + yahoo)
    return app
