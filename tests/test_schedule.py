"""The refresher's schedule: periods per tier and interval, the market calendar's say on
when a refresh is due, and the windows a refresh or a backfill asks Yahoo for. Real
calendars (pandas-market-calendars through validators.calendars), no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from proxy import schedule
from proxy.config import BackgroundConfig
from proxy.intervals import DAY
from proxy.schedule import (
    DEFAULT_FLOORS,
    ScheduleSettings,
    backfill_windows,
    market_open,
    next_due,
    refresh_period,
    tail_window,
)
from validators.calendars import calendar_for

NY = ZoneInfo("America/New_York")
SETTINGS = ScheduleSettings()  # 120 / 300 / 900 s, grace 120 s, open delay 5 s
GRACE = SETTINGS.close_grace_s
OPEN_DELAY = SETTINGS.open_delay_s
MARGIN = 600  # proxy.fetcher keeps this far inside Yahoo's lookback
ES = calendar_for("ES=F", {"instrumentType": "FUTURE"})
NOW = int(dt.datetime(2026, 11, 23, 12, tzinfo=NY).timestamp())  # a Monday, noon in New York


def ny(*parts: int) -> int:
    return int(dt.datetime(*parts, tzinfo=NY).timestamp())  # type: ignore[misc]


def due(
    now: int,
    interval: str = "1m",
    *,
    tier: str = "active",
    calendar: str | None = "XNYS",
    last_bar: int | None = None,
    coverage_end: int | None = None,
    prepost: bool = False,
) -> float:
    if last_bar is None and coverage_end is None:
        coverage_end = now - 30  # a refresh just happened
    return next_due(
        now, tier=tier, interval=interval, calendar=calendar, last_bar=last_bar,
        settings=SETTINGS, prepost=prepost, coverage_end=coverage_end,
    )  # fmt: skip


# -- periods ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "interval", "want"),
    [
        ("priority", "1m", 120),
        ("active", "1m", 300),
        ("dormant", "1m", 900),
        ("priority", "5m", 150),  # half a bar beats the 2-minute tier
        ("priority", "15m", 450),
        ("priority", "30m", 900),
        ("dormant", "30m", 900),
        ("priority", "1h", 900),  # 15 minutes, not half an hour: the live bar carries the price
        ("priority", "60m", 900),
        ("priority", "4h", 900),
        ("priority", "1d", 1800),
        ("dormant", "1wk", 3600),
        ("dormant", "3mo", 3600),
    ],
)
def test_period_is_the_tiers_but_never_below_the_intervals_floor(
    tier: str, interval: str, want: float
) -> None:
    assert refresh_period(tier, interval, SETTINGS) == want


def test_every_interval_has_a_floor_of_at_least_a_minute() -> None:
    from proxy.intervals import VALID_INTERVALS, canonical

    assert {canonical(name) for name in VALID_INTERVALS} == set(DEFAULT_FLOORS)
    assert min(DEFAULT_FLOORS.values()) >= 60


def test_unknown_tier_or_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="tier"):
        refresh_period("hot", "1m", SETTINGS)
    with pytest.raises(ValueError, match="interval"):
        refresh_period("active", "4m", SETTINGS)


def test_settings_take_the_tier_periods_from_the_background_config() -> None:
    cfg = BackgroundConfig(priority_every_s=30.0, full_every_s=600.0, dormant_every_s=1800.0)
    settings = ScheduleSettings.from_config(cfg)
    assert (settings.priority_every_s, settings.full_every_s, settings.dormant_every_s) == (30, 600, 1800)
    assert refresh_period("priority", "1m", settings) == 60  # the floor still holds
    assert refresh_period("active", "1m", settings) == 600
    faster = dataclasses.replace(settings, floors={**DEFAULT_FLOORS, "1m": 20})
    assert refresh_period("priority", "1m", faster) == 30


def test_defaults_match_the_configs_defaults() -> None:
    assert ScheduleSettings.from_config(BackgroundConfig()) == ScheduleSettings()


# -- is the market open ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "when", "prepost", "want"),
    [
        ("XNYS", ny(2026, 11, 23, 10), False, True),
        ("XNYS", ny(2026, 11, 23, 9, 29), False, False),
        ("XNYS", ny(2026, 11, 23, 16), False, False),  # the close itself is closed
        ("XNYS", ny(2026, 11, 23, 17), False, False),
        ("XNYS", ny(2026, 11, 23, 17), True, True),  # post-market
        ("XNYS", ny(2026, 11, 23, 20, 30), True, False),
        ("XNYS", ny(2026, 11, 26, 12), False, False),  # Thanksgiving
        ("XNYS", ny(2026, 11, 27, 12, 59), False, True),  # early close at 13:00
        ("XNYS", ny(2026, 11, 27, 13, 30), False, False),
        (ES, ny(2026, 11, 23, 16, 59), False, True),
        (ES, ny(2026, 11, 23, 17, 30), False, False),  # the daily halt, 17:00-18:00
        (ES, ny(2026, 11, 23, 18), False, True),
        (ES, ny(2026, 11, 21, 12), False, False),  # Saturday
        (ES, ny(2026, 11, 26, 12), False, True),  # Thanksgiving: CME trades until 13:00
        (ES, ny(2026, 11, 26, 14), False, False),
        ("24/7", ny(2026, 11, 21, 3), False, True),
    ],
)
def test_market_open_follows_the_calendar(calendar: str, when: int, prepost: bool, want: bool) -> None:
    assert market_open(calendar, when, prepost=prepost) is want


def test_market_open_is_unknown_without_a_calendar() -> None:
    assert market_open(None, NOW) is None


# -- when is a refresh due -------------------------------------------------------------


def test_open_market_is_refreshed_every_period() -> None:
    assert due(ny(2026, 11, 23, 10)) == ny(2026, 11, 23, 10) + 300
    assert due(ny(2026, 11, 23, 10), tier="priority") == ny(2026, 11, 23, 10) + 120


def test_a_refresh_never_waits_past_close_plus_grace() -> None:
    assert due(ny(2026, 11, 23, 15, 59, 30)) == ny(2026, 11, 23, 16) + GRACE
    assert due(ny(2026, 11, 23, 15, 59), tier="priority") == ny(2026, 11, 23, 16, 1)


def test_after_the_close_final_bars_are_due_at_close_plus_grace_or_now() -> None:
    before_close = ny(2026, 11, 23, 15, 59, 31)
    assert due(ny(2026, 11, 23, 16, 1), coverage_end=before_close) == ny(2026, 11, 23, 16) + GRACE
    late = ny(2026, 11, 23, 16, 30)
    assert due(late, coverage_end=before_close) == late


def test_once_final_bars_are_stored_the_next_refresh_is_at_the_next_open() -> None:
    stored_after_grace = ny(2026, 11, 23, 16, 2, 1)
    assert (
        due(ny(2026, 11, 23, 16, 30), coverage_end=stored_after_grace) == ny(2026, 11, 24, 9, 30) + OPEN_DELAY
    )


def test_a_refresh_too_soon_after_the_close_does_not_count_as_final() -> None:
    # Yahoo may still revise the last bars in the first minutes after the close.
    at = ny(2026, 11, 23, 16, 0, 30)
    assert due(at, coverage_end=at + 1) == ny(2026, 11, 23, 16) + GRACE


def test_without_coverage_only_a_bar_at_the_close_shows_final_bars() -> None:
    evening = ny(2026, 11, 23, 18)
    closing_print = ny(2026, 11, 23, 16)
    assert due(evening, last_bar=closing_print) == ny(2026, 11, 24, 9, 30) + OPEN_DELAY
    assert due(evening, last_bar=ny(2026, 11, 23, 15, 59)) == evening


def test_a_series_with_nothing_stored_is_due_now() -> None:
    sunday = ny(2026, 11, 22, 12)
    assert next_due(sunday, tier="dormant", interval="1d", calendar="XNYS", last_bar=None,
                    settings=SETTINGS) == sunday  # fmt: skip


def test_extended_hours_series_stay_open_until_the_post_market_ends() -> None:
    at = ny(2026, 11, 23, 17)
    assert due(at, prepost=True) == at + 300
    assert due(ny(2026, 11, 23, 19, 58), prepost=True) == ny(2026, 11, 23, 20) + GRACE
    assert (
        due(ny(2026, 11, 23, 20, 1), prepost=True, coverage_end=ny(2026, 11, 23, 19, 59))
        == ny(2026, 11, 23, 20) + GRACE
    )
    assert (
        due(ny(2026, 11, 23, 21), prepost=True, coverage_end=ny(2026, 11, 23, 20, 3))
        == ny(2026, 11, 24, 4) + OPEN_DELAY
    )


def test_futures_daily_halt_gets_a_final_refresh_then_waits_for_the_reopen() -> None:
    assert due(ny(2026, 11, 23, 16, 58), tier="priority", calendar=ES) == ny(2026, 11, 23, 17)
    halt = ny(2026, 11, 23, 17, 1)
    assert due(halt, calendar=ES, coverage_end=ny(2026, 11, 23, 16, 59)) == ny(2026, 11, 23, 17) + GRACE
    assert due(ny(2026, 11, 23, 17, 30), calendar=ES, coverage_end=ny(2026, 11, 23, 16, 59)) == ny(
        2026, 11, 23, 17, 30
    )
    assert (
        due(ny(2026, 11, 23, 17, 30), calendar=ES, coverage_end=ny(2026, 11, 23, 17, 2, 30))
        == ny(2026, 11, 23, 18) + OPEN_DELAY
    )


def test_futures_weekend_waits_for_sunday_evening() -> None:
    saturday = ny(2026, 11, 21, 12)
    assert (
        due(saturday, calendar=ES, coverage_end=ny(2026, 11, 20, 17, 5)) == ny(2026, 11, 22, 18) + OPEN_DELAY
    )


def test_stocks_skip_thanksgiving_and_close_early_the_day_after() -> None:
    thursday = ny(2026, 11, 26, 12)
    assert due(thursday, coverage_end=ny(2026, 11, 25, 16, 5)) == ny(2026, 11, 27, 9, 30) + OPEN_DELAY
    early_close = ny(2026, 11, 27, 13)
    assert due(ny(2026, 11, 27, 12, 59)) == early_close + GRACE
    assert due(ny(2026, 11, 27, 13, 1), coverage_end=ny(2026, 11, 27, 12, 59, 31)) == early_close + GRACE
    weekend = ny(2026, 11, 28, 10)
    assert due(weekend, coverage_end=early_close + GRACE + 1) == ny(2026, 11, 30, 9, 30) + OPEN_DELAY


def test_futures_on_thanksgiving_trade_the_morning_and_reopen_in_the_evening() -> None:
    noon = ny(2026, 11, 26, 12)
    assert due(noon, calendar=ES) == noon + 300
    afternoon = ny(2026, 11, 26, 14)
    assert (
        due(afternoon, calendar=ES, coverage_end=ny(2026, 11, 26, 13, 2, 30))
        == ny(2026, 11, 26, 18) + OPEN_DELAY
    )


def test_daily_bars_refresh_half_hourly_in_session_and_once_after_the_close() -> None:
    morning = ny(2026, 11, 23, 10)
    assert due(morning, "1d", tier="priority") == morning + 1800
    assert due(ny(2026, 11, 23, 15, 45), "1d", tier="priority") == ny(2026, 11, 23, 16) + GRACE
    evening = ny(2026, 11, 23, 16, 10)
    assert due(evening, "1d", coverage_end=ny(2026, 11, 23, 15, 30)) == evening
    assert due(evening, "1d", coverage_end=ny(2026, 11, 23, 16, 3)) == ny(2026, 11, 24, 9, 30) + OPEN_DELAY


def test_daily_bars_ignore_extended_hours() -> None:
    post_market = ny(2026, 11, 23, 17)
    want = ny(2026, 11, 24, 9, 30) + OPEN_DELAY
    assert due(post_market, "1d", prepost=True, coverage_end=ny(2026, 11, 23, 16, 3)) == want


def test_unknown_calendar_refreshes_every_period() -> None:
    sunday = ny(2026, 11, 22, 12)
    assert due(sunday, calendar=None) == sunday + 300
    assert due(sunday, "1d", tier="dormant", calendar=None) == sunday + 1800


def test_round_the_clock_markets_refresh_every_period() -> None:
    saturday = ny(2026, 11, 21, 3)
    assert due(saturday, calendar="24/7") == saturday + 300


def test_no_session_in_sight_falls_back_to_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    # A calendar whose data ends (or a closure longer than the look-around horizon).
    last_close = NOW - 3600
    one_session = (np.array([last_close - 3600], dtype=np.int64), np.array([last_close], dtype=np.int64))
    monkeypatch.setattr(schedule, "sessions", lambda *_a, **_k: one_session)
    assert due(NOW, coverage_end=last_close + 600) == NOW + 300
    assert due(NOW, coverage_end=last_close - 60) == NOW  # the final refresh is still owed


# -- the tail a refresh asks for -------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "overlap"),
    [("1m", 900), ("5m", 900), ("15m", 2700), ("1h", 3 * 3600), ("1d", 3 * DAY), ("1wk", 21 * DAY)],
)
def test_tail_starts_a_few_bars_before_the_last_stored_bar(interval: str, overlap: int) -> None:
    last_bar = NOW - 7200
    assert tail_window(NOW - 60, last_bar, interval, NOW) == (last_bar - overlap, NOW + 1)


def test_tail_without_bars_starts_before_the_coverage_end() -> None:
    assert tail_window(NOW - 3600, None, "1m", NOW) == (NOW - 3600 - 900, NOW + 1)


@pytest.mark.parametrize(("interval", "days"), [("1m", 30), ("5m", 60), ("90m", 60), ("1h", 730)])
def test_tail_never_reaches_past_yahoos_lookback(interval: str, days: int) -> None:
    long_ago = NOW - (days + 10) * DAY
    assert tail_window(long_ago, long_ago, interval, NOW) == (NOW - days * DAY + MARGIN, NOW + 1)


def test_daily_tail_has_no_lookback_limit() -> None:
    long_ago = NOW - 3000 * DAY
    assert tail_window(long_ago, long_ago, "1d", NOW) == (long_ago - 3 * DAY, NOW + 1)


def test_tail_with_a_bar_from_the_future_still_asks_for_now() -> None:
    start, end = tail_window(NOW + 3600, NOW + 3600, "1m", NOW)
    assert start <= NOW < end


# -- backfill --------------------------------------------------------------------------


def _assert_fits(
    windows: list[tuple[int, int]], *, lookback_days: int | None, per_request_days: int | None
) -> None:
    for lo, hi in windows:
        assert lo < hi <= NOW + 1
        if lookback_days is not None:
            assert lo >= NOW - lookback_days * DAY
        if per_request_days is not None:
            assert hi - lo <= per_request_days * DAY
    starts = [lo for lo, _ in windows]
    assert starts == sorted(starts, reverse=True), "newest first"


def test_1m_gaps_are_merged_and_split_into_7_day_requests() -> None:
    gaps = [
        (NOW - 12 * DAY, NOW - 10 * DAY),
        (NOW - 20 * DAY, NOW - 12 * DAY),
        (NOW - 11 * DAY, NOW - 10 * DAY),
    ]
    windows = backfill_windows(gaps, "1m", NOW)
    _assert_fits(windows, lookback_days=30, per_request_days=7)
    assert len(windows) == 2
    assert windows[0][1] == NOW - 10 * DAY and windows[-1][0] == NOW - 20 * DAY
    assert windows[0][0] == windows[1][1], "contiguous: the merged gap, nothing missing"


def test_1m_drops_what_is_older_than_30_days() -> None:
    gaps = [(NOW - 45 * DAY, NOW - 35 * DAY), (NOW - 40 * DAY, NOW - 26 * DAY)]
    windows = backfill_windows(gaps, "1m", NOW)
    _assert_fits(windows, lookback_days=30, per_request_days=7)
    assert windows == [(NOW - 30 * DAY + MARGIN, NOW - 26 * DAY)]


def test_1m_gap_just_over_7_days_is_fetched_whole() -> None:
    # fetch_chunks trims the oldest hour of a first fetch; a backfill wants all of it.
    gap = (NOW - 9 * DAY - 1800, NOW - 2 * DAY)
    windows = backfill_windows([gap], "1m", NOW)
    _assert_fits(windows, lookback_days=30, per_request_days=7)
    assert windows[0][1] == gap[1] and windows[-1][0] == gap[0]
    assert all(windows[i][0] == windows[i + 1][1] for i in range(len(windows) - 1))


def test_5m_gaps_within_60_days_are_one_request_each_newest_first() -> None:
    gaps = [
        (NOW - 90 * DAY, NOW - 50 * DAY),
        (NOW - 10 * DAY, NOW - 9 * DAY),
        (NOW - 30 * DAY, NOW - 20 * DAY),
    ]
    windows = backfill_windows(gaps, "5m", NOW)
    _assert_fits(windows, lookback_days=60, per_request_days=None)
    assert windows == [
        (NOW - 10 * DAY, NOW - 9 * DAY),
        (NOW - 30 * DAY, NOW - 20 * DAY),
        (NOW - 60 * DAY + MARGIN, NOW - 50 * DAY),
    ]


def test_1h_keeps_730_days() -> None:
    gaps = [(NOW - 800 * DAY, NOW - 700 * DAY), (NOW - 700 * DAY, NOW - 400 * DAY)]
    assert backfill_windows(gaps, "1h", NOW) == [(NOW - 730 * DAY + MARGIN, NOW - 400 * DAY)]
    assert backfill_windows([(NOW - 900 * DAY, NOW - 800 * DAY)], "60m", NOW) == []


def test_daily_gaps_reach_back_without_limit() -> None:
    gap = (NOW - 10_000 * DAY, NOW - 9_000 * DAY)
    assert backfill_windows([gap], "1d", NOW) == [gap]


def test_empty_and_future_gaps_are_dropped_or_cut_to_now() -> None:
    gaps = [(NOW - DAY, NOW - DAY), (NOW - 100, NOW - 200), (NOW + 10, NOW + 500), (NOW - 600, NOW + 3600)]
    assert backfill_windows(gaps, "5m", NOW) == [(NOW - 600, NOW + 1)]
    assert backfill_windows([], "1m", NOW) == []


@pytest.mark.parametrize(
    ("interval", "fresh", "want"),
    [("1m", 90, 67.5), ("1m", 60, 60), ("5m", 300, 150), ("1h", 1800, 900), ("1d", 3600, 1800)],
)
def test_watched_series_are_refreshed_before_they_stop_being_fresh(
    interval: str, fresh: float, want: float
) -> None:
    settings = dataclasses.replace(SETTINGS, fresh_s={interval: fresh})
    assert refresh_period("priority", interval, settings) == want
    # Only the priority tier promises freshness: nobody is looking at the others.
    assert refresh_period("active", interval, settings) == refresh_period("active", interval, SETTINGS)
