"""Yahoo's chart JSON: meta (every field the recordings show, in their order), trading
periods, the result body, error bodies, and the bytes on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .instruments import Instrument
from .prices import Bars
from .sessions import SessionTable, calendar_day_periods, tz_parts
from .windows import VALID_RANGES, ChartQuery, Window

JSON_CONTENT_TYPE = "application/json;charset=utf-8"


@dataclass(frozen=True)
class MarketFacts:
    """Numbers meta reports about the latest session, computed by the chart module."""

    regular_time: int
    regular_price: float
    previous_close: float  # the session before the latest one
    fullday_price: float  # last print including extended hours
    day_high: float
    day_low: float
    day_volume: int
    year_high: float
    year_low: float
    chart_previous_close: float  # close before the window's first bar


def period(tz: str, start: int, end: int) -> dict[str, Any]:
    name, offset = tz_parts(tz, start)
    return {"timezone": name, "start": int(start), "end": int(end), "gmtoffset": offset}


def current_trading_period(inst: Instrument, table: SessionTable, now: float) -> dict[str, Any]:
    i = table.current(now)
    spec = table.spec
    o, c = int(table.open[i]), int(table.close[i])
    pre = int(table.pre[i]) if inst.has_prepost else o - spec.quote_pre_s
    post = int(table.post[i]) if inst.has_prepost else c + spec.quote_post_s
    tz = inst.timezone
    return {"pre": period(tz, pre, o), "regular": period(tz, o, c), "post": period(tz, c, post)}


def trading_periods(inst: Instrument, table: SessionTable, window: Window, query: ChartQuery) -> Any:
    """Per-day lists of periods; a dict of pre/post/regular lists when pre/post was asked.
    Overnight calendars (futures, FX) get one period per calendar day (see sessions)."""
    tz = inst.timezone
    if table.spec.overnight:
        days = calendar_day_periods(table, window.lo, window.hi)
        regular = [[period(tz, p.start, p.end)] for p in days]
        if not query.prepost:
            return regular
        return {
            "pre": [[period(tz, p.start, p.start)] for p in days],
            "post": [[period(tz, p.end, p.end)] for p in days],
            "regular": regular,
        }
    rows = range(window.lo, window.hi)
    regular = [[period(tz, int(table.open[i]), int(table.close[i]))] for i in rows]
    if not query.prepost:
        return regular
    # Without extended hours (indices, Tokyo, London) pre/post are zero-length at the bell.
    pre = table.pre if inst.has_prepost else table.open
    post = table.post if inst.has_prepost else table.close
    return {
        "pre": [[period(tz, int(pre[i]), int(table.open[i]))] for i in rows],
        "post": [[period(tz, int(table.close[i]), int(post[i]))] for i in rows],
        "regular": regular,
    }


def meta(
    inst: Instrument,
    table: SessionTable,
    query: ChartQuery,
    window: Window,
    facts: MarketFacts,
    now: float,
) -> dict[str, Any]:
    hint = inst.price_hint
    tz_name, offset = tz_parts(inst.timezone, now)
    change = facts.regular_price - facts.previous_close
    change_pct = round(100 * change / facts.previous_close, 3) if facts.previous_close else 0.0
    m: dict[str, Any] = {
        "currency": inst.currency,
        "symbol": inst.symbol,
        "exchangeName": inst.exchange_name,
        "fullExchangeName": inst.full_exchange_name,
        "instrumentType": inst.instrument_type,
        "firstTradeDate": int(table.stamp[max(0, table.first_on_or_after(inst.first_trade))]),
        "regularMarketTime": facts.regular_time,
        "hasPrePostMarketData": inst.has_prepost,
        "gmtoffset": offset,
        "timezone": tz_name,
        "exchangeTimezoneName": inst.timezone,
        "regularMarketPrice": round(facts.regular_price, hint),
        "regularMarketChangePercent": change_pct,
        "fulldayPrice": round(facts.fullday_price, hint),
        "fulldayChange": round(change, hint),
        "fulldayChangePercent": change_pct,
        "fiftyTwoWeekHigh": round(facts.year_high, hint),
        "fiftyTwoWeekLow": round(facts.year_low, hint),
        "regularMarketDayHigh": round(facts.day_high, hint),
        "regularMarketDayLow": round(facts.day_low, hint),
        "regularMarketVolume": facts.day_volume,
        "longName": inst.long_name,
        "shortName": inst.short_name,
        "chartPreviousClose": round(facts.chart_previous_close, hint),
    }
    if query.intraday:
        m["previousClose"] = round(facts.previous_close, hint)
        m["scale"] = 3
    m["priceHint"] = hint
    m["currentTradingPeriod"] = current_trading_period(inst, table, now)
    if query.intraday:
        m["tradingPeriods"] = trading_periods(inst, table, window, query)
    m["dataGranularity"] = query.interval.granularity
    m["range"] = query.range or ""
    m["validRanges"] = list(VALID_RANGES)
    return m


def chart_result(
    meta_: dict[str, Any],
    bars: Bars,
    adjclose: np.ndarray | None,
    events: dict[str, Any],
) -> dict[str, Any]:
    result: dict[str, Any] = {"meta": meta_}
    if len(bars) == 0:
        # Yahoo's answer for a window without bars: no timestamp, empty quote (and adjclose).
        indicators: dict[str, Any] = {"quote": [{}]}
        if adjclose is not None:
            indicators["adjclose"] = [{}]
        result["indicators"] = indicators
        return result
    result["timestamp"] = bars.ts.tolist()
    if events:
        result["events"] = events
    quote = {
        "open": bars.open.tolist(),
        "high": bars.high.tolist(),
        "low": bars.low.tolist(),
        "close": bars.close.tolist(),
        "volume": bars.volume.tolist(),
    }
    indicators = {"quote": [quote]}
    if adjclose is not None:
        indicators["adjclose"] = [{"adjclose": adjclose.tolist()}]
    result["indicators"] = indicators
    return result


def chart_body(result: dict[str, Any]) -> dict[str, Any]:
    return {"chart": {"result": [result], "error": None}}


def error_body(code: str, description: str, root: str = "chart") -> dict[str, Any]:
    return {root: {"result": None, "error": {"code": code, "description": description}}}


def dumps(body: Any) -> bytes:
    return orjson.dumps(body)
