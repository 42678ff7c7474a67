"""What the load test's dashboards look at; shared by the locustfile and its runner, so the
runner does not import locust (which monkey-patches the standard library on import)."""

from __future__ import annotations

FUTURES = ["ES=F", "NQ=F", "YM=F", "RTY=F", "CL=F", "GC=F", "SI=F", "ZN=F", "ZB=F", "6E=F"]
TIMEFRAMES = {"1m": "1d", "5m": "5d", "15m": "5d", "1h": "1mo", "1d": "1y"}

CRUMB = "Xyz1AbC2dEf"
UNKNOWN_SYMBOLS = 50  # NOPE1 .. NOPE50
BAD_INPUT_PATH = "/v8/finance/chart/ES=F?interval=4m&range=1d"


def chart_path(symbol: str, params: dict[str, str]) -> str:
    query = "&".join(f"{k}={v}" for k, v in {**params, "crumb": CRUMB}.items())
    return f"/v8/finance/chart/{symbol}?{query}"


def dashboard_loads() -> list[tuple[str, str]]:
    """(request name, path) of one dashboard load: every instrument at every timeframe."""
    return [
        (f"chart {interval}", chart_path(symbol, {"interval": interval, "range": period}))
        for symbol in FUTURES
        for interval, period in TIMEFRAMES.items()
    ]


def history_loads(symbol: str, now: float) -> list[tuple[str, str]]:
    """yfinance's history(start, end): period1/period2 at exchange midnight (New York),
    then the time-zone probe it sends first for symbols it has not cached."""
    today = int(now) // 86400 * 86400 + 5 * 3600
    params = {
        "interval": "1d", "period1": str(today - 90 * 86400), "period2": str(today),
        "includePrePost": "false", "events": "div,splits,capitalGains",
    }  # fmt: skip
    return [
        ("chart 1d period", chart_path(symbol, params)),
        ("tz probe", chart_path(symbol, {"interval": "1d", "range": "1d"})),
    ]


def unknown_symbol_path(n: int) -> str:
    return f"/v8/finance/chart/NOPE{n}?interval=1d&range=5d"


def every_path(now: float) -> list[str]:
    """Every path the scenario can ask for on the day of ``now``."""
    paths = [path for _name, path in dashboard_loads()]
    paths += [path for symbol in FUTURES for _name, path in history_loads(symbol, now)]
    paths += [unknown_symbol_path(n) for n in range(1, UNKNOWN_SYMBOLS + 1)]
    return [*paths, BAD_INPUT_PATH]
