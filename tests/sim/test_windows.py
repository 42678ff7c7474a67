"""Windows: which sessions and bars a range or period1/period2 selects, on real calendars
(weekends, holidays, early closes, the futures' daily halt)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp.test_utils import TestClient

from loadtests.yahoo_sim import SimConfig, create_app
from tests.sim.conftest import ClientFactory, get_result, ny, ny_time

# Saturday after Thanksgiving 2026 (Thursday 26th closed, Friday 27th closes at 13:00 ET).
THANKSGIVING_SATURDAY = ny(2026, 11, 28, 12, 0)


def _dates(result: dict[str, Any]) -> list[dt.date]:
    return [ny_time(t).date() for t in result["timestamp"]]


async def test_range_5d_on_a_sunday_is_monday_to_friday_before(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "IBM", interval="1d", range="5d")
    assert _dates(result) == [dt.date(2026, 9, d) for d in (21, 22, 23, 24, 25)]
    assert all(ny_time(t).time() == dt.time(9, 30) for t in result["timestamp"])
    assert result["meta"]["range"] == "5d"


async def test_range_2d_is_thursday_and_friday(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "IBM", interval="1d", range="2d")
    assert _dates(result) == [dt.date(2026, 9, 24), dt.date(2026, 9, 25)]


async def test_range_1y_starts_after_the_same_date_a_year_before(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "GOOGL", interval="1d", range="1y")
    dates = _dates(result)
    assert dates[0] == dt.date(2025, 9, 26) and dates[-1] == dt.date(2026, 9, 25)
    assert len(dates) == 251


async def test_ytd_and_max(sim: TestClient[Any, Any]) -> None:
    ytd = await get_result(sim, "MSFT", interval="1d", range="ytd")
    assert _dates(ytd)[0] == dt.date(2026, 1, 2)
    full = await get_result(sim, "IBM", interval="1d", range="max")
    assert full["timestamp"][0] == full["meta"]["firstTradeDate"] == ny(1962, 1, 2, 9, 30)
    assert len(full["timestamp"]) > 16000


async def test_period_bounds_are_start_inclusive_end_exclusive(sim: TestClient[Any, Any]) -> None:
    tue, thu = ny(2026, 9, 22, 9, 30), ny(2026, 9, 24, 9, 30)
    result = await get_result(sim, "IBM", interval="1d", period1=tue, period2=thu)
    assert result["timestamp"] == [tue, ny(2026, 9, 23, 9, 30)]
    assert result["meta"]["range"] == ""
    hourly = await get_result(
        sim, "IBM", interval="1h", period1=ny(2026, 9, 22, 10, 30), period2=ny(2026, 9, 22, 12, 30)
    )
    assert hourly["timestamp"] == [ny(2026, 9, 22, 10, 30), ny(2026, 9, 22, 11, 30)]


async def test_empty_window_has_no_timestamp_key(sim: TestClient[Any, Any]) -> None:
    saturday = await get_result(sim, "IBM", interval="1d", period1=ny(2026, 9, 26), period2=ny(2026, 9, 27))
    assert "timestamp" not in saturday
    assert saturday["indicators"] == {"quote": [{}], "adjclose": [{}]}


async def test_hourly_grid_and_closing_print(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "MSFT", interval="60m", range="1d")
    times = [ny_time(t).time() for t in result["timestamp"]]
    assert times == [dt.time(h, 30) for h in range(9, 16)] + [dt.time(16, 0)]
    assert result["meta"]["dataGranularity"] == "1h"
    quote = result["indicators"]["quote"][0]
    last = {k: quote[k][-1] for k in quote}
    assert last["volume"] == 0 and last["open"] == last["high"] == last["low"] == last["close"]
    daily = await get_result(sim, "MSFT", interval="1d", range="1d")
    assert last["close"] == daily["indicators"]["quote"][0]["close"][0]


async def test_prepost_hours_and_periods(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "IBM", interval="1h", range="1d", includePrePost="TRUE")
    quote = result["indicators"]["quote"][0]
    by_time = {ny_time(t).time(): quote["volume"][i] for i, t in enumerate(result["timestamp"])}
    assert min(by_time) == dt.time(4, 0)
    assert all(v == 0 for t, v in by_time.items() if t < dt.time(9, 30) or t >= dt.time(16, 0))
    assert all(v > 0 for t, v in by_time.items() if dt.time(9, 30) <= t < dt.time(16, 0))
    assert list(result["meta"]["tradingPeriods"]) == ["pre", "post", "regular"]
    regular_only = await get_result(sim, "IBM", interval="1h", range="1d", includePrePost="false")
    assert isinstance(regular_only["meta"]["tradingPeriods"], list)


async def test_futures_halt_has_no_minute_bars(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "ES=F", interval="1m", range="5d")
    times = [ny_time(t) for t in result["timestamp"]]
    assert not any(t.hour == 17 for t in times)
    assert times[0] == dt.datetime(2026, 9, 20, 18, 0, tzinfo=times[0].tzinfo)  # Sunday evening open
    assert times[-1].time() == dt.time(16, 59)
    assert len(times) == 5 * 23 * 60
    assert not any(t.weekday() == 5 or (t.weekday() == 6 and t.hour < 18) for t in times)


async def test_futures_daily_bars_at_midnight_and_calendar_day_periods(sim: TestClient[Any, Any]) -> None:
    daily = await get_result(sim, "CL=F", interval="1d", range="5d")
    assert all(ny_time(t).time() == dt.time(0, 0) for t in daily["timestamp"])
    assert _dates(daily)[-1] == dt.date(2026, 9, 25)
    zn = await get_result(sim, "ZN=F", interval="1d", range="1d")
    assert zn["meta"]["exchangeTimezoneName"] == "America/Chicago"
    assert dt.datetime.fromtimestamp(zn["timestamp"][0], dt.UTC).hour == 5  # 00:00 CDT
    hourly = await get_result(sim, "ES=F", interval="1h", range="2d")
    periods = [p[0] for p in hourly["meta"]["tradingPeriods"]]
    starts = [ny_time(p["start"]) for p in periods]
    assert len({s.date() for s in starts}) == len(periods)  # one period per calendar day
    assert all(p["end"] - p["start"] <= 86340 for p in periods)


async def test_no_bars_on_thanksgiving_and_early_close(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_app(SimConfig(now=THANKSGIVING_SATURDAY)))
    daily = await get_result(client, "IBM", interval="1d", range="1mo")
    dates = _dates(daily)
    assert dt.date(2026, 11, 26) not in dates and dt.date(2026, 11, 25) in dates
    assert dates[-1] == dt.date(2026, 11, 27)
    assert not any(d.weekday() >= 5 for d in dates)
    minutes = await get_result(client, "IBM", interval="1m", range="3d")
    days = sorted(set(_dates(minutes)))
    assert days == [dt.date(2026, 11, 24), dt.date(2026, 11, 25), dt.date(2026, 11, 27)]
    friday = [ny_time(t) for t in minutes["timestamp"] if ny_time(t).date() == dt.date(2026, 11, 27)]
    assert friday[-2].time() == dt.time(12, 59) and friday[-1].time() == dt.time(13, 0)  # early close
    periods = minutes["meta"]["tradingPeriods"]
    assert ny_time(periods[-1][0]["end"]).time() == dt.time(13, 0)


async def test_tokyo_and_london_sessions(sim: TestClient[Any, Any]) -> None:
    tokyo = await get_result(sim, "7974.t", interval="1d", range="5d")
    assert tokyo["meta"]["symbol"] == "7974.T"
    assert all(dt.datetime.fromtimestamp(t, dt.UTC).time() == dt.time(0, 0) for t in tokyo["timestamp"])
    lunch = await get_result(sim, "7974.T", interval="5m", range="1d")
    jst = [dt.datetime.fromtimestamp(t, dt.UTC) + dt.timedelta(hours=9) for t in lunch["timestamp"]]
    assert not any(dt.time(11, 30) <= t.time() < dt.time(12, 30) for t in jst)
    london = await get_result(sim, "BATS.L", interval="1d", range="5d")
    assert all(dt.datetime.fromtimestamp(t, dt.UTC).time() == dt.time(7, 0) for t in london["timestamp"])


async def test_fx_trades_around_the_clock_on_weekdays(sim: TestClient[Any, Any]) -> None:
    result = await get_result(sim, "EURUSD=X", interval="1h", range="5d")
    times = [ny_time(t) for t in result["timestamp"]]
    assert len(times) == 5 * 24
    assert times[0].weekday() == 6 and times[0].hour == 17 and times[-1].hour == 16
    assert result["meta"]["instrumentType"] == "CURRENCY"


async def test_aggregated_intervals(sim: TestClient[Any, Any]) -> None:
    weekly = await get_result(sim, "IBM", interval="1wk", range="3mo")
    assert all(
        ny_time(t).weekday() == 0 or ny_time(t).date() == dt.date(2026, 9, 8) for t in weekly["timestamp"]
    )
    daily = await get_result(sim, "IBM", interval="1d", range="3mo")
    days = dict(zip(daily["timestamp"], range(len(daily["timestamp"])), strict=True))
    last_week = weekly["timestamp"][-1]
    i = days[last_week]
    dq, wq = daily["indicators"]["quote"][0], weekly["indicators"]["quote"][0]
    assert wq["open"][-1] == dq["open"][i] and wq["close"][-1] == dq["close"][-1]
    assert wq["high"][-1] == max(dq["high"][i:]) and wq["low"][-1] == min(dq["low"][i:])
    assert wq["volume"][-1] == sum(dq["volume"][i:])
    monthly = await get_result(sim, "IBM", interval="1mo", range="1y")
    assert all(ny_time(t).day <= 4 for t in monthly["timestamp"])
    quarterly = await get_result(sim, "IBM", interval="3mo", range="2y")
    assert all(ny_time(t).month in (1, 4, 7, 10) for t in quarterly["timestamp"])
    five = await get_result(sim, "IBM", interval="5d", range="1mo")
    assert len(five["timestamp"]) in (5, 6)


async def test_defaults_and_dated_contracts(sim: TestClient[Any, Any]) -> None:
    default = await get_result(sim, "es=f")
    assert default["meta"]["dataGranularity"] == "1d" and default["meta"]["range"] == "1d"
    assert default["meta"]["symbol"] == "ES=F" and len(default["timestamp"]) == 1
    contract = await get_result(sim, "ESZ26.CME", interval="1d", range="5d")
    assert contract["meta"]["instrumentType"] == "FUTURE" and contract["meta"]["exchangeName"] == "CME"
    crude = await get_result(sim, "clf27.nym", interval="1h", range="1d")
    assert crude["meta"]["symbol"] == "CLF27.NYM"


async def test_in_progress_bar_is_included(aiohttp_client: ClientFactory) -> None:
    now = ny(2026, 9, 23, 11, 17, 30)
    client = await aiohttp_client(create_app(SimConfig(now=now)))
    result = await get_result(client, "IBM", interval="1h", range="1d")
    assert result["timestamp"][-1] == ny(2026, 9, 23, 10, 30)
    assert result["meta"]["regularMarketTime"] == now
    daily = await get_result(client, "IBM", interval="1d", range="1d")
    assert daily["timestamp"] == [ny(2026, 9, 23, 9, 30)]
