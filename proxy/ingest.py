"""Turn a Yahoo chart body into the parts of a :class:`~proxy.series.Series`.

Everything upstream sends is checked for shape here before it can reach the store:
a body that is not a chart, arrays of different lengths or non-numeric values are a
:class:`PayloadError`, never a partly stored series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from proxy.series import QUOTE_KEYS, VOLUME_NULL, Bars, TradingDays

# Meta keys that depend on the request, not on the instrument: the renderer rebuilds them.
REQUEST_META_KEYS = ("chartPreviousClose", "tradingPeriods", "dataGranularity", "range")


class PayloadError(ValueError):
    """Upstream answered something that is not a usable chart body."""


class UpstreamChartError(Exception):
    """Upstream answered a chart error body (``chart.error`` set)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


@dataclass(slots=True)
class ChartPayload:
    bars: Bars
    meta: dict[str, Any]
    days: TradingDays
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    prev_close: float = math.nan
    quote_order: tuple[str, ...] = QUOTE_KEYS


def parse_chart_body(body: bytes) -> ChartPayload:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from exc
    chart = doc.get("chart") if isinstance(doc, dict) else None
    if not isinstance(chart, dict):
        raise PayloadError("no 'chart' object")
    error = chart.get("error")
    if isinstance(error, dict):
        raise UpstreamChartError(str(error.get("code", "")), str(error.get("description", "")))
    results = chart.get("result")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise PayloadError("no chart result")
    return parse_chart_result(results[0])


def parse_chart_result(result: dict[str, Any]) -> ChartPayload:
    meta = result.get("meta")
    if not isinstance(meta, dict):
        raise PayloadError("result has no meta")
    bars, quote_order = _parse_bars(result)
    days = parse_trading_periods(meta.get("tradingPeriods"))
    prev = meta.get("chartPreviousClose")
    return ChartPayload(
        bars=bars,
        meta=meta,
        days=days,
        events=_parse_events(result.get("events")),
        prev_close=float(prev) if isinstance(prev, int | float) else math.nan,
        quote_order=quote_order,
    )


def _parse_bars(result: dict[str, Any]) -> tuple[Bars, tuple[str, ...]]:
    timestamps = result.get("timestamp") or []
    indicators = result.get("indicators") or {}
    quotes = indicators.get("quote") or [{}]
    quote = quotes[0] if isinstance(quotes, list) and quotes and isinstance(quotes[0], dict) else {}
    if not isinstance(timestamps, list):
        raise PayloadError("timestamp is not a list")
    n = len(timestamps)
    if n and not quote:
        raise PayloadError("timestamps without quote arrays")
    try:
        ts = np.array(timestamps, dtype=np.int64)
        columns = [_float_array(quote.get(name), n, name) for name in ("open", "high", "low", "close")]
        volume = _volume_array(quote.get("volume"), n)
        adjclose = None
        adj = indicators.get("adjclose")
        if isinstance(adj, list) and adj and isinstance(adj[0], dict) and "adjclose" in adj[0]:
            adjclose = _float_array(adj[0]["adjclose"], n, "adjclose")
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"non-numeric bar values: {exc}") from exc
    order = tuple(k for k in quote if k in QUOTE_KEYS) or QUOTE_KEYS
    if len(order) != len(QUOTE_KEYS):
        order = QUOTE_KEYS
    bars = Bars(ts, *columns, volume, adjclose)
    return _sorted_unique(bars), order


def _check_length(values: Any, n: int, name: str) -> None:
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else "no"
        raise PayloadError(f"{name} has {got} values for {n} bars")


def _float_array(values: Any, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    _check_length(values, n, name)
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _volume_array(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, VOLUME_NULL, dtype=np.int64)
    _check_length(values, n, "volume")
    return np.array([VOLUME_NULL if v is None else int(v) for v in values], dtype=np.int64)


def _sorted_unique(bars: Bars) -> Bars:
    """Yahoo occasionally repeats the live bar; keep the last copy of each timestamp."""
    if len(bars) < 2 or bool(np.all(np.diff(bars.ts) > 0)):
        return bars
    order = np.argsort(bars.ts, kind="stable")
    ts = bars.ts[order]
    last = np.append(ts[1:] != ts[:-1], True)
    return bars.take(order[last])


def _parse_events(events: Any) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(events, dict):
        return {}
    return {kind: dict(items) for kind, items in events.items() if isinstance(items, dict)}


def parse_trading_periods(periods: Any) -> TradingDays:
    """Yahoo lists one inner list per day; with pre/post, a dict of three such lists."""
    if isinstance(periods, dict):
        regular = _period_rows(periods.get("regular"))
        pre = {r[0]: r for r in _period_rows(periods.get("pre"))}
        post = {r[0]: r for r in _period_rows(periods.get("post"))}
        pre_by_day = _match_by_day(regular, pre, before=True)
        post_by_day = _match_by_day(regular, post, before=False)
    elif isinstance(periods, list):
        regular = _period_rows(periods)
        pre_by_day = post_by_day = [(0, 0)] * len(regular)
    else:
        return TradingDays.empty()
    if not regular:
        return TradingDays.empty()
    col = lambda i: np.array([r[i] for r in regular], dtype=np.int64)  # noqa: E731
    return TradingDays(
        regular_start=col(0),
        regular_end=col(1),
        pre_start=np.array([p[0] for p in pre_by_day], dtype=np.int64),
        pre_end=np.array([p[1] for p in pre_by_day], dtype=np.int64),
        post_start=np.array([p[0] for p in post_by_day], dtype=np.int64),
        post_end=np.array([p[1] for p in post_by_day], dtype=np.int64),
        gmtoffset=col(2),
        timezone=[r[3] for r in regular],
    )


def _period_rows(days: Any) -> list[tuple[int, int, int, str]]:
    rows = []
    for day in days or []:
        periods = day if isinstance(day, list) else [day]
        periods = [p for p in periods if isinstance(p, dict)]
        if not periods:
            continue
        try:
            start = int(periods[0]["start"])
            end = int(periods[-1]["end"])
            offset = int(periods[0].get("gmtoffset", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"bad tradingPeriods entry: {exc}") from exc
        rows.append((start, end, offset, str(periods[0].get("timezone", ""))))
    return rows


def _match_by_day(
    regular: list[tuple[int, int, int, str]],
    extra: dict[int, tuple[int, int, int, str]],
    *,
    before: bool,
) -> list[tuple[int, int]]:
    """Pair each regular session with the pre (ending at its open) or post (starting at its close)."""
    by_edge = {(row[1] if before else row[0]): row for row in extra.values()}
    out = []
    for start, end, _off, _tz in regular:
        row = by_edge.get(start if before else end)
        out.append((row[0], row[1]) if row else (0, 0))
    return out
