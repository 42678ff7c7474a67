"""check_timezone: real recordings and simulator answers agree with their zone and their
calendar; a wrong zone, offset, abbreviation or trading period is found and named."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from loadtests.yahoo_sim import chart
from proxy.ingest import ChartPayload, parse_chart_body, parse_chart_result, parse_trading_periods
from tests.recordings import Recording, all_recordings, recording
from validators.calendars import calendar_for
from validators.report import CheckResult, QualityIssue, Severity
from validators.timezones import PERIOD_TOLERANCE_S, check_timezone

NY = ZoneInfo("America/New_York")


def ny(*parts: int) -> int:
    return int(dt.datetime(*parts, tzinfo=NY).timestamp())  # type: ignore[misc]


def sim_payload(symbol: str, params: dict[str, str], now: int) -> ChartPayload:
    """The simulator's chart answer, rendered in process (no server needed)."""
    answer = chart.answer(symbol, params, now, 7)
    assert answer.status == 200, answer.body
    return parse_chart_body(orjson.dumps(answer.body))


def codes(result: CheckResult) -> list[str]:
    return [i.code for i in result.issues]


def only(result: CheckResult, code: str) -> QualityIssue:
    found = [i for i in result.issues if i.code == code]
    assert len(found) == 1, result.issues
    return found[0]


def judge(meta: dict[str, Any], calendar: str | None = "XNYS") -> CheckResult:
    return check_timezone(meta, parse_trading_periods(meta.get("tradingPeriods")), calendar)


def hourly_meta(name: str = "AMZN_da78d22d5d") -> dict[str, Any]:
    return copy.deepcopy(recording(name).result["meta"])


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
def test_real_recordings_agree_with_their_zone_and_calendar(rec: Recording) -> None:
    payload = parse_chart_result(rec.result)
    result = check_timezone(payload.meta, payload.days, calendar_for(rec.symbol, payload.meta))
    assert result.issues == ()


@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
@pytest.mark.parametrize(
    ("symbol", "prepost"),
    [("ES=F", False), ("CL=F", False), ("ZN=F", True), ("6E=F", False), ("AAPL", True),
     ("^GSPC", True), ("7974.T", True), ("BATS.L", False), ("EURUSD=X", False)],
)  # fmt: skip
def test_simulator_answers_around_thanksgiving_are_consistent(
    symbol: str, prepost: bool, interval: str
) -> None:
    now = ny(2026, 11, 30, 12)
    p1 = ny(2026, 11, 23) if interval == "1m" else ny(2026, 11, 2)
    p2 = ny(2026, 11, 30)  # 1m: Yahoo serves 7 days per request
    params = {"interval": interval, "period1": str(p1), "period2": str(p2), "includePrePost": str(prepost)}
    payload = sim_payload(symbol, params, now)
    calendar = calendar_for(symbol, payload.meta)
    assert calendar is not None
    assert check_timezone(payload.meta, payload.days, calendar).issues == ()
    if interval != "1d":
        assert len(payload.days) >= 4  # the periods were really compared (US: 4 days that week)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "America", "", None, 5, "../etc/passwd"])
def test_an_unknown_zone_is_an_error(name: Any) -> None:
    meta = hourly_meta()
    meta["exchangeTimezoneName"] = name
    result = judge(meta)
    issue = only(result, "tz.unknown_zone")
    assert issue.severity is Severity.ERROR and codes(result) == ["tz.unknown_zone"]


def test_a_winter_offset_in_summer_is_an_error() -> None:
    meta = hourly_meta()
    meta["gmtoffset"] = -18000  # EST; the recording's regularMarketTime is in September (EDT)
    issue = only(judge(meta), "tz.offset_mismatch")
    assert issue.severity is Severity.ERROR
    assert (issue.start, issue.count) == (meta["regularMarketTime"], 1)
    assert "-18000" in issue.detail and "-14400" in issue.detail


def test_a_wrong_offset_on_one_trading_day_is_an_error() -> None:
    meta = hourly_meta()
    day = meta["tradingPeriods"][3][0]
    day["gmtoffset"] = 3600
    issue = only(judge(meta), "tz.offset_mismatch")
    assert (issue.start, issue.end, issue.count) == (day["start"], day["start"], 1)


def test_offsets_in_the_current_trading_period_are_checked_too() -> None:
    meta = hourly_meta()
    for part in ("pre", "regular", "post"):
        meta["currentTradingPeriod"][part]["gmtoffset"] = 0
    assert only(judge(meta), "tz.offset_mismatch").count == 3


def test_a_wrong_abbreviation_is_a_warning() -> None:
    meta = hourly_meta()
    meta["timezone"] = "EST"
    for day in meta["tradingPeriods"][:2]:
        day[0]["timezone"] = "CDT"
    issue = only(judge(meta), "tz.abbreviation_mismatch")
    assert issue.severity is Severity.WARNING and issue.count == 3


def test_zones_without_a_letter_abbreviation_are_not_second_guessed() -> None:
    at = ny(2026, 9, 25, 16)
    meta = {"exchangeTimezoneName": "America/Sao_Paulo", "timezone": "BRT", "gmtoffset": -10800,
            "regularMarketTime": at}  # fmt: skip
    assert judge(meta, None).issues == ()
    meta["gmtoffset"] = -7200
    assert codes(judge(meta, None)) == ["tz.offset_mismatch"]


def test_a_calendar_in_another_zone_is_a_warning() -> None:
    meta = copy.deepcopy(recording("BATS.L_3ace60e2e5").result["meta"])
    result = judge(meta, "XNYS")
    issue = only(result, "tz.calendar_zone")
    assert issue.severity is Severity.WARNING
    assert "America/New_York" in issue.detail and "Europe/London" in issue.detail


def test_periods_an_hour_off_the_calendar_are_a_warning() -> None:
    meta = hourly_meta()
    shifted = meta["tradingPeriods"][5][0]
    shifted["start"] += 3600
    shifted["end"] += 3600
    issue = only(judge(meta), "tz.periods_mismatch")
    assert issue.severity is Severity.WARNING
    assert (issue.start, issue.end, issue.count) == (shifted["start"], shifted["end"], 1)


def test_periods_within_the_tolerance_are_fine() -> None:
    meta = hourly_meta()
    meta["tradingPeriods"][5][0]["end"] += PERIOD_TOLERANCE_S
    assert judge(meta).issues == ()
    meta["tradingPeriods"][5][0]["end"] += 1
    assert codes(judge(meta)) == ["tz.periods_mismatch"]


def test_a_current_trading_period_on_a_holiday_is_a_warning() -> None:
    meta = hourly_meta()
    labor_day = {"start": ny(2026, 9, 7, 9, 30), "end": ny(2026, 9, 7, 16)}
    meta["currentTradingPeriod"]["regular"].update(labor_day)
    assert only(judge(meta), "tz.periods_mismatch").start == labor_day["start"]


def test_extended_hours_periods_are_compared_with_the_calendars() -> None:
    meta = hourly_meta("IBM_45951dc5fe")
    assert judge(meta).issues == ()
    meta["tradingPeriods"]["pre"][2][0]["start"] += 3 * 3600  # pre-market from 07:00
    meta["tradingPeriods"]["post"][4][0]["end"] -= 3600  # post-market until 19:00
    assert only(judge(meta), "tz.periods_mismatch").count == 2


def test_futures_periods_on_a_closed_day_are_a_warning() -> None:
    now = ny(2026, 11, 30, 12)
    params = {"interval": "1h", "period1": str(ny(2026, 11, 23)), "period2": str(now)}
    meta = copy.deepcopy(sim_payload("ES=F", params, now).meta)
    saturday = {
        "timezone": "EST",
        "start": ny(2026, 11, 28, 9),
        "end": ny(2026, 11, 28, 15),
        "gmtoffset": -18000,
    }
    meta["tradingPeriods"].append([saturday])
    issue = only(judge(meta, "CME_Equity"), "tz.periods_mismatch")
    assert (issue.start, issue.end) == (saturday["start"], saturday["end"])


def test_without_a_calendar_only_the_zone_is_judged() -> None:
    meta = hourly_meta()
    meta["tradingPeriods"][5][0]["start"] += 3600
    assert judge(meta, None).issues == ()
    assert check_timezone(meta, None, None).issues == ()


def test_a_meta_without_periods_is_judged_on_its_offset_alone() -> None:
    meta = {"exchangeTimezoneName": "America/New_York", "timezone": "EDT", "gmtoffset": -14400,
            "regularMarketTime": ny(2026, 9, 25, 16)}  # fmt: skip
    assert judge(meta).issues == ()
