"""Resolve a chart request to a cut of a stored series, the way Yahoo cuts its windows.

Measured (DESIGN.md): ``range=Nd`` is the last N trading sessions up to the latest
one; calendar ranges start at the first session after (latest session date - range);
``period1``/``period2`` select bars with ``period1 <= ts < period2``. Sessions are
exchange-local trading dates; an overnight futures session belongs to the date it
closes on, which the per-day trading periods tell.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from email.utils import formatdate
from functools import cached_property
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from proxy.intervals import DAY, lookup
from proxy.series import Series

if TYPE_CHECKING:
    from proxy.query import ChartQuery

_RANGE = re.compile(r"^(\d+)(d|wk|mo|y)$")
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class WindowView:
    i0: int  # bar slice [i0, i1)
    i1: int
    d0: int  # trading-day slice [d0, d1) for meta.tradingPeriods
    d1: int
    start: int  # the asked window in unix seconds [start, end)
    end: int | None  # None: open-ended, up to now
    required_start: int  # the answer is complete only if stored coverage reaches back to here
    prev_close: float  # chartPreviousClose of this cut

    @property
    def empty(self) -> bool:
        return self.i1 <= self.i0

    def end_by(self, now: float) -> int:
        """The window's end as a time no later than now."""
        return int(now) if self.end is None else min(self.end, int(now))


class SeriesIndex:
    """Per-version derived lookups of one series (computed once, kept in the hot layer)."""

    def __init__(self, series: Series) -> None:
        self.series = series
        self.views: dict[tuple[object, ...], WindowView] = {}
        name = series.meta.get("exchangeTimezoneName")
        try:
            self.tz = ZoneInfo(name) if isinstance(name, str) and name else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            self.tz = ZoneInfo("UTC")

    @cached_property
    def session(self) -> np.ndarray:
        """Trading date of every bar, as days since 1970-01-01."""
        return _local_dates(self.series.bars.ts + self.session_roll_s, self.tz)

    @cached_property
    def session_roll_s(self) -> int:
        """Seconds to add to a bar's time so that its local date is its trading date.

        Overnight markets (CME futures open 18:00 ET, FX 17:00 ET) trade the evening as
        the next day's session; Yahoo's ``currentTradingPeriod.regular`` then runs across
        midnight, and its start is where one trading date rolls into the next.
        """
        regular = (self.series.meta.get("currentTradingPeriod") or {}).get("regular") or {}
        try:
            start, end = int(regular["start"]), int(regular["end"])
            offset = int(regular.get("gmtoffset", 0))
        except (KeyError, TypeError, ValueError):
            return 0
        open_tod, close_tod = (start + offset) % DAY, (end + offset) % DAY
        crosses_midnight = 0 < end - start < DAY and open_tod > close_tod
        return DAY - open_tod if crosses_midnight else 0

    @cached_property
    def last_modified(self) -> str:
        return formatdate(self.series.fetched_at, usegmt=True)

    @cached_property
    def day_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        days = self.series.days
        first = np.where(days.pre_start > 0, days.pre_start, days.regular_start)
        last = np.maximum(days.regular_end, days.post_end)
        return first, last

    def midnight(self, day: int) -> int:
        date = dt.date.fromordinal(day + _EPOCH_ORDINAL)
        return int(dt.datetime.combine(date, dt.time(), tzinfo=self.tz).timestamp())


def _local_dates(ts: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    if ts.size == 0:
        return np.empty(0, dtype=np.int64)
    local = pd.to_datetime(ts, unit="s", utc=True).tz_convert(tz).tz_localize(None)
    return local.values.astype("datetime64[D]").astype(np.int64)


_VIEW_CACHE_SIZE = 512


def resolve(index: SeriesIndex, query: ChartQuery, now: float) -> WindowView:
    """The cut for ``query``; memoised per series version, since the hot path asks the
    same few windows over and over. Windows that end "now" are recomputed once a minute
    (a new bar can only arrive with a new series version anyway)."""
    open_ended = query.period1 is None or query.period2 is None
    key = (
        query.range,
        query.period1,
        query.period2,
        query.interval.name,
        int(now) // 60 if open_ended else 0,
    )
    view = index.views.get(key)
    if view is None:
        view = _resolve(index, query, now)
        if len(index.views) >= _VIEW_CACHE_SIZE:
            index.views.clear()
        index.views[key] = view
    return view


def _resolve(index: SeriesIndex, query: ChartQuery, now: float) -> WindowView:
    series = index.series
    ts = series.bars.ts
    end = query.period2 if query.period1 is not None else None
    if query.period1 is not None:
        start = query.period1
        i0 = int(np.searchsorted(ts, start, side="left"))
        i1 = int(np.searchsorted(ts, end, side="left")) if end is not None else len(ts)
        required = _earliest_available(series, query, now, start)
    else:
        i0, required = _range_start(index, query.range or "1d", query, now)
        i1 = len(ts)
        start = int(ts[i0]) if i0 < len(ts) else required
    d0, d1 = _day_slice(index, i0, i1)
    return WindowView(i0, i1, d0, d1, start, end, required, _prev_close(index, i0))


def _range_start(index: SeriesIndex, rng: str, query: ChartQuery, now: float) -> tuple[int, int]:
    """First bar index of a range window and the time coverage must reach for it."""
    series = index.series
    sessions = index.session
    if sessions.size == 0:
        return 0, int(now) - _nominal_days(rng) * DAY
    latest = int(sessions[-1])
    if rng == "max":
        return 0, _earliest_available(series, query, now, series.coverage_start)
    if rng == "ytd":
        first_day = dt.date(dt.date.fromordinal(latest + _EPOCH_ORDINAL).year, 1, 1).toordinal()
        first = first_day - _EPOCH_ORDINAL
        return int(np.searchsorted(sessions, first, side="left")), index.midnight(first)
    match = _RANGE.match(rng)
    if match is None:  # ChartQuery only lets valid ranges through; be total anyway
        return 0, series.coverage_start
    count, unit = int(match.group(1)), match.group(2)
    if unit == "d":
        unique = np.unique(sessions)
        if unique.size >= count:
            first = int(unique[-count])
            return int(np.searchsorted(sessions, first, side="left")), index.midnight(first)
        # Fewer sessions stored than asked: complete only if we asked upstream far enough back.
        slack_days = math.ceil(count * 7 / 5) + 4
        return 0, index.midnight(latest) - slack_days * DAY
    cutoff = _calendar_back(latest, count, unit)
    return int(np.searchsorted(sessions, cutoff, side="right")), index.midnight(cutoff + 1)


def _calendar_back(day: int, count: int, unit: str) -> int:
    date = dt.date.fromordinal(day + _EPOCH_ORDINAL)
    if unit == "wk":
        back = date - dt.timedelta(weeks=count)
    else:
        months = count if unit == "mo" else 12 * count
        back = (pd.Timestamp(date) - pd.DateOffset(months=months)).date()
    return back.toordinal() - _EPOCH_ORDINAL


def approx_required_start(query: ChartQuery, now: float) -> int:
    """Where a request's window starts, before any series exists to count sessions in."""
    if query.period1 is not None:
        start = query.period1
    else:
        rng = query.range or "1d"
        days = _nominal_days(rng)
        if rng.endswith("d") and rng[:-1].isdigit():
            days = math.ceil(days * 7 / 5) + 4  # N sessions span weekends and holidays
        start = int(now) - days * DAY
    if query.interval.lookback_days is not None:
        start = max(start, int(now) - query.interval.lookback_days * DAY)
    return start


def _nominal_days(rng: str) -> int:
    match = _RANGE.match(rng)
    if match is None:
        return 365 if rng == "ytd" else 36_500
    count, unit = int(match.group(1)), match.group(2)
    return count * {"d": 1, "wk": 7, "mo": 31, "y": 366}[unit]


def _earliest_available(series: Series, query: ChartQuery, now: float, start: int) -> int:
    """No coverage is needed before the first trade, nor before Yahoo's lookback limit."""
    floor = series.meta.get("firstTradeDate")
    earliest = int(floor) if isinstance(floor, int) else start
    if query.interval.lookback_days is not None:
        earliest = max(earliest, int(now) - query.interval.lookback_days * DAY)
    return max(start, earliest)


def _day_slice(index: SeriesIndex, i0: int, i1: int) -> tuple[int, int]:
    if i1 <= i0 or len(index.series.days) == 0:
        return 0, 0
    ts = index.series.bars.ts
    first, last = index.day_bounds
    d0 = int(np.searchsorted(last, ts[i0], side="left"))
    d1 = int(np.searchsorted(first, ts[i1 - 1], side="right"))
    return d0, max(d0, d1)


def _prev_close(index: SeriesIndex, i0: int) -> float:
    series = index.series
    if i0 == 0:
        return series.prev_close
    close = series.bars.close
    interval = lookup(series.key.interval)
    if interval is None or not interval.intraday or len(series.days) == 0:
        candidates = np.flatnonzero(~np.isnan(close[:i0]))
    else:
        # Intraday: the previous close is the last regular-session print before the cut.
        candidates = np.flatnonzero(_in_regular(index, i0) & ~np.isnan(close[:i0]))
    if candidates.size == 0:
        return series.prev_close
    # Meta prices are rounded decimals while bars are float32-widened (DESIGN.md).
    hint = series.meta.get("priceHint")
    return round(float(close[candidates[-1]]), hint if isinstance(hint, int) and 0 <= hint <= 8 else 2)


def _in_regular(index: SeriesIndex, i0: int) -> np.ndarray:
    days = index.series.days
    ts = index.series.bars.ts[:i0]
    owner = np.clip(np.searchsorted(days.regular_start, ts, side="right") - 1, 0, None)
    return (ts >= days.regular_start[owner]) & (ts <= days.regular_end[owner])
