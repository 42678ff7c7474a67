"""Window cutting the way Yahoo cuts: ranges in sessions and calendar units, periods,
trading dates of overnight sessions, and the coverage each answer needs."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from proxy.intervals import DAY
from proxy.query import parse_chart_query
from proxy.render import render_chart
from proxy.series import VOLUME_NULL, Bars, Series, SeriesKey, TradingDays
from proxy.window import SeriesIndex, approx_required_start, resolve
from tests.recordings import recording
from tests.test_render_recordings import stored_series

YEAR = recording("IBM_1fe458b33e")  # 251 daily bars up to Friday 2026-09-25
NOW = YEAR.recorded_at


def _q(**params: str):
    return parse_chart_query("IBM", {"interval": "1d", **params}, now=NOW)


@pytest.fixture(scope="module")
def index() -> SeriesIndex:
    return SeriesIndex(stored_series(YEAR))


def test_ytd_starts_at_the_first_session_of_the_year(index: SeriesIndex) -> None:
    view = resolve(index, _q(range="ytd"), NOW)
    first = index.series.bars.ts[view.i0]
    assert first >= 1767225600  # 2026-01-01
    assert index.series.bars.ts[view.i0 - 1] < 1767225600


def test_weeks_and_months_count_back_from_the_latest_session(index: SeriesIndex) -> None:
    one_week = resolve(index, _q(range="1wk"), NOW)
    assert one_week.i1 - one_week.i0 == 5
    one_month = resolve(index, _q(range="1mo"), NOW)
    assert 19 <= one_month.i1 - one_month.i0 <= 23


def test_max_is_everything_stored(index: SeriesIndex) -> None:
    view = resolve(index, _q(range="max"), NOW)
    assert (view.i0, view.i1) == (0, len(index.series.bars))


def test_more_sessions_than_stored_need_older_coverage(index: SeriesIndex) -> None:
    view = resolve(index, _q(range="300d"), NOW)
    assert view.i0 == 0
    assert view.required_start < index.series.coverage_start


def test_period_window_is_half_open(index: SeriesIndex) -> None:
    ts = index.series.bars.ts
    view = resolve(index, _q(period1=str(ts[10]), period2=str(ts[20])), NOW)
    assert (view.i0, view.i1) == (10, 20)
    assert view.prev_close == round(float(index.series.bars.close[9]), 2)


def test_an_empty_series_resolves_to_an_empty_cut() -> None:
    key = SeriesKey("X", "1d", False)
    series = Series(key, Bars.empty(True), {"exchangeTimezoneName": "Not/AZone"}, TradingDays.empty())
    index = SeriesIndex(series)
    view = resolve(index, parse_chart_query("X", {"range": "5d"}, now=NOW), NOW)
    assert view.empty and math.isnan(view.prev_close)
    body = orjson.loads(render_chart(series, view, parse_chart_query("X", {}, now=NOW)))
    assert body["chart"]["result"][0]["indicators"] == {"quote": [{}], "adjclose": [{}]}


def test_overnight_sessions_roll_at_the_evening_open() -> None:
    """A CME bar at 18:00 ET Sunday belongs to Monday's trading date."""
    sunday_18_et = 1790460000  # 2026-09-27 18:00 EDT
    ts = np.array([sunday_18_et - 3600, sunday_18_et, sunday_18_et + 6 * 3600], dtype=np.int64)
    f = np.ones(3)
    meta = {
        "exchangeTimezoneName": "America/New_York",
        "currentTradingPeriod": {"regular": {"start": sunday_18_et, "end": sunday_18_et + 23 * 3600,
                                             "gmtoffset": -14400}},
    }  # fmt: skip
    series = Series(SeriesKey("ES=F", "1h", False), Bars(ts, f, f, f, f, np.ones(3, dtype=np.int64)),
                    meta, TradingDays.empty())  # fmt: skip
    index = SeriesIndex(series)
    assert index.session_roll_s == 6 * 3600
    assert index.session[0] + 1 == index.session[1] == index.session[2]


def test_required_start_before_any_series_exists() -> None:
    assert approx_required_start(_q(range="5d"), NOW) < NOW - 5 * DAY
    assert approx_required_start(_q(period1="1000", period2="2000"), NOW) == 1000
    minute = parse_chart_query("IBM", {"interval": "1m", "range": "5d"}, now=NOW)
    assert approx_required_start(minute, NOW) >= NOW - 30 * DAY


def test_events_are_filtered_to_the_window_and_kinds() -> None:
    series = stored_series(YEAR)
    index = SeriesIndex(series)
    q = _q(range="1y", events="div")
    body = orjson.loads(render_chart(series, resolve(index, q, NOW), q))
    assert len(body["chart"]["result"][0]["events"]["dividends"]) == 4
    none = _q(range="1y")
    assert (
        "events"
        not in orjson.loads(render_chart(series, resolve(index, none, NOW), none))["chart"]["result"][0]
    )
    short = _q(range="5d", events="div")
    assert (
        "events"
        not in orjson.loads(render_chart(series, resolve(index, short, NOW), short))["chart"]["result"][0]
    )


def test_null_volumes_render_as_null() -> None:
    rec = recording("MSFT_89b82124b6")
    series = stored_series(rec)
    series.bars.volume[0] = VOLUME_NULL
    q = parse_chart_query("MSFT", rec.params, now=rec.recorded_at)
    body = orjson.loads(render_chart(series, resolve(SeriesIndex(series), q, rec.recorded_at), q))
    assert body["chart"]["result"][0]["indicators"]["quote"][0]["volume"][0] is None


def test_intraday_prev_close_is_the_last_regular_print() -> None:
    rec = recording("MSFT_c62778557c")
    series = stored_series(rec)
    index = SeriesIndex(series)
    ts = series.bars.ts
    day2 = int(np.flatnonzero(index.session == index.session[-1])[0])  # first bar of the last day
    q = parse_chart_query("MSFT", {"interval": "1h", "period1": str(ts[day2]), "period2": str(ts[-1] + 1)},
                          now=rec.recorded_at)  # fmt: skip
    view = resolve(index, q, rec.recorded_at)
    assert view.prev_close == round(float(series.bars.close[day2 - 1]), 2)
