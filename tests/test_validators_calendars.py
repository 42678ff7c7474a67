"""Trading calendars: which calendar an instrument follows, its sessions (holidays, early
closes, the futures' daily halt, Tokyo's lunch), the bars Yahoo sends inside them (proven
against real recordings and the simulator), and the quiet part of the day."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from loadtests.yahoo_sim import chart
from loadtests.yahoo_sim.instruments import STATIC
from proxy.ingest import ChartPayload, parse_chart_body, parse_chart_result
from tests.recordings import Recording, all_recordings
from validators import calendars
from validators.calendars import (
    calendar_for,
    expected_bars,
    extended_hours_expected,
    futures_root,
    quiet_mask,
    sessions,
)

NY = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
TOKYO = ZoneInfo("Asia/Tokyo")


def at(zone: ZoneInfo, *parts: int) -> int:
    return int(dt.datetime(*parts, tzinfo=zone).timestamp())  # type: ignore[misc]


def local(t: int, zone: ZoneInfo = NY) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(t), zone)


def sim_payload(symbol: str, params: dict[str, str], now: int) -> ChartPayload:
    """The simulator's chart answer, rendered in process (no server needed)."""
    answer = chart.answer(symbol, params, now, 7)
    assert answer.status == 200, answer.body
    return parse_chart_body(orjson.dumps(answer.body))


# -- which calendar --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "meta", "want"),
    [
        ("ES=F", {"instrumentType": "FUTURE", "exchangeName": "CME"}, "CME_Equity"),
        ("NQ=F", {"instrumentType": "FUTURE"}, "CME_Equity"),
        ("YM=F", {"instrumentType": "FUTURE"}, "CME_Equity"),
        ("RTY=F", {"instrumentType": "FUTURE"}, "CME_Equity"),
        ("CL=F", {"instrumentType": "FUTURE"}, "CMEGlobex_Crude"),
        ("NG=F", {"instrumentType": "FUTURE"}, "CMEGlobex_NatGas"),
        ("GC=F", {"instrumentType": "FUTURE"}, "CMEGlobex_Gold"),
        ("SI=F", {"instrumentType": "FUTURE"}, "CMEGlobex_Silver"),
        ("HG=F", {"instrumentType": "FUTURE"}, "CMEGlobex_Copper"),
        ("ZN=F", {"instrumentType": "FUTURE"}, "CME_Bond"),
        ("ZB=F", {}, "CME_Bond"),
        ("ZF=F", {}, "CME_Bond"),
        ("ZT=F", {}, "CME_Bond"),
        ("6E=F", {"instrumentType": "FUTURE"}, "CMEGlobex_FX"),
        ("ESZ26.CME", {"instrumentType": "FUTURE"}, "CME_Equity"),
        ("clf27.nym", {}, "CMEGlobex_Crude"),
        ("ZZ=F", {"instrumentType": "FUTURE"}, None),  # a root we do not know
        ("FOO", {"instrumentType": "FUTURE"}, None),
        ("AAPL", {"instrumentType": "EQUITY", "exchangeName": "NMS"}, "XNYS"),
        ("IBM", {"instrumentType": "EQUITY", "exchangeName": "NYQ"}, "XNYS"),
        ("SPY", {"instrumentType": "ETF", "exchangeName": "PCX"}, "XNYS"),
        ("^GSPC", {"instrumentType": "INDEX", "exchangeName": "SNP"}, "XNYS"),
        ("7974.T", {"instrumentType": "EQUITY", "exchangeName": "JPX"}, "XTKS"),
        ("BATS.L", {"instrumentType": "EQUITY", "exchangeName": "LSE"}, "XLON"),
        ("EURUSD=X", {"instrumentType": "CURRENCY"}, "FX24"),
        ("JPY=X", {}, "FX24"),
        ("BTC-USD", {"instrumentType": "CRYPTOCURRENCY", "exchangeName": "CCC"}, "24/7"),
        ("SAP.DE", {"instrumentType": "EQUITY", "exchangeName": "GER"}, None),
        ("XYZ", {"instrumentType": "EQUITY", "exchangeName": "PNK"}, None),
        ("VFIAX", {"instrumentType": "MUTUALFUND", "exchangeName": "NAS"}, None),
    ],
)
def test_calendar_for_maps_symbol_and_meta(symbol: str, meta: dict[str, Any], want: str | None) -> None:
    assert calendar_for(symbol, meta) == want


def test_futures_root_of_continuous_and_dated_symbols() -> None:
    assert futures_root("ES=F") == "ES"
    assert futures_root(" rty=f ") == "RTY"
    assert futures_root("6EH27.CME") == "6E"
    assert futures_root("=F") is None
    assert futures_root("AAPL") is None


@pytest.mark.parametrize("symbol", sorted(s for s in STATIC if s != "^VIX"))
def test_every_simulator_instrument_maps_to_the_simulators_calendar(symbol: str) -> None:
    now = at(NY, 2026, 9, 27, 16, 15)
    payload = sim_payload(symbol, {"interval": "1d", "range": "5d"}, now)
    assert calendar_for(symbol, payload.meta) == STATIC[symbol].calendar


def test_vix_is_left_unjudged() -> None:
    # Yahoo's Cboe index quotes run past 16:00 New York; the NYSE grid would call them
    # closed-market bars, so Cboe indices get no calendar rather than a wrong one.
    assert calendar_for("^VIX", {"instrumentType": "INDEX", "exchangeName": "CXI"}) is None


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
def test_recordings_map_to_the_calendar_of_their_zone(rec: Recording) -> None:
    meta = rec.result["meta"]
    cal = calendar_for(rec.symbol, meta)
    assert cal is not None
    assert meta["exchangeTimezoneName"] in calendars.CALENDARS[cal].zones


def test_extended_hours_only_when_asked_and_offered() -> None:
    assert extended_hours_expected({"hasPrePostMarketData": True}, True)
    assert not extended_hours_expected({"hasPrePostMarketData": False}, True)
    assert not extended_hours_expected({"hasPrePostMarketData": True}, False)
    assert not extended_hours_expected({}, True)


# -- sessions ----------------------------------------------------------------------------


def test_nyse_thanksgiving_week_has_no_thursday_and_a_short_friday() -> None:
    opens, closes = sessions("XNYS", at(NY, 2026, 11, 23), at(NY, 2026, 11, 28), prepost=False)
    days = [local(o).date() for o in opens]
    assert days == [dt.date(2026, 11, d) for d in (23, 24, 25, 27)]
    assert all(local(o).time() == dt.time(9, 30) for o in opens)
    assert [local(c).time() for c in closes] == [dt.time(16)] * 3 + [dt.time(13)]


def test_nyse_extended_hours_run_from_four_to_four_hours_after_the_close() -> None:
    opens, closes = sessions("XNYS", at(NY, 2026, 11, 24), at(NY, 2026, 11, 28), prepost=True)
    assert [local(o).time() for o in opens] == [dt.time(4)] * 3
    assert [local(c).time() for c in closes] == [dt.time(20), dt.time(20), dt.time(17)]


def test_cme_equity_opens_sunday_evening_and_halts_an_hour_each_day() -> None:
    opens, closes = sessions("CME_Equity", at(NY, 2026, 11, 21), at(NY, 2026, 11, 25, 12), prepost=False)
    assert len(opens) == 3
    assert local(opens[0]) == dt.datetime(2026, 11, 22, 18, tzinfo=NY)  # Sunday
    halts = opens[1:] - closes[:-1]
    assert np.all(halts == 3600)
    assert all(local(c).time() == dt.time(17) for c in closes)


def test_cme_thanksgiving_closes_early_instead_of_not_trading() -> None:
    opens, closes = sessions("CMEGlobex_Crude", at(NY, 2026, 11, 26), at(NY, 2026, 11, 27), prepost=False)
    assert local(closes[0]) == dt.datetime(2026, 11, 26, 14, 30, tzinfo=NY)
    assert local(opens[1]) == dt.datetime(2026, 11, 26, 18, tzinfo=NY)  # then Friday's session


def test_cme_bond_has_no_session_on_christmas() -> None:
    opens, _ = sessions("CME_Bond", at(CHICAGO, 2026, 12, 21), at(CHICAGO, 2027, 1, 2), prepost=False)
    closes_on = {local(o, CHICAGO).date() + dt.timedelta(days=1) for o in opens}
    assert dt.date(2026, 12, 25) not in closes_on
    assert dt.date(2027, 1, 1) not in closes_on
    assert dt.date(2026, 12, 24) in closes_on


def test_fx_trades_from_five_pm_new_york_and_stops_on_christmas() -> None:
    opens, closes = sessions("FX24", at(NY, 2026, 12, 20), at(NY, 2026, 12, 27), prepost=False)
    assert local(opens[0]) == dt.datetime(2026, 12, 20, 17, tzinfo=NY)  # Sunday
    assert all(local(c).time() == dt.time(17) for c in closes)
    assert dt.date(2026, 12, 25) not in {local(c).date() for c in closes}


def test_crypto_trades_every_day() -> None:
    opens, _ = sessions("24/7", at(NY, 2026, 11, 21), at(NY, 2026, 11, 28), prepost=False)
    assert len(opens) == 8  # partial days at both ends included


def test_unknown_calendar_and_interval_are_refused() -> None:
    with pytest.raises(KeyError, match="unknown calendar"):
        sessions("XXXX", 0, 1, prepost=False)
    with pytest.raises(ValueError, match="unknown interval"):
        expected_bars("XNYS", "4m", 0, 1, prepost=False)
    with pytest.raises(ValueError, match="no calendar grid"):
        expected_bars("XNYS", "1wk", 0, 1, prepost=False)


# -- expected bars ---------------------------------------------------------------------


def _params(interval: str, p1: int, p2: int, prepost: bool) -> dict[str, str]:
    return {"interval": interval, "period1": str(p1), "period2": str(p2), "includePrePost": str(prepost)}


@pytest.mark.parametrize(
    ("symbol", "prepost"),
    [("ES=F", False), ("CL=F", False), ("ZN=F", False), ("GC=F", False), ("6E=F", False),
     ("AAPL", False), ("AAPL", True), ("7974.T", False), ("BATS.L", False), ("EURUSD=X", False)],
)  # fmt: skip
@pytest.mark.parametrize("interval", ["1m", "5m", "1h", "90m", "4h", "1d"])
def test_expected_bars_are_the_simulators_bars(symbol: str, prepost: bool, interval: str) -> None:
    """Thanksgiving week for 1m (7 days is Yahoo's limit), November otherwise."""
    now = at(NY, 2026, 11, 30, 12)
    p1 = at(NY, 2026, 11, 23) if interval == "1m" else at(NY, 2026, 11, 2)
    p2 = at(NY, 2026, 11, 30)
    payload = sim_payload(symbol, _params(interval, p1, p2, prepost), now)
    cal = calendar_for(symbol, payload.meta)
    assert cal is not None
    want = expected_bars(cal, interval, p1, p2, prepost=extended_hours_expected(payload.meta, prepost))
    # The window ends before the latest session, so the answer has no closing print.
    np.testing.assert_array_equal(payload.bars.ts, want)


def _stocks_hourly(rec: Recording) -> bool:
    return rec.params["interval"] == "1h" and "period1" in rec.params


@pytest.mark.parametrize("rec", [r for r in all_recordings() if _stocks_hourly(r)], ids=lambda r: r.name)
def test_hourly_grid_is_yahoos_half_past_grid(rec: Recording) -> None:
    payload = parse_chart_result(rec.result)
    p1, p2 = int(rec.params["period1"]), min(int(rec.params["period2"]), rec.recorded_at)
    want = expected_bars("XNYS", "1h", p1, p2, prepost=False)
    assert {local(t).minute for t in want} == {30}
    np.testing.assert_array_equal(payload.bars.ts[:-1], want)
    assert local(payload.bars.ts[-1]).time() == dt.time(16)  # closing print, not on the grid


@pytest.mark.parametrize(
    "rec", [r for r in all_recordings() if r.params["interval"] == "1d"], ids=lambda r: r.name
)
def test_daily_bars_are_stamped_at_the_session_open(rec: Recording) -> None:
    payload = parse_chart_result(rec.result)
    cal = calendar_for(rec.symbol, payload.meta)
    assert cal is not None
    ts = payload.bars.ts
    want = expected_bars(cal, "1d", int(ts[0]), rec.recorded_at, prepost=False)
    np.testing.assert_array_equal(ts, want)


def test_prepost_hourly_grid_matches_the_real_recording_but_for_its_missing_bar() -> None:
    rec = next(r for r in all_recordings() if r.name == "IBM_45951dc5fe")
    ts = parse_chart_result(rec.result).bars.ts
    want = expected_bars("XNYS", "1h", int(ts[0]), rec.recorded_at, prepost=True)
    # INDEX.md: the 06:00 pre-market bar of 2026-09-23 is missing, and the answer ends with
    # the last print at 19:58:47.
    assert [local(t) for t in np.setdiff1d(want, ts)] == [dt.datetime(2026, 9, 23, 6, tzinfo=NY)]
    assert [local(t).time() for t in np.setdiff1d(ts, want)] == [dt.time(19, 58, 47)]


def test_tokyo_hourly_bars_skip_lunch_and_resume_at_half_past_twelve() -> None:
    day = expected_bars("XTKS", "1h", at(TOKYO, 2026, 11, 24), at(TOKYO, 2026, 11, 25), prepost=False)
    times = [local(t, TOKYO).time() for t in day]
    assert times == [
        dt.time(h, m) for h, m in ((9, 0), (10, 0), (11, 0), (12, 30), (13, 0), (14, 0), (15, 0))
    ]


def test_futures_daily_bars_are_stamped_at_midnight_of_the_trading_date() -> None:
    ts = expected_bars("CME_Bond", "1d", at(CHICAGO, 2026, 11, 23), at(CHICAGO, 2026, 11, 28), prepost=False)
    assert [local(t, CHICAGO) for t in ts] == [
        dt.datetime(2026, 11, d, tzinfo=CHICAGO) for d in (23, 24, 25, 26, 27)
    ]


# -- quiet hours -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "zone", "clock", "quiet"),
    [
        ("CME_Equity", NY, (10, 0), False),
        ("CME_Equity", NY, (9, 29), True),
        ("CME_Equity", NY, (16, 0), True),
        ("CME_Equity", NY, (3, 0), True),
        ("CMEGlobex_Crude", NY, (14, 0), False),
        ("CMEGlobex_Crude", NY, (15, 0), True),
        ("CMEGlobex_Gold", NY, (8, 30), False),
        ("CMEGlobex_Gold", NY, (14, 0), True),
        ("CME_Bond", CHICAGO, (7, 30), False),
        ("CME_Bond", CHICAGO, (14, 30), True),
        ("CMEGlobex_FX", NY, (9, 0), False),
        ("XNYS", NY, (8, 0), True),
        ("XNYS", NY, (10, 0), False),
        ("XNYS", NY, (16, 30), True),
        ("XTKS", TOKYO, (10, 0), False),
        ("XTKS", TOKYO, (12, 0), True),  # lunch
        ("FX24", NY, (3, 0), False),
        ("24/7", NY, (3, 0), False),
    ],
)
def test_quiet_part_of_the_day(calendar: str, zone: ZoneInfo, clock: tuple[int, int], quiet: bool) -> None:
    t = at(zone, 2026, 11, 24, *clock)  # a Tuesday
    assert quiet_mask(calendar, np.array([t], dtype=np.int64)).tolist() == [quiet]


def test_quiet_mask_of_nothing_and_of_a_weekend() -> None:
    assert quiet_mask("XNYS", np.zeros(0, dtype=np.int64)).shape == (0,)
    saturday = np.array([at(NY, 2026, 11, 28, 11)], dtype=np.int64)
    assert quiet_mask("XNYS", saturday).tolist() == [True]


def test_quiet_mask_is_vectorised_over_daylight_saving_changes() -> None:
    busy_hour = [at(NY, 2026, 10, d, 10) for d in range(26, 31)] + [
        at(NY, 2026, 11, d, 10) for d in range(2, 7)
    ]
    night = [t - 9 * 3600 for t in busy_hour]
    mask = quiet_mask("CME_Equity", np.array(busy_hour + night, dtype=np.int64))
    assert mask.tolist() == [False] * 10 + [True] * 10


# -- caching ---------------------------------------------------------------------------


def test_schedules_are_built_once_per_calendar_and_decade() -> None:
    sessions("XLON", at(NY, 2026, 1, 5), at(NY, 2026, 2, 5), prepost=False)
    before = calendars._decade.cache_info()
    for month in range(2, 12):
        sessions("XLON", at(NY, 2026, month, 1), at(NY, 2026, month + 1, 1), prepost=False)
    after = calendars._decade.cache_info()
    assert after.misses == before.misses


def test_the_calendar_library_is_imported_only_when_needed() -> None:
    code = (
        "import sys, validators.calendars as c, validators.timestamps, validators.timezones;"
        "assert 'pandas_market_calendars' not in sys.modules;"
        "c.sessions('XNYS', 1790000000, 1790100000, prepost=False);"
        "assert 'pandas_market_calendars' in sys.modules"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=calendars.__file__.rsplit("/validators/", 1)[0]
    )
