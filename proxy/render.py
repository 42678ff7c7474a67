"""Render Yahoo's chart body from a cut of a stored series.

The output is Yahoo's body value for value: meta in upstream's key order with the
request-dependent keys recomputed, per-day ``tradingPeriods`` (a pre/regular/post
dict when the series holds pre/post data), events of the asked kinds inside the
window, ``adjclose`` for daily and longer bars, ``null`` where Yahoo sends nulls.
Arrays are serialised by orjson straight from numpy, never per bar in Python.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from proxy.intervals import lookup
from proxy.series import VOLUME_NULL, Series, TradingDays
from proxy.window import WindowView

if TYPE_CHECKING:
    from proxy.query import ChartQuery

_EVENT_KINDS = {"div": "dividends", "split": "splits", "capitalGains": "capitalGains", "earn": "earnings"}
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_FAR_FUTURE = 2**62


def render_chart(
    series: Series, view: WindowView, query: ChartQuery, events: dict[str, Any] | None = None
) -> bytes:
    """Yahoo's body for this cut; ``events`` as chosen by :func:`select_events` when known."""
    result: dict[str, Any] = {"meta": _meta(series, view, query)}
    bars = series.bars
    sl = slice(view.i0, view.i1)
    if not view.empty:
        result["timestamp"] = bars.ts[sl]
    if events is None:
        events = select_events(series, view, query)
    if events:
        result["events"] = events
    result["indicators"] = _indicators(series, sl, view.empty)
    return orjson.dumps({"chart": {"result": [result], "error": None}}, option=_OPTIONS)


def _meta(series: Series, view: WindowView, query: ChartQuery) -> dict[str, Any]:
    meta = dict(series.meta)
    intraday = query.interval.intraday
    if not math.isnan(view.prev_close):
        meta["chartPreviousClose"] = view.prev_close
    if intraday and len(series.days):
        periods = _trading_periods(series.days.take(slice(view.d0, view.d1)), query.prepost)
        if "tradingPeriods" in meta:
            meta["tradingPeriods"] = periods
        else:
            _insert_before(meta, "dataGranularity", "tradingPeriods", periods)
    else:
        meta.pop("tradingPeriods", None)
    meta["dataGranularity"] = query.interval.name
    meta["range"] = query.range_echo
    meta.setdefault("validRanges", [])
    # Keep Yahoo's order: dataGranularity, range, validRanges close the meta object.
    for key in ("dataGranularity", "range", "validRanges"):
        meta[key] = meta.pop(key)
    return meta


def _insert_before(meta: dict[str, Any], anchor: str, key: str, value: Any) -> None:
    items = list(meta.items())
    at = next((i for i, (k, _) in enumerate(items) if k == anchor), len(items))
    items.insert(at, (key, value))
    meta.clear()
    meta.update(items)


def _trading_periods(days: TradingDays, prepost: bool) -> Any:
    def rows(starts: np.ndarray, ends: np.ndarray) -> list[list[dict[str, Any]]]:
        return [
            [{"timezone": tz, "start": int(s), "end": int(e), "gmtoffset": int(off)}]
            for tz, s, e, off in zip(days.timezone, starts, ends, days.gmtoffset, strict=True)
        ]

    regular = rows(days.regular_start, days.regular_end)
    if not prepost or not bool(np.any(days.pre_start)):
        return regular
    return {
        "pre": rows(days.pre_start, days.pre_end),
        "post": rows(days.post_start, days.post_end),
        "regular": regular,
    }


def select_events(series: Series, view: WindowView, query: ChartQuery) -> dict[str, Any]:
    """The asked kinds of events inside the asked window, in time order."""
    if not series.events or not query.events:
        return {}
    out: dict[str, Any] = {}
    for asked in sorted(query.events):
        kind = _EVENT_KINDS.get(asked, asked)
        timed = [(_event_time(k, v), k, v) for k, v in series.events.get(kind, {}).items()]
        end = view.end if view.end is not None else _FAR_FUTURE
        picked = sorted((t, k, v) for t, k, v in timed if t is not None and view.start <= t < end)
        if picked:
            out[kind] = {k: v for _, k, v in picked}
    return out


def _event_time(key: str, value: dict[str, Any]) -> int | None:
    date = value.get("date") if isinstance(value, dict) else None
    if isinstance(date, int):
        return date
    try:
        return int(key)
    except ValueError:
        return None


def _indicators(series: Series, sl: slice, empty: bool) -> dict[str, Any]:
    bars = series.bars
    interval = lookup(series.key.interval)
    has_adj = bars.adjclose is not None or (interval is not None and interval.has_adjclose)
    if empty:
        out: dict[str, Any] = {"quote": [{}]}
        if has_adj:
            out["adjclose"] = [{}]
        return out
    columns = {
        "open": bars.open[sl], "high": bars.high[sl], "low": bars.low[sl],
        "close": bars.close[sl], "volume": _volume(bars.volume[sl]),
    }  # fmt: skip
    quote = {key: columns[key] for key in series.quote_order}
    out = {"quote": [quote]}
    if has_adj:
        adj = bars.adjclose[sl] if bars.adjclose is not None else bars.close[sl]
        out["adjclose"] = [{"adjclose": adj}]
    return out


def _volume(volume: np.ndarray) -> Any:
    if bool(np.any(volume == VOLUME_NULL)):
        return [None if v == VOLUME_NULL else int(v) for v in volume]
    return volume
