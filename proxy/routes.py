"""HTTP routes: Yahoo's paths answered the way Yahoo answers them, plus health.

Handlers only translate HTTP to the service and back; every Yahoo-path failure
leaves in Yahoo's error shape (proxy.errors), including aiohttp's own 404/405.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.asyncio import Redis
from redis.exceptions import RedisError

from policies.errors import UpstreamError
from proxy import __version__
from proxy.config import UPSTREAM_ENDPOINTS
from proxy.errors import YahooError, chart_error_body, not_found, unavailable
from proxy.keys import (
    CRUMB,
    FETCHER,
    HOT,
    LIVE_CONFIG,
    METRICS,
    PASSTHROUGH,
    QUALITY,
    REDIS,
    REFRESHER,
    SERVICE,
    SETTINGS,
    UPSTREAM,
)
from proxy.metrics import metrics_handler
from proxy.query import ChartQuery, check_query_string, parse_chart_query
from proxy.status_page import render_status_html, wants_html
from proxy.upstream import UpstreamClient
from validators.contracts import check_contract

log = structlog.get_logger("yfproxy.http")

READY_REDIS_TIMEOUT_S = 1.0

HANDSHAKE_HOSTS = frozenset({"fc.yahoo.com", "guce.yahoo.com", "consent.yahoo.com", "login.yahoo.com"})


def error_response(error: YahooError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), headers=error.headers())


def yahoo_shaped(handler: Handler) -> Handler:
    """A route's handler as yfproxy answers it: the local handshake first, and every
    failure in Yahoo's shape, never aiohttp's text. A wrapper per route rather than an app
    middleware: with any middleware aiohttp adds two coroutine layers and a lookup to every
    request, the chart hit included (ADR 0004). The chart handler does the same inline."""

    @functools.wraps(handler)
    async def shaped(request: web.Request) -> web.StreamResponse:
        if _asks_handshake(request):
            return _handshake()
        try:
            return await handler(request)
        except Exception as exc:
            return yahoo_error(exc, request.path)

    return shaped


def _asks_handshake(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Host")
    return forwarded is not None and forwarded.split(":")[0].lower() in HANDSHAKE_HOSTS


def yahoo_error(exc: Exception, path: str) -> web.Response:
    """The answer to a handler's exception, in Yahoo's shape (an HTTPException below 400,
    a redirect, is raised again)."""
    if isinstance(exc, YahooError):
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        body = chart_error_body(exc.reason, f"HTTP {exc.status} {exc.reason}")
        keep = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        return web.Response(status=exc.status, body=body, content_type="application/json", headers=keep)
    log.error("unhandled", path=path, exc_info=exc)
    body = chart_error_body("Internal Server Error", "yfproxy failed to answer; see its logs")
    return web.Response(status=500, body=body, content_type="application/json")


# Headers of an aiohttp HTTPException that mean something to the client (a 401's challenge).
_KEPT_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")


def _handshake() -> web.Response:
    """yfinance's cookie/consent handshake is answered here: Yahoo's cookie is useless
    to a client of the proxy, and fetching it would spend the rate budget on nothing."""
    response = web.Response(text="<html><body>yfproxy</body></html>", content_type="text/html")
    response.set_cookie("A3", "d=yfproxy", max_age=365 * 86400, path="/", samesite="None")
    return response


class ChartRoute:
    """``/v8/finance/chart/{symbol}``, the hot path. An object bound to the app's parts once
    at startup: per request, an attribute read instead of ``request.app`` and three app
    lookups, and a dashboard's repeated URL answered without a coroutine (ADR 0004). It
    shapes errors and answers the handshake inline for the same reason."""

    def __init__(self) -> None:
        # Dashboards repeat the same URLs: each request target is parsed once a minute
        # (limits depend on now). Keyed by the raw target, one string the parser already
        # made, so a repeat costs neither the symbol's match nor the query's decoding.
        # Only the current minute's: an older key is never asked for again.
        self._parsed: dict[tuple[str, int], ChartQuery] = {}
        self._parsed_minute = 0

    async def bind(self, app: web.Application) -> None:
        """on_startup, after the cleanup contexts that make the service."""
        self._service = app[SERVICE]
        self._metrics = app[METRICS]
        self._tally = self._metrics.chart
        self._limit = app[SETTINGS].server.max_query_chars

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        headers = request.headers
        if _asks_handshake(request):
            return _handshake()
        accept_gzip = "gzip" in headers.get("Accept-Encoding", "")
        if_none_match = headers.get("If-None-Match")
        try:
            query = self._query(request, time.time())
            service = self._service
            answer = service.reused(query, accept_gzip=accept_gzip) if if_none_match is None else None
            if answer is None:
                answer = await service.answer(
                    query, accept_gzip=accept_gzip, if_none_match=if_none_match, reuse=False
                )
        except Exception as exc:
            self._metrics.observe_chart_error(exc, time.perf_counter() - started)
            return yahoo_error(exc, request.path)
        self._tally.observe(answer.outcome, answer.status, time.perf_counter() - started)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    def _query(self, request: web.Request, now: float) -> ChartQuery:
        minute = int(now) // 60
        key = (request.raw_path, minute)
        query = self._parsed.get(key)
        if query is None:
            check_query_string(request.query_string, limit=self._limit)
            query = parse_chart_query(request.match_info["symbol"], request.query, now=now)
            problem = check_contract(query.symbol, int(now))
            if problem is not None:
                # A dated futures contract that is not listed: Yahoo's 404, with the reason,
                # and no upstream request spent on learning it.
                log.info("chart.contract_refused", symbol=query.symbol, reason=problem.reason)
                raise YahooError(problem.http_status, "Not Found", f"{problem.message} ({problem.detail})")
            if minute != self._parsed_minute or len(self._parsed) >= _PARSED_MAX:
                self._parsed.clear()
                self._parsed_minute = minute
            self._parsed[key] = query
        return query


_PARSED_MAX = 4096


async def getcrumb(request: web.Request) -> web.Response:
    return web.Response(text=request.app[CRUMB], content_type="text/plain")


async def passthrough(request: web.Request) -> web.Response:
    service = request.app[PASSTHROUGH]
    if not service.allowed(request.path):
        raise not_found()
    check_query_string(request.query_string, limit=request.app[SETTINGS].server.max_query_chars)
    try:
        answer = await service.get(request.path, list(request.query.items()))
    except UpstreamError as exc:
        raise unavailable(f"Upstream unavailable ({exc.category.value}); retry shortly", 5) from exc
    headers = {"Content-Type": answer.content_type, "Cache-Status": _passthrough_status(answer.cached)}
    return web.Response(status=answer.status, body=answer.body, headers=headers)


def _passthrough_status(cached: bool) -> str:
    return "yfproxy; hit" if cached else "yfproxy; fwd=miss; stored"


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to take traffic: Redis answers, and the refresher runs when it is meant to.
    503 with the reasons otherwise, so a load balancer routes around this replica."""
    problems: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_REDIS_TIMEOUT_S):
            await request.app[REDIS].ping()
    except (TimeoutError, RedisError, OSError) as exc:
        problems["redis"] = f"unreachable: {type(exc).__name__}: {exc}"[:200]
    live = request.app[LIVE_CONFIG].current
    if live.background.enabled and not request.app[REFRESHER].running:
        problems["refresher"] = "not running"
    checks = {"redis": "ok", "refresher": "ok" if live.background.enabled else "off", "config": "ok"}
    checks.update(problems)
    if problems:
        return web.json_response(
            {"status": "unready", "checks": checks}, status=503, headers={"Retry-After": "5"}
        )
    return web.json_response({"status": "ready", "checks": checks})


async def status(request: web.Request) -> web.Response:
    """The core's slice of /status; the operations issue grows it to DESIGN.md's contract."""
    hot = request.app[HOT]
    fetcher = request.app[FETCHER]
    upstream = request.app[UPSTREAM]
    lookups = hot.hits + hot.misses
    doc = {
        "version": __version__,
        # What server.event_loop resolved to ("auto" does not say).
        "event_loop": "uvloop"
        if type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        else "asyncio",
        "config": request.app[LIVE_CONFIG].status(),
        "breaker": upstream.breaker.snapshot(),
        "timeouts": upstream.ladder.snapshot(),
        "rate_limit": await _limiter_status(upstream),
        "upstream": upstream.status(),
        "cache": {
            "hot_series": len(hot),
            "hot_bodies": hot.body_count,
            "hot_hit_ratio": round(hot.hits / lookups, 4) if lookups else None,
            "invalidation_subscribed": hot.subscribed,
        },
        "refresher": {
            **await request.app[REFRESHER].status(),
            "queue_depth": fetcher.queue_depth,
            "submitted": fetcher.stats.submitted,
            "coalesced": fetcher.stats.coalesced,
            "completed": fetcher.stats.completed,
            "failed": fetcher.stats.failed,
            "quarantined": fetcher.stats.quarantined,
            "leased_elsewhere": fetcher.stats.leased_elsewhere,
        },
        "quality": await request.app[QUALITY].summary(),
        "redis": await _redis_status(request.app[REDIS]),
    }
    # One URL, two formats: a browser gets the page (which polls this same URL for JSON).
    if wants_html(request.headers.get("Accept")):
        headers = {"Vary": "Accept", "Cache-Control": "no-store"}
        return web.Response(
            body=render_status_html(doc), content_type="text/html", charset="utf-8", headers=headers
        )
    return web.json_response(doc, headers={"Vary": "Accept"})


async def _redis_status(client: Redis) -> dict[str, object]:
    """Memory and size of the Redis the series live in (sizing: docs/performance.md, Storage)."""
    try:
        async with asyncio.timeout(READY_REDIS_TIMEOUT_S):
            memory = await client.info("memory")
            keys = await client.dbsize()
    except (TimeoutError, RedisError, OSError) as exc:
        return {"reachable": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {
        "reachable": True,
        "used_memory": memory.get("used_memory"),
        "used_memory_human": memory.get("used_memory_human"),
        "maxmemory": memory.get("maxmemory"),
        "keys": keys,
    }


async def _limiter_status(upstream: UpstreamClient) -> dict[str, object]:
    if upstream.limiter is None:
        return {}
    chart = await upstream.limiter.state("chart")
    return {"current_rps": chart["current_rps"], "window": chart["window"], "endpoints": {
        endpoint: await upstream.limiter.state(endpoint) for endpoint in UPSTREAM_ENDPOINTS
    }}  # fmt: skip


def new_crumb() -> str:
    return secrets.token_urlsafe(8)[:11]


def add_routes(app: web.Application) -> None:
    chart = ChartRoute()
    app.on_startup.append(chart.bind)
    app.router.add_get("/v8/finance/chart/{symbol}", chart.handle)  # Yahoo-shaped by itself
    app.router.add_get("/v1/test/getcrumb", yahoo_shaped(getcrumb))
    app.router.add_get("/healthz", yahoo_shaped(healthz))
    app.router.add_get("/readyz", yahoo_shaped(readyz))
    app.router.add_get("/status", yahoo_shaped(status))
    app.router.add_get("/metrics", yahoo_shaped(metrics_handler))
    app.router.add_get("/{tail:(v[0-9]+|ws)/.*}", yahoo_shaped(passthrough))


def add_fallback(app: web.Application) -> None:
    """Last route: any path and method no route serves gets Yahoo's 404, or its 405 with
    ``Allow`` when the path exists for other methods (what aiohttp's router would say)."""
    app.router.add_route("*", "/{tail:.*}", yahoo_shaped(unrouted))


async def unrouted(request: web.Request) -> web.StreamResponse:
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        _match, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
