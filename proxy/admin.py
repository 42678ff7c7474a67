"""Operator routes under /admin: off (404) unless ``[admin] token`` is set, then each
request needs ``Authorization: Bearer <token>``, compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web

from proxy.keys import QUALITY, SETTINGS
from proxy.store import parse_tag


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


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/quarantine", quarantine)
