"""ChartQuery parsing: every input rule, Yahoo's exact error texts, and a property test."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict, MultiDictProxy

from proxy.errors import NOT_FOUND_DESCRIPTION, YahooError
from proxy.intervals import DAY, VALID_INTERVALS
from proxy.query import (
    MAX_QUERY_CHARS,
    PERIOD_MAX,
    PERIOD_MIN,
    ChartQuery,
    check_query_string,
    normalise_symbol,
    parse_chart_query,
)
from proxy.series import SeriesKey

NOW = 1_790_540_140  # 2026-09-27 20:15:40 UTC, a Sunday (the recordings' clock)
YEAR_START = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())


def back_to(year: int, month: int, day: int) -> int:
    """NOW's wall-clock time on an earlier UTC date (calendar ranges count from now)."""
    return int(dt.datetime(year, month, day, 20, 15, 40, tzinfo=dt.UTC).timestamp())


INTERVALS_TEXT = "[1m, 2m, 5m, 15m, 30m, 60m, 90m, 1h, 4h, 1d, 5d, 1wk, 1mo, 3mo]"
RANGES_TEXT = "[1d, 5d, 1mo, 3mo, 6mo, 1y, 2y, 5y, 10y, ytd, max]"


def parse(symbol: str = "ES=F", **params: str) -> ChartQuery:
    return parse_chart_query(symbol, params, now=NOW)


def refused(symbol: str = "ES=F", **params: str) -> YahooError:
    with pytest.raises(YahooError) as info:
        parse(symbol, **params)
    return info.value


# --- symbols -------------------------------------------------------------------------

VALID_TICKERS = [
    "ES=F", "NQ=F", "^GSPC", "BRK-B", "7974.T", "EURUSD=X", "ESZ26.CME", "BTC-USD",
    "M&M.NS", "0P0000XVAA.L", "MSFT", "A", "^N225", "GC=F", "0700.HK", "BF.B", "X_Y",
    "A" * 32,
]  # fmt: skip


@pytest.mark.parametrize("ticker", VALID_TICKERS)
def test_real_tickers_parse_unchanged(ticker: str) -> None:
    assert normalise_symbol(ticker) == ticker
    assert parse(ticker).symbol == ticker


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("es=f", "ES=F"), ("^gspc", "^GSPC"), ("brk-b", "BRK-B"), ("m&m.ns", "M&M.NS"), ("Msft", "MSFT")],
)
def test_symbols_are_case_insensitive(raw: str, normalised: str) -> None:
    assert parse(raw).symbol == normalised
    assert parse(raw) == parse(normalised)


MALFORMED_SYMBOLS = [
    "", "../etc/passwd", "..", ".", "ES F", "ES%0AF", "ES%3DF", "ES\nF", "ES\x00F", "ES\tF", " ES=F",
    "ES=F ", "A" * 33, "A" * 40, "ES/F", "ES\\F", ".ES", "ES.", "ES..F", "ÉS=F", "ＥＳ=F", "ES=F\u200b",
    "ｅs", "ß", "^", "=-.", "ES{F}", "ES|1m|0", "ES:F", "ES*", "ES?F", "ES#F", "ES+F", "ES$",
    "ES=F\n", "😀",
]  # fmt: skip


@pytest.mark.parametrize("raw", MALFORMED_SYMBOLS)
def test_impossible_symbols_answer_yahoos_not_found(raw: str) -> None:
    error = refused(raw)
    assert (error.status, error.code, error.description) == (404, "Not Found", NOT_FOUND_DESCRIPTION)
    assert orjson.loads(error.body()) == {
        "chart": {"result": None, "error": {"code": "Not Found", "description": NOT_FOUND_DESCRIPTION}}
    }


def test_a_non_string_symbol_is_not_found() -> None:
    with pytest.raises(YahooError) as info:
        normalise_symbol(None)  # type: ignore[arg-type]
    assert info.value.status == 404


def test_symbol_is_checked_before_the_parameters() -> None:
    assert refused("ES F", interval="4m").status == 404


# --- interval ------------------------------------------------------------------------


def test_interval_defaults_to_1d() -> None:
    assert parse().interval.name == "1d"
    assert parse(interval="").interval.name == "1d"  # empty counts as absent


@pytest.mark.parametrize("name", VALID_INTERVALS)
def test_every_yahoo_interval_parses(name: str) -> None:
    # 1m with the default range=1d is fine; the window limits are tested below.
    assert parse(interval=name).interval.name == ("1h" if name == "60m" else name)


def test_60m_is_the_1h_series() -> None:
    sixty, hour = parse(interval="60m"), parse(interval="1h")
    assert sixty == hour
    assert sixty.series_key == SeriesKey("ES=F", "1h", False)


@pytest.mark.parametrize(
    ("asked", "echoed"),
    [
        ("4m", "4m"),
        ("1M", "1M"),  # case-sensitive: pandas' "1M" (month) must not become 1 minute
        ("1H", "1H"),
        ("1D", "1D"),
        ("2h", "2h"),
        ("1w", "1w"),
        ("1 d", "1 d"),
        ("x" * 33, "x" * 32 + "..."),
        ("y" * 5000, "y" * 32 + "..."),
    ],
)
def test_unsupported_interval_is_yahoos_400(asked: str, echoed: str) -> None:
    error = refused(interval=asked)
    assert (error.status, error.code) == (400, "Bad Request")
    assert error.description == (
        f"Invalid input - interval={echoed} is not supported. Valid intervals: {INTERVALS_TEXT}"
    )


def test_bad_interval_text_is_exactly_yahoos() -> None:
    assert refused(interval="4m").description == (
        "Invalid input - interval=4m is not supported. Valid intervals: "
        "[1m, 2m, 5m, 15m, 30m, 60m, 90m, 1h, 4h, 1d, 5d, 1wk, 1mo, 3mo]"
    )


# --- range ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "token"),
    [
        ("1d", "1d"), ("5d", "5d"), ("1mo", "1mo"), ("3mo", "3mo"), ("6mo", "6mo"), ("1y", "1y"),
        ("2y", "2y"), ("5y", "5y"), ("10y", "10y"), ("ytd", "ytd"), ("max", "max"), ("5D", "5d"),
        ("1MO", "1mo"), ("YTD", "ytd"), ("Max", "max"), ("05d", "5d"), ("2wk", "2wk"), ("60d", "60d"),
        ("100y", "100y"), ("1200mo", "1200mo"), ("5200wk", "5200wk"), ("36500d", "36500d"),
    ],
)  # fmt: skip
def test_ranges_are_normalised(asked: str, token: str) -> None:
    query = parse(range=asked)
    assert (query.range, query.range_echo, query.period1, query.period2) == (token, token, None, None)


@pytest.mark.parametrize(
    "asked",
    ["xyz", "0d", "0y", "-1d", "1", "d", "1m", "1h", "1w", "1yr", "1 d", " 1d", "1d ", "101y", "1201mo",
     "5201wk", "36501d", "1000000d", "1.5y", "１d", "1\u212ad", "ytd1", "maxx"],
)  # fmt: skip
def test_unknown_range_is_yahoos_400(asked: str) -> None:
    error = refused(range=asked)
    assert (error.status, error.code) == (400, "Bad Request")
    assert error.description == f"Invalid input - range={asked} is not supported. Valid ranges: {RANGES_TEXT}"


def test_range_echo_of_a_long_junk_range_is_cut() -> None:
    assert refused(range="z" * 100).description.startswith("Invalid input - range=" + "z" * 32 + "... is not")


def test_without_range_or_period_the_range_is_1d() -> None:
    query = parse()
    assert (query.range, query.range_echo, query.period1, query.period2) == ("1d", "1d", None, None)


# --- period1 / period2 ---------------------------------------------------------------


def test_period_request_echoes_an_empty_range() -> None:
    query = parse(period1="1787889600", period2="1790568000")
    assert (query.range, query.range_echo) == (None, "")
    assert (query.period1, query.period2) == (1787889600, 1790568000)  # future period2 kept as asked


def test_period2_defaults_to_now() -> None:
    assert parse(period1="1787889600").period2 == NOW


def test_period_beats_range() -> None:
    both = parse(range="5y", period1="1787889600", period2="1790000000")
    assert both == parse(period1="1787889600", period2="1790000000")
    assert both.range is None


def test_equal_periods_are_an_empty_window() -> None:
    query = parse(period1="1789000000", period2="1789000000")
    assert query.period1 == query.period2 == 1789000000


@pytest.mark.parametrize(
    ("p1", "p2", "end"),
    [
        ("1790000001", "1790000000", "1790000000"),
        (str(NOW + 1), None, str(NOW)),
        ("5000000000", "4999999999", "4999999999"),
    ],
)
def test_start_after_end_is_yahoos_400(p1: str, p2: str | None, end: str) -> None:
    params = {"period1": p1} | ({"period2": p2} if p2 else {})
    error = refused(**params)
    assert (error.status, error.code) == (400, "Bad Request")
    assert error.description == (
        f"Invalid input - start date cannot be after end date. startDate = {p1}, endDate = {end}"
    )


@pytest.mark.parametrize("name", ["period1", "period2"])
@pytest.mark.parametrize(
    "value", ["abc", "1.5", "1790540140.0", "1e9", " 1790540140", "1790540140 ", "0x10", "1_000", "٣", "--1",
              "1234567890123", "9" * 40],
)  # fmt: skip
def test_non_integer_period_is_yahoos_400(name: str, value: str) -> None:
    params = {"period1": "1790000000", name: value}
    error = refused(**params)
    assert (error.status, error.code) == (400, "Bad Request")
    assert (
        error.description
        == f"Invalid input - {name}={value[:32]}{'...' if len(value) > 32 else ''} is not a valid value"
    )


def test_period_integers_may_carry_a_sign() -> None:
    assert parse(period1="-0", period2="+0").period1 == 0
    query = parse(period1="-1331523852", period2="+1790540143")  # IBM's full-history request
    assert (query.period1, query.period2) == (-1331523852, 1790540143)


def test_periods_outside_1900_2100_are_clamped() -> None:
    query = parse(period1="-9999999999", period2="999999999999")
    assert (query.period1, query.period2) == (PERIOD_MIN, PERIOD_MAX)
    assert parse(period1="5000000000", period2="6000000000").period1 == PERIOD_MAX


def test_lone_period2_is_validated_but_range_decides() -> None:
    assert parse(period2="1790000000") == parse()
    assert refused(period2="soon").status == 400


def test_junk_range_next_to_period1_is_still_refused() -> None:
    assert refused(range="xyz", period1="1790000000").status == 400


# --- Yahoo's window limits (422) -----------------------------------------------------


def _limit_422(asked: str, start: int, end: int, tail: str) -> str:
    return f"{asked} data not available for startTime={start} and endTime={end}. {tail}"


SEVEN_1M = "Only 7 days worth of 1m granularity data are allowed to be fetched per request."


@pytest.mark.parametrize(
    ("params", "start", "end", "tail"),
    [
        # 1m per request: a period window may be up to 8 days (yfinance's period="max").
        ({"period1": str(NOW - 8 * DAY - 1)}, NOW - 8 * DAY - 1, NOW, SEVEN_1M),
        ({"period1": str(NOW - 20 * DAY), "period2": str(NOW - 10 * DAY)},
         NOW - 20 * DAY, NOW - 10 * DAY, SEVEN_1M),
        # the width wins over the lookback (yfinance #165: years-old 1m windows get this text)
        ({"period1": "1420099200", "period2": "1514707200"}, 1420099200, 1514707200, SEVEN_1M),
        # 1m lookback: inside 7 days wide but starting before now - 30 days
        ({"period1": str(NOW - 31 * DAY), "period2": str(NOW - 29 * DAY)}, NOW - 31 * DAY, NOW - 29 * DAY,
         "The requested range must be within the last 30 days."),
        # ranges by their nominal length
        ({"range": "1mo"}, back_to(2026, 8, 27), NOW, SEVEN_1M),
        ({"range": "8d"}, NOW - 8 * DAY, NOW, SEVEN_1M),
        ({"range": "2wk"}, NOW - 14 * DAY, NOW, SEVEN_1M),
        ({"range": "1y"}, back_to(2025, 9, 27), NOW, SEVEN_1M),
        ({"range": "ytd"}, YEAR_START, NOW, SEVEN_1M),
    ],
)  # fmt: skip
def test_1m_limits_are_yahoos_422(params: dict[str, str], start: int, end: int, tail: str) -> None:
    error = refused(interval="1m", **params)
    assert (error.status, error.code) == (422, "Unprocessable Entity")
    assert error.description == _limit_422("1m", start, end, tail)


@pytest.mark.parametrize(
    "params",
    [
        {"range": "1d"}, {"range": "5d"}, {"range": "7d"}, {"range": "1wk"},
        {"period1": str(NOW - 7 * DAY)},
        {"period1": str(NOW - 8 * DAY)},  # the one-day grace
        {"period1": str(NOW - 691200 + 5), "period2": str(NOW)},  # yfinance period="max"
        {"period1": str(NOW - 7 * DAY), "period2": str(NOW + 30 * DAY)},  # future end counts as now
        {"period1": str(NOW - 30 * DAY), "period2": str(NOW - 25 * DAY)},
        {"period1": str(NOW - 30 * DAY - 60), "period2": str(NOW - 25 * DAY)},  # a minute of clock slack
        {"period1": str(NOW + DAY), "period2": str(NOW + 20 * DAY)},  # all in the future: empty, not 422
    ],
)  # fmt: skip
def test_1m_windows_inside_the_limits_parse(params: dict[str, str]) -> None:
    assert parse(interval="1m", **params).interval.name == "1m"


def test_1m_lookback_edge_is_a_minute_past_30_days() -> None:
    start = NOW - 30 * DAY - 61
    error = refused(interval="1m", period1=str(start), period2=str(NOW - 25 * DAY))
    assert error.description == _limit_422(
        "1m", start, NOW - 25 * DAY, "The requested range must be within the last 30 days."
    )


@pytest.mark.parametrize(
    ("asked", "days"),
    [("2m", 60), ("5m", 60), ("15m", 60), ("30m", 60), ("90m", 60), ("60m", 730), ("1h", 730), ("4h", 730)],
)
def test_intraday_lookbacks_are_yahoos_422(asked: str, days: int) -> None:
    start, end = NOW - (days + 1) * DAY, NOW - (days - 1) * DAY
    error = refused(interval=asked, period1=str(start), period2=str(end))
    assert (error.status, error.code) == (422, "Unprocessable Entity")
    assert error.description == _limit_422(
        asked, start, end, f"The requested range must be within the last {days} days."
    )
    # inside the limit, any width is fine for these intervals
    assert parse(interval=asked, period1=str(NOW - days * DAY), period2=str(NOW)).period1 == NOW - days * DAY
    # and the range of exactly the limit is fine, one day more is not
    assert parse(interval=asked, range=f"{days}d").range == f"{days}d"
    assert refused(interval=asked, range=f"{days + 1}d").description == _limit_422(
        asked, NOW - (days + 1) * DAY, NOW, f"The requested range must be within the last {days} days."
    )


@pytest.mark.parametrize(
    ("interval", "rng", "start", "days"),
    [
        ("5m", "1y", back_to(2025, 9, 27), 60),
        ("5m", "2mo", back_to(2026, 7, 27), 60),  # 2026-07-27: 62 calendar days
        ("5m", "ytd", YEAR_START, 60),
        ("1h", "3y", back_to(2023, 9, 27), 730),
        ("60m", "5y", back_to(2021, 9, 27), 730),
    ],
)
def test_ranges_beyond_the_lookback_are_422(interval: str, rng: str, start: int, days: int) -> None:
    assert refused(interval=interval, range=rng).description == _limit_422(
        interval, start, NOW, f"The requested range must be within the last {days} days."
    )


@pytest.mark.parametrize(
    ("interval", "rng"),
    [("1h", "2y"), ("1h", "1y"), ("4h", "ytd"), ("15m", "1mo"), ("2m", "8wk"), ("1m", "ytd")],
)
def test_ranges_inside_the_lookback_parse(interval: str, rng: str) -> None:
    # 1m ytd: only checked against a year that started 7 days ago
    now = YEAR_START + 6 * DAY if rng == "ytd" and interval == "1m" else NOW
    assert parse_chart_query("ES=F", {"interval": interval, "range": rng}, now=now).range == rng


def test_calendar_ranges_clamp_to_the_month_end() -> None:
    now = int(dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC).timestamp())
    feb_28 = int(dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC).timestamp())
    with pytest.raises(YahooError) as info:
        parse_chart_query("ES=F", {"interval": "1m", "range": "1mo"}, now=now)
    assert info.value.description == _limit_422("1m", feb_28, now, SEVEN_1M)
    # 2mo from 2026-03-31 is 2026-01-31: 59 days, inside 5m's 60
    assert parse_chart_query("ES=F", {"interval": "5m", "range": "2mo"}, now=now).range == "2mo"


@pytest.mark.parametrize(
    ("interval", "days"), [("1m", 7), ("2m", 60), ("90m", 60), ("60m", 730), ("4h", 730)]
)
def test_range_max_on_intraday_is_clamped_to_yahoos_latest_window(interval: str, days: int) -> None:
    query = parse(interval=interval, range="max")
    assert (query.period1, query.period2, query.range_echo) == (NOW - days * DAY, NOW, "max")


@pytest.mark.parametrize("interval", ["1d", "5d", "1wk", "1mo", "3mo"])
def test_daily_and_longer_have_no_window_limit(interval: str) -> None:
    assert parse(interval=interval, range="max").period1 is None
    assert parse(interval=interval, range="100y").range == "100y"
    assert parse(interval=interval, period1=str(PERIOD_MIN), period2=str(NOW)).period1 == PERIOD_MIN


# --- includePrePost, events ----------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "prepost"),
    [("true", True), ("True", True), ("TRUE", True), ("tRuE", True), ("false", False), ("False", False),
     ("FALSE", False), ("1", False), ("0", False), ("yes", False), ("junk", False), ("", False),
     (" true", False), ("tru\u0435", False)],
)  # fmt: skip
def test_include_pre_post(asked: str, prepost: bool) -> None:
    assert parse(interval="1h", includePrePost=asked).prepost is prepost


def test_include_pre_post_defaults_to_false() -> None:
    assert parse().prepost is False


def test_prepost_splits_intraday_series_only() -> None:
    assert parse(interval="1h", includePrePost="true").series_key == SeriesKey("ES=F", "1h", True)
    daily = parse(interval="1d", includePrePost="true")
    assert daily.prepost is True
    assert daily.series_key == parse(interval="1d").series_key == SeriesKey("ES=F", "1d", False)


@pytest.mark.parametrize(
    ("asked", "events"),
    [
        ("div,splits,capitalGains", {"div", "split", "capitalGains"}),  # what yfinance sends
        ("div|split|earn", {"div", "split", "earn"}),  # what Yahoo's site sends
        ("div", {"div"}),
        ("split", {"split"}),
        ("splits", {"split"}),
        ("DIV, Splits ,capitalgains", {"div", "split", "capitalGains"}),
        ("div,bogus,,history", {"div"}),
        ("bogus", set()),
        ("", set()),
        ("dív,split", {"split"}),
    ],
)
def test_events_keep_known_names(asked: str, events: set[str]) -> None:
    assert parse(events=asked).events == frozenset(events)


def test_events_default_to_none() -> None:
    assert parse().events == frozenset()


# --- ignored and repeated parameters -------------------------------------------------

BASE = {"interval": "1h", "range": "5d", "includePrePost": "false", "events": "div,splits"}


@pytest.mark.parametrize(
    "extra",
    [
        {"crumb": "Xy0.abc/123"}, {"lang": "en-US"}, {"region": "US"}, {"corsDomain": "finance.yahoo.com"},
        {".tsrc": "finance"}, {"includeAdjustedClose": "true"}, {"utm_source": "x", "foo": "bar"},
        {"Interval": "4m", "RANGE": "xyz", "period": "abc"},  # names are case-sensitive: unknown, ignored
        {"crumb": "a", "lang": "de-DE", "region": "DE", "corsDomain": "x", ".tsrc": "y",
         "includeAdjustedClose": "false"},
    ],
)  # fmt: skip
def test_ignored_params_do_not_change_the_query(extra: dict[str, str]) -> None:
    assert parse_chart_query("ES=F", BASE | extra, now=NOW) == parse_chart_query("ES=F", BASE, now=NOW)


def test_repeated_params_take_the_first_value() -> None:
    multi = MultiDictProxy(
        MultiDict([("interval", "1h"), ("interval", "4m"), ("range", "5d"), ("range", "xyz"),
                   ("events", "div"), ("events", "split"), ("includePrePost", "true"),
                   ("includePrePost", "false")])
    )  # fmt: skip
    query = parse_chart_query("ES=F", multi, now=NOW)
    assert (query.interval.name, query.range, query.events, query.prepost) == (
        "1h",
        "5d",
        frozenset({"div"}),
        True,
    )


def test_non_string_values_from_code_are_read_as_text() -> None:
    query = parse_chart_query("ES=F", {"period1": 1790000000, "interval": "1d", "range": None}, now=NOW)  # type: ignore[dict-item]
    assert (query.period1, query.period2, query.range) == (1790000000, NOW, None)


def test_recorded_yfinance_request_parses() -> None:
    params = {
        "events": "div,splits,capitalGains", "includePrePost": "False", "interval": "1h",
        "period1": "1787889600", "period2": "1790568000", "crumb": "abc",
    }  # fmt: skip
    query = parse_chart_query("MSFT", params, now=1790540143)
    assert query.series_key == SeriesKey("MSFT", "1h", False)
    assert (query.period1, query.period2, query.range_echo) == (1787889600, 1790568000, "")
    assert query.events == frozenset({"div", "split", "capitalGains"})


# --- query string length -------------------------------------------------------------


def test_query_string_length_limit() -> None:
    check_query_string("a" * MAX_QUERY_CHARS)
    check_query_string("")
    with pytest.raises(YahooError) as info:
        check_query_string("a" * (MAX_QUERY_CHARS + 1))
    assert (info.value.status, info.value.code) == (400, "Bad Request")
    assert (
        info.value.description == f"Invalid input - query string is longer than {MAX_QUERY_CHARS} characters"
    )
    with pytest.raises(YahooError):
        check_query_string("a" * 65, limit=64)


# --- property: nothing but YahooError, ever ------------------------------------------

_KNOWN = ["interval", "range", "period1", "period2", "includePrePost", "events", "crumb", ".tsrc"]
_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from([*VALID_INTERVALS, "ytd", "max", "5d", "1mo", "2y", "true", "False", "div,splits"]),
    st.integers(min_value=-(10**13), max_value=10**13).map(str),
    st.integers(min_value=NOW - 800 * DAY, max_value=NOW + DAY).map(str),
    st.from_regex(r"[0-9]{1,7}(d|wk|mo|y)", fullmatch=True),
)
_PARAMS = st.dictionaries(st.one_of(st.sampled_from(_KNOWN), st.text(max_size=10)), _VALUES, max_size=8)
_SYMBOLS = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[A-Za-z0-9.\-=^&_]{1,34}", fullmatch=True),
    st.sampled_from(VALID_TICKERS + MALFORMED_SYMBOLS),
)


@settings(max_examples=400, deadline=None)
@given(symbol=_SYMBOLS, params=_PARAMS)
def test_any_input_parses_or_is_a_yahoo_error(symbol: str, params: dict[str, str]) -> None:
    try:
        query = parse_chart_query(symbol, params, now=NOW)
    except YahooError as error:
        assert error.status in (400, 404, 422)
        assert len(error.body()) < 512  # echoed values are cut
        return
    assert query.symbol == query.symbol.upper()
    assert 1 <= len(query.symbol) <= 32
    assert set(query.symbol) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-=^&_")
    assert (query.period1 is None) == (query.period2 is None)
    assert query.range is not None or query.period1 is not None
    if query.period1 is not None:
        assert PERIOD_MIN <= query.period1 <= query.period2 <= PERIOD_MAX  # type: ignore[operator]
    assert query.events <= {"div", "split", "capitalGains", "earn"}
    hash(query)
