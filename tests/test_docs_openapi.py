"""docs/openapi.yaml: valid OpenAPI 3.1, the same routes as the app's router, and the
answers a running proxy gives validate against it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import yaml
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from proxy import __version__
from proxy.admin import MAX_CONFIG_BYTES
from proxy.app import create_app
from proxy.intervals import VALID_INTERVALS
from proxy.routes import HANDSHAKE_HOSTS, passthrough, unrouted
from tests.recordings import recording
from tests.test_http import ClientFactory, CountingTransport, make_config

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
TOKEN = "docs-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Operation = tuple[str, str]  # (method, path template)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    doc = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def spec_operations(spec: Mapping[str, Any]) -> set[Operation]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(m.upper(), path) for path, item in spec["paths"].items() for m in item if m in methods}


def router_operations(app: web.Application) -> set[Operation]:
    """The router's own routes: HEAD twins of GET routes (aiohttp adds them), the
    pass-through catch-all, which the spec describes outside ``paths``, and the last route
    that answers 404/405 for everything else, left out."""
    unwrapped = {r: getattr(r.handler, "__wrapped__", r.handler) for r in app.router.routes()}
    routes = [r for r, handler in unwrapped.items() if handler not in (passthrough, unrouted)]
    ops = {(r.method, r.resource.canonical) for r in routes if r.resource is not None}
    heads = {path for method, path in ops if method == "HEAD"}
    assert heads <= {path for method, path in ops if method == "GET"}, "a HEAD route of its own"
    return {(method, path) for method, path in ops if method != "HEAD"}


def built_app(**env: str) -> web.Application:
    # Routes are added when the app is built; Redis is first dialled at startup, which
    # this never reaches, so no server is needed to read the router.
    return create_app(make_config("redis://127.0.0.1:1/0", **env), transport=CountingTransport())


def test_the_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate_spec(spec)
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["version"] == __version__, "docs/openapi.yaml info.version lags proxy.__version__"


def test_every_path_in_the_spec_is_routed(spec: dict[str, Any]) -> None:
    missing = spec_operations(spec) - router_operations(built_app())
    assert not missing, f"in docs/openapi.yaml but not routed: {sorted(missing)}"


def test_every_own_route_is_in_the_spec(spec: dict[str, Any]) -> None:
    undocumented = router_operations(built_app()) - spec_operations(spec)
    assert not undocumented, f"routed but not in docs/openapi.yaml: {sorted(undocumented)}"


def test_passthrough_and_handshake_are_documented_outside_paths(spec: dict[str, Any]) -> None:
    routes = built_app().router.routes()
    catch_all = [r for r in routes if getattr(r.handler, "__wrapped__", None) is passthrough]
    assert {r.method for r in catch_all} == {"GET", "HEAD"}
    assert spec["x-yfproxy-passthrough"]["route"].startswith("GET /{tail:")
    assert set(spec["x-yfproxy-handshake"]["hosts"]) == HANDSHAKE_HOSTS
    assert not any(path.startswith("/{") for path in spec["paths"])


def test_the_chart_route_documents_yahoos_parameters_and_headers(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/v8/finance/chart/{symbol}"]["get"]
    params = {deref(spec, p)["name"]: deref(spec, p) for p in op["parameters"]}
    assert {"symbol", "interval", "range", "period1", "period2", "includePrePost", "events", "crumb"} <= set(
        params
    )
    assert params["interval"]["schema"]["enum"] == list(VALID_INTERVALS)
    ok_headers = set(op["responses"]["200"]["headers"])
    assert {"Cache-Status", "X-Data-Quality", "X-Data-Completeness", "ETag", "Age"} <= ok_headers
    assert "Retry-After" in op["responses"]["503"]["headers"]
    for status in ("400", "404", "422", "503"):
        schema = op["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/YahooError"}


def test_every_admin_operation_needs_the_bearer_token(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["adminBearer"] == {
        **spec["components"]["securitySchemes"]["adminBearer"],
        "type": "http",
        "scheme": "bearer",
    }
    admin = [(m, p) for m, p in spec_operations(spec) if p.startswith("/admin/")]
    assert admin
    for method, path in admin:
        op = spec["paths"][path][method.lower()]
        assert op["security"] == [{"adminBearer": []}], (method, path)
        assert {"401", "404"} <= set(op["responses"]), (method, path)


def deref(spec: Mapping[str, Any], node: Any) -> Any:
    """``node`` with every local ``$ref`` replaced by what it names (the spec has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return deref(spec, target)
        return {key: deref(spec, value) for key, value in node.items()}
    if isinstance(node, list):
        return [deref(spec, item) for item in node]
    return node


class Conformance:
    """Checks live answers against the spec and notes which operations were seen."""

    def __init__(self, spec: Mapping[str, Any], client: TestClient) -> None:
        self.spec = spec
        self.client = client
        self.seen: set[Operation] = set()

    async def check(
        self, method: str, template: str, url: str, status: int, **kwargs: Any
    ) -> tuple[ClientResponse, bytes]:
        resp = await self.client.request(method, url, **kwargs)
        body = await resp.read()
        where = f"{method} {url}"
        assert resp.status == status, f"{where}: {resp.status} {body[:300]!r}"
        responses = self.spec["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, f"{where} answered {status}, which the spec does not list"
        response = deref(self.spec, responses[str(status)])
        for name, header in response.get("headers", {}).items():
            if name in resp.headers:
                OAS31Validator(header["schema"]).validate(resp.headers[name])
        content = response.get("content", {})
        if content:
            media = resp.content_type
            assert media in content, f"{where}: {media} is not among {sorted(content)}"
            if media == "application/json":
                OAS31Validator(content[media]["schema"]).validate(orjson.loads(body))
        else:
            assert not body, f"{where}: a body the spec does not describe"
        self.seen.add((method, template))
        return resp, body


@pytest.fixture
async def conformance(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis, spec: dict[str, Any]
) -> Conformance:
    app = create_app(make_config(redis_url, YFPROXY__ADMIN__TOKEN=TOKEN), transport=CountingTransport())
    return Conformance(spec, await aiohttp_client(app))


async def test_live_answers_validate_against_the_spec(conformance: Conformance) -> None:
    c = conformance
    await c.check("GET", "/healthz", "/healthz", 200)
    await c.check("GET", "/readyz", "/readyz", 200)
    await c.check("GET", "/status", "/status", 200)
    await c.check("GET", "/status", "/status", 200, headers={"Accept": "text/html"})
    await c.check("GET", "/metrics", "/metrics", 200)
    await c.check("GET", "/metrics", "/metrics", 200, headers={"Accept": "application/openmetrics-text"})
    await c.check("GET", "/v1/test/getcrumb", "/v1/test/getcrumb", 200)

    chart = "/v8/finance/chart/{symbol}"
    params = recording("MSFT_89b82124b6").params
    resp, _ = await c.check("GET", chart, "/v8/finance/chart/MSFT", 200, params=params)
    for name in ("Cache-Status", "Age", "ETag", "X-Data-Quality", "X-Data-Completeness", "Last-Modified"):
        assert name in resp.headers, name
    etag = resp.headers["ETag"]
    await c.check("GET", chart, "/v8/finance/chart/MSFT", 304, params=params, headers={"If-None-Match": etag})
    await c.check("GET", chart, "/v8/finance/chart/MSFT", 400, params={"interval": "4m"})
    await c.check("GET", chart, "/v8/finance/chart/NOPE", 404)
    await c.check("GET", chart, "/v8/finance/chart/ESF27.CME", 404)
    await c.check("GET", chart, "/v8/finance/chart/MSFT", 422, params={"interval": "1m", "range": "1mo"})

    config = "/admin/config"
    await c.check("GET", config, config, 200, headers=AUTH)
    await c.check("GET", config, config, 401)
    update = {"json": {"cache": {"on_miss": "reject"}}, "headers": AUTH}
    _, applied = await c.check("POST", config, config, 200, **update)
    assert orjson.loads(applied)["changed"] == ["cache.on_miss"]
    resp, _ = await c.check("GET", chart, "/v8/finance/chart/AAPL", 503)
    assert "Retry-After" in resp.headers
    await c.check("POST", config, config, 400, data="[server]\nport = 1\n", headers=AUTH)
    await c.check("POST", config, config, 400, data="not toml [", headers=AUTH)
    await c.check("POST", config, config, 413, data="#" * (MAX_CONFIG_BYTES + 1), headers=AUTH)

    quarantine = "/admin/quarantine"
    await c.check("GET", quarantine, quarantine, 200, headers=AUTH)
    await c.check("GET", quarantine, quarantine, 200, params={"series": "MSFT|1d|0"}, headers=AUTH)
    await c.check("GET", quarantine, quarantine, 400, params={"series": "nonsense"}, headers=AUTH)

    refresh, series = "/admin/refresh/{symbol}", "/admin/series/{symbol}"
    await c.check("POST", refresh, "/admin/refresh/MSFT", 202, params={"interval": "1d"}, headers=AUTH)
    await c.check("POST", refresh, "/admin/refresh/MSFT", 400, params={"interval": "4m"}, headers=AUTH)
    await c.check("POST", refresh, "/admin/refresh/ZZZZ", 404, headers=AUTH)
    await c.check("DELETE", series, "/admin/series/MSFT", 200, params={"interval": "1d"}, headers=AUTH)
    await c.check("DELETE", series, "/admin/series/MSFT", 401)

    assert c.seen == spec_operations(c.spec), "an operation of the spec is not exercised here"


async def test_admin_routes_answer_as_documented_without_a_token(
    aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis, spec: dict[str, Any]
) -> None:
    app = create_app(make_config(redis_url), transport=CountingTransport())
    c = Conformance(spec, await aiohttp_client(app))
    await c.check("GET", "/admin/config", "/admin/config", 404, headers=AUTH)
    await c.check("POST", "/admin/refresh/{symbol}", "/admin/refresh/MSFT", 404, headers=AUTH)
