"""Schema-driven fuzzing: schemathesis derives requests from docs/openapi.yaml and sends
them to running proxies (served on 127.0.0.1, a real Redis, the Yahoo simulator as
upstream). Every answer must be one the spec documents (status, content type, headers,
body), with no 5xx the spec does not list, every error in Yahoo's shape where the spec says
so, and within the request timeout.

Every operation of the spec is fuzzed, plus one per pass-through prefix in force (the spec
describes pass-through as a route pattern, outside ``paths``). The admin routes, which
change the configuration and purge series, are fuzzed against a throwaway proxy of their
own (its own Redis database), with the token, without it or with a wrong one (401), and
against the main proxy, which has no token (404).

Reproducible: generation is derandomized (``deterministic``, no example database), so the
same command on the same code sends the same requests (Hypothesis also draws constants from
the project's imported modules, so running this file alone and within the whole suite draw
differently); a failure prints a curl command that replays it."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis
import schemathesis
import yaml
from aiohttp import web
from openapi_schema_validator import OAS31Validator
from schemathesis import Case, CheckContext, Response

from loadtests.yahoo_sim import SimConfig
from loadtests.yahoo_sim.testing import InProcessSimulator, start_in_process
from proxy.app import create_app
from tests.test_http import make_config

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
TOKEN = "schema-fuzz-token"
REQUEST_TIMEOUT_S = 10  # no answer within it fails the test: a hang is a bug
MAX_EXAMPLES = 20  # per operation and test, on top of the spec's examples and the coverage phase
MAX_EXAMPLES_CHART = 100
MAX_EXAMPLES_ADMIN = 50  # their free-text symbol, interval and series tag reach error texts
# Databases of the session's redis-server no other test uses (unit tests 0, e2e 5-10).
MAIN_DB, ADMIN_DB = 11, 12
T = TypeVar("T")


def load_spec() -> dict[str, Any]:
    doc = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def path_param(name: str, schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "example": example}


def with_passthrough(spec: dict[str, Any], allow: tuple[str, ...]) -> dict[str, Any]:
    """The spec plus an operation per pass-through prefix in force, answering as
    ``x-yfproxy-passthrough.responses`` says, and one for a path off the allow-list (Yahoo's
    404). The parameters are yfinance's (``symbols``, ``modules``), with examples the
    simulator knows, so some requests reach a 2xx."""
    spec = copy.deepcopy(spec)
    answers = spec["x-yfproxy-passthrough"]["responses"]
    query = [
        {"name": name, "in": "query", "schema": {"type": "string"}, "example": example}
        for name, example in (("symbols", "MSFT,ES=F"), ("modules", "price"))
    ]
    tail = path_param("tail", {"type": "string"}, "MSFT")
    yahoo_error = {"application/json": {"schema": {"$ref": "#/components/schemas/YahooError"}}}
    for prefix in allow:
        path = prefix + "{tail}" if prefix.endswith("/") else prefix
        spec["paths"][path] = {
            "get": {
                "tags": ["passthrough"],
                "operationId": "passthrough" + "".join(p[:1].upper() + p[1:] for p in prefix.split("/") if p),
                "parameters": ([tail] if "{tail}" in path else []) + query,
                "responses": answers,
            }
        }
    spec["paths"]["/v{version}/unlisted/{tail}"] = {
        "get": {
            "tags": ["yahoo"],
            "operationId": "passthroughOffTheList",
            "parameters": [
                path_param("version", {"type": "integer", "minimum": 0}, 1),
                path_param("tail", {"type": "string"}, "x"),
            ],
            "responses": {"404": {"description": "Yahoo's 404", "content": yahoo_error}},
        }
    }
    return spec


# POST /admin/config takes TOML, which schemathesis has no serializer for: the generated
# string goes out as it is.
schemathesis.serializer.alias("application/toml", "text/plain")
PASSTHROUGH_ALLOW = make_config("redis://127.0.0.1:1/0").upstream.passthrough_allow
SPEC = load_spec()
YAHOO_ERROR = OAS31Validator(SPEC["components"]["schemas"]["YahooError"])

# Schema-valid requests the spec says are refused, so positive_data_acceptance allows them:
# a chart window the schema cannot describe (period2 before period1, a range count past its
# maximum: 400; Yahoo's window limits: 422); an admin symbol, interval or series tag the
# chart route would refuse (400); a configuration update naming a section or key yfproxy
# does not have, or a value it refuses (400); upstream's own 4xx, passed through.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
REFUSED_VALID: list[tuple[dict[str, Any], list[str]]] = [
    ({"include-operation-id": "getChart"}, ["400", "422"]),
    ({"include-operation-id": ["getAdminQuarantine", "postAdminRefresh", "deleteAdminSeries"]}, ["400"]),
    ({"include-operation-id": "postAdminConfig"}, ["400"]),
    ({"include-tag": "passthrough"}, ["4xx"]),
]


def config(*, bearer: str | None = None) -> schemathesis.Config:
    operations: list[dict[str, Any]] = [
        {**select, "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + refused}}}
        for select, refused in REFUSED_VALID
    ]
    more = [
        {"include-operation-id": "getChart", "generation": {"max-examples": MAX_EXAMPLES_CHART}},
        {"include-tag": "admin", "generation": {"max-examples": MAX_EXAMPLES_ADMIN}},
    ]
    auth = {"auth": {"openapi": {"adminBearer": {"bearer": bearer}}}} if bearer else {}
    return schemathesis.Config.from_dict(
        {
            "suppress-health-check": ["all"],  # a slow shared CI machine is not a failure
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "request-timeout": REQUEST_TIMEOUT_S,
            # The spec declares no links between operations: nothing for the stateful phase.
            "phases": {"stateful": {"enabled": False}},
            # Replaced by documented_server_errors_only: the spec documents some 503s.
            "checks": {"not_a_server_error": {"enabled": False}},
            "operations": operations + more,
            **auth,
        }
    )


def is_admin(ctx: Any) -> bool:
    return "admin" in (ctx.operation.tags or [])


def not_admin(ctx: Any) -> bool:
    return not is_admin(ctx)


# Exclude filters only: with per-operation config, schemathesis adds an include filter of
# its own that an ``include()`` is OR-ed with, so ``include()`` would select everything.
PUBLIC = schemathesis.openapi.from_dict(with_passthrough(SPEC, PASSTHROUGH_ALLOW), config=config()).exclude(
    is_admin
)
ADMIN = schemathesis.openapi.from_dict(SPEC, config=config(bearer=TOKEN)).exclude(not_admin)
ADMIN_ANONYMOUS = schemathesis.openapi.from_dict(SPEC, config=config()).exclude(not_admin)

# Statuses seen per operation, for the last test: the fuzzing must reach these answers.
SEEN: dict[str, Counter[int]] = defaultdict(Counter)
MUST_SEE = {
    "GET /v8/finance/chart/{symbol}": {200, 400, 404, 422},
    "GET /healthz": {200},
    "GET /readyz": {200},
    "GET /status": {200},
    "GET /metrics": {200},
    "GET /v1/test/getcrumb": {200},
    "GET /v7/finance/quote": {200, 400},
    "GET /v10/finance/quoteSummary/{tail}": {200, 404},
    "GET /v{version}/unlisted/{tail}": {404},
    "GET /admin/config": {200, 401},
    "POST /admin/config": {200, 400},
    "GET /admin/quarantine": {200, 400},
    "POST /admin/refresh/{symbol}": {202, 400},
    "DELETE /admin/series/{symbol}": {200, 400},
}


def documented_server_errors_only(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 5xx only where the spec lists it (the chart's and pass-through's 503, /readyz's)."""
    if response.status_code >= 500:
        documented = {str(code) for code in case.operation.definition.raw["responses"]}
        assert str(response.status_code) in documented, (
            f"{response.status_code} is not documented for {case.operation.label}: {response.text[:300]}"
        )
    return None


def yahoo_shaped_errors(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx in Yahoo's error shape, as the spec's preamble says, whatever the
    response schema (a wrong method's 405 has none): except /readyz's and POST
    /admin/config's bodies, documented otherwise, and upstream's own answers, passed through."""
    if response.status_code < 400:
        return None
    if case.operation.path == "/readyz" or (case.operation.path, case.method) == ("/admin/config", "POST"):
        return None
    if "passthrough" in (case.operation.tags or []) and response.status_code != 503:
        return None
    YAHOO_ERROR.validate(orjson.loads(response.content))
    return None


def tally(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    SEEN[case.operation.label][response.status_code] += 1
    return None


CHECKS = [documented_server_errors_only, yahoo_shaped_errors, tally]


class Stack:
    """The simulator and the proxies, served from an event loop of their own in a thread,
    so that schemathesis' synchronous client can call them from the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="schema-fuzz", daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []
        self.sim: InProcessSimulator | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self.runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def close(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        if self.sim is not None:
            await self.sim.close()

    def stop(self) -> None:
        try:
            self.run(self.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@dataclass(frozen=True)
class Targets:
    proxy: str  # no admin token: the admin routes are off
    admin: str  # a throwaway proxy with a token, its own Redis database, for the admin routes


@pytest.fixture(scope="module")
def targets(redis_url: str) -> Iterator[Targets]:
    server = redis_url.rsplit("/", 1)[0]
    for db in (MAIN_DB, ADMIN_DB):
        with redis.Redis.from_url(f"{server}/{db}") as client:
            client.flushdb()
    stack = Stack()
    try:
        # Frozen at a real, recent minute: the proxy's windows follow the wall clock.
        sim = stack.sim = stack.run(start_in_process(SimConfig(now=int(time.time()) // 60 * 60, warm=False)))

        def proxy(db: int, **env: str) -> web.Application:
            return create_app(make_config(f"{server}/{db}", YFPROXY__UPSTREAM__BASE_URL=sim.base_url, **env))

        main = stack.run(stack.serve(proxy(MAIN_DB)))
        admin = stack.run(stack.serve(proxy(ADMIN_DB, YFPROXY__ADMIN__TOKEN=TOKEN)))
        yield Targets(main, admin)
    finally:
        stack.stop()


@PUBLIC.parametrize()
def test_public_routes_answer_as_documented(case: Case, targets: Targets) -> None:
    case.call_and_validate(base_url=targets.proxy, additional_checks=CHECKS)


@ADMIN.parametrize()
def test_admin_routes_answer_as_documented_with_the_token(case: Case, targets: Targets) -> None:
    # Also probes each operation without the token and with a wrong one (ignored_auth).
    case.call_and_validate(base_url=targets.admin, additional_checks=CHECKS)


def refused(case: Case, base_url: str, status: int, headers: dict[str, str] | None = None) -> None:
    """An admin request that must be refused with ``status`` in Yahoo's shape (or a 405
    with ``Allow`` for a method the path does not serve)."""
    response = case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S)
    where = (case.as_curl_command(), response.status_code, response.text[:300])
    if case.method.upper() != case.operation.method.upper():
        assert response.status_code == 405, where
        assert response.headers.get("allow"), where
    else:
        assert response.status_code == status, where
        if status == 401:
            assert response.headers.get("www-authenticate") == ['Bearer realm="yfproxy admin"'], where
    YAHOO_ERROR.validate(orjson.loads(response.content))
    SEEN[case.operation.label][response.status_code] += 1


@ADMIN_ANONYMOUS.parametrize()
def test_admin_routes_refuse_a_missing_or_wrong_token(case: Case, targets: Targets) -> None:
    refused(case, targets.admin, 401)  # as generated: no Authorization, or a made-up one
    refused(case, targets.admin, 401, {"Authorization": f"Bearer {TOKEN}x"})
    refused(case, targets.admin, 401, {"Authorization": f"Basic {TOKEN}"})


@ADMIN.parametrize()
def test_admin_routes_are_off_without_a_configured_token(case: Case, targets: Targets) -> None:
    refused(case, targets.proxy, 404, {"Authorization": f"Bearer {TOKEN}"})


def test_the_fuzzing_reached_the_answers_that_matter() -> None:
    """Runs last (pytest keeps file order): a fuzzer that only ever saw 404s proves little.
    Checks the operations fuzzed in this run (all of them unless deselected)."""
    if not SEEN:
        pytest.skip("no fuzzing test ran in this session")
    missing = {label: sorted(want - set(SEEN[label])) for label, want in MUST_SEE.items() if label in SEEN}
    assert not any(missing.values()), f"never answered: {missing}; seen: {dict(SEEN)}"
