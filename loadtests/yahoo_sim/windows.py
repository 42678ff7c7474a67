"""Chart query → time window → bar timestamps, with Yahoo's input checks and per-interval
limits (and their exact error texts).

A window is [p1, p2) in epoch seconds plus the sessions it touches. ``range=Nd`` means
the last N sessions up to the latest one; calendar ranges (1mo, 1y, ...) start at the
first session after (latest session date − period); ``ytd`` at January 1; ``max`` at the
first trade date. period1/period2 select bars with p1 <= start < p2.

Limits: a period1/period2 request that crosses one is refused whole. A range is judged by
its nominal length (Nd = N days, Nwk = 7N, Nmo = 30N, Ny = 365N, ytd, max = unbounded), so
the common period="60d" (5m) and "730d"/"2y" (1h) calls are served, their data cut at
the age limit."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .instruments import Instrument
from .sessions import SessionTable

IntervalKind = Literal["intraday", "daily", "group"]


@dataclass(frozen=True)
class Interval:
    name: str
    granularity: str  # what meta.dataGranularity echoes (60m answers as 1h)
    kind: IntervalKind
    seconds: int = 0  # bar length for intraday intervals
    max_age_days: int | None = None  # data older than this is refused
    max_span_days: int | None = None  # one request may not cover more than this


_MIN = 60
INTERVALS: dict[str, Interval] = {
    i.name: i
    for i in [
        Interval("1m", "1m", "intraday", _MIN, 30, 7),
        Interval("2m", "2m", "intraday", 2 * _MIN, 60),
        Interval("5m", "5m", "intraday", 5 * _MIN, 60),
        Interval("15m", "15m", "intraday", 15 * _MIN, 60),
        Interval("30m", "30m", "intraday", 30 * _MIN, 60),
        Interval("60m", "1h", "intraday", 60 * _MIN, 730),
        Interval("90m", "90m", "intraday", 90 * _MIN, 60),
        Interval("1h", "1h", "intraday", 60 * _MIN, 730),
        Interval("4h", "4h", "intraday", 240 * _MIN, 730),
        Interval("1d", "1d", "daily"),
        Interval("5d", "5d", "group"),
        Interval("1wk", "1wk", "group"),
        Interval("1mo", "1mo", "group"),
        Interval("3mo", "3mo", "group"),
    ]
}
VALID_INTERVALS = "[" + ", ".join(INTERVALS) + "]"
VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]
_RANGE = re.compile(r"^(?P<n>\d+)(?P<unit>d|wk|mo|y)$")


class ChartError(Exception):
    """An answer Yahoo gives instead of data: HTTP status, error code and description."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description


def bad_request(description: str) -> ChartError:
    return ChartError(400, "Bad Request", description)


def not_found() -> ChartError:
    return ChartError(404, "Not Found", "No data found, symbol may be delisted")


@dataclass(frozen=True)
class ChartQuery:
    interval: Interval
    range: str | None  # None when period1/period2 were given
    period1: int | None
    period2: int | None
    prepost: bool
    events: frozenset[str]

    @property
    def intraday(self) -> bool:
        return self.interval.kind == "intraday"


def parse_query(params: Mapping[str, str]) -> ChartQuery:
    """Yahoo's parameters; crumb and anything unknown are ignored."""
    name = params.get("interval", "1d") or "1d"
    interval = INTERVALS.get(name)
    if interval is None:
        raise bad_request(
            f"Invalid input - interval={name} is not supported. Valid intervals: {VALID_INTERVALS}"
        )
    period1 = _epoch_param(params, "period1")
    period2 = _epoch_param(params, "period2")
    range_ = params.get("range") or None
    if period1 is not None:
        range_ = None  # Yahoo lets explicit periods win over a range
    elif range_ is None:
        range_ = "1d"
    if range_ is not None and range_ not in ("ytd", "max") and not _RANGE.match(range_):
        raise ChartError(
            422, "Unprocessable Entity", f"Invalid range, should be one of {', '.join(VALID_RANGES)}"
        )
    prepost = params.get("includePrePost", "false").strip().lower() == "true"
    events = frozenset(e.strip() for e in params.get("events", "").split(",") if e.strip())
    return ChartQuery(interval, range_, period1, period2, prepost, events)


def _epoch_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(float(raw))
    except ValueError:
        raise bad_request(f"Invalid input - {name}={raw} is not a valid unix timestamp") from None


@dataclass(frozen=True)
class Window:
    p1: int
    p2: int | None  # None: open-ended, up to now (range requests)
    lo: int  # sessions [lo, hi) of the table that the window touches
    hi: int
    extended: bool  # pre/post-market bars included

    @property
    def empty(self) -> bool:
        return self.hi <= self.lo

    def contains(self, ts: np.ndarray) -> np.ndarray:
        inside = ts >= self.p1
        return inside if self.p2 is None else inside & (ts < self.p2)


def resolve(query: ChartQuery, inst: Instrument, table: SessionTable, now: float) -> Window:
    """The request's window, after Yahoo's checks (ChartError when refused)."""
    extended = query.intraday and query.prepost and inst.has_prepost
    first = max(0, table.first_on_or_after(inst.first_trade))
    last_allowed = len(table) if inst.expiry is None else table.first_on_or_after(inst.expiry) + 1
    if query.range is None:
        return _period_window(query, table, now, extended, first, last_allowed)
    return _range_window(query, table, now, extended, first, last_allowed)


def _period_window(
    query: ChartQuery, table: SessionTable, now: float, extended: bool, first: int, last_allowed: int
) -> Window:
    p1 = int(query.period1 or 0)
    p2 = int(query.period2) if query.period2 is not None else int(now)
    if p1 > p2:
        raise bad_request(
            f"Invalid input - start date cannot be after end date. startDate = {p1}, endDate = {p2}"
        )
    check_limits(query.interval, p1, p2, now)
    lo, hi = table.overlapping(p1, p2, extended)
    if query.interval.kind != "intraday":
        # Daily bars are keyed by their stamp, which for futures lies after the session open.
        lo = int(np.searchsorted(table.stamp, p1, side="left"))
        hi = int(np.searchsorted(table.stamp, p2, side="left"))
    hi = min(hi, table.latest(now, extended) + 1, last_allowed)
    return Window(p1, p2, max(lo, first), hi, extended)


def _range_window(
    query: ChartQuery, table: SessionTable, now: float, extended: bool, first: int, last_allowed: int
) -> Window:
    latest = min(table.latest(now, extended), last_allowed - 1)
    if latest < first:
        return Window(int(now), None, 0, 0, extended)
    range_ = query.range or "1d"
    lo = _range_start(range_, table, latest, first)
    p1 = int(min(table.starts(extended)[lo], table.stamp[lo]))
    interval = query.interval
    # A range is judged by its nominal length (60d, 730d and 2y are served, as yfinance's
    # usual period="60d"/"730d" calls expect); its data is then cut at the age limit.
    days = _nominal_days(range_, table.date_of(latest))
    if interval.max_span_days is not None and days > interval.max_span_days:
        raise _limit_error(interval, p1, int(now), f"Only {interval.max_span_days} days worth")
    if interval.max_age_days is not None:
        if days > interval.max_age_days:
            raise _limit_error(interval, p1, int(now), f"within the last {interval.max_age_days} days")
        oldest = int(now) - interval.max_age_days * 86400
        if p1 < oldest:
            p1 = oldest
            lo = max(lo, table.overlapping(p1, now + 1, extended)[0])
    return Window(p1, None, lo, latest + 1, extended)


def _nominal_days(range_: str, latest: dt.date) -> float:
    if range_ == "max":
        return math.inf
    if range_ == "ytd":
        return (latest - dt.date(latest.year, 1, 1)).days + 1
    match = _RANGE.match(range_)
    assert match is not None  # parse_query validated it
    return int(match["n"]) * {"d": 1, "wk": 7, "mo": 30, "y": 365}[match["unit"]]


def _range_start(range_: str, table: SessionTable, latest: int, first: int) -> int:
    if range_ == "max":
        return first
    if range_ == "ytd":
        year = table.date_of(latest).year
        return max(first, table.first_on_or_after(dt.date(year, 1, 1)))
    match = _RANGE.match(range_)
    assert match is not None  # parse_query validated it
    n, unit = int(match["n"]), match["unit"]
    if unit == "d":
        return max(first, latest - max(n, 1) + 1)
    cutoff = _minus(table.date_of(latest), n, unit)
    return max(first, table.first_on_or_after(cutoff + dt.timedelta(days=1)))


def _minus(day: dt.date, n: int, unit: str) -> dt.date:
    if unit == "wk":
        return day - dt.timedelta(weeks=n)
    months = n * 12 if unit == "y" else n
    total = day.year * 12 + day.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    for d in (day.day, 30, 29, 28):  # clamp 31 March minus one month to 28/29 February
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def check_limits(interval: Interval, p1: int, p2: int, now: float) -> None:
    """Yahoo refuses a period1/period2 request whole (no partial data) across a limit."""
    if interval.max_span_days is not None and p2 - p1 > interval.max_span_days * 86400:
        raise _limit_error(interval, p1, p2, f"Only {interval.max_span_days} days worth")
    if interval.max_age_days is not None and p1 < now - interval.max_age_days * 86400:
        raise _limit_error(interval, p1, p2, f"within the last {interval.max_age_days} days")


def _limit_error(interval: Interval, p1: int, p2: int, which: str) -> ChartError:
    head = f"{interval.name} data not available for startTime={p1} and endTime={p2}. "
    if which.startswith("Only"):
        tail = f"{which} of {interval.name} granularity data are allowed to be fetched per request."
    else:
        tail = f"The requested range must be {which}."
    return ChartError(422, "Unprocessable Entity", head + tail)


@dataclass
class IntradayPlan:
    """Bar starts/ends for intraday windows, with what bar generation needs per bar."""

    starts: np.ndarray
    ends: np.ndarray
    session: np.ndarray  # table index of each bar's session
    extended: np.ndarray  # pre/post-market bar


def intraday_plan(table: SessionTable, window: Window, interval: Interval, now: float) -> IntradayPlan:
    step = interval.seconds
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    sessions: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    for i in range(window.lo, window.hi):
        for seg_start, seg_end, anchor, is_ext in _segments(table, i, window.extended):
            s = np.arange(anchor, seg_end, step, dtype=np.int64)
            s = s[s + step > seg_start]  # grid anchored at the open; skip slots before the segment
            e = np.minimum(s + step, seg_end)
            s = np.maximum(s, seg_start)
            starts.append(s)
            ends.append(e)
            sessions.append(np.full(len(s), i, dtype=np.int64))
            flags.append(np.full(len(s), is_ext))
    if not starts:
        z = np.zeros(0, dtype=np.int64)
        return IntradayPlan(z, z.copy(), z.copy(), np.zeros(0, dtype=bool))
    plan = IntradayPlan(np.concatenate(starts), np.concatenate(ends), np.concatenate(sessions),
                        np.concatenate(flags))  # fmt: skip
    keep = window.contains(plan.starts) & (plan.starts <= now)
    return IntradayPlan(plan.starts[keep], plan.ends[keep], plan.session[keep], plan.extended[keep])


def _segments(table: SessionTable, i: int, extended: bool) -> list[tuple[int, int, int, bool]]:
    """(start, end, grid anchor, extended-hours) pieces of one session."""
    o, c = int(table.open[i]), int(table.close[i])
    bs, be = int(table.brk_start[i]), int(table.brk_end[i])
    regular = [(o, bs, o, False), (be, c, o, False)] if be > bs else [(o, c, o, False)]
    if not extended:
        return regular
    pre, post = int(table.pre[i]), int(table.post[i])
    return [(pre, o, pre, True), *regular, (c, post, c, True)]


def group_keys(table: SessionTable, interval: Interval) -> np.ndarray:
    """Aggregation period of each session: ISO week, month, quarter, or a run of five
    sessions counted from the table's first row (fixed, so a 5d bar never depends on the
    window that asked for it)."""
    days = table.day
    if interval.name == "5d":
        return np.arange(len(days), dtype=np.int64) // 5
    if interval.name == "1wk":
        return (days + 3) // 7  # 1970-01-01 was a Thursday: weeks start on Monday
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return months if interval.name == "1mo" else months // 3
