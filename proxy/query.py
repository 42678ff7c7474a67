"""Parse a chart request into a :class:`ChartQuery`, refusing bad input the way Yahoo does.

Everything a client may send to ``GET /v8/finance/chart/{symbol}`` is checked here and
nowhere else; the only exception that leaves is :class:`proxy.errors.YahooError`
(400/404/422), so a malformed request can never become a 500.

Only what changes the answer reaches :class:`ChartQuery` (symbol, interval, prepost,
window, events): ``crumb``, ``lang``, ``region``, ``corsDomain``, ``.tsrc``,
``includeAdjustedClose`` and unknown parameters are ignored, so they never split the
cache. Parameter names are case-sensitive; a repeated parameter counts by its first
value (aiohttp's ``MultiDict.get``). An empty value counts as absent.

Where Yahoo's behaviour is not measured, the rule below picks the nearest Yahoo-like
answer and says so in a comment marked "Unmeasured".
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.errors import bad_request, not_found, unprocessable
from proxy.intervals import DAY, VALID_INTERVALS, VALID_RANGES, Interval, lookup
from proxy.series import SeriesKey

MAX_QUERY_CHARS = 4096  # the default of [server] max_query_chars
MAX_SYMBOL_CHARS = 32
MAX_ECHO_CHARS = 32  # a rejected value is echoed in the error body up to this length

# period1/period2 outside 1900-01-01 .. 2100-01-01 are clamped into it (see _period).
PERIOD_MIN = -2_208_988_800
PERIOD_MAX = 4_102_444_800

# Unmeasured: yfinance 1.7.0 turns period="max" with 1m into a window of 8 days - 5 s
# (``start = end - 691200 + 5``), which it could only do if Yahoo answers it. So a
# period1/period2 window may exceed the per-request limit by up to a day before it is
# 422. Range tokens are checked strictly by their nominal length (range=8d with 1m is 422).
PERIOD_WINDOW_GRACE_S = DAY
# yfinance computes period="max" windows as ``now - limit + 5 s`` on the client; a
# minute of slack absorbs the request's flight time and client/proxy clock skew.
LOOKBACK_GRACE_S = 60

EVENTS = frozenset({"div", "split", "capitalGains", "earn"})
_EVENT_ALIASES = {
    "div": "div",
    "split": "split",
    "splits": "split",  # what yfinance sends
    "capitalgains": "capitalGains",
    "earn": "earn",
}

# Letters, digits and . - = ^ & _ (ES=F, ^GSPC, BRK-B, 7974.T, M&M.NS, ESZ26.CME). ``_``
# is in no Yahoo ticker we know of, but [instruments] in proxy.toml allows it and
# it is harmless in a Redis key and a URL path segment. ASCII only, checked before
# upper-casing (so no Unicode case mapping can turn junk into a valid symbol).
_SYMBOL = re.compile(rf"[A-Za-z0-9.\-=^&_]{{1,{MAX_SYMBOL_CHARS}}}")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_INTEGER = re.compile(r"[+-]?[0-9]{1,12}")
_RANGE = re.compile(r"([0-9]{1,6})(d|wk|mo|y)")
# The longest range accepted per unit: a hundred years.
_RANGE_MAX = {"d": 36_500, "wk": 5_200, "mo": 1_200, "y": 100}

_INTERVALS_TEXT = ", ".join(VALID_INTERVALS)
_RANGES_TEXT = ", ".join(VALID_RANGES)


@dataclass(frozen=True, slots=True)
class ChartQuery:
    """One validated chart request.

    Exactly one window: ``period1``/``period2`` when set (``range`` is then None, except
    for range=max on an intraday interval, clamped to a period but echoed as "max"),
    else ``range``.
    """

    symbol: str  # normalised upper case, validated
    interval: Interval  # canonical (60m -> 1h)
    prepost: bool
    range: str | None  # normalised range token, None for period requests
    period1: int | None  # unix seconds
    period2: int | None  # unix seconds, as asked (may lie in the future); now when not asked
    events: frozenset[str]  # subset of EVENTS
    # Derived once: the hot path asks for it several times per request.
    series_key: SeriesKey = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # includePrePost changes nothing in daily and longer bars (measured: IBM 1d with
        # includePrePost=True is plain daily bars), so they share one series.
        key = SeriesKey(self.symbol, self.interval.name, self.prepost and self.interval.intraday)
        object.__setattr__(self, "series_key", key)

    @property
    def range_echo(self) -> str:
        """What Yahoo puts in ``meta.range``: the asked range, "" for period requests."""
        return self.range or ""


def check_query_string(raw_qs: str, *, limit: int = MAX_QUERY_CHARS) -> None:
    """Refuse an over-long query string before anything parses it.

    Unmeasured: Yahoo's edge refuses huge URLs in its own way; a Yahoo-shaped 400 keeps
    every error on a Yahoo path in the one shape clients parse.
    """
    if len(raw_qs) > limit:
        raise bad_request(f"Invalid input - query string is longer than {limit} characters")


def normalise_symbol(raw: str) -> str:
    """The upper-case symbol, or Yahoo's 404 for anything that cannot be a Yahoo symbol.

    The result holds only ``A-Z 0-9 . - = ^ & _``: safe inside a Redis hash tag
    (no ``{}|:``) and as a URL path segment (no ``/ \\ %``, never ``.`` or ``..``).
    Percent-decoding is the router's job; a ``%`` here is refused, never decoded again.
    """
    if (
        not isinstance(raw, str)
        or _SYMBOL.fullmatch(raw) is None
        or _ALNUM.search(raw) is None
        or raw.startswith(".")
        or raw.endswith(".")
        or ".." in raw
    ):
        raise not_found()
    return raw.upper()


def parse_chart_query(symbol: str, params: Mapping[str, str], *, now: float) -> ChartQuery:
    """Validate a chart request; raises :class:`YahooError` (400/404/422) and nothing else.

    ``params`` is aiohttp's ``request.query`` (a ``MultiDictProxy``) or any mapping.
    Every parameter present is validated, even one the window does not use (a junk
    ``range`` next to ``period1`` is a 400). Unmeasured: Yahoo may skip the unused one.
    """
    normalised = normalise_symbol(symbol)
    asked_interval = _param(params, "interval") or "1d"
    interval = lookup(asked_interval)
    if interval is None:
        raise bad_request(
            f"Invalid input - interval={_shown(asked_interval)} is not supported. "
            f"Valid intervals: [{_INTERVALS_TEXT}]"
        )
    prepost = _flag(_param(params, "includePrePost"))
    events = _events(_param(params, "events"))
    rng = _range(_param(params, "range"))
    period1 = _period("period1", _param(params, "period1"))
    period2 = _period("period2", _param(params, "period2"))
    now_s = int(now)

    if period1 is not None:
        # Yahoo prefers period1/period2 over range when both are sent.
        end = period2 if period2 is not None else now_s
        if period1 > end:
            raise bad_request(
                f"Invalid input - start date cannot be after end date. startDate = {period1}, endDate = {end}"
            )
        _check_limits(asked_interval, interval, period1, end, now_s, PERIOD_WINDOW_GRACE_S)
        return ChartQuery(normalised, interval, prepost, None, _clamp(period1), _clamp(end), events)

    # Unmeasured: a lone period2 (no period1) is validated but does not pick the window.
    rng = rng or "1d"
    if rng == "max" and (days := _latest_window_days(interval)) is not None:
        # Unmeasured: Yahoo answers the latest window it allows rather than a 422 (yfinance
        # never sends range=max intraday; it converts period="max" to period1/period2).
        # The clamp is made a period so the cut can never exceed Yahoo's limit.
        return ChartQuery(normalised, interval, prepost, "max", now_s - days * DAY, now_s, events)
    if interval.intraday:
        _check_limits(asked_interval, interval, now_s - _range_seconds(rng, now_s), now_s, now_s, 0)
    return ChartQuery(normalised, interval, prepost, rng, None, None, events)


def _param(params: Mapping[str, str], name: str) -> str | None:
    """The first value of a parameter; None when absent or empty."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):  # a plain mapping from code (tests, CLI) may hold ints
        value = str(value)
    return value or None


def _shown(value: str) -> str:
    """A rejected value as echoed in an error body: absurdly long ones are cut."""
    return value if len(value) <= MAX_ECHO_CHARS else value[:MAX_ECHO_CHARS] + "..."


def _flag(raw: str | None) -> bool:
    # Unmeasured: Java's Boolean.parseBoolean semantics - "true" in any case is true,
    # anything else (including "1" and junk) is false, never an error. yfinance always
    # sends True/False (requests) or true/false (curl_cffi).
    return raw is not None and raw.isascii() and raw.lower() == "true"


def _events(raw: str | None) -> frozenset[str]:
    """Known event names, ``,`` or ``|`` separated (Yahoo's site sends div|split|earn)."""
    if raw is None:
        return frozenset()
    names = (part.strip().lower() for part in re.split(r"[,|]", raw) if part.isascii())
    return frozenset(_EVENT_ALIASES[name] for name in names if name in _EVENT_ALIASES)


def _range(raw: str | None) -> str | None:
    """The normalised range token: case folded, leading zeros dropped (05D -> 5d)."""
    if raw is None:
        return None
    token = raw.lower() if raw.isascii() else raw
    if token in ("ytd", "max"):
        return token
    match = _RANGE.fullmatch(token)
    if match is not None:
        count, unit = int(match[1]), match[2]
        if 0 < count <= _RANGE_MAX[unit]:
            return f"{count}{unit}"
    raise bad_request(f"Invalid input - range={_shown(raw)} is not supported. Valid ranges: [{_RANGES_TEXT}]")


def _period(name: str, raw: str | None) -> int | None:
    """An integer unix time; Yahoo accepts no fractions, exponents or spaces.

    Unmeasured: values outside 1900..2100 are clamped rather than refused (Yahoo answers
    old starts from the first trade; yfinance's period="max" starts 99 years back).
    The clamp happens when the query is stored; checks and messages use the asked value.
    """
    if raw is None:
        return None
    if _INTEGER.fullmatch(raw) is None:
        raise bad_request(f"Invalid input - {name}={_shown(raw)} is not a valid value")
    return int(raw)


def _clamp(value: int) -> int:
    return min(max(value, PERIOD_MIN), PERIOD_MAX)


def _latest_window_days(interval: Interval) -> int | None:
    """The widest window Yahoo answers for an intraday interval; None when unlimited."""
    return interval.per_request_days or interval.lookback_days


def _range_seconds(rng: str, now_s: int) -> int:
    """A range token's nominal length, for Yahoo's window limits (never for the cut).

    ``Nd`` counts calendar days here although the cut counts sessions: Yahoo checks
    the token (range=7d with 1m is fine, 8d is 422). Months, years and ytd are
    calendar arithmetic from now in UTC (range=2y from 2026-09-27 is 730 days).
    """
    if rng == "ytd":
        today = dt.datetime.fromtimestamp(now_s, dt.UTC)
        return now_s - int(dt.datetime(today.year, 1, 1, tzinfo=dt.UTC).timestamp())
    match = _RANGE.fullmatch(rng)
    assert match is not None  # _range lets only valid tokens through; max never comes here
    count, unit = int(match[1]), match[2]
    if unit == "d":
        return count * DAY
    if unit == "wk":
        return count * 7 * DAY
    return now_s - _months_back(now_s, count if unit == "mo" else 12 * count)


def _months_back(now_s: int, months: int) -> int:
    now = dt.datetime.fromtimestamp(now_s, dt.UTC)
    year, month0 = divmod(now.year * 12 + now.month - 1 - months, 12)
    day = min(now.day, calendar.monthrange(year, month0 + 1)[1])
    return int(now.replace(year=year, month=month0 + 1, day=day).timestamp())


def _check_limits(
    asked: str, interval: Interval, start: int, end: int, now_s: int, window_grace_s: int
) -> None:
    """Yahoo's 422s: no partial data across a limit.

    The width check comes first: as reported in yfinance issues #165 and #383, a
    2-year 1m window years back gets the 7-days text, a 2-day one 36 days back the
    30-days text. A future end counts as now for the width, but is echoed as asked.
    """
    per_request = interval.per_request_days
    if per_request is not None and min(end, now_s) - start > per_request * DAY + window_grace_s:
        raise unprocessable(
            f"{asked} data not available for startTime={start} and endTime={end}. "
            f"Only {per_request} days worth of {asked} granularity data are allowed to be fetched "
            "per request."
        )
    lookback = interval.lookback_days
    if lookback is not None and start < now_s - lookback * DAY - LOOKBACK_GRACE_S:
        raise unprocessable(
            f"{asked} data not available for startTime={start} and endTime={end}. "
            f"The requested range must be within the last {lookback} days."
        )


__all__ = [
    "EVENTS",
    "MAX_QUERY_CHARS",
    "ChartQuery",
    "check_query_string",
    "normalise_symbol",
    "parse_chart_query",
]
