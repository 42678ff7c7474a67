"""The quality gate end to end: simulator upstream, proxy process, real Redis.

Corrupted refreshes (impossible OHLC, nulls, HTML) never replace good stored bars; a
gap in upstream data is reported with its exact range; a market holiday is not a gap.
"""

from __future__ import annotations

import calendar
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from loadtests.yahoo_sim.testing import start_simulator
from tests.e2e.conftest import ProxyProcess, start_proxy

THANKSGIVING = calendar.timegm((2026, 11, 26, 0, 0, 0))
GAP_START = calendar.timegm((2026, 11, 24, 15, 0, 0))  # Tuesday 10:00-13:00 New York
GAP_END = GAP_START + 3 * 3600


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    simulator = start_simulator()
    simulator.set_now(int(time.time()) // 60 * 60)  # the proxy asks up to the real now
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(scope="module")
def proxy(sim: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    db_url = redis_url.rsplit("/", 1)[0] + "/8"
    redis.Redis.from_url(db_url).flushdb()
    started = start_proxy(
        sim.base_url,
        db_url,
        tmp_path_factory.mktemp("proxy-quality"),
        YFPROXY__CACHE__FRESH_S__1D="1",  # every request after a second refreshes the series
        YFPROXY__BACKGROUND__ENABLED="false",
    )
    try:
        yield started
    finally:
        started.stop()


def get(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.load(resp), dict(resp.headers)


def status(proxy: ProxyProcess) -> dict[str, Any]:
    return get(f"{proxy.url}/status")[0]


def wait_for(proxy: ProxyProcess, done: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        current = status(proxy)
        if done(current):
            return current
        assert time.monotonic() < deadline, f"timed out; /status refresher: {current['refresher']}"
        time.sleep(0.2)


def bars(body: dict[str, Any]) -> tuple[list[int], list[float]]:
    result = body["chart"]["result"][0]
    return result["timestamp"], result["indicators"]["quote"][0]["close"]


def quality_row(proxy: ProxyProcess, tag: str) -> dict[str, Any]:
    return next(row for row in status(proxy)["quality"]["series"] if row["series"] == tag)


def test_a_holiday_is_not_a_gap_and_corrupt_refreshes_never_replace_good_bars(
    sim: Any, proxy: ProxyProcess
) -> None:
    # Daily bars: the refresh re-fetches the last few sessions, which overlap stored bars
    # on any day of the week (an intraday tail is empty over a weekend).
    url = f"{proxy.url}/v8/finance/chart/ES=F?interval=1d&range=3mo"
    first, headers = get(url)
    assert headers["X-Data-Quality"] == "1"
    good = bars(first)
    assert any(t < THANKSGIVING for t in good[0])  # the window spans Thanksgiving
    row = quality_row(proxy, "ES=F|1d|0")
    assert row["score"] == 1.0 and row["issues"] == []  # the closed holiday is no gap
    for knobs, counter in (
        ({"malformed_ratio": 1.0, "malformed_kind": "ohlc"}, "completed"),  # bad bars: stored ones kept
        ({"malformed_ratio": 1.0, "malformed_kind": "nulls"}, "completed"),
        ({"malformed_ratio": 1.0, "malformed_kind": "html"}, "failed"),
    ):
        sim.set_faults(**knobs)
        before = status(proxy)["refresher"]
        time.sleep(2.1)  # past fresh_s (whole seconds): the next request is a stale hit
        stale, headers = get(url)
        assert headers["Cache-Status"].startswith("yfproxy; hit; fwd=stale")
        assert bars(stale) == good

        def refreshed(s: dict[str, Any], before: dict[str, Any] = before, counter: str = counter) -> bool:
            now, then = s["refresher"][counter], before[counter]
            return (sum(now.values()) if isinstance(now, dict) else now) > (
                sum(then.values()) if isinstance(then, dict) else then
            )

        wait_for(proxy, refreshed)
        after, _ = get(url)
        assert bars(after) == good, knobs
    quarantined = status(proxy)["quality"]["quarantined"]
    [entry] = [q for q in quarantined if q["series"] == "ES=F|1d|0"]
    assert entry["count"] >= 2  # one per corrupt answer, taken or not, for inspection
    assert entry["latest"]["reason"] in {"kept_stored_bars", "below_min_quality", "worse_than_stored"}
    sim.set_faults(malformed_ratio=0.0)


def test_a_gap_in_upstream_data_is_reported_with_its_exact_range(sim: Any, proxy: ProxyProcess) -> None:
    sim.set_faults(gap_start=GAP_START, gap_end=GAP_END)
    try:
        body, headers = get(f"{proxy.url}/v8/finance/chart/NQ=F?interval=1h&range=1mo")
    finally:
        sim.set_faults(gap_start=None, gap_end=None)
    stamps = bars(body)[0]
    assert not any(GAP_START <= t < GAP_END for t in stamps)
    assert float(headers["X-Data-Quality"]) < 1.0
    row = quality_row(proxy, "NQ=F|1h|0")
    gaps = [issue for issue in row["issues"] if issue["code"] == "time.gap"]
    assert [(g["start"], g["end"], g["count"]) for g in gaps] == [(GAP_START, GAP_END - 3600, 3)]
