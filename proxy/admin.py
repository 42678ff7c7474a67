"""Operator routes under /admin: off (404) unless ``[admin] token`` is set, then each
request needs ``Authorization: Bearer <token>``, compared in constant time."""

from __future__ import annotations

import hmac
import time
import tomllib
from typing import Any

import orjson
import structlog
from aiohttp import web

from proxy.config import ConfigError, merge_update
from proxy.errors import YahooError
from proxy.fetcher import FetchKind
from proxy.keys import FETCHER, LIVE_CONFIG, QUALITY, REFRESHER, REGISTRY, SETTINGS, STORE
from proxy.query import parse_chart_query
from proxy.routes import yahoo_shaped
from proxy.runtime import apply
from proxy.series import SeriesKey
from proxy.store import parse_tag

MAX_CONFIG_BYTES = 64 * 1024
log = structlog.get_logger("yfproxy.admin")


def _authorised(request: web.Request) -> None:
    token = request.app[SETTINGS].admin.token.get_secret_value()
    if not token:
        # No token configured: the routes do not exist, as far as anyone can tell.
        raise web.HTTPNotFound()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="yfproxy admin"'})


async def quarantine(request: web.Request) -> web.Response:
    """Batches the quality gate refused: all series (newest first), or one series' entries."""
    _authorised(request)
    gate = request.app[QUALITY]
    tag = request.query.get("series")
    if tag is None:
        return web.json_response({"quarantined": await gate.quarantined()})
    key = parse_tag(tag)
    if key is None:
        raise web.HTTPBadRequest(reason="series must be SYMBOL|interval|0 or SYMBOL|interval|1")
    return web.json_response({"series": key.tag, "entries": await gate.entries(key)})


async def get_config(request: web.Request) -> web.Response:
    """The configuration in force (secrets shown as stars) and its generation."""
    _authorised(request)
    live = request.app[LIVE_CONFIG]
    return web.json_response({**live.status(), "config": live.current.model_dump(mode="json")})


async def post_config(request: web.Request) -> web.Response:
    """Apply a partial configuration (TOML, or JSON with a JSON content type) to the running
    proxy: validated whole, applied whole, or refused whole with every reason."""
    _authorised(request)
    body = await request.content.read(MAX_CONFIG_BYTES + 1)
    if len(body) > MAX_CONFIG_BYTES:
        return _refused(413, [f"configuration update over {MAX_CONFIG_BYTES} bytes"])
    try:
        update = _parse(body, request.content_type)
    except ValueError as exc:
        return _refused(400, [str(exc)])
    live = request.app[LIVE_CONFIG]
    try:
        changed = await apply(request.app, live, merge_update(live.current, update), source="admin")
    except ConfigError as exc:
        return _refused(400, exc.problems)
    return web.json_response({**live.status(), "changed": changed})


def _parse(body: bytes, content_type: str) -> dict[str, Any]:
    if content_type == "application/json":
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
    else:
        try:
            doc = tomllib.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"not valid TOML: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("the update must be a table of sections")
    return doc


def _refused(status: int, problems: list[str]) -> web.Response:
    return web.json_response(
        {"error": "configuration refused; nothing was changed", "problems": problems}, status=status
    )


async def refresh(request: web.Request) -> web.Response:
    """Refresh a symbol now: every tracked series of it, or one interval (?interval=1m)."""
    _authorised(request)
    keys = await _series_of(request)
    now = time.time()
    fetcher, registry, store = request.app[FETCHER], request.app[REGISTRY], request.app[STORE]
    for key in keys:
        stored = await store.load(key)
        start = request.app[REFRESHER].start_of(key, stored, int(now))
        fetcher.submit(key, start, FetchKind.STALE if stored is not None else FetchKind.MISS)
        # Tracked from now on (an operator asked for it), and due now for the refresher.
        await registry.record_activity({}, {key: now})
    log.info("admin.refresh", series=[k.tag for k in keys])
    return web.json_response({"queued": [k.tag for k in keys]}, status=202)


async def purge(request: web.Request) -> web.Response:
    """Delete a symbol's stored series (all, or ?interval=): bad data an operator wants gone.
    Listed instruments are fetched again from scratch; others stop being tracked."""
    _authorised(request)
    keys = await _series_of(request)
    registry, gate, store = request.app[REGISTRY], request.app[QUALITY], request.app[STORE]
    now = time.time()
    for key in keys:
        await store.delete(key)  # also tells every replica's hot layer
        await gate.forget(key)
        tracked = await registry.get(key)
        if tracked is not None and tracked.configured:
            await registry.reschedule(key, now)
        else:
            await registry.untrack(key)
    log.warning("admin.purge", series=[k.tag for k in keys])
    return web.json_response({"purged": [k.tag for k in keys]})


async def _series_of(request: web.Request) -> list[SeriesKey]:
    symbol = request.match_info["symbol"]
    interval = request.query.get("interval") or None  # empty means absent, as on the chart route
    prepost = request.query.get("prepost", "0") in ("1", "true")
    try:
        # The chart route's own validation: the same symbols and intervals, the same errors.
        query = parse_chart_query(
            symbol, {"interval": interval or "1d", "includePrePost": str(prepost).lower()}, now=time.time()
        )
    except YahooError as exc:
        # Not aiohttp's HTTPBadRequest: its reason line refuses the CR/LF a client may send.
        raise YahooError(400, exc.description, f"HTTP 400 {exc.description}") from None
    if interval is not None:
        return [query.series_key]
    tracked = [t.key for t in await request.app[REGISTRY].all() if t.key.symbol == query.symbol]
    if not tracked:
        raise web.HTTPNotFound(reason=f"{query.symbol} has no tracked series; name one with ?interval=")
    return sorted(tracked, key=lambda k: (k.interval, k.prepost))


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/quarantine", yahoo_shaped(quarantine))
    app.router.add_post("/admin/refresh/{symbol}", yahoo_shaped(refresh))
    app.router.add_delete("/admin/series/{symbol}", yahoo_shaped(purge))
    app.router.add_get("/admin/config", yahoo_shaped(get_config))
    app.router.add_post("/admin/config", yahoo_shaped(post_config))
