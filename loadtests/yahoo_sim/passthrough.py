"""The other endpoints yfinance calls: crumb, cookie handshake, quoteSummary, quote and
fundamentals timeseries. Plausible and Yahoo-shaped rather than complete."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from . import sessions
from .chart import quote_snapshot
from .instruments import Instrument, lookup_at

HANDSHAKE_HOSTS = frozenset({"fc.yahoo.com", "guce.yahoo.com", "consent.yahoo.com", "login.yahoo.com"})
_CRUMB_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./"
HANDSHAKE_BODY = "<!DOCTYPE html><html><head><title>Yahoo</title></head><body></body></html>"
Answer = tuple[int, dict[str, Any]]


def is_handshake(forwarded_host: str | None) -> bool:
    if not forwarded_host:
        return False
    return forwarded_host.split(":")[0].strip().lower() in HANDSHAKE_HOSTS


def crumb(seed: int) -> str:
    """An 11-character crumb, fixed per seed, that looks like Yahoo's."""
    digest = hashlib.blake2b(f"crumb:{seed}".encode(), digest_size=11).digest()
    return "".join(_CRUMB_ALPHABET[b % len(_CRUMB_ALPHABET)] for b in digest)


def cookie(seed: int, now: float) -> str:
    token = hashlib.blake2b(f"a3:{seed}".encode(), digest_size=24).hexdigest()
    expires = dt.datetime.fromtimestamp(now + 31557600, dt.UTC).strftime("%a, %d-%b-%Y %H:%M:%S GMT")
    return (
        f"A3=d=AQABBK{token}&S=AQAAA{token[:16]}; Expires={expires}; Max-Age=31557600; "
        "Domain=.yahoo.com; Path=/; SameSite=None; Secure; HttpOnly"
    )


def _raw(value: float | int, hint: int = 2) -> dict[str, Any]:
    if isinstance(value, int):
        return {"raw": value, "fmt": f"{value:,}", "longFmt": f"{value:,}"}
    return {"raw": round(value, hint), "fmt": f"{value:,.{hint}f}"}


def _market_state(inst: Instrument, now: float) -> str:
    table = sessions.table(inst.calendar, now)
    i = table.current(now)
    if table.open[i] <= now < table.close[i]:
        return "REGULAR"
    if inst.has_prepost and table.pre[i] <= now < table.open[i]:
        return "PRE"
    if inst.has_prepost and table.close[i] <= now < table.post[i]:
        return "POST"
    return "CLOSED"


def _tz_short(inst: Instrument, now: float) -> tuple[str, int]:
    local = dt.datetime.fromtimestamp(now, ZoneInfo(inst.timezone))
    offset = local.utcoffset() or dt.timedelta(0)
    return local.tzname() or "", int(offset.total_seconds() * 1000)


def _first_trade_ms(inst: Instrument, now: float) -> int:
    table = sessions.table(inst.calendar, now)
    return int(table.stamp[max(0, table.first_on_or_after(inst.first_trade))]) * 1000


def quote_entry(inst: Instrument, now: float, seed: int) -> dict[str, Any]:
    q = quote_snapshot(inst, now, seed)
    tz_short, offset_ms = _tz_short(inst, now)
    hint = inst.price_hint
    change = float(q["price"]) - float(q["previous_close"])
    return {
        "language": "en-US",
        "region": "US",
        "quoteType": inst.instrument_type,
        "typeDisp": inst.instrument_type.title(),
        "quoteSourceName": "Delayed Quote",
        "triggerable": True,
        "currency": inst.currency,
        "exchange": inst.exchange_name,
        "shortName": inst.short_name,
        "longName": inst.long_name,
        "messageBoardId": f"finmb_{inst.symbol.lower()}",
        "exchangeTimezoneName": inst.timezone,
        "exchangeTimezoneShortName": tz_short,
        "gmtOffSetMilliseconds": offset_ms,
        "market": "us_market",
        "marketState": _market_state(inst, now),
        "priceHint": hint,
        "regularMarketPrice": round(float(q["price"]), hint),
        "regularMarketChange": round(change, hint),
        "regularMarketChangePercent": round(100 * change / float(q["previous_close"]), 4),
        "regularMarketTime": int(q["time"]),
        "regularMarketOpen": round(float(q["open"]), hint),
        "regularMarketDayHigh": round(float(q["day_high"]), hint),
        "regularMarketDayLow": round(float(q["day_low"]), hint),
        "regularMarketDayRange": f"{q['day_low']:.{hint}f} - {q['day_high']:.{hint}f}",
        "regularMarketVolume": int(q["volume"]),
        "regularMarketPreviousClose": round(float(q["previous_close"]), hint),
        "fullExchangeName": inst.full_exchange_name,
        "fiftyTwoWeekLow": round(float(q["year_low"]), hint),
        "fiftyTwoWeekHigh": round(float(q["year_high"]), hint),
        "firstTradeDateMilliseconds": _first_trade_ms(inst, now),
        "symbol": inst.symbol,
    }


def quote(params: Mapping[str, str], now: float, seed: int) -> Answer:
    """/v7/finance/quote?symbols=A,B: unknown symbols are simply left out, as Yahoo does."""
    raw = params.get("symbols", "")
    if not raw.strip():
        return 400, {
            "quoteResponse": {
                "result": None,
                "error": {"code": "Bad Request", "description": "Missing required query parameter=symbols"},
            }
        }
    found = [lookup_at(s, now) for s in raw.split(",") if s.strip()]
    result = [quote_entry(inst, now, seed) for inst in found if inst is not None]
    return 200, {"quoteResponse": {"result": result, "error": None}}


def _summary_modules(inst: Instrument, now: float, seed: int) -> dict[str, dict[str, Any]]:
    q = quote_entry(inst, now, seed)
    hint = inst.price_hint
    return {
        "price": {
            "maxAge": 1,
            "regularMarketChangePercent": _raw(q["regularMarketChangePercent"] / 100, 4),
            "regularMarketChange": _raw(q["regularMarketChange"], hint),
            "regularMarketTime": q["regularMarketTime"],
            "priceHint": {"raw": hint, "fmt": str(hint), "longFmt": str(hint)},
            "regularMarketPrice": _raw(q["regularMarketPrice"], hint),
            "regularMarketDayHigh": _raw(q["regularMarketDayHigh"], hint),
            "regularMarketDayLow": _raw(q["regularMarketDayLow"], hint),
            "regularMarketVolume": _raw(q["regularMarketVolume"]),
            "regularMarketPreviousClose": _raw(q["regularMarketPreviousClose"], hint),
            "regularMarketOpen": _raw(q["regularMarketOpen"], hint),
            "exchange": inst.exchange_name,
            "exchangeName": inst.full_exchange_name,
            "marketState": q["marketState"],
            "quoteType": inst.instrument_type,
            "symbol": inst.symbol,
            "shortName": inst.short_name,
            "longName": inst.long_name,
            "currency": inst.currency,
            "currencySymbol": "$" if inst.currency == "USD" else inst.currency,
        },
        "summaryDetail": {
            "maxAge": 1,
            "priceHint": {"raw": hint, "fmt": str(hint), "longFmt": str(hint)},
            "previousClose": _raw(q["regularMarketPreviousClose"], hint),
            "open": _raw(q["regularMarketOpen"], hint),
            "dayLow": _raw(q["regularMarketDayLow"], hint),
            "dayHigh": _raw(q["regularMarketDayHigh"], hint),
            "volume": _raw(q["regularMarketVolume"]),
            "fiftyTwoWeekLow": _raw(q["fiftyTwoWeekLow"], hint),
            "fiftyTwoWeekHigh": _raw(q["fiftyTwoWeekHigh"], hint),
            "currency": inst.currency,
            "tradeable": False,
        },
        "quoteType": {
            "exchange": inst.exchange_name,
            "quoteType": inst.instrument_type,
            "symbol": inst.symbol,
            "underlyingSymbol": inst.symbol,
            "shortName": inst.short_name,
            "longName": inst.long_name,
            "firstTradeDateEpochUtc": q["firstTradeDateMilliseconds"] // 1000,
            "timeZoneFullName": inst.timezone,
            "timeZoneShortName": q["exchangeTimezoneShortName"],
            "gmtOffSetMilliseconds": q["gmtOffSetMilliseconds"],
            "messageBoardId": q["messageBoardId"],
        },
    }


def quote_summary(symbol: str, params: Mapping[str, str], now: float, seed: int) -> Answer:
    inst = lookup_at(symbol, now)
    if inst is None:
        return 404, _summary_error("Not Found", f"Quote not found for symbol: {symbol.upper()}")
    asked = [m.strip() for m in params.get("modules", "price").split(",") if m.strip()]
    modules = _summary_modules(inst, now, seed)
    found = {m: modules[m] for m in asked if m in modules}
    if not found:
        return 404, _summary_error(
            "Not Found", f"No fundamentals data found for any of the summaryTypes={','.join(asked)}"
        )
    return 200, {"quoteSummary": {"result": [found], "error": None}}


def _summary_error(code: str, description: str) -> dict[str, Any]:
    return {"quoteSummary": {"result": None, "error": {"code": code, "description": description}}}


def timeseries(symbol: str, now: float) -> Answer:
    if lookup_at(symbol, now) is None:
        return 404, {
            "timeseries": {
                "result": None,
                "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
            }
        }
    return 200, {"timeseries": {"result": [], "error": None}}


def not_found_path() -> Answer:
    return 404, {
        "finance": {"result": None, "error": {"code": "Not Found", "description": "HTTP 404 Not Found"}}
    }
