"""Prices: the same bar whatever window asks for it, Yahoo's number formats, consistent
OHLC, plausible volumes, and fast answers for big windows."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from loadtests.yahoo_sim import SimConfig, answer, create_app
from tests.sim.conftest import SUNDAY, ClientFactory, get_result, ny, ny_time

FIELDS = ("open", "high", "low", "close", "volume")


def _bars(result: dict[str, Any]) -> dict[int, tuple[Any, ...]]:
    quote = result["indicators"]["quote"][0]
    return {t: tuple(quote[f][i] for f in FIELDS) for i, t in enumerate(result["timestamp"])}


async def test_daily_bar_identical_across_windows(sim: TestClient[Any, Any]) -> None:
    year = _bars(await get_result(sim, "IBM", interval="1d", range="1y"))
    full = _bars(await get_result(sim, "IBM", interval="1d", range="max"))
    day = ny(2026, 3, 17, 9, 30)
    window = _bars(await get_result(sim, "IBM", interval="1d", period1=day, period2=day + 86400))
    assert year[day] == full[day] == window[day]
    assert all(full[t] == bars for t, bars in year.items())


async def test_minute_and_hour_bars_identical_across_windows(sim: TestClient[Any, Any]) -> None:
    week = _bars(await get_result(sim, "ES=F", interval="1m", range="5d"))
    start = ny(2026, 9, 23, 3, 0)
    slice_ = _bars(await get_result(sim, "ES=F", interval="1m", period1=start, period2=start + 7200))
    assert len(slice_) == 120 and all(week[t] == bars for t, bars in slice_.items())
    h60 = _bars(await get_result(sim, "NQ=F", interval="60m", range="5d"))
    h1 = _bars(await get_result(sim, "NQ=F", interval="1h", range="1mo"))
    assert all(h1[t] == bars for t, bars in h60.items())


def test_same_answer_from_two_processes_worth_of_state() -> None:
    """Nothing but (seed, symbol, bar start) feeds a bar: two fresh computations agree,
    and another seed gives other prices."""
    params = {"interval": "5m", "range": "2d"}
    first = answer("AAPL", params, SUNDAY, seed=7).body
    again = answer("aapl", params, SUNDAY, seed=7).body
    other = answer("AAPL", params, SUNDAY, seed=8).body
    assert first == again
    assert first["chart"]["result"][0]["timestamp"] == other["chart"]["result"][0]["timestamp"]
    assert first["chart"]["result"][0]["indicators"] != other["chart"]["result"][0]["indicators"]


@pytest.mark.parametrize(
    ("symbol", "interval", "range_"),
    [
        ("IBM", "1d", "max"),
        ("NVDA", "1h", "1mo"),
        ("TSLA", "1m", "2d"),
        ("ES=F", "5m", "1mo"),
        ("ZB=F", "1d", "5y"),
        ("6E=F", "15m", "5d"),
        ("EURUSD=X", "1h", "1mo"),
        ("^VIX", "1d", "1y"),
        ("7974.T", "1wk", "5y"),
        ("BATS.L", "1mo", "max"),
        ("SPY", "1m", "1d"),
    ],
)
async def test_ohlc_consistent_and_yahoo_number_formats(
    sim: TestClient[Any, Any], symbol: str, interval: str, range_: str
) -> None:
    result = await get_result(sim, symbol, interval=interval, range=range_, includePrePost="true")
    quote = result["indicators"]["quote"][0]
    o, h, lo, c = (np.array(quote[k]) for k in ("open", "high", "low", "close"))
    assert np.all(lo <= np.minimum(o, c)) and np.all(np.maximum(o, c) <= h) and np.all(lo > 0)
    assert all(isinstance(v, int) and v >= 0 for v in quote["volume"])
    regular = [v for v in np.r_[o, h, lo, c] if round(v, 2) != v]  # extended-hours prices are short decimals
    assert all(float(np.float32(v)) == v for v in regular)
    assert np.all(np.diff(result["timestamp"]) > 0)


def test_float32_widened_like_yahoo() -> None:
    result = answer("MSFT", {"interval": "1d", "range": "5d"}, SUNDAY, seed=7).body["chart"]["result"][0]
    closes = result["indicators"]["quote"][0]["close"]
    assert any(str(c) != str(round(c, 2)) for c in closes)  # e.g. 229.8699951171875
    assert all(float(np.float32(round(c, 2))) == c for c in closes)


async def test_futures_quieter_overnight(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "ES=F", interval="5m", range="5d")
    volumes = result["indicators"]["quote"][0]["volume"]
    cash: list[int] = []
    night: list[int] = []
    for t, v in zip(result["timestamp"], volumes, strict=True):
        local = ny_time(t)
        minutes = local.hour * 60 + local.minute
        (cash if 9 * 60 + 30 <= minutes < 16 * 60 else night).append(v)
    assert np.mean(night) * 3 < np.mean(cash)


async def test_adjclose_reflects_dividends_before_the_bar(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "IBM", interval="1d", range="2y", events="div,splits")
    close = np.array(result["indicators"]["quote"][0]["close"])
    adj = np.array(result["indicators"]["adjclose"][0]["adjclose"])
    divs = result["events"]["dividends"]
    assert len(divs) == 8
    assert np.all(adj[:10] < close[:10])
    ratio = adj / close
    assert np.all(np.diff(ratio) >= -1e-12)  # adjustment only shrinks going back in time
    no_events = await get_result(sim, "IBM", interval="1d", range="2y")
    assert "events" not in no_events
    splits = await get_result(sim, "NVDA", interval="1d", range="5y", events="split")
    (split,) = splits["events"]["splits"].values()
    assert split["splitRatio"] == "10:1" and ny_time(split["date"]).date().isoformat() == "2024-06-10"
    assert "dividends" not in splits["events"]


async def test_in_progress_bar_depends_on_now_only(aiohttp_client: ClientFactory) -> None:
    early, late = ny(2026, 9, 23, 11, 10), ny(2026, 9, 23, 11, 20)
    a = _bars(
        await get_result(
            await aiohttp_client(create_app(SimConfig(now=early))), "IBM", interval="1h", range="1d"
        )
    )
    b_client = await aiohttp_client(create_app(SimConfig(now=late)))
    b = _bars(await get_result(b_client, "IBM", interval="1h", range="1d"))
    c = _bars(await get_result(b_client, "IBM", interval="1h", range="5d"))
    bar = ny(2026, 9, 23, 10, 30)
    assert a[bar] != b[bar] and b[bar] == c[bar]
    assert a[ny(2026, 9, 23, 9, 30)] == b[ny(2026, 9, 23, 9, 30)]
    assert a[bar][4] < b[bar][4]  # volume accrues while the bar is open


async def test_big_windows_answer_fast(sim: TestClient[Any, Any]) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("ES=F", {"interval": "1m", "period1": SUNDAY - 7 * 86400, "period2": SUNDAY}),
        ("IBM", {"interval": "1d", "range": "max", "events": "div,splits"}),
        ("^GSPC", {"interval": "1d", "range": "max"}),
    ]
    for symbol, params in cases:
        url = f"/v8/finance/chart/{symbol}"
        query = {k: str(v) for k, v in params.items()}
        await (await sim.get(url, params=query)).read()  # first call may build caches
        started = time.perf_counter()
        response = await sim.get(url, params=query)
        raw = await response.read()
        elapsed = time.perf_counter() - started  # server time plus transfer, not the client's JSON parse
        assert response.status == 200 and len(json.loads(raw)["chart"]["result"][0]["timestamp"]) > 6000
        assert elapsed < 0.2, (symbol, elapsed)
