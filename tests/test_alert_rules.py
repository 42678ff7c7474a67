"""The monitoring files in docs/monitoring/ stay true to /metrics: the Prometheus rules are
complete alerting rules, and every metric that a rule or a Grafana panel asks for is one
that /metrics really exposes (with the suffixes its type adds)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.app import create_app
from proxy.keys import REFRESHER
from tests.test_http import CountingTransport, make_config

ClientFactory = Callable[..., Awaitable[TestClient]]

MONITORING = Path(__file__).resolve().parent.parent / "docs" / "monitoring"
RULES = MONITORING / "prometheus-rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

# The series names a metric family of each type puts in the exposition.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Our metric names in a PromQL expression: label values (strings) removed first."""
    return {name for name in _IDENTIFIER.findall(_STRING.sub('""', expr)) if name.startswith("yfproxy_")}


def load_rules() -> dict[str, Any]:
    try:
        import yaml
    except ModuleNotFoundError:  # pragma: no cover - the test extra must carry it
        pytest.fail("PyYAML is needed to read the alert rules: add pyyaml==6.0.3 to the test extra")
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in load_rules()["groups"]:
        yield from group["rules"]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"variable {variable['name']!r}", query["query"] if isinstance(query, dict) else query


@pytest.fixture
async def exposed(aiohttp_client: ClientFactory, redis_url: str, redis_client: aioredis.Redis) -> set[str]:
    """Every series name /metrics can carry, scraped from a running app after one refresher
    cycle (the lag gauges exist from the first cycle on)."""
    client = await aiohttp_client(create_app(make_config(redis_url), transport=CountingTransport()))
    assert client.app is not None
    await client.app[REFRESHER].cycle()
    text = await (await client.get("/metrics")).text()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_rules_file_is_yaml_with_complete_alerting_rules() -> None:
    rules = list(alert_rules())
    assert len(rules) >= 6
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["expr"].strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        for annotation in ("summary", "description", "runbook"):
            assert rule["annotations"][annotation].strip(), (rule["alert"], annotation)


def test_the_rules_cover_the_operational_alerts() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    wanted = {
        "YfproxyBreakerOpen": "yfproxy_breaker_state",
        "YfproxyUpstream429RatioHigh": "yfproxy_upstream_requests_total",
        "YfproxyFreshHitRatioLow": "yfproxy_chart_requests_total",
        "YfproxySeriesOverdue": "yfproxy_refresher_lag_periods",
        "YfproxySeriesQualityLow": "yfproxy_series_quality_score",
        "YfproxyChartLatencyP99High": "yfproxy_chart_request_duration_seconds_bucket",
    }
    for alert, metric in wanted.items():
        assert metric in metric_names(exprs[alert]), alert


async def test_every_metric_a_rule_asks_for_is_exposed(exposed: set[str]) -> None:
    for rule in alert_rules():
        used = metric_names(rule["expr"])
        assert used, f"{rule['alert']} names none of our metrics"
        assert used <= exposed, f"{rule['alert']} asks for {sorted(used - exposed)}, not in /metrics"


async def test_every_metric_a_dashboard_panel_asks_for_is_exposed(exposed: set[str]) -> None:
    seen = 0
    for where, expr in dashboard_exprs():
        used = metric_names(expr)
        assert used, f"{where} names none of our metrics: {expr}"
        assert used <= exposed, f"{where} asks for {sorted(used - exposed)}, not in /metrics"
        seen += 1
    assert seen >= 15


def test_the_dashboard_is_a_grafana_model_with_a_datasource_variable_and_no_links() -> None:
    text = DASHBOARD.read_text(encoding="utf-8")
    dashboard = json.loads(text)
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    assert dashboard["links"] == []
    assert "http://" not in text and "https://" not in text


def test_metric_names_ignores_label_values_and_functions() -> None:
    expr = 'sum(rate(yfproxy_a_total{cache="yfproxy_not_a_metric"}[5m])) / on (instance) yfproxy_b'
    assert metric_names(expr) == {"yfproxy_a_total", "yfproxy_b"}
