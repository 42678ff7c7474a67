"""check_timestamps on real Yahoo recordings and on simulator futures around CME holidays:
clean data is clean and complete; each kind of damage is found and named, with the right
bars and the right gap bounds; thin minute data does not raise a warning storm."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from loadtests.yahoo_sim import chart
from proxy.ingest import ChartPayload, parse_chart_body, parse_chart_result
from proxy.series import Bars
from tests.recordings import Recording, all_recordings, recording
from validators.calendars import calendar_for, expected_bars, extended_hours_expected
from validators.report import CheckResult, QualityIssue, Severity
from validators.timestamps import GAP_BUSY_S, GAP_QUIET_S, MAX_GAP_ISSUES, check_timestamps

NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def at(zone: ZoneInfo, *parts: int) -> int:
    return int(dt.datetime(*parts, tzinfo=zone).timestamp())  # type: ignore[misc]


def ny(*parts: int) -> int:
    return at(NY, *parts)


def sim_payload(symbol: str, params: dict[str, str], now: int) -> ChartPayload:
    """The simulator's chart answer, rendered in process (no server needed)."""
    answer = chart.answer(symbol, params, now, 7)
    assert answer.status == 200, answer.body
    return parse_chart_body(orjson.dumps(answer.body))


def bars_at(ts: np.ndarray | list[int]) -> Bars:
    t = np.asarray(ts, dtype=np.int64)
    price = np.full(t.shape[0], 100.0)
    return Bars(t, price, price.copy(), price.copy(), price.copy(), np.ones(t.shape[0], dtype=np.int64))


def codes(result: CheckResult) -> list[str]:
    return [i.code for i in result.issues]


def only(result: CheckResult, code: str) -> QualityIssue:
    found = [i for i in result.issues if i.code == code]
    assert len(found) == 1, result.issues
    return found[0]


# -- real recordings -------------------------------------------------------------------


def _judge_recording(rec: Recording) -> CheckResult:
    payload = parse_chart_result(rec.result)
    ts = payload.bars.ts
    if "period1" in rec.params:
        window = (int(rec.params["period1"]), min(int(rec.params["period2"]), rec.recorded_at))
    else:
        window = (int(ts.min()), rec.recorded_at + 1)  # a range: its sessions up to the fetch
    prepost = extended_hours_expected(payload.meta, rec.params.get("includePrePost") == "True")
    return check_timestamps(
        payload.bars,
        interval=payload.meta["dataGranularity"],
        calendar=calendar_for(rec.symbol, payload.meta),
        window=window,
        prepost=prepost,
    )


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
def test_real_recordings_have_no_errors_and_are_complete(rec: Recording) -> None:
    result = _judge_recording(rec)
    assert [i for i in result.issues if i.severity is not Severity.INFO] == []
    assert result.bad.size == 0
    assert result.expected is not None and result.present is not None
    assert result.expected >= len(rec.result["timestamp"]) - 1  # at most the closing print is extra
    assert result.present / result.expected >= 0.95


def test_the_one_missing_bar_yahoo_left_out_is_sparse_not_a_gap() -> None:
    # IBM_45951dc5fe (1h with pre/post): INDEX.md says the 06:00 pre-market bar of
    # 2026-09-23 is missing. One quiet-hours bar is below the gap rule.
    result = _judge_recording(recording("IBM_45951dc5fe"))
    assert result.expected is not None and result.present == result.expected - 1
    sparse = only(result, "time.sparse")
    assert sparse.count == 1 and sparse.severity is Severity.INFO


def test_all_recordings_without_that_bar_are_exactly_complete() -> None:
    complete = [r for r in all_recordings() if r.name != "IBM_45951dc5fe"]
    assert all(_judge_recording(r).issues == () for r in complete)
    assert all(_judge_recording(r).present == _judge_recording(r).expected for r in complete)


# -- simulator futures around CME holidays ---------------------------------------------

FUTURES = ["ES=F", "CL=F", "ZN=F"]
# 1m: Thanksgiving week (Thursday closes early, Friday too); Yahoo allows 7 days of 1m.
# 1h: November. 1d: November to the new year (Christmas and 1 January closed).
WINDOWS = {
    "1m": (ny(2026, 11, 23), ny(2026, 11, 30), ny(2026, 11, 30, 12)),
    "1h": (ny(2026, 11, 2), ny(2026, 11, 30), ny(2026, 11, 30, 12)),
    "1d": (ny(2026, 11, 2), ny(2027, 1, 5), ny(2027, 1, 5, 12)),
}


def futures(symbol: str, interval: str) -> tuple[ChartPayload, tuple[int, int], str]:
    p1, p2, now = WINDOWS[interval]
    payload = sim_payload(symbol, {"interval": interval, "period1": str(p1), "period2": str(p2)}, now)
    calendar = calendar_for(symbol, payload.meta)
    assert calendar is not None
    return payload, (p1, min(p2, now)), calendar


def judge(bars: Bars, interval: str, calendar: str | None, window: tuple[int, int] | None) -> CheckResult:
    return check_timestamps(bars, interval=interval, calendar=calendar, window=window, prepost=False)


def drop(bars: Bars, mask: np.ndarray) -> Bars:
    return bars.take(np.flatnonzero(~mask))


@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
@pytest.mark.parametrize("symbol", FUTURES)
def test_futures_over_cme_holidays_are_clean_and_complete(symbol: str, interval: str) -> None:
    payload, window, calendar = futures(symbol, interval)
    result = judge(payload.bars, interval, calendar, window)
    assert result.issues == ()
    assert result.expected == result.present == len(payload.bars)
    ts = payload.bars.ts
    if interval == "1d":
        dates = {dt.datetime.fromtimestamp(t, NY).date() for t in ts}
        assert dt.date(2026, 12, 24) in dates
        assert dt.date(2026, 12, 25) not in dates and dt.date(2027, 1, 1) not in dates
    else:
        # Thanksgiving closes early (13:00 or 14:30 New York): hours without bars before the
        # 18:00 reopen, three times the daily halt at least.
        holiday = (ts >= ny(2026, 11, 26)) & (ts < ny(2026, 11, 27))
        assert np.diff(ts[holiday]).max() >= 3 * 3600 + 1800


def test_the_daily_halt_is_not_a_gap_but_a_bar_in_it_is_a_closed_market() -> None:
    payload, window, calendar = futures("ES=F", "1m")
    ts = payload.bars.ts
    halt = (ts >= ny(2026, 11, 24, 17)) & (ts < ny(2026, 11, 24, 18))
    assert not halt.any() and ny(2026, 11, 24, 16, 59) in ts and ny(2026, 11, 24, 18) in ts
    assert judge(payload.bars, "1m", calendar, window).issues == ()
    stray = ny(2026, 11, 24, 17, 30)
    with_stray = bars_at(np.sort(np.r_[ts, stray]))
    result = judge(with_stray, "1m", calendar, window)
    issue = only(result, "time.closed_market")
    assert (issue.severity, issue.start, issue.count) == (Severity.WARNING, stray, 1)
    assert result.bad.size == 0  # the bar is still served
    assert codes(result) == ["time.closed_market"]


@pytest.mark.parametrize("symbol", FUTURES)
@pytest.mark.parametrize(("interval", "hole"), [("1m", 3600), ("1h", 3600), ("1d", 86_400)])
def test_a_missing_stretch_on_a_trading_day_is_one_gap(symbol: str, interval: str, hole: int) -> None:
    payload, window, calendar = futures(symbol, interval)
    start = ny(2026, 11, 24, 10) if interval != "1d" else int(payload.bars.ts[10])
    ts = payload.bars.ts
    cut = (ts >= start) & (ts < start + hole)
    assert cut.sum() == (hole // 60 if interval == "1m" else 1)
    result = judge(drop(payload.bars, cut), interval, calendar, window)
    gap = only(result, "time.gap")
    assert gap.severity is Severity.WARNING
    assert (gap.start, gap.end, gap.count) == (int(ts[cut][0]), int(ts[cut][-1]), int(cut.sum()))
    assert codes(result) == ["time.gap"]
    assert result.expected == len(payload.bars) and result.present == len(payload.bars) - cut.sum()


@pytest.mark.parametrize("symbol", FUTURES)
@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
def test_a_missing_last_session_is_named(symbol: str, interval: str) -> None:
    payload, window, calendar = futures(symbol, interval)
    expected = expected_bars(calendar, interval, *window, prepost=False)
    # The last session's bars: everything after the last break longer than a bar.
    breaks = np.flatnonzero(np.diff(expected) > (86_400 if interval == "1d" else 3600))
    first_of_last = int(expected[breaks[-1] + 1]) if interval != "1d" else int(expected[-1])
    cut = payload.bars.ts >= first_of_last
    result = judge(drop(payload.bars, cut), interval, calendar, window)
    issue = only(result, "time.missing_last_session")
    assert issue.severity is Severity.WARNING
    assert (issue.start, issue.end, issue.count) == (first_of_last, int(expected[-1]), int(cut.sum()))
    assert codes(result) == ["time.missing_last_session"]


@pytest.mark.parametrize("symbol", FUTURES)
@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
def test_broken_bars_are_errors_and_marked_bad(symbol: str, interval: str) -> None:
    payload, window, calendar = futures(symbol, interval)
    ts = payload.bars.ts
    # Tuesday 10:00 New York: busy hours for every family; a daily bar from the middle.
    i = int(np.searchsorted(ts, ny(2026, 11, 24, 10))) if interval != "1d" else len(ts) // 2

    swapped = ts.copy()
    swapped[[i, i + 1]] = swapped[[i + 1, i]]
    result = judge(bars_at(swapped), interval, calendar, window)
    assert codes(result) == ["time.unsorted"] and result.issues[0].severity is Severity.ERROR
    assert result.bad.tolist() == [i + 1]

    doubled = np.insert(ts, i, ts[i])
    result = judge(bars_at(doubled), interval, calendar, window)
    assert codes(result) == ["time.duplicate"] and result.issues[0].severity is Severity.ERROR
    assert result.bad.tolist() == [i]  # the first copy: the last one sent is the one kept
    assert result.present == result.expected

    shifted = ts.copy()
    shifted[i] += 30
    result = judge(bars_at(shifted), interval, calendar, window)
    off = only(result, "time.off_grid")
    assert (off.severity, off.start, off.count) == (Severity.ERROR, int(shifted[i]), 1)
    assert result.bad.tolist() == [i]
    assert result.present == result.expected - 1
    # The bar's own slot is now empty: a gap for an hour or a day, sparse for a minute.
    (vacated,) = [x for x in result.issues if x.code != "time.off_grid"]
    assert (vacated.code, vacated.count) == ("time.sparse" if interval == "1m" else "time.gap", 1)
    assert vacated.start in (None, int(ts[i]))


def test_overnight_futures_minutes_are_judged_by_the_quiet_rule() -> None:
    payload, window, calendar = futures("ES=F", "1m")
    ts = payload.bars.ts
    ninety = (ts >= ny(2026, 11, 24, 2)) & (ts < ny(2026, 11, 24, 3, 30))
    result = judge(drop(payload.bars, ninety), "1m", calendar, window)
    assert codes(result) == ["time.sparse"] and result.issues[0].count == 90
    three_hours = (ts >= ny(2026, 11, 24, 0)) & (ts < ny(2026, 11, 24, 0) + GAP_QUIET_S + 3600)
    gap = only(judge(drop(payload.bars, three_hours), "1m", calendar, window), "time.gap")
    assert (gap.start, gap.count) == (ny(2026, 11, 24, 0), int(three_hours.sum()))


@pytest.mark.parametrize(("minutes", "is_gap"), [(GAP_BUSY_S // 60 - 1, False), (GAP_BUSY_S // 60, True)])
def test_busy_hours_gap_threshold(minutes: int, is_gap: bool) -> None:
    payload, window, calendar = futures("CL=F", "1m")
    ts = payload.bars.ts
    cut = (ts >= ny(2026, 11, 24, 11)) & (ts < ny(2026, 11, 24, 11) + minutes * 60)
    result = judge(drop(payload.bars, cut), "1m", calendar, window)
    assert codes(result) == (["time.gap"] if is_gap else ["time.sparse"])
    assert result.issues[0].count == minutes


def test_thin_minute_data_does_not_raise_a_warning_storm() -> None:
    payload, window, calendar = futures("ZN=F", "1m")
    rng = np.random.default_rng(3)
    thin = rng.random(len(payload.bars)) < 0.15  # Yahoo leaves out minutes without trades
    result = judge(drop(payload.bars, thin), "1m", calendar, window)
    assert codes(result) == ["time.sparse"]
    assert result.issues[0].count == int(thin.sum())
    assert result.expected == len(payload.bars) and result.present == len(payload.bars) - thin.sum()


def test_many_gaps_are_capped_and_summed() -> None:
    payload, window, calendar = futures("ES=F", "1h")
    keep = np.arange(len(payload.bars)) % 3 == 0  # two of every three hours missing
    result = judge(payload.bars.take(np.flatnonzero(keep)), "1h", calendar, window)
    gaps = [i for i in result.issues if i.code == "time.gap"]
    assert len(gaps) == MAX_GAP_ISSUES + 1
    assert "more gaps" in gaps[-1].detail
    assert result.expected is not None and result.present is not None
    sparse = sum(i.count for i in result.issues if i.code == "time.sparse")
    assert sum(g.count for g in gaps) + sparse == result.expected - result.present


def test_a_futures_daily_answer_up_to_sunday_evening_holds_mondays_bar() -> None:
    # The session for Monday opens on Sunday at 18:00; its bar is stamped Monday 00:00.
    now = ny(2026, 11, 29, 19)
    payload = sim_payload("ES=F", {"interval": "1d", "range": "5d"}, now)
    ts = payload.bars.ts
    assert ts[-1] == ny(2026, 11, 30)
    result = judge(payload.bars, "1d", "CME_Equity", (int(ts[0]), now + 1))
    assert result.issues == ()


# -- stocks ------------------------------------------------------------------------------


def hourly_msft() -> tuple[Bars, tuple[int, int]]:
    rec = recording("MSFT_c62778557c")
    bars = parse_chart_result(rec.result).bars
    return bars, (int(rec.params["period1"]), rec.recorded_at)


def test_a_bar_between_grid_points_is_off_grid_but_the_closing_print_is_not() -> None:
    bars, window = hourly_msft()
    assert judge(bars, "1h", "XNYS", window).issues == ()
    odd = ny(2026, 9, 24, 15, 45)  # after the last grid point but well before the close
    result = judge(bars_at(np.sort(np.r_[bars.ts, odd])), "1h", "XNYS", window)
    assert codes(result) == ["time.off_grid"] and result.issues[0].start == odd


def test_stock_bars_on_a_holiday_or_outside_the_hours_asked_are_closed_market() -> None:
    bars, window = hourly_msft()
    labor_day = ny(2026, 9, 7, 10, 30)
    pre_market = ny(2026, 9, 24, 8)  # includePrePost was false
    result = judge(bars_at(np.sort(np.r_[bars.ts, labor_day, pre_market])), "1h", "XNYS", window)
    issue = only(result, "time.closed_market")
    assert (issue.start, issue.end, issue.count) == (labor_day, pre_market, 2)
    assert codes(result) == ["time.closed_market"] and result.bad.size == 0


def test_a_bar_in_tokyos_lunch_break_is_closed_market() -> None:
    day = expected_bars("XTKS", "5m", at(TOKYO, 2026, 11, 24), at(TOKYO, 2026, 11, 25), prepost=False)
    lunch = at(TOKYO, 2026, 11, 24, 11, 45)
    result = judge(bars_at(np.sort(np.r_[day, lunch])), "5m", "XTKS", (int(day[0]), int(day[-1]) + 1))
    assert codes(result) == ["time.closed_market"] and result.issues[0].start == lunch


def test_bars_outside_the_window_are_a_warning() -> None:
    bars, (p1, p2) = hourly_msft()
    narrow = (p1 + 86_400 * 7, p2)
    result = judge(bars, "1h", "XNYS", narrow)
    issue = only(result, "time.outside_window")
    assert issue.severity is Severity.WARNING
    assert issue.count == int((bars.ts < narrow[0]).sum()) and issue.end is not None and issue.end < narrow[0]
    assert result.bad.size == 0


def test_a_daily_answer_during_the_session_may_stamp_its_live_bar_at_the_last_trade() -> None:
    rec = recording("IBM_1fe458b33e")
    ts = parse_chart_result(rec.result).bars.ts.copy()
    window = (int(ts[0]), rec.recorded_at)
    live = ts.copy()
    live[-1] = ny(2026, 9, 25, 15, 12)
    result = judge(bars_at(live), "1d", "XNYS", window)
    assert result.issues == () and result.present == result.expected == len(ts)
    early = ts.copy()
    early[100] += 3600  # not the last bar: a daily bar off its stamp is wrong
    result = judge(bars_at(early), "1d", "XNYS", window)
    assert codes(result) == ["time.off_grid", "time.gap"] and result.bad.tolist() == [100]
    assert result.issues[1].start == ts[100]  # its session's bar is missing


def test_a_daily_bar_on_a_holiday_is_closed_market() -> None:
    rec = recording("IBM_1fe458b33e")
    ts = parse_chart_result(rec.result).bars.ts
    christmas = ny(2025, 12, 25, 9, 30)
    result = judge(bars_at(np.sort(np.r_[ts, christmas])), "1d", "XNYS", (int(ts[0]), rec.recorded_at))
    assert codes(result) == ["time.closed_market"] and result.issues[0].start == christmas


def test_a_session_that_has_just_opened_is_not_a_missing_session() -> None:
    p1, now = ny(2026, 11, 23), ny(2026, 11, 24, 12)
    bars = sim_payload("AAPL", {"interval": "1m", "period1": str(p1), "period2": str(now)}, now).bars
    cut = bars.ts >= ny(2026, 11, 24, 9, 30)
    # Tuesday's first minutes are not out yet two minutes after the open: that is no defect.
    result = judge(drop(bars, cut), "1m", "XNYS", (p1, ny(2026, 11, 24, 9, 32)))
    assert codes(result) == ["time.sparse"] and result.issues[0].count == 2
    later = judge(drop(bars, cut), "1m", "XNYS", (p1, now))
    issue = only(later, "time.missing_last_session")
    assert (issue.start, issue.count) == (ny(2026, 11, 24, 9, 30), int(cut.sum()))


def test_an_empty_answer_for_a_trading_window_is_one_gap() -> None:
    window = (ny(2026, 9, 21), ny(2026, 9, 26))
    result = judge(Bars.empty(), "1d", "XNYS", window)
    gap = only(result, "time.gap")
    assert (result.expected, result.present, gap.count) == (5, 0, 5)
    assert codes(result) == ["time.gap"]


def test_nothing_to_judge() -> None:
    nothing = judge(Bars.empty(), "1d", "XNYS", None)
    assert (nothing.issues, nothing.bad.size, nothing.expected, nothing.present) == ((), 0, None, None)
    weekend = judge(Bars.empty(), "1h", "XNYS", (ny(2026, 9, 26), ny(2026, 9, 27)))
    assert (weekend.issues, weekend.expected, weekend.present) == ((), 0, 0)


# -- without a calendar or a grid ------------------------------------------------------


def test_without_a_calendar_order_and_window_are_still_checked() -> None:
    ts = np.array([300, 100, 200, 200, 900], dtype=np.int64)
    result = judge(bars_at(ts), "1m", None, (0, 600))
    assert codes(result) == ["time.unsorted", "time.duplicate", "time.no_calendar", "time.outside_window"]
    assert {i.code: i.severity for i in result.issues}["time.no_calendar"] is Severity.INFO
    assert result.bad.tolist() == [1, 2, 3]  # all three come after 300; index 2 is also a copy
    assert result.expected is None and result.present is None


def test_aggregated_intervals_have_no_calendar_grid() -> None:
    weeks = [ny(2026, 9, 21, 9, 30), ny(2026, 9, 28, 9, 30), ny(2026, 9, 28, 9, 30)]
    result = judge(bars_at(weeks), "1wk", "XNYS", None)
    assert codes(result) == ["time.duplicate"] and result.expected is None


def test_an_unknown_interval_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown interval"):
        judge(Bars.empty(), "4m", "XNYS", None)


def test_intraday_bars_on_a_weekend_only_are_closed_market() -> None:
    saturday = [ny(2026, 11, 28, h, 30) for h in (10, 11)]
    result = judge(bars_at(saturday), "1h", "XNYS", None)
    assert codes(result) == ["time.closed_market"] and result.issues[0].count == 2
    assert (result.expected, result.present) == (0, 0)
