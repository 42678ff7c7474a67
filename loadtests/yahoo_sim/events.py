"""Corporate actions: dividends, splits and the adjusted close.

Ex-dates are fixed by the calendar (first session on/after a day of given months), amounts
by the price path, so events are as deterministic as bars. Like Yahoo, prices are already
split-adjusted (a split only shows as an event) and ``adjclose`` folds in every dividend
whose ex-date is after the bar and not after now: it equals ``close`` for bars after the
last ex-date, which for windows ending today means "differs only before an ex-date inside
the window", as the recordings show."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .prices import Model, quantise
from .sessions import SessionTable


@dataclass(frozen=True)
class Dividends:
    session: np.ndarray  # table index of each ex-date, ascending
    amount: np.ndarray

    def __len__(self) -> int:
        return len(self.session)


def dividends(model: Model, table: SessionTable, now: float) -> Dividends:
    """Every dividend with an ex-date session that has opened by ``now``."""
    plan = model.instrument.dividends
    empty = Dividends(np.zeros(0, dtype=np.int64), np.zeros(0))
    if plan is None:
        return empty
    first = table.first_on_or_after(max(model.instrument.first_trade, dt.date(plan.first_year, 1, 1)))
    last = table.latest(now)
    if last < first:
        return empty
    years = np.arange(table.date_of(first).year, table.date_of(last).year + 1)
    year_start = np.minimum(_session_on_or_after(table, years, 1, 1), len(table) - 1)
    ref_price = model.price(table.open[year_start])
    amount = np.maximum(0.01, np.round(ref_price * plan.annual_yield / len(plan.months), 2))
    sessions = np.stack([_session_on_or_after(table, years, m, plan.day) for m in plan.months], axis=1)
    amounts = np.repeat(amount[:, None], len(plan.months), axis=1)
    keep = (sessions >= max(first, 1)) & (sessions <= last)
    return Dividends(sessions[keep].astype(np.int64), amounts[keep])


def _session_on_or_after(table: SessionTable, years: np.ndarray, month: int, day: int) -> np.ndarray:
    dates = np.array([f"{y:04d}-{month:02d}-{day:02d}" for y in years], dtype="datetime64[D]")
    return np.searchsorted(table.day, dates.astype(np.int64), side="left")


def adjustment_factors(
    model: Model, table: SessionTable, divs: Dividends, bar_sessions: np.ndarray
) -> np.ndarray:
    """Multiplier from close to adjclose for bars of the given sessions."""
    if len(divs) == 0:
        return np.ones(len(bar_sessions))
    prev_close_t = table.close[divs.session - 1] - 1
    prev_close = quantise(model.price(prev_close_t), model.instrument.tick)
    per_div = 1.0 - divs.amount / prev_close
    # suffix[k] = product of factors of dividends k.. (those after a bar before dividend k)
    suffix = np.append(np.cumprod(per_div[::-1])[::-1], 1.0)
    return suffix[np.searchsorted(divs.session, bar_sessions, side="right")]


def dividend_events(
    table: SessionTable, divs: Dividends, in_window: np.ndarray
) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for i, amount in zip(divs.session[in_window], divs.amount[in_window], strict=True):
        ts = int(table.stamp[i])
        out[str(ts)] = {"amount": float(amount), "date": ts}
    return out


def split_events(
    model: Model, table: SessionTable, in_window: Callable[[np.ndarray], np.ndarray], now: float
) -> dict[str, dict[str, object]]:
    """Splits whose ex-date session lies in the window (``in_window`` maps stamps to a mask)."""
    out: dict[str, dict[str, object]] = {}
    last = table.latest(now)
    for split in model.instrument.splits:
        i = table.first_on_or_after(split.date)
        if i > last or i >= len(table):
            continue
        ts = int(table.stamp[i])
        if not bool(in_window(np.array([ts]))[0]):
            continue
        out[str(ts)] = {
            "date": ts,
            "numerator": float(split.numerator),
            "denominator": float(split.denominator),
            "splitRatio": f"{split.numerator}:{split.denominator}",
        }
    return out
