"""Trading sessions per calendar, as sorted numpy arrays of epoch seconds.

Exchange calendars come from pandas-market-calendars (holidays and early closes included);
the FX calendar (Sunday 17:00 to Friday 17:00 New York, 24 h a day) is generated here.
Tables are built once per process and cached, because building one costs 50-250 ms while
a request must stay well under that."""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

Stamp = Literal["open", "midnight"]
Int64Array = np.ndarray


@dataclass(frozen=True)
class CalendarSpec:
    key: str
    source: str  # pandas-market-calendars name, or "fx24"
    tz: str
    first_year: int
    stamp: Stamp  # daily bars: session open (stocks) or 00:00 of the trading date (futures, FX)
    pre_clock_s: int | None = None  # local time pre-market bars start (US stocks: 04:00)
    post_s: int = 0  # post-market bars last this long after the close (US stocks: 4 h)
    quote_pre_s: int = 0  # currentTradingPeriod's pre/post length for exchanges without bars there
    quote_post_s: int = 0
    overnight: bool = False  # sessions cross midnight: tradingPeriods are per calendar day


_NY = "America/New_York"

CALENDARS: dict[str, CalendarSpec] = {
    spec.key: spec
    for spec in [
        CalendarSpec("XNYS", "XNYS", _NY, 1925, "open", pre_clock_s=4 * 3600, post_s=4 * 3600),
        CalendarSpec("XTKS", "XTKS", "Asia/Tokyo", 1999, "open"),
        CalendarSpec("XLON", "XLON", "Europe/London", 1993, "open", quote_pre_s=2700, quote_post_s=2700),
        CalendarSpec("CME_Equity", "CME_Equity", _NY, 2000, "midnight", overnight=True),
        CalendarSpec("CMEGlobex_Crude", "CMEGlobex_Crude", _NY, 2000, "midnight", overnight=True),
        CalendarSpec("CMEGlobex_NatGas", "CMEGlobex_NatGas", _NY, 2000, "midnight", overnight=True),
        CalendarSpec("CMEGlobex_Gold", "CMEGlobex_Gold", _NY, 2000, "midnight", overnight=True),
        CalendarSpec("CMEGlobex_Silver", "CMEGlobex_Silver", _NY, 2000, "midnight", overnight=True),
        CalendarSpec("CMEGlobex_Copper", "CMEGlobex_Copper", _NY, 2000, "midnight", overnight=True),
        CalendarSpec("CMEGlobex_FX", "CMEGlobex_FX", _NY, 2000, "midnight", overnight=True),
        CalendarSpec("CME_Bond", "CME_Bond", "America/Chicago", 2000, "midnight", overnight=True),
        CalendarSpec("FX24", "fx24", "Europe/London", 2003, "midnight", overnight=True),
    ]
}


@dataclass(frozen=True)
class SessionTable:
    """One row per trading date, sorted. Times are epoch seconds; ``brk_*`` are equal when
    the session has no break; ``pre``/``post`` equal ``open``/``close`` without extended hours."""

    spec: CalendarSpec
    day: Int64Array  # trading date as days since 1970-01-01
    open: Int64Array
    close: Int64Array
    brk_start: Int64Array
    brk_end: Int64Array
    pre: Int64Array
    post: Int64Array
    stamp: Int64Array  # daily bar timestamp

    def __len__(self) -> int:
        return len(self.day)

    def starts(self, extended: bool) -> Int64Array:
        return self.pre if extended else self.open

    def ends(self, extended: bool) -> Int64Array:
        return self.post if extended else self.close

    def latest(self, now: float, extended: bool = False) -> int:
        """Index of the last session that has started by ``now`` (-1 if none)."""
        return int(np.searchsorted(self.starts(extended), now, side="right")) - 1

    def overlapping(self, t0: float, t1: float, extended: bool = False) -> tuple[int, int]:
        """Half-open index range of sessions that overlap [t0, t1)."""
        lo = int(np.searchsorted(self.ends(extended), t0, side="right"))
        hi = int(np.searchsorted(self.starts(extended), t1, side="left"))
        return lo, max(lo, hi)

    def first_on_or_after(self, day: dt.date) -> int:
        return int(np.searchsorted(self.day, _days(day), side="left"))

    def date_of(self, index: int) -> dt.date:
        return _EPOCH_DATE + dt.timedelta(days=int(self.day[index]))

    def current(self, now: float) -> int:
        """The session Yahoo's currentTradingPeriod describes: the one trading today (local
        date) or in progress, else the latest one before now."""
        today = _days(dt.datetime.fromtimestamp(now, ZoneInfo(self.spec.tz)).date())
        i = int(np.searchsorted(self.day, today, side="left"))
        if i < len(self) and self.day[i] == today:
            return i
        running = int(np.searchsorted(self.open, now, side="right")) - 1  # e.g. Sunday evening futures
        return max(0, min(running, len(self) - 1))


_EPOCH_DATE = dt.date(1970, 1, 1)


def _days(day: dt.date) -> int:
    return (day - _EPOCH_DATE).days


def _epoch(values: pd.Series | pd.DatetimeIndex) -> Int64Array:
    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return np.asarray(index.to_numpy().astype("datetime64[s]"), dtype=np.int64)


def _local(dates: pd.DatetimeIndex, tz: str, seconds: int | Int64Array) -> Int64Array:
    """Epoch seconds of ``seconds`` after local midnight of each date (DST-correct)."""
    naive = dates.tz_localize(None) + pd.to_timedelta(seconds, unit="s")
    return _epoch(naive.tz_localize(tz, ambiguous=True, nonexistent="shift_forward"))


def _from_market_calendar(spec: CalendarSpec, end_year: int) -> SessionTable:
    import pandas_market_calendars as mcal  # heavy import: only when a table is first built

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pmc warns about projected holidays far ahead
        calendar = mcal.get_calendar(spec.source)
        schedule = calendar.schedule(start_date=f"{spec.first_year}-01-01", end_date=f"{end_year}-12-31")
    dates = pd.DatetimeIndex(schedule.index).normalize()
    open_ = _epoch(schedule["market_open"])
    close = _epoch(schedule["market_close"])
    if "break_start" in schedule.columns:
        brk_start = _epoch(schedule["break_start"].fillna(schedule["market_close"]))
        brk_end = _epoch(schedule["break_end"].fillna(schedule["market_close"]))
        no_break = brk_end <= brk_start  # CME_Equity reports zero-length breaks
        brk_start = np.where(no_break, close, brk_start)
        brk_end = np.where(no_break, close, brk_end)
    else:
        brk_start, brk_end = close.copy(), close.copy()
    pre = _local(dates, spec.tz, spec.pre_clock_s) if spec.pre_clock_s is not None else open_.copy()
    post = close + spec.post_s
    stamp = open_.copy() if spec.stamp == "open" else _local(dates, spec.tz, 0)
    day = dates.to_numpy().astype("datetime64[D]").astype(np.int64)
    return SessionTable(spec, day, open_, close, brk_start, brk_end, pre, post, stamp)


def _fx24(spec: CalendarSpec, end_year: int) -> SessionTable:
    """FX trades from 17:00 New York of the previous day to 17:00 of the trading date,
    Monday to Friday; the only closed weekdays are 25 December and 1 January."""
    dates = pd.bdate_range(f"{spec.first_year}-01-01", f"{end_year}-12-31")
    closed = ((dates.month == 12) & (dates.day == 25)) | ((dates.month == 1) & (dates.day == 1))
    dates = dates[~closed]
    five_pm = 17 * 3600
    close = _local(dates, _NY, five_pm)
    open_ = _local(dates - pd.Timedelta(days=1), _NY, five_pm)
    stamp = _local(dates, spec.tz, 0)
    day = dates.to_numpy().astype("datetime64[D]").astype(np.int64)
    return SessionTable(
        spec, day, open_, close, close.copy(), close.copy(), open_.copy(), close.copy(), stamp
    )


@functools.lru_cache(maxsize=64)
def _build(key: str, end_year: int) -> SessionTable:
    spec = CALENDARS[key]
    if spec.source == "fx24":
        return _fx24(spec, end_year)
    return _from_market_calendar(spec, end_year)


def table(key: str, now: float) -> SessionTable:
    """The calendar's sessions from its first year to at least two years after ``now``."""
    year = dt.datetime.fromtimestamp(now, dt.UTC).year + 2
    return _build(key, max(2035, -(-year // 10) * 10))


def warm(now: float) -> None:
    """Build every table up front so no request pays for it."""
    for key in CALENDARS:
        table(key, now)


@dataclass(frozen=True)
class Period:
    start: int
    end: int


def tz_parts(tz: str, at: float) -> tuple[str, int]:
    """(abbreviation, UTC offset in seconds) of a zone at an instant, as Yahoo reports them."""
    local = dt.datetime.fromtimestamp(at, ZoneInfo(tz))
    offset = local.utcoffset() or dt.timedelta(0)
    return local.tzname() or "", int(offset.total_seconds())


def calendar_day_periods(t: SessionTable, lo: int, hi: int) -> list[Period]:
    """For calendars whose sessions cross midnight: one period per local calendar day that
    has trading, from its first open to its last close, capped at 23:59 like Yahoo's futures
    periods. One entry per date keeps yfinance's date-keyed merge of tradingPeriods working."""
    zone = ZoneInfo(t.spec.tz)
    by_day: dict[dt.date, list[int]] = {}
    for i in range(lo, hi):
        start, end = int(t.open[i]), int(t.close[i])
        cursor = start
        while cursor < end:
            local = dt.datetime.fromtimestamp(cursor, zone)
            next_midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), zone)
            piece_end = min(end, int(next_midnight.timestamp()))
            span = by_day.setdefault(local.date(), [cursor, piece_end])
            span[0], span[1] = min(span[0], cursor), max(span[1], piece_end)
            cursor = piece_end
    periods = []
    for day, (start, end) in sorted(by_day.items()):
        last_minute = int(dt.datetime.combine(day, dt.time(23, 59), zone).timestamp())
        periods.append(Period(start, min(end, last_minute)))
    return periods
