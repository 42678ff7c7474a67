"""Merging an upstream answer into a stored series: a pure function, no I/O.

Rules (why they are safe):
- Inside the span of bars upstream returned, upstream is authoritative: Yahoo revises
  the live bar and may replace an unaligned last-trade bar, so stored bars in that
  span are dropped and replaced.
- Outside it nothing is deleted: an upstream answer with fewer bars than we hold is
  never a reason to lose stored data.
- Meta comes from the newest answer only; a backfill of old days keeps the current meta.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from proxy.ingest import ChartPayload
from proxy.series import Bars, Series, SeriesKey, TradingDays


def merge_series(
    current: Series | None,
    key: SeriesKey,
    payload: ChartPayload,
    *,
    window_start: int,
    window_end: int,
    fetched_at: float,
) -> Series:
    """The series after storing ``payload``, the answer for ``[window_start, window_end)``."""
    if current is None or (len(current.bars) == 0 and current.coverage_end == 0):
        return Series(
            key=key,
            bars=payload.bars,
            meta=dict(payload.meta),
            days=payload.days,
            events=payload.events,
            prev_close=payload.prev_close,
            coverage_start=window_start,
            coverage_end=window_end,
            fetched_at=fetched_at,
            version=current.version if current else 0,
            quote_order=payload.quote_order,
        )
    is_latest = window_end >= current.coverage_end
    start, end = _coverage(current, window_start, window_end)
    return replace(
        current,
        bars=merge_bars(current.bars, payload.bars),
        meta=dict(payload.meta) if is_latest else current.meta,
        days=merge_days(current.days, payload.days),
        events=_merge_events(current.events, payload.events),
        prev_close=_prev_close(current, payload),
        coverage_start=start,
        coverage_end=end,
        fetched_at=max(fetched_at, current.fetched_at) if is_latest else current.fetched_at,
        quote_order=payload.quote_order if is_latest else current.quote_order,
    )


def merge_bars(old: Bars, new: Bars) -> Bars:
    if len(new) == 0:
        return old
    if len(old) == 0:
        return new
    lo, hi = int(new.ts[0]), int(new.ts[-1])
    keep = (old.ts < lo) | (old.ts > hi)
    kept = old.take(np.flatnonzero(keep))
    if (kept.adjclose is None) != (new.adjclose is None):
        # Daily series always carry adjclose; fill a missing side with close rather than drop it.
        kept, new = _with_adjclose(kept), _with_adjclose(new)
    merged = Bars(*(np.concatenate([a, b]) for a, b in _columns(kept, new)))
    order = np.argsort(merged.ts, kind="stable")
    return merged.take(order)


def _columns(a: Bars, b: Bars) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = [
        (a.ts, b.ts), (a.open, b.open), (a.high, b.high), (a.low, b.low),
        (a.close, b.close), (a.volume, b.volume),
    ]  # fmt: skip
    if a.adjclose is not None and b.adjclose is not None:
        pairs.append((a.adjclose, b.adjclose))
    return pairs


def _with_adjclose(bars: Bars) -> Bars:
    if bars.adjclose is not None:
        return bars
    return replace(bars, adjclose=bars.close.copy())


def merge_days(old: TradingDays, new: TradingDays) -> TradingDays:
    if len(new) == 0:
        return old
    if len(old) == 0:
        return new
    keep = np.flatnonzero(~np.isin(old.regular_start, new.regular_start))
    kept = old.take(keep)
    merged = TradingDays(
        *(np.concatenate([getattr(kept, f), getattr(new, f)]) for f in _DAY_FIELDS),
        timezone=kept.timezone + new.timezone,
    )
    return merged.take(np.argsort(merged.regular_start, kind="stable"))


_DAY_FIELDS = ("regular_start", "regular_end", "pre_start", "pre_end", "post_start", "post_end", "gmtoffset")


def _merge_events(
    old: dict[str, dict[str, dict[str, object]]], new: dict[str, dict[str, dict[str, object]]]
) -> dict[str, dict[str, dict[str, object]]]:
    merged = {kind: dict(items) for kind, items in old.items()}
    for kind, items in new.items():
        merged.setdefault(kind, {}).update(items)
    return merged


def _prev_close(current: Series, payload: ChartPayload) -> float:
    """chartPreviousClose belongs to the first stored bar: take the answer's when it starts earlier."""
    if len(payload.bars) == 0 or math.isnan(payload.prev_close):
        return current.prev_close
    if len(current.bars) == 0 or payload.bars.ts[0] <= current.bars.ts[0]:
        return payload.prev_close
    return current.prev_close


def _coverage(current: Series, start: int, end: int) -> tuple[int, int]:
    touches = start <= current.coverage_end and end >= current.coverage_start
    if touches:
        return min(start, current.coverage_start), max(end, current.coverage_end)
    # A disjoint answer: keep the newer contiguous window as the one we vouch for.
    return (start, end) if end > current.coverage_end else (current.coverage_start, current.coverage_end)
