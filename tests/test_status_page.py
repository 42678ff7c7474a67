"""/status for people: the HTML page is self-contained, escapes what clients named, colours
freshness by the documented rule, refreshes itself from /status JSON with the same
renderer the server used; content negotiation picks it for browsers only; the terminal
table says the same without ANSI codes when not on a terminal."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.status_page import (
    _SCRIPT,
    CSP,
    embed_json,
    fixed,
    freshness,
    render_live,
    render_status_html,
    wants_html,
)
from proxy.status_table import render_status_table
from tests.test_http import CountingTransport, make_config

NOW = 1_800_000_000.0
NODE = shutil.which("node")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: the script cannot be run here")

HOSTILE = (
    "<script>alert(1)</script>|1m|0",
    '"><img src=x onerror=alert(1)>|1d|0',
    "</script><script>alert(2)</script>|5m|0",
    "__proto__",
    "ES=F\x1b[2J\x07|1h|0",
)


# --- documents ---------------------------------------------------------------------------


@pytest.fixture
async def real_doc(
    aiohttp_client: Callable[..., Awaitable[TestClient]], redis_url: str, redis_client: aioredis.Redis
) -> dict[str, Any]:
    """The /status document of a running app after one chart request, once its refresher
    has refreshed and scored the two configured series."""
    config = make_config(
        redis_url,
        YFPROXY__BACKGROUND__ENABLED="true",
        YFPROXY__INSTRUMENTS__ACTIVE='["MSFT"]',
        YFPROXY__INSTRUMENTS__INTERVALS='["1d", "1h"]',
    )
    client = await aiohttp_client(create_app(config, transport=CountingTransport()))
    resp = await client.get("/v8/finance/chart/MSFT", params={"interval": "1d", "range": "5d"})
    assert resp.status == 200
    deadline = time.monotonic() + 20
    while True:
        doc: dict[str, Any] = await (
            await client.get("/status", headers={"Accept": "application/json"})
        ).json()
        rows = doc["refresher"]["series"]
        scored = {row["series"] for row in doc["quality"]["series"]}
        if len(rows) == 2 and all(r["last_refresh"] for r in rows) and {r["series"] for r in rows} <= scored:
            return doc
        assert time.monotonic() < deadline, doc["refresher"]
        await asyncio.sleep(0.1)


def _row(tag: str, age: float | None, due_in: float, **extra: Any) -> dict[str, Any]:
    row = {
        "series": tag,
        "tier": "active",
        "configured": True,
        "last_refresh": None if age is None else NOW - age,
        "age_s": age,
        "next_due": NOW + due_in,
        "due_in_s": due_in,
        "last_outcome": None if age is None else "ok",
        "last_category": None,
        "fails_in_a_row": 0,
        "request_rate_per_min": 0.0,
    }
    return row | extra


def _quality(tag: str, score: float, completeness: float, *codes: str, below: bool = False) -> dict[str, Any]:
    issues = [{"code": c, "severity": "warning", "detail": f"{c} </script> & co", "count": 1} for c in codes]
    return {
        "series": tag,
        "score": score,
        "completeness": completeness,
        "issues": issues,
        "below_threshold": below,
    }


# tag -> the freshness class its row must carry
EXPECTED_CLASS = {
    "ES=F|1m|0": "fresh",
    "ES=F|5m|0": "due",
    "NQ=F|1m|0": "overdue",
    "NQ=F|5m|0": "due",
    "CL=F|1h|0": "overdue",
    "GC=F|1d|0": "due",
    "SI=F|1m|0": "due",
    "AAPL|1d|0": "none",
    HOSTILE[0]: "fresh",
    HOSTILE[1]: "fresh",
    HOSTILE[2]: "due",
    HOSTILE[3]: "fresh",
    HOSTILE[4]: "fresh",
}


def synthetic_doc() -> dict[str, Any]:
    """A proxy in trouble: every freshness case, low quality, a quarantine, an open
    breaker, 429s, a raised timeout level, and series named by an attacker."""
    series = [
        _row("ES=F|1m|0", 30.0, 90.0, tier="priority", request_rate_per_min=12.5),
        _row("ES=F|5m|0", 320.0, -20.0),
        _row("NQ=F|1m|0", 600.0, -480.0),  # 4 periods late
        _row("NQ=F|5m|0", 400.0, -300.0),  # exactly 3 periods late: still amber
        _row("CL=F|1h|0", 60.0, 240.0, last_outcome="failed", last_category="timeout", fails_in_a_row=3),
        _row("GC=F|1d|0", 30.0, 30.0, last_outcome="failed", last_category="rate_limited", fails_in_a_row=1),
        _row("SI=F|1m|0", None, -5.0, configured=False, tier="priority"),
        _row(HOSTILE[0], 10.0, 50.0, last_category="<b>bold</b>"),
        _row(HOSTILE[1], 10.0, 50.0, tier="<i>tier</i>"),
        _row(HOSTILE[2], 100.0, -1.0),
        _row(HOSTILE[3], 1.0, 1000.0),
        _row(HOSTILE[4], 5.0, 5.0),
    ]
    quality = [
        _quality("NQ=F|1m|0", 0.31, 0.52, "time.gap", "time.gap", "ohlc.high_below_low", below=True),
        _quality("AAPL|1d|0", 0.4, 0.9, "volume.negative", below=True),
        _quality("ES=F|1m|0", 0.98, 0.9951),
        _quality(HOSTILE[0], 0.9, 1.0, "<img src=x onerror=alert(3)>"),
        _quality(HOSTILE[3], 0.9, 1.0),
    ]
    quarantined = [{"series": "NQ=F|1m|0", "count": 2, "latest": {"reason": "<below_min_quality>"}}]
    return {
        "version": "0.1.0",
        "breaker": {
            "state": "open",
            "fail_counter": 5,
            "fail_max": 5,
            "reopens_at": "2027-01-15T08:00:30+00:00",
        },
        "timeouts": {"chart": {"level": 2, "levels": 3, "connect_s": 6.0, "read_s": 12.5}},
        "rate_limit": {
            "current_rps": 0.35,
            "window": {"success": 40, "rate_limited": 3, "error": 1},
            "endpoints": {
                "passthrough": {"current_rps": 0.5, "ceiling_rps": None, "phase": "slow_start"},
                "chart": {
                    "current_rps": 0.35,
                    "ceiling_rps": 0.62,
                    "phase": "recovery",
                    "blocked_for_s": 4.2,
                    "fallback": True,
                },
            },
        },
        "upstream": {
            "network": "degraded",
            "requests": 1234,
            "failures": {"timeout": 3, "rate_limited": 3},
            "last_60s": {"success": 10, "error": 4},
            "latency_ms": {"p50": 120.5, "p90": 850.25, "p99": 2999.5},
        },
        "cache": {
            "hot_series": 9,
            "hot_bodies": 31,
            "hot_hit_ratio": 0.8731,
            "invalidation_subscribed": False,
        },
        "redis": {"used_memory_human": "12.34M"},
        "refresher": {
            "running": True,
            "queue": {"miss": 1, "stale": 4, "backfill": 2},
            "in_flight": 2,
            "tracked": len(series),
            "due_now": 3,
            "max_lag_s": 480.0,
            "outcomes": {"ok": 40, "failed": 4, "unchanged": 7},
            "last_error": "timeout:chart read timed out",
            "series": series,
        },
        "quality": {
            "gate": "on",
            "min_quality": 0.5,
            "series_scored": len(quality),
            "below_threshold": 2,
            "series": quality,
            "quarantined": quarantined,
        },
    }


def odd_doc() -> dict[str, Any]:
    """Wrong types and missing sections: the page must still render, never raise."""
    return {
        "version": 7,
        "breaker": [],
        "timeouts": {"level": True, "levels": 3},
        "rate_limit": {"current_rps": "fast", "window": None, "endpoints": {"chart": 5}},
        "upstream": {"network": None, "failures": [], "latency_ms": {"p50": float("nan")}},
        "cache": {"hot_hit_ratio": float("inf"), "hot_series": 1.5},
        "refresher": {
            "series": [
                1,
                None,
                {"series": None, "age_s": "x", "due_in_s": 5},
                {"series": "odd", "tier": ["a", {"b": False}]},
            ],
            "queue": {"x": "y"},
            "running": "yes",
        },
        "quality": {"series": "nope", "quarantined": [{}], "below_threshold": -1},
    }


# --- reading the page back -----------------------------------------------------------------


class PageReader(HTMLParser):
    """What a browser would build from the page: elements, attributes, script bodies and
    the cells of each series row."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self.rows: dict[str, tuple[str, list[str]]] = {}
        self._open: str | None = None
        self._row: str | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.elements.append((tag, found))
        self._open = tag
        if tag == "script":
            self.scripts.append((found, ""))
        elif tag == "tr" and found.get("data-series") is not None:
            self._row = str(found["data-series"])
            self.rows[self._row] = (str(found.get("class")), [])
        elif tag == "td" and self._row is not None:
            self.rows[self._row][1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._open == "style":
            self.styles.append(data)
        elif self._row is not None and self.rows[self._row][1]:
            self.rows[self._row][1][-1] += data


def read(doc: dict[str, Any]) -> tuple[str, PageReader]:
    page = render_status_html(doc).decode("utf-8")
    return page, PageReader(page)


# --- the page ------------------------------------------------------------------------------


def test_page_shows_every_series_with_its_freshness_class() -> None:
    _, page = read(synthetic_doc())
    assert {tag: cls for tag, (cls, _) in page.rows.items()} == {
        t: f"f-{c}" for t, c in EXPECTED_CLASS.items()
    }
    es = page.rows["ES=F|1m|0"][1]
    assert es[:3] == ["ES=F|1m|0 cfg", "priority", "fresh 30s/2.0m"]
    assert es[4:] == ["12.5", "0.98", "99.5%", ""]
    nq = page.rows["NQ=F|1m|0"][1]
    assert nq[2] == "overdue 10.0m/2.0m"
    assert nq[6:] == ["52.0%", "quarantined, time.gap \u00d72, ohlc.high_below_low"]
    assert page.rows["CL=F|1h|0"][1][2:4] == ["failing 60s/5.0m", "failed (timeout), 3 in a row"]
    assert page.rows["SI=F|1m|0"][1][2] == "never refreshed"
    assert page.rows["AAPL|1d|0"][1][2] == "not tracked"


def test_series_table_lists_problems_first() -> None:
    _, page = read(synthetic_doc())
    order = list(page.rows)
    assert order[:2] == ["CL=F|1h|0", "NQ=F|1m|0"]  # overdue, by name
    assert order.index("AAPL|1d|0") < order.index("ES=F|1m|0")  # below min quality before fresh


def test_page_shows_the_summary_figures() -> None:
    page, _ = read(synthetic_doc())
    for figure in (
        ">open<",
        "failures 5/5",
        "0.35 req/s",
        "3 \u00d7 429",
        "chart: recovery, 0.35/s, ceiling 0.62, blocked 4s, local fallback",
        "level 2",
        "connect 6s, read 12.5s",
        ">degraded<",
        "failures: rate_limited 3 \u00b7 timeout 3",
        "p50 120.5 \u00b7 p90 850.3 \u00b7 p99 3000 ms",  # half away from zero, as toFixed
        "87.3%",
        "redis memory 12.34M",
        "invalidation NOT subscribed",
        "queue: backfill 2 \u00b7 miss 1 \u00b7 stale 4",
        "max lag 8.0m",
        "last error: timeout:chart read timed out",
        "scored 5 \u00b7 below min 2 \u00b7 quarantined 1",
        "Series: 13 shown, 2 overdue, 5 due, 2 below min quality",
    ):
        assert figure in page, figure
    assert 'class="card l-bad" id="card-breaker"' in page
    assert 'class="card l-bad" id="card-refresher"' in page  # a series is overdue
    assert 'class="card l-warn" id="card-quality"' in page


async def test_page_of_a_running_proxy(real_doc: dict[str, Any]) -> None:
    page, reader = read(real_doc)
    for row in real_doc["refresher"]["series"]:
        cls, cells = reader.rows[row["series"]]
        assert cls == "f-fresh"  # just refreshed, next due in the future
        # MSFT 1d may read "unchanged": when the chart request's miss fetched it after the
        # refresher made it due, the refresher found it fresh and did not fetch it again.
        assert cells[2].startswith("fresh ")
        assert cells[3] in (("ok", "unchanged") if "|1d|" in row["series"] else ("ok",)), cells[3]
        score = next(q for q in real_doc["quality"]["series"] if q["series"] == row["series"])
        assert cells[5] == fixed(score["score"], 2)
        assert all(issue["code"] in cells[7] for issue in score["issues"])
    assert ">closed<" in page and ">ok<" in page and "1000 req/s" in page
    assert _no_external_references(page, reader)


def test_page_has_no_external_references() -> None:
    page, reader = read(synthetic_doc())
    assert _no_external_references(page, reader)
    assert "http://" not in page and "https://" not in page


def _no_external_references(page: str, reader: PageReader) -> bool:
    for tag, attrs in reader.elements:
        for name in ("src", "href", "action", "data", "poster", "srcset", "background"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value or value == "data:,", (tag, name, value)
        assert not (tag == "link" and "stylesheet" in (attrs.get("rel") or "")), attrs
        assert not (tag == "script" and "src" in attrs), attrs
    assert "@import" not in page and "url(" not in page
    return True


@pytest.mark.parametrize("doc", [synthetic_doc(), odd_doc(), {}], ids=["synthetic", "odd", "empty"])
def test_scripts_and_styles_are_exactly_the_ones_the_csp_allows(doc: dict[str, Any]) -> None:
    _, reader = read(doc)
    scripts = [(attrs.get("type"), body) for attrs, body in reader.scripts]
    assert [kind for kind, _ in scripts] == ["application/json", None]
    assert scripts[1][1] == _SCRIPT
    csp = next(a["content"] for tag, a in reader.elements if tag == "meta" and a.get("http-equiv"))
    assert csp == CSP
    assert _hash(_SCRIPT) in CSP and _hash(reader.styles[0]) in CSP
    assert "'unsafe-inline'" not in CSP and "default-src 'none'" in CSP


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def test_hostile_series_names_stay_text() -> None:
    doc = synthetic_doc()
    page, reader = read(doc)
    for tag in HOSTILE:
        assert reader.rows[tag][1][0].startswith(tag)  # shown as the text it is
    assert [tag for tag, _ in reader.elements if tag in ("script", "img", "b", "i")] == ["script", "script"]
    assert not any(name.startswith("on") for _, attrs in reader.elements for name in attrs)
    assert "<script>alert" not in page and "<img" not in page
    # The embedded document is the same document, and cannot end its <script> block.
    embedded = reader.scripts[0][1]
    assert "<" not in embedded and ">" not in embedded and "&" not in embedded
    assert json.loads(embedded) == json.loads(json.dumps(doc))


def test_the_page_refreshes_from_status_json() -> None:
    page, _ = read(synthetic_doc())
    assert 'var ENDPOINT = "/status", EVERY_MS = 5000' in page
    assert 'fetch(ENDPOINT, {headers: {Accept: "application/json"}' in page
    assert 'id="live"' in page and 'id="status-data"' in page
    assert "</script" not in _SCRIPT.lower() and "<!--" not in _SCRIPT


def test_page_renders_odd_and_empty_documents() -> None:
    page, reader = read(odd_doc())
    assert reader.rows["\u2014"][0] == "f-due"  # "age_s": "x" is no age: never refreshed
    assert '["a",{"b":false}]' in page  # a list where a tier should be, shown as JSON
    empty, _ = read({})
    assert "no series tracked or scored yet" in empty and ">off<" in empty


def test_flat_timeouts_level_of_the_design_contract() -> None:
    doc = synthetic_doc() | {"timeouts": {"level": 1, "levels": 4}}
    page, _ = read(doc)
    assert "all: level 1 of 4" in page


def test_embedded_json_replaces_non_finite_numbers() -> None:
    assert json.loads(embed_json({"a": [float("nan"), float("inf"), 1.5], 2: "x"})) == {
        "a": [None, None, 1.5],
        "2": "x",
    }


# --- the freshness rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "due_in", "fails", "outcome", "level"),
    [
        (30.0, 90.0, 0, "ok", "fresh"),
        (30.0, 90.0, 0, "unchanged", "fresh"),
        (120.0, 0.0, 0, "ok", "due"),  # due now
        (400.0, -300.0, 0, "ok", "due"),  # exactly 3 periods late
        (400.1, -300.1, 0, "ok", "overdue"),  # just beyond
        (30.0, 90.0, 1, "failed", "due"),  # retry scheduled: not green
        (30.0, 90.0, 0, "failed", "due"),
        (30.0, 90.0, 3, "failed", "overdue"),  # failing
        (None, -1.0, 0, None, "due"),  # never refreshed
        (0.0, 0.0, 0, "ok", "due"),  # a zero period counts as 1 s
        (5.0, None, 0, "ok", "none"),  # no schedule
    ],
)
def test_freshness_rule(
    age: float | None, due_in: float | None, fails: int, outcome: str | None, level: str
) -> None:
    row = {"age_s": age, "due_in_s": due_in, "fails_in_a_row": fails, "last_outcome": outcome}
    assert freshness(row).level == level
    assert freshness(None).level == "none"


def test_fixed_rounds_like_javascript() -> None:
    assert [fixed(x, d) for x, d in [(0.5, 0), (2.5, 0), (-2.5, 0), (1.005, 2), (-0.0, 1), (0.125, 2)]] == [
        "1",
        "3",
        "-3",
        "1.00",  # 1.005 is 1.00499999... in binary
        "0.0",
        "0.13",
    ]


# --- the script, run in node ------------------------------------------------------------------

_RUN_RENDER = """
const S = globalThis.yfproxyStatus, input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const f = S.format;
process.stdout.write(JSON.stringify({
  docs: input.docs.map(S.render),
  formats: input.numbers.map(
    x => [f.fixed(x, 0), f.fixed(x, 1), f.fixed(x, 2), f.num(x), f.count(x), f.dur(x), f.percent(x)]
  ),
}));
"""

_RUN_LOOP = """
const S = globalThis.yfproxyStatus, input = JSON.parse(require("fs").readFileSync(0, "utf8"));
let pending = null, lastDelay = null, answer = {ok: true, status: 200, json: async () => input.second};
globalThis.setTimeout = (fn, ms) => { pending = fn; lastDelay = ms; return 1; };
globalThis.clearTimeout = () => { pending = null; };
const calls = [], listeners = {};
globalThis.fetch = async (url, options) => { calls.push([url, options]); return answer; };
const el = () => ({innerHTML: "", textContent: "", className: ""});
const els = {live: el(), updated: el(), version: el(), "status-data": {textContent: input.embedded}};
const doc = {
  hidden: false, getElementById: (id) => els[id], addEventListener: (t, fn) => { listeners[t] = fn; }
};
async function runTimer() {
  const fn = pending; pending = null; fn();
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}
(async () => {
  const out = {};
  S.start(doc);
  out.initial = els.live.innerHTML; out.firstDelay = lastDelay; out.readyNote = els.updated.textContent;
  await runTimer();
  out.afterFetch = els.live.innerHTML; out.calls = calls.slice(); out.version = els.version.textContent;
  out.note = els.updated.textContent; out.nextDelay = lastDelay;
  answer = {ok: false, status: 503, json: async () => ({})};
  await runTimer();
  out.afterError = els.live.innerHTML; out.errorNote = els.updated.textContent;
  out.errorClass = els.updated.className; out.backoff = lastDelay;
  doc.hidden = true;
  await runTimer();
  out.hiddenFetches = calls.length - 2; out.hiddenPending = pending !== null;
  doc.hidden = false; listeners.visibilitychange();
  out.resumeDelay = lastDelay;
  process.stdout.write(JSON.stringify(out));
})();
"""


def _node(tmp_path: Path, harness: str, payload: dict[str, Any]) -> Any:
    script = tmp_path / "harness.js"
    script.write_text(_SCRIPT + harness)
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@needs_node
async def test_script_renders_the_same_markup_as_the_server(tmp_path: Path, real_doc: dict[str, Any]) -> None:
    docs = [real_doc, synthetic_doc(), odd_doc(), {}, synthetic_doc() | {"timeouts": {"level": 0}}]
    numbers = [0, -0.0, 0.5, 1.5, 2.5, -2.5, 0.125, 1.005, 9.995, 10, 59.5, 89.4, 89.6, 99.95, 999.95, 1000]
    numbers += [5399.0, 5400.0, 172799.0, 172800.0, 123456.5, -3.5, 0.8731, 1e7, 2999.5, 850.25]
    out = _node(
        tmp_path, _RUN_RENDER, {"docs": [json.loads(embed_json(d)) for d in docs], "numbers": numbers}
    )
    for doc, markup in zip(docs, out["docs"], strict=True):
        assert markup == render_live(doc)
    from proxy.status_page import count, dur, num, percent

    expected = [
        [fixed(x, 0), fixed(x, 1), fixed(x, 2), num(x), count(x), dur(x), percent(x)] for x in numbers
    ]
    assert out["formats"] == expected


@needs_node
def test_script_polls_status_and_keeps_the_last_state_on_failure(tmp_path: Path) -> None:
    first = synthetic_doc()
    second = copy.deepcopy(first)
    second["version"] = "0.2.0"
    second["refresher"]["series"].append(_row("NEW|1m|0", 1.0, 60.0))
    out = _node(
        tmp_path, _RUN_LOOP, {"embedded": embed_json(first), "second": json.loads(embed_json(second))}
    )
    assert out["initial"] == render_live(first)  # first paint from the embedded document
    assert out["firstDelay"] == 5000 and "every 5 s" in out["readyNote"]
    assert out["calls"] == [
        [
            "/status",
            {"headers": {"Accept": "application/json"}, "cache": "no-store", "credentials": "same-origin"},
        ]
    ]
    assert out["afterFetch"] == render_live(second) and 'data-series="NEW|1m|0"' in out["afterFetch"]
    assert out["version"] == "0.2.0" and out["note"].startswith("live, updated") and out["nextDelay"] == 5000
    assert out["afterError"] == render_live(second)  # the last good state stays on screen
    assert out["errorClass"] == "bad" and "HTTP 503" in out["errorNote"] and out["backoff"] == 10000
    assert out["hiddenFetches"] == 0 and not out["hiddenPending"]  # a background tab does not poll
    assert out["resumeDelay"] == 0  # and catches up as soon as it is shown


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (optional; the node tests cover the script)"
)
async def test_headless_chromium_shows_rows_and_refreshes() -> None:
    first = synthetic_doc()
    second = copy.deepcopy(first)
    second["refresher"]["series"].append(_row("NEW|1m|0", 1.0, 60.0))

    async def status(request: web.Request) -> web.Response:
        if wants_html(request.headers.get("Accept")):
            return web.Response(body=render_status_html(first), content_type="text/html", charset="utf-8")
        return web.json_response(second)

    app = web.Application()
    app.router.add_get("/status", status)
    async with TestServer(app, host="127.0.0.1") as server:
        proc = await asyncio.create_subprocess_exec(
            str(CHROMIUM), "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=8000",
            "--dump-dom", str(server.make_url("/status")),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        dom, _ = await asyncio.wait_for(proc.communicate(), 90)
    text = dom.decode()
    assert 'data-series="ES=F|1m|0"' in text and 'class="f-overdue" data-series="NQ=F|1m|0"' in text
    assert 'data-series="NEW|1m|0"' in text  # re-rendered from a fetched /status
    assert "<img" not in text and text.count("<script") == 2  # hostile names stayed text


# --- content negotiation -----------------------------------------------------------------------

CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (CHROME, True),
        (FIREFOX, True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8", True),  # older Firefox
        ("*/*", False),  # curl, and fetch() without headers
        (None, False),
        ("", False),
        ("application/json", False),
        ("application/json, text/plain, */*", False),  # axios
        ("text/html", True),
        ("TEXT/HTML", True),
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.5, text/html", True),
        ("text/html, application/json", False),  # a tie keeps the machine answer
        ("application/json, text/html;q=0.9", False),
        ("text/*", True),
        ("text/*, application/json;q=0.9", True),
        ("application/*;q=0.2, text/html;q=0.3", True),
        ("*/*;q=0.8, text/html;q=0.7", False),  # the most specific range gives text/html its q
        ("text/html;q=0", False),
        ("text/html;q=0, */*", False),
        ("text/html;level=1;q=0.8, application/json;q=0.7", True),
        ("text/html;q=0.8;ext=1, application/json;q=0.7", True),
        ("text/html;q=abc", False),  # a malformed range says nothing
        ("text/html;q=nan", False),
        ("text/html;q=2, application/json", False),  # q is at most 1: a tie
        ("text/plain, text/html;q=0.1, */*;q=0.01", True),
        ("garbage, ;q=1", False),
    ],
)
def test_wants_html(accept: str | None, html: bool) -> None:
    assert wants_html(accept) is html


# --- the terminal table -----------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[")


def test_table_without_a_terminal_is_plain_text_with_the_figures(real_doc: dict[str, Any]) -> None:
    out = render_status_table(synthetic_doc(), source="http://127.0.0.1:8080", color=False, width=200)
    assert not ANSI.search(out) and "\x1b" not in out and "\x07" not in out
    for figure in (
        "yfproxy 0.1.0 at http://127.0.0.1:8080",
        "BAD",
        "open",
        "0.35 req/s",
        "level 2",
        "degraded",
    ):
        assert figure in out, figure
    for figure in ("87.3%", "redis memory 12.34M", "max lag 8.0m", "quarantined 1"):
        assert figure in out, figure
    assert "Series: 13 shown, 2 overdue, 5 due, 2 below min quality" in out
    lines = out.splitlines()
    for tag, level in EXPECTED_CLASS.items():
        shown = tag.replace("\x1b", "\\x1b").replace("\x07", "\\x07")
        line = next(line for line in lines if shown in line)
        words = {
            "fresh": ("fresh",),
            "due": ("due", "retrying", "never refreshed"),
            "overdue": ("overdue", "failing"),
            "none": ("not tracked",),
        }[level]
        assert any(word in line for word in words), (tag, line)
    assert "0.31 <min" in out and "failing 60s/5.0m" in out and "overdue 10.0m/2.0m" in out
    real = render_status_table(real_doc, color=False, width=200)
    assert all(row["series"] in real for row in real_doc["refresher"]["series"])
    assert "closed" in real and "1000 req/s" in real and not ANSI.search(real)


def test_table_follows_stdout_and_colours_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a pipe, as far as rich can tell
    assert not ANSI.search(render_status_table(synthetic_doc()))
    coloured = render_status_table(synthetic_doc(), color=True, width=160)
    assert ANSI.search(coloured)
    assert "\x1b[2J" not in coloured and "\\x1b[2J" in coloured  # a client's ESC is shown, not obeyed
    assert "no series tracked or scored yet" in render_status_table({}, color=False)
