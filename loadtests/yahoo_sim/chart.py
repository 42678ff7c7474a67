"""The chart endpoint's logic: query → instrument → window → bars, events, meta → body.

Pure and synchronous (no I/O), so the app, the tests and a profiler can call it directly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import events as ev
from . import render, sessions
from .instruments import Instrument, lookup_at
from .prices import Bars, Model, flat_bar, make_bars, model_for, quantise, short_decimals
from .sessions import SessionTable
from .windows import (
    INTERVALS,
    ChartError,
    ChartQuery,
    Interval,
    Window,
    group_keys,
    intraday_plan,
    not_found,
    parse_query,
    resolve,
)

# Bars of different granularities that share a start must not share their noise.
_SALTS = {g: i for i, g in enumerate(dict.fromkeys(i.granularity for i in INTERVALS.values()))}
DAILY_SALT = _SALTS["1d"]
# Yahoo's last extended-hours print of the day lands a little before 20:00 (19:58:47 in
# the recordings); a fixed offset keeps it deterministic.
LAST_PRINT_BEFORE_POST_END_S = 73


@dataclass(frozen=True)
class ChartAnswer:
    status: int
    body: dict[str, Any]
    symbol: str  # upper-cased, as counted


def answer(symbol: str, params: Mapping[str, str], now: float, seed: int) -> ChartAnswer:
    upper = symbol.strip().upper()
    try:
        query = parse_query(params)
        inst = lookup_at(upper, now)
        if inst is None:
            raise not_found()
        return ChartAnswer(200, render.chart_body(build_result(inst, query, now, seed)), upper)
    except ChartError as err:
        return ChartAnswer(err.status, render.error_body(err.code, err.description), upper)


@dataclass(frozen=True)
class Context:
    inst: Instrument
    table: SessionTable
    model: Model
    now: float
    first: int  # first session of the instrument
    latest: int  # latest regular session that has opened (capped at a contract's expiry)


def build_result(inst: Instrument, query: ChartQuery, now: float, seed: int) -> dict[str, Any]:
    table = sessions.table(inst.calendar, now)
    window = resolve(query, inst, table, now)
    first = max(0, table.first_on_or_after(inst.first_trade))
    latest = table.latest(now)
    if inst.expiry is not None:
        latest = min(latest, table.first_on_or_after(inst.expiry))
    ctx = Context(inst, table, model_for(seed, inst), now, first, max(latest, first))
    if query.intraday:
        bars = intraday_bars(ctx, window, query.interval)
        adjclose = None
        prev_index = window.lo - 1
    else:
        bars, bar_sessions, group_lo = daily_or_grouped(ctx, window, query.interval)
        divs = ev.dividends(ctx.model, table, now)
        adjclose = _adjusted(bars.close, ev.adjustment_factors(ctx.model, table, divs, bar_sessions))
        prev_index = group_lo - 1
    events = chart_events(ctx, window, query)
    facts = market_facts(ctx, prev_index, bars)
    meta = render.meta(inst, table, query, window, facts, now)
    return render.chart_result(meta, bars, adjclose, events)


def _adjusted(close: np.ndarray, factors: np.ndarray) -> np.ndarray:
    return np.where(factors == 1.0, close, close * factors)


def intraday_bars(ctx: Context, window: Window, interval: Interval) -> Bars:
    table, now = ctx.table, ctx.now
    plan = intraday_plan(table, window, interval, now)
    opens, closes = table.open[plan.session], table.close[plan.session]
    bars = make_bars(
        ctx.model,
        plan.starts,
        plan.ends,
        now,
        _SALTS[interval.granularity],
        _activity(table, plan.starts, opens, closes),
        closes - opens,
        extended=plan.extended,
    )
    closing = closing_print(ctx, window)
    if closing is None or (len(bars) and closing.ts[0] <= bars.ts[-1]):
        return bars  # the print falls inside the last bar (1m with extended hours): no extra row
    return Bars.concat([bars, closing])


def _activity(table: SessionTable, starts: np.ndarray, opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Relative volume: a U shape over a stock session; for futures, busy during New York
    cash hours (09:30-16:00 ET, i.e. 7.5 h to 1 h before the 17:00 ET close) and quiet
    overnight."""
    if table.spec.overnight:
        cash = (starts >= closes - 27000) & (starts < closes - 3600)
        return np.where(cash, 2.2, 0.3)
    rel = (starts - opens) / np.maximum(closes - opens, 1)
    shape: np.ndarray = (0.55 + 1.4 * np.exp(-8 * rel) + 0.9 * np.exp(-10 * (1 - rel))) / 0.815
    return shape


def closing_print(ctx: Context, window: Window) -> Bars | None:
    """Yahoo ends an intraday answer that reaches the latest finished session with one
    extra bar at the last print: at the close (16:00) for regular hours, a little before
    the post-market end with extended hours. O=H=L=C, volume 0. Futures and FX have none."""
    table, now = ctx.table, ctx.now
    if table.spec.overnight or window.empty:
        return None
    i = window.hi - 1
    if i != min(table.latest(now, window.extended), ctx.latest):
        return None
    if window.extended:
        ts = int(table.post[i]) - LAST_PRINT_BEFORE_POST_END_S
        if now < table.post[i]:
            return None
        price = float(short_decimals(ctx.model.price(np.array([ts])))[0])
    else:
        ts = int(table.close[i])
        if now < ts:
            return None
        price = float(daily_bars(ctx, np.array([i])).close[0])
    if not bool(window.contains(np.array([ts]))[0]):
        return None
    return flat_bar(ts, price)


def daily_bars(ctx: Context, idx: np.ndarray) -> Bars:
    t = ctx.table
    spans = t.close[idx] - t.open[idx]
    return make_bars(ctx.model, t.open[idx], t.close[idx], ctx.now, DAILY_SALT, np.ones(len(idx)), spans,
                     stamps=t.stamp[idx])  # fmt: skip


def daily_or_grouped(ctx: Context, window: Window, interval: Interval) -> tuple[Bars, np.ndarray, int]:
    """Daily bars, or daily bars aggregated per week/month/quarter/5 sessions. Returns the
    bars, the session whose close each bar ends with (for adjclose) and the first session
    aggregated (for chartPreviousClose)."""
    if window.empty:
        return Bars.empty(), np.zeros(0, dtype=np.int64), window.lo
    if interval.kind == "daily":
        idx = np.arange(window.lo, window.hi)
        return daily_bars(ctx, idx), idx, window.lo
    keys = group_keys(ctx.table, interval)
    # Whole periods, whatever part of them the window covers: a bar never depends on the
    # window that asked for it (the last one grows until the period is over).
    lo = max(ctx.first, int(np.searchsorted(keys, keys[window.lo], side="left")))
    hi = min(int(np.searchsorted(keys, keys[window.hi - 1], side="right")), ctx.latest + 1)
    idx = np.arange(lo, hi)
    day = daily_bars(ctx, idx)
    heads = np.flatnonzero(np.r_[True, np.diff(keys[idx]) != 0])
    tails = np.r_[heads[1:] - 1, len(idx) - 1]
    bars = Bars(
        day.ts[heads],
        day.open[heads],
        np.maximum.reduceat(day.high, heads),
        np.minimum.reduceat(day.low, heads),
        day.close[tails],
        np.add.reduceat(day.volume, heads),
    )
    return bars, idx[tails], lo


def chart_events(ctx: Context, window: Window, query: ChartQuery) -> dict[str, Any]:
    """Only the kinds asked for in ``events`` and only those inside the window; the caller
    omits the key when this is empty."""
    out: dict[str, Any] = {}
    if window.empty or not ctx.inst.is_equity_like:
        return out
    if any(e.startswith("div") for e in query.events):
        divs = ev.dividends(ctx.model, ctx.table, ctx.now)
        in_window = (divs.session >= window.lo) & (divs.session < window.hi)
        in_window &= window.contains(ctx.table.stamp[divs.session])
        found = ev.dividend_events(ctx.table, divs, in_window)
        if found:
            out["dividends"] = found
    if any(e.startswith("split") for e in query.events):
        splits = ev.split_events(ctx.model, ctx.table, window.contains, ctx.now)
        if splits:
            out["splits"] = splits
    return out


def market_facts(ctx: Context, prev_index: int, bars: Bars) -> render.MarketFacts:
    t, now, latest = ctx.table, ctx.now, ctx.latest
    year_lo = int(np.searchsorted(t.day, t.day[latest] - 364, side="left"))
    wanted = np.unique(
        np.r_[max(latest - 1, ctx.first), max(prev_index, ctx.first), max(year_lo, ctx.first) : latest + 1]
    )
    day = daily_bars(ctx, wanted)
    pos = {int(i): k for k, i in enumerate(wanted)}
    today = pos[latest]
    previous = float(day.close[pos[latest - 1]]) if latest - 1 >= ctx.first else float(day.open[today])
    if prev_index >= ctx.first:
        chart_prev = float(day.close[pos[prev_index]])
    else:
        chart_prev = float(bars.open[0]) if len(bars) else float(day.open[today])
    in_year = wanted >= year_lo
    regular = float(day.close[today])
    fullday = regular
    if ctx.inst.has_prepost and now > t.close[latest]:
        last = min(now, float(t.post[latest])) - 1
        fullday = float(short_decimals(ctx.model.price(np.array([last])))[0])
    return render.MarketFacts(
        regular_time=int(min(now, t.close[latest])),
        regular_price=regular,
        previous_close=previous,
        fullday_price=fullday,
        day_high=float(day.high[today]),
        day_low=float(day.low[today]),
        day_volume=int(day.volume[today]),
        year_high=float(day.high[in_year].max()),
        year_low=float(day.low[in_year].min()),
        chart_previous_close=chart_prev,
    )


def quote_snapshot(inst: Instrument, now: float, seed: int) -> dict[str, float | int]:
    """The latest session's numbers for the quote and quoteSummary endpoints."""
    table = sessions.table(inst.calendar, now)
    first = max(0, table.first_on_or_after(inst.first_trade))
    latest = max(first, table.latest(now))
    ctx = Context(inst, table, model_for(seed, inst), now, first, latest)
    facts = market_facts(ctx, latest - 1, Bars.empty())
    day = daily_bars(ctx, np.array([latest]))
    return {
        "price": facts.regular_price,
        "previous_close": facts.previous_close,
        "open": float(day.open[0]),
        "day_high": facts.day_high,
        "day_low": facts.day_low,
        "volume": facts.day_volume,
        "year_high": facts.year_high,
        "year_low": facts.year_low,
        "time": facts.regular_time,
        "tick_price": float(quantise(np.array([facts.regular_price]), inst.tick)[0]),
    }
