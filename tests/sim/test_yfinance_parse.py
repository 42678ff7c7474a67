"""Real yfinance 1.7.0 parses the simulator's bodies: its PriceHistory is fed through a
stand-in for its data layer that answers from the simulator (no HTTP, no patching of
yfinance itself). The end-to-end run through the client and proxy is tested elsewhere."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yfinance.scrapers.history as yf_history

from loadtests.yahoo_sim import answer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
NOW = time.time() // 60 * 60  # yfinance computes periods from the real clock


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self._body = body
        self.text = json.dumps(body)

    def json(self) -> Any:
        return self._body


class SimData:
    """Just the two methods PriceHistory calls on yfinance's YfData."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def get(self, url: str, params: dict[str, Any] | None = None, **_: Any) -> _Response:
        query = {k: str(v) for k, v in (params or {}).items()}
        self.calls.append(query)
        result = answer(url.rsplit("/", 1)[1], query, NOW, seed=7)
        return _Response(result.status, result.body)

    cache_get = get


def _history(symbol: str, tz: str, **kw: Any) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return yf_history.PriceHistory(SimData(), symbol, tz).history(raise_errors=True, **kw)


def test_intraday_futures_frame() -> None:
    df = _history("ES=F", "America/New_York", period="5d", interval="1m")
    assert len(df) > 1000 and str(df.index.tz) == "America/New_York"
    assert (df["Low"] <= df["High"]).all() and not df.index.has_duplicates
    assert not any(t.hour == 17 for t in df.index)


def test_daily_equity_frame_with_dividends() -> None:
    df = _history("IBM", "America/New_York", period="1y", interval="1d", actions=True)
    assert 245 <= len(df) <= 253
    assert 3 <= (df["Dividends"] > 0).sum() <= 5  # quarterly; a year may hold a 5th ex-date


def test_prepost_hourly_frame() -> None:
    df = _history("MSFT", "America/New_York", period="5d", interval="1h", prepost=True)
    hours = {t.hour for t in df.index}
    assert 4 in hours and 19 in hours
