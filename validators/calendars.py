"""Trading calendars: which calendar an instrument trades on, its sessions, the bar
timestamps Yahoo sends inside them, and the quiet hours of its day.

Sessions, holidays, early closes and lunch breaks come from pandas-market-calendars
(pinned). Two things it does not know are stated here, as the Yahoo simulator states
them: US stocks' extended hours (04:00 to 20:00 New York, i.e. 4 h after the close) and
the spot FX day (17:00 New York to 17:00 New York, Monday to Friday, closed on 25 December
and 1 January); FX takes its weekdays from the library's 24/5 calendar.

Building a schedule costs tens of milliseconds (the first one, with the library's import,
about a second), so schedules are built per calendar and decade, once per process.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from proxy.intervals import lookup

if TYPE_CHECKING:
    import pandas as pd

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_NY = "America/New_York"
_CHICAGO = "America/Chicago"
_HOUR = 3600
_DAY = 86_400
# Yahoo files CME products under New York (ES, CL, GC) or Chicago (ZN) depending on the
# product, so any CME calendar accepts both as the instrument's exchange time zone.
_CME_ZONES = frozenset({_NY, _CHICAGO})


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    name: str
    source: str  # pandas-market-calendars name
    tz: str  # daily stamps at midnight and the busy hours are read in this zone
    zones: frozenset[str]  # exchangeTimezoneName values Yahoo reports for instruments on it
    daily_at_open: bool  # daily bar at the session open (stocks), else 00:00 of the trading date
    pre_clock: int | None = None  # local time extended-hours bars start (US stocks: 04:00)
    post_len: int = 0  # extended-hours bars run this long after the close (US stocks: 4 h)
    # Local (start, end) seconds after midnight when the product is busy; outside is quiet.
    # None: the regular session is the busy part and extended hours are quiet.
    busy: tuple[int, int] | None = None

    @property
    def has_extended_hours(self) -> bool:
        return self.pre_clock is not None or self.post_len > 0


def _hm(hours: int, minutes: int = 0) -> int:
    return hours * _HOUR + minutes * 60


# Busy hours of futures are the product family's former open-outcry hours, where volume
# still concentrates (the cash session for equity-index futures); overnight trade is thin.
_EQUITY_INDEX = (_hm(9, 30), _hm(16))  # New York cash session
_ENERGY = (_hm(9), _hm(14, 30))  # NYMEX floor, settlement at 14:30 New York
_METALS = (_hm(8, 20), _hm(13, 30))  # COMEX floor
_RATES_FX = (_hm(7, 20), _hm(14))  # CBOT / CME floor, Chicago time (08:30 ET data inside)


def _futures(name: str, tz: str, busy: tuple[int, int]) -> CalendarSpec:
    return CalendarSpec(name, name, tz, _CME_ZONES, daily_at_open=False, busy=busy)


CALENDARS: Mapping[str, CalendarSpec] = {
    spec.name: spec
    for spec in [
        CalendarSpec("XNYS", "XNYS", _NY, frozenset({_NY}), True, pre_clock=_hm(4), post_len=4 * _HOUR),
        CalendarSpec("XTKS", "XTKS", "Asia/Tokyo", frozenset({"Asia/Tokyo"}), True),
        CalendarSpec("XLON", "XLON", "Europe/London", frozenset({"Europe/London"}), True),
        _futures("CME_Equity", _NY, _EQUITY_INDEX),
        _futures("CMEGlobex_Crude", _NY, _ENERGY),
        _futures("CMEGlobex_NatGas", _NY, _ENERGY),
        _futures("CMEGlobex_HO", _NY, _ENERGY),
        _futures("CMEGlobex_RB", _NY, _ENERGY),
        _futures("CMEGlobex_Gold", _NY, _METALS),
        _futures("CMEGlobex_Silver", _NY, _METALS),
        _futures("CMEGlobex_Copper", _NY, _METALS),
        _futures("CMEGlobex_Platinum", _NY, _METALS),
        _futures("CMEGlobex_FX", _NY, (_hm(8, 20), _hm(15))),  # the Chicago floor hours in New York
        _futures("CME_Bond", _CHICAGO, _RATES_FX),
        # Spot FX and crypto trade around the clock: no part of their day is singled out.
        CalendarSpec("FX24", "24/5", "Europe/London", frozenset({"Europe/London"}), False),
        CalendarSpec("24/7", "24/7", "UTC", frozenset({"UTC", "Etc/UTC"}), False),
    ]
}

FUTURES_ROOTS: Mapping[str, str] = {
    **dict.fromkeys(("ES", "NQ", "YM", "RTY", "MES", "MNQ", "MYM", "M2K"), "CME_Equity"),
    **dict.fromkeys(("CL", "MCL", "QM"), "CMEGlobex_Crude"),
    **dict.fromkeys(("NG", "QG"), "CMEGlobex_NatGas"),
    "HO": "CMEGlobex_HO",
    "RB": "CMEGlobex_RB",
    **dict.fromkeys(("GC", "MGC"), "CMEGlobex_Gold"),
    **dict.fromkeys(("SI", "SIL"), "CMEGlobex_Silver"),
    **dict.fromkeys(("HG", "MHG"), "CMEGlobex_Copper"),
    "PL": "CMEGlobex_Platinum",
    **dict.fromkeys(("ZN", "ZB", "ZF", "ZT", "UB", "TN"), "CME_Bond"),
    **dict.fromkeys(("6E", "6B", "6J", "6A", "6C", "6S", "M6E"), "CMEGlobex_FX"),
}

# Yahoo exchange codes of US listings and of the US index families that follow NYSE hours.
_US_EXCHANGES = frozenset(
    {"NMS", "NGM", "NCM", "NAS", "NYQ", "NYS", "PCX", "ASE", "BTS", "SNP", "NIM", "DJI"}
)
_EQUITY_TYPES = frozenset({"EQUITY", "ETF", "INDEX"})
_DATED_CONTRACT = re.compile(r"^(?P<root>[A-Z0-9]+?)[FGHJKMNQUVXZ]\d{2}\.[A-Z]{3}$")


def futures_root(symbol: str) -> str | None:
    """The product root of a continuous (``ES=F``) or dated (``ESZ26.CME``) futures symbol."""
    upper = symbol.strip().upper()
    if upper.endswith("=F"):
        return upper[:-2] or None
    match = _DATED_CONTRACT.match(upper)
    return match["root"] if match else None


def calendar_for(symbol: str, meta: Mapping[str, Any]) -> str | None:
    """The calendar an instrument trades on, or None when we cannot tell (then gaps and the
    grid are not judged). Decided by the symbol first, the chart meta second."""
    upper = symbol.strip().upper()
    kind = str(meta.get("instrumentType") or "").upper()
    root = futures_root(upper)
    if root is not None or kind == "FUTURE":
        return FUTURES_ROOTS.get(root or "")
    if kind == "CURRENCY" or upper.endswith("=X"):
        return "FX24"
    if kind == "CRYPTOCURRENCY":
        return "24/7"
    if kind and kind not in _EQUITY_TYPES:
        return None  # mutual funds, options...: no intraday grid we can vouch for
    if upper.endswith(".T"):
        return "XTKS"
    if upper.endswith(".L"):
        return "XLON"
    if "." in upper or "=" in upper:
        return None  # another exchange's suffix
    return "XNYS" if str(meta.get("exchangeName") or "") in _US_EXCHANGES else None


def spec(calendar: str) -> CalendarSpec:
    try:
        return CALENDARS[calendar]
    except KeyError:
        raise KeyError(f"unknown calendar {calendar!r}; known: {', '.join(CALENDARS)}") from None


@dataclass(frozen=True, slots=True)
class Schedule:
    """Sessions of one calendar, one row per trading date, sorted; epoch seconds.

    ``brk_*`` equal ``close`` when the session has no break; ``pre``/``post`` equal
    ``open``/``close`` when the calendar has no extended hours."""

    day: IntArray  # trading date, days since 1970-01-01
    open: IntArray
    close: IntArray
    brk_start: IntArray
    brk_end: IntArray
    pre: IntArray
    post: IntArray
    stamp: IntArray  # the daily bar's timestamp

    def __len__(self) -> int:
        return int(self.day.shape[0])

    def rows(self, lo: int, hi: int) -> Schedule:
        return Schedule(*(getattr(self, f)[lo:hi] for f in _SCHEDULE_FIELDS))

    def starts(self, prepost: bool) -> IntArray:
        return self.pre if prepost else self.open

    def ends(self, prepost: bool) -> IntArray:
        return self.post if prepost else self.close


_SCHEDULE_FIELDS = ("day", "open", "close", "brk_start", "brk_end", "pre", "post", "stamp")


def _epoch(values: Any) -> IntArray:
    import pandas as pd

    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.to_numpy().astype("datetime64[s]").astype(np.int64)


def _at_local(dates: pd.DatetimeIndex, tz: str, seconds: int | IntArray) -> IntArray:
    """Epoch seconds of ``seconds`` after local midnight of each date (DST-correct)."""
    import pandas as pd

    naive = dates.tz_localize(None) + pd.to_timedelta(seconds, unit="s")
    return _epoch(naive.tz_localize(tz, ambiguous=True, nonexistent="shift_forward"))


def wall_clock(ts: IntArray, tz: str) -> IntArray:
    """Local wall-clock time of each instant, as seconds since the local epoch."""
    import pandas as pd

    local = pd.DatetimeIndex(ts.astype("datetime64[s]")).tz_localize("UTC").tz_convert(tz)
    return local.tz_localize(None).to_numpy().astype("datetime64[s]").astype(np.int64)


@functools.lru_cache(maxsize=32)
def _market_calendar(source: str) -> Any:
    import pandas_market_calendars as mcal  # heavy: imported when a schedule is first built

    return mcal.get_calendar(source)


@functools.lru_cache(maxsize=256)
def _decade(calendar: str, first_year: int) -> Schedule:
    s = spec(calendar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library warns about projected holidays far ahead
        frame = _market_calendar(s.source).schedule(
            start_date=f"{first_year}-01-01", end_date=f"{first_year + 9}-12-31"
        )
    import pandas as pd

    dates = pd.DatetimeIndex(frame.index).normalize()
    if calendar == "FX24":
        return _fx_day(dates, s)
    open_, close = _epoch(frame["market_open"]), _epoch(frame["market_close"])
    if "break_start" in frame.columns:
        brk_start = _epoch(frame["break_start"].fillna(frame["market_close"]))
        brk_end = _epoch(frame["break_end"].fillna(frame["market_close"]))
        no_break = brk_end <= brk_start  # CME_Equity lists zero-length breaks
        brk_start, brk_end = np.where(no_break, close, brk_start), np.where(no_break, close, brk_end)
    else:
        brk_start, brk_end = close.copy(), close.copy()
    pre = _at_local(dates, s.tz, s.pre_clock) if s.pre_clock is not None else open_.copy()
    stamp = open_.copy() if s.daily_at_open else _at_local(dates, s.tz, 0)
    return Schedule(_days(dates), open_, close, brk_start, brk_end, pre, close + s.post_len, stamp)


def _days(dates: pd.DatetimeIndex) -> IntArray:
    return dates.to_numpy().astype("datetime64[D]").astype(np.int64)


def _fx_day(weekdays: pd.DatetimeIndex, s: CalendarSpec) -> Schedule:
    """Spot FX: each weekday's session runs from 17:00 New York the day before to 17:00."""
    import pandas as pd

    closed = ((weekdays.month == 12) & (weekdays.day == 25)) | ((weekdays.month == 1) & (weekdays.day == 1))
    dates = weekdays[~closed]
    close = _at_local(dates, _NY, _hm(17))
    open_ = _at_local(dates - pd.Timedelta(days=1), _NY, _hm(17))
    same = close.copy()
    return Schedule(_days(dates), open_, close, same, same.copy(), open_.copy(), close.copy(),
                    _at_local(dates, s.tz, 0))  # fmt: skip


@functools.lru_cache(maxsize=64)
def _years(calendar: str, first_decade: int, last_decade: int) -> Schedule:
    blocks = [_decade(calendar, d) for d in range(first_decade, last_decade + 1, 10)]
    return Schedule(*(np.concatenate([getattr(b, f) for b in blocks]) for f in _SCHEDULE_FIELDS))


def _year(t: int) -> int:
    return int(np.datetime64(int(t), "s").astype("datetime64[Y]").astype(np.int64)) + 1970


def schedule(calendar: str, start: int, end: int) -> Schedule:
    """Sessions whose trading hours (extended hours included) overlap [start, end)."""
    spec(calendar)  # fail early on an unknown name
    # A session's trading date may lie a day after its open (futures open the evening before).
    first = (_year(start - 2 * _DAY) // 10) * 10
    last = (_year(end + 2 * _DAY) // 10) * 10
    table = _years(calendar, first, last)
    lo = int(np.searchsorted(table.post, start, side="right"))
    hi = int(np.searchsorted(table.pre, end, side="left"))
    return table.rows(lo, max(lo, hi))


def sessions(calendar: str, start: int, end: int, *, prepost: bool) -> tuple[IntArray, IntArray]:
    """(opens, closes) of the sessions that overlap [start, end), extended hours included
    when ``prepost`` and the calendar has them. Lunch breaks are not split out."""
    table = schedule(calendar, start, end)
    opens, closes = table.starts(prepost), table.ends(prepost)
    keep = (closes > start) & (opens < end)
    return opens[keep], closes[keep]


@dataclass(frozen=True, slots=True)
class Grid:
    """The bar timestamps Yahoo sends for one calendar and interval over some sessions."""

    intraday: bool
    slots: IntArray  # sorted bar timestamps
    session: IntArray  # row in ``table`` of each slot
    table: Schedule
    starts: IntArray  # per session: first instant a bar may carry (pre-market or open)
    ends: IntArray  # per session: last instant, where Yahoo's closing print may sit

    def in_window(self, start: int, end: int) -> BoolArray:
        """Slots a request for [start, end) expects: Yahoo selects bars by their timestamp."""
        return (self.slots >= start) & (self.slots < end)

    def opened_before(self, end: int) -> BoolArray:
        """Slots whose session opened before ``end``. A futures daily bar is stamped at the
        midnight after its 18:00 open, so an answer up to now may hold one stamped later."""
        return self.table.open[self.session] < end

    def last_slot(self) -> IntArray:
        """Per session: its last slot (the session's start when it has none)."""
        out = self.starts.copy()
        if self.slots.size:
            rows = np.arange(out.shape[0])
            last = np.searchsorted(self.session, rows, side="right") - 1
            has = (last >= 0) & (self.session[np.maximum(last, 0)] == rows)
            out[has] = self.slots[last[has]]
        return out


def grid(calendar: str, interval: str, start: int, end: int, *, prepost: bool) -> Grid:
    """Bars of ``interval`` for the sessions overlapping [start, end). Intraday: the interval's
    grid anchored at each part's start (pre-market at 04:00, the session at its open,
    post-market at the close), a slot cut by a lunch break starting when trading resumes.
    Daily: one bar per session at its stamp. Other intervals have no calendar grid."""
    info = lookup(interval)
    if info is None:
        raise ValueError(f"unknown interval {interval!r}")
    s = spec(calendar)
    extended = prepost and s.has_extended_hours and info.intraday
    table = schedule(calendar, start, end)
    starts, ends = table.starts(extended), table.ends(extended)
    if info.name == "1d":
        rows = np.arange(len(table), dtype=np.int64)
        return Grid(False, table.stamp.copy(), rows, table, table.open.copy(), table.close.copy())
    if not info.intraday:
        raise ValueError(f"{interval} bars aggregate sessions: there is no calendar grid for them")
    slots, session = _intraday_slots(table, info.seconds, extended)
    return Grid(True, slots, session, table, starts.copy(), ends.copy())


def _intraday_slots(table: Schedule, step: int, extended: bool) -> tuple[IntArray, IntArray]:
    # Four parts per session, in time order: pre-market, morning, afternoon, post-market.
    pre = table.pre if extended else table.open
    post = table.post if extended else table.close
    seg_start = np.stack([pre, table.open, table.brk_end, table.close], axis=1).ravel()
    seg_end = np.stack([table.open, table.brk_start, table.close, post], axis=1).ravel()
    anchor = np.stack([pre, table.open, table.open, table.close], axis=1).ravel()
    k_lo = (seg_start - anchor) // step  # first slot still running at the part's start
    k_hi = -((anchor - seg_end) // step)  # ceil: slots starting before the part's end
    count = np.where(seg_end > seg_start, np.maximum(k_hi - k_lo, 0), 0)
    seg = np.repeat(np.arange(seg_start.shape[0]), count)
    first = np.repeat(np.cumsum(count) - count, count)
    k = np.arange(seg.shape[0], dtype=np.int64) - first + k_lo[seg]
    slots = np.maximum(anchor[seg] + k * step, seg_start[seg])
    return slots.astype(np.int64), (seg // 4).astype(np.int64)


def expected_bars(calendar: str, interval: str, start: int, end: int, *, prepost: bool) -> IntArray:
    """Timestamps of the bars Yahoo sends for a request over [start, end) (without the
    closing print it adds at the end of an intraday answer)."""
    g = grid(calendar, interval, start, end, prepost=prepost)
    return g.slots[g.in_window(start, end)]


def quiet_mask(calendar: str, ts: IntArray) -> BoolArray:
    """True for bars in the quiet part of the day, where thin trading (and Yahoo leaving out
    bars without trades) is normal: futures outside their family's busy hours, stocks
    outside the regular session (pre/post-market). Spot FX and crypto are never quiet."""
    s = spec(calendar)
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return np.zeros(0, dtype=bool)
    if s.busy is not None:
        seconds = wall_clock(ts, s.tz) % _DAY
        return (seconds < s.busy[0]) | (seconds >= s.busy[1])
    table = schedule(calendar, int(ts.min()), int(ts.max()) + 1)
    if len(table) == 0:
        return np.ones(ts.shape[0], dtype=bool)
    i = np.searchsorted(table.open, ts, side="right") - 1
    j = np.maximum(i, 0)
    in_break = (ts >= table.brk_start[j]) & (ts < table.brk_end[j])
    regular = (i >= 0) & (ts < table.close[j]) & ~in_break
    return ~regular


def extended_hours_expected(meta: Mapping[str, Any], include_pre_post: bool) -> bool:
    """Whether an answer holds pre/post-market bars: asked for, and the instrument has them
    (US stocks and ETFs do, indices do not: Yahoo says so in ``hasPrePostMarketData``)."""
    return include_pre_post and bool(meta.get("hasPrePostMarketData", False))
