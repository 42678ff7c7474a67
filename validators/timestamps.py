"""Bar timestamps: order, uniqueness, the interval's grid, the requested window, bars in a
closed market, and gaps against the trading calendar (completeness).

Gap rule. The calendar says which bars a window should hold (validators.calendars.grid);
consecutive missing bars form one run (holidays, weekends and the futures halt are not in
the grid, so they neither make nor break a run). Yahoo leaves out minute bars without
trades, so a run is a ``time.gap`` only when it holds at least 30 minutes of bars from the
busy part of the day, or at least 2 hours of bars in all (the quiet part: pre/post-market,
futures overnight, see ``calendars.quiet_mask``). A missing daily bar is always a gap.
Runs below the rule are summed into one ``time.sparse`` INFO. Each gap is one issue whose
``count`` is its missing bars and whose ``start``/``end`` are its first and last missing
bar; after ``MAX_GAP_ISSUES`` the rest are summed into one more ``time.gap``. A run that
takes the window's whole last session (and everything after the last bar) is Yahoo's
"missing last-day rows" defect: ``time.missing_last_session`` instead of a gap.

The window is the request's [period1, period2) clipped by the caller to the fetch time:
bars not yet due are not missing. Without a window the bars' own span is judged.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from proxy.intervals import Interval, lookup
from proxy.series import Bars

from .calendars import BoolArray, Grid, IntArray, grid, quiet_mask, spec, wall_clock
from .report import CheckResult, IndexArray, QualityIssue, Severity, span

GAP_BUSY_S = 30 * 60  # missing busy-hours bars that make a gap
GAP_QUIET_S = 2 * 3600  # missing bars of any hour that make a gap
MAX_GAP_ISSUES = 20  # gaps reported one by one; the rest are summed into one issue
CLOSING_PRINT_S = 120  # the last print lands at most this long before the session's end
_DAY = 86_400


def check_timestamps(
    bars: Bars,
    *,
    interval: str,
    calendar: str | None,
    window: tuple[int, int] | None,
    prepost: bool,
) -> CheckResult:
    info = lookup(interval)
    if info is None:
        raise ValueError(f"unknown interval {interval!r}")
    ts = np.asarray(bars.ts, dtype=np.int64)
    issues: list[QualityIssue] = []
    bad = [_out_of_order(ts, issues), _duplicates(ts, issues)]
    calendar_grid = info.intraday or info.name == "1d"
    if calendar is None or not calendar_grid or (ts.size == 0 and window is None):
        if calendar is None and ts.size:
            issues.append(
                QualityIssue(
                    "time.no_calendar",
                    Severity.INFO,
                    "no trading calendar for this instrument: grid and gaps not judged",
                )
            )
        if window is not None:
            _outside_window(ts, window, np.zeros(ts.shape[0], dtype=bool), issues)
        return CheckResult(tuple(issues), _union(bad))
    first, last = _judged_span(ts, window)
    g = grid(calendar, info.name, first - 1, last, prepost=prepost)
    placed = _place(ts, g, calendar)
    bad.append(_report_placement(ts, placed, issues))
    if window is not None:
        late_ok = np.zeros(ts.shape[0], dtype=bool)
        if not info.intraday:
            late_ok[placed.on_grid] = g.opened_before(window[1])[placed.slot[placed.on_grid]]
        _outside_window(ts, window, late_ok, issues)
    expected = g.in_window(*window) if window is not None else g.in_window(first, last)
    present = _member(g.slots[expected], placed.present)
    _report_missing(g, expected, present, info, calendar, issues)
    return CheckResult(tuple(issues), _union(bad), int(expected.sum()), int(present.sum()))


def _judged_span(ts: IntArray, window: tuple[int, int] | None) -> tuple[int, int]:
    if window is None:
        return int(ts.min()), int(ts.max()) + 1
    if ts.size == 0:
        return window
    return min(window[0], int(ts.min())), max(window[1], int(ts.max()) + 1)


def _union(parts: list[IndexArray]) -> IndexArray:
    return _sorted_unique(np.concatenate(parts)).astype(np.intp)


# np.unique and np.isin hash their input (numpy 2.4): slower than sorting ~40k stamps that
# mostly arrive sorted already.
def _sorted_unique(values: IntArray) -> IntArray:
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def _member(needles: IntArray, haystack: IntArray) -> BoolArray:
    """np.isin for a sorted, unique ``haystack``."""
    if haystack.size == 0:
        return np.zeros(needles.shape[0], dtype=bool)
    pos = np.minimum(np.searchsorted(haystack, needles), haystack.size - 1)
    return haystack[pos] == needles


def _when(t: int | None) -> str:
    return "?" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _issue(code: str, severity: Severity, detail: str, ts: IntArray, index: IndexArray) -> QualityIssue:
    start, end = span(ts, index)
    return QualityIssue(
        code, severity, f"{detail} ({_when(start)} .. {_when(end)})", start, end, int(index.size)
    )


def _out_of_order(ts: IntArray, issues: list[QualityIssue]) -> IndexArray:
    """Bars earlier than a bar before them."""
    if ts.size < 2:
        return np.empty(0, dtype=np.intp)
    late = np.flatnonzero(ts[1:] < np.maximum.accumulate(ts)[:-1]) + 1
    if late.size:
        issues.append(
            _issue("time.unsorted", Severity.ERROR, f"{late.size} bars come after a later bar", ts, late)
        )
    return late.astype(np.intp)


def _duplicates(ts: IntArray, issues: list[QualityIssue]) -> IndexArray:
    """Every copy of a timestamp but the last one sent (ingest keeps the last: Yahoo repeats
    the live bar with newer values)."""
    order = np.argsort(ts, kind="stable")
    ordered = ts[order]
    copies = order[np.flatnonzero(ordered[:-1] == ordered[1:])].astype(np.intp)
    if copies.size:
        issues.append(
            _issue(
                "time.duplicate",
                Severity.ERROR,
                f"{copies.size} bars repeat the timestamp of another bar",
                ts,
                copies,
            )
        )
    return copies


def _outside_window(
    ts: IntArray, window: tuple[int, int], late_ok: BoolArray, issues: list[QualityIssue]
) -> None:
    """``late_ok``: bars at or after the window's end that are still due (see Grid.opened_before)."""
    outside = np.flatnonzero((ts < window[0]) | ((ts >= window[1]) & ~late_ok))
    if outside.size:
        issues.append(
            _issue(
                "time.outside_window",
                Severity.WARNING,
                f"{outside.size} bars outside the requested window",
                ts,
                outside,
            )
        )


class _Placement:
    """Where each bar falls against the calendar's grid."""

    def __init__(self, n: int) -> None:
        self.on_grid = np.zeros(n, dtype=bool)
        self.slot = np.zeros(n, dtype=np.intp)  # grid index of on-grid bars
        self.off_grid = np.zeros(n, dtype=bool)  # in trading hours, not where a bar starts
        self.closed = np.zeros(n, dtype=bool)  # no trading then (holiday, weekend, halt, break)
        self.live = np.zeros(n, dtype=bool)  # a daily answer's live bar stamped at the last trade
        self.present: IntArray = np.empty(0, dtype=np.int64)  # grid slots that have a bar


def _place(ts: IntArray, g: Grid, calendar: str) -> _Placement:
    p = _Placement(ts.shape[0])
    if ts.size == 0:
        return p
    if g.slots.size:
        pos = np.minimum(np.searchsorted(g.slots, ts), g.slots.shape[0] - 1)
        p.on_grid = g.slots[pos] == ts
        p.slot = pos.astype(np.intp)
    present = [ts[p.on_grid]]
    if len(g.table) == 0:
        p.closed = ~p.on_grid
    elif g.intraday:
        _place_intraday(ts, g, p)
    else:
        present.append(_place_daily(ts, g, calendar, p))
    p.present = _sorted_unique(np.concatenate(present))
    return p


def _place_intraday(ts: IntArray, g: Grid, p: _Placement) -> None:
    s = np.searchsorted(g.starts, ts, side="right") - 1
    j = np.maximum(s, 0)
    within = (s >= 0) & (ts <= g.ends[j]) & ~p.on_grid
    in_break = (ts >= g.table.brk_start[j]) & (ts < g.table.brk_end[j])
    # Yahoo ends an answer with one bar at the last print (the 16:00 close, or 19:58:47 after
    # extended hours), off the grid; a stored series keeps one per session it was fetched in.
    closing_print = (ts > g.last_slot()[j]) & (ts >= g.ends[j] - CLOSING_PRINT_S)
    p.off_grid = within & ~in_break & ~closing_print
    p.closed = ~p.on_grid & ~p.off_grid & ~(within & closing_print & ~in_break)


def _place_daily(ts: IntArray, g: Grid, calendar: str, p: _Placement) -> IntArray:
    """Daily bars off their stamp are wrong on a trading date, and in a closed market on
    any other. Returns the stamps of sessions whose bar is the live one."""
    t = g.table
    s = np.searchsorted(t.open, ts, side="right") - 1
    j = np.maximum(s, 0)
    in_session = (s >= 0) & (ts <= t.post[j])
    trading_day = _member(wall_clock(ts, spec(calendar).tz) // _DAY, t.day)
    wrong = ~p.on_grid & (in_session | trading_day)
    # A daily answer fetched during a session may carry the session's bar at the latest trade.
    p.live = wrong & in_session & (ts == ts.max()) & ~_member(t.stamp[j], _sorted_unique(ts))
    p.off_grid = wrong & ~p.live
    p.closed = ~p.on_grid & ~wrong
    return t.stamp[j[p.live]]


def _report_placement(ts: IntArray, p: _Placement, issues: list[QualityIssue]) -> IndexArray:
    off = np.flatnonzero(p.off_grid).astype(np.intp)
    if off.size:
        issues.append(
            _issue(
                "time.off_grid",
                Severity.ERROR,
                f"{off.size} bars in trading hours but off the interval's grid",
                ts,
                off,
            )
        )
    closed = np.flatnonzero(p.closed)
    if closed.size:
        issues.append(
            _issue(
                "time.closed_market",
                Severity.WARNING,
                f"{closed.size} bars while the market is closed (holiday, weekend, halt "
                "or hours not asked for)",
                ts,
                closed,
            )
        )
    return off


def _report_missing(
    g: Grid,
    expected: BoolArray,
    present: BoolArray,
    info: Interval,
    calendar: str,
    issues: list[QualityIssue],
) -> None:
    slots, sessions = g.slots[expected], g.session[expected]
    missing = np.flatnonzero(~present)
    if missing.size == 0:
        return
    cut = np.flatnonzero(np.diff(missing) != 1) + 1
    heads = np.r_[0, cut]  # positions in ``missing`` where a run starts
    first, last = missing[heads], missing[np.r_[cut - 1, missing.size - 1]]
    length = last - first + 1
    if info.intraday:
        busy = np.add.reduceat((~quiet_mask(calendar, slots[missing])).astype(np.int64), heads)
        gap = (busy * info.seconds >= GAP_BUSY_S) | (length * info.seconds >= GAP_QUIET_S)
    else:
        gap = np.ones(heads.shape[0], dtype=bool)
    last_session_start = np.searchsorted(sessions, sessions[-1])  # its first expected bar
    takes_last_session = last[-1] == slots.shape[0] - 1 and first[-1] <= last_session_start
    if present.any() and takes_last_session and gap[-1]:
        a, b, n = int(slots[first[-1]]), int(slots[last[-1]]), int(length[-1])
        detail = (
            f"no bars for the window's last session: {n} expected bars missing ({_when(a)} .. {_when(b)})"
        )
        issues.append(QualityIssue("time.missing_last_session", Severity.WARNING, detail, a, b, n))
        gap[-1], length[-1] = False, 0  # reported: neither a gap nor sparse bars
    _report_gaps(slots, first[gap], last[gap], info, issues)
    short = ~gap & (length > 0)
    if short.any():
        n = int(length[short].sum())
        detail = (
            f"{n} bars missing in {int(short.sum())} runs too short to be gaps "
            "(Yahoo leaves out bars without trades)"
        )
        issues.append(QualityIssue("time.sparse", Severity.INFO, detail, count=n))


def _report_gaps(
    slots: IntArray, first: IntArray, last: IntArray, info: Interval, issues: list[QualityIssue]
) -> None:
    for a, b in zip(first[:MAX_GAP_ISSUES], last[:MAX_GAP_ISSUES], strict=True):
        n = int(b - a + 1)
        start, end = int(slots[a]), int(slots[b])
        issues.append(
            QualityIssue(
                "time.gap",
                Severity.WARNING,
                f"{n} expected {info.name} bars missing ({_when(start)} .. {_when(end)})",
                start,
                end,
                n,
            )
        )
    if first.shape[0] > MAX_GAP_ISSUES:
        rest_first, rest_last = first[MAX_GAP_ISSUES:], last[MAX_GAP_ISSUES:]
        n = int((rest_last - rest_first + 1).sum())
        start, end = int(slots[rest_first[0]]), int(slots[rest_last[-1]])
        issues.append(
            QualityIssue(
                "time.gap",
                Severity.WARNING,
                f"{rest_first.shape[0]} more gaps, {n} expected {info.name} bars missing "
                f"({_when(start)} .. {_when(end)})",
                start,
                end,
                n,
            )
        )
