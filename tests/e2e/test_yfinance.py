"""Unmodified yfinance code gets the same DataFrames through the proxy as from the
upstream itself, and the proxy spends upstream requests only on what it lacks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
import yfinance as yf
import yfproxy_client

from tests.e2e.conftest import ProxyProcess


@pytest.fixture(autouse=True)
def private_yfinance_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yf-cache")))
    yield
    yfproxy_client.uninstall()


@pytest.fixture(autouse=True)
def curl_stays_local() -> Iterator[None]:
    """curl_cffi connects from C, out of reach of the socket guard: check its URLs here."""
    from urllib.parse import urlsplit

    from curl_cffi import requests as creq

    original = creq.Session.request

    def guarded(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        host = urlsplit(url).hostname
        assert host == "127.0.0.1", f"test traffic must stay on 127.0.0.1, tried {url}"
        return original(self, method, url, *args, **kwargs)

    creq.Session.request = guarded  # type: ignore[method-assign]
    yield
    creq.Session.request = original  # type: ignore[method-assign]


def through(url: str, call: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    yfproxy_client.install(url)
    try:
        return call()
    finally:
        yfproxy_client.uninstall()


def _history(symbol: str, **kw: Any) -> Callable[[], pd.DataFrame]:
    return lambda: yf.Ticker(symbol).history(raise_errors=True, **kw)


def _start_end() -> dict[str, str]:
    today = dt.date.today()
    return {"start": str(today - dt.timedelta(days=40)), "end": str(today - dt.timedelta(days=3))}


CALLS: dict[str, Callable[[], Callable[[], pd.DataFrame]]] = {
    "5d-1m": lambda: _history("ES=F", period="5d", interval="1m"),
    "start-end-1d": lambda: _history("ES=F", interval="1d", **_start_end()),
    "download-1mo-1h": lambda: (
        lambda: yf.download(
            ["ES=F", "NQ=F"], period="1mo", interval="1h", progress=False, threads=False, auto_adjust=False
        )
    ),
    "max-1d": lambda: _history("NQ=F", period="max", interval="1d"),
    "5d-30m": lambda: _history("ES=F", period="5d", interval="30m"),
    "equity-1y-1d-events": lambda: _history("IBM", period="1y", interval="1d", actions=True),
    "equity-prepost-1h": lambda: _history("MSFT", period="5d", interval="1h", prepost=True),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_dataframes_equal_direct_and_through_proxy(name: str, simulator: Any, proxy: ProxyProcess) -> None:
    call = CALLS[name]()
    direct = through(simulator.base_url, call)
    proxied = through(proxy.url, call)
    assert len(direct) > 0
    pd.testing.assert_frame_equal(proxied, direct)


def test_second_pass_costs_no_upstream_chart_requests(simulator: Any, proxy: ProxyProcess) -> None:
    call = CALLS["5d-1m"]()
    through(proxy.url, call)
    before = simulator.counters()
    for _ in range(5):
        through(proxy.url, call)
    after = simulator.counters()
    assert _chart_requests(after) == _chart_requests(before)


def test_yfinance_on_requests_instead_of_curl_cffi(
    simulator: Any, proxy: ProxyProcess, tmp_path: Any
) -> None:
    """YF_DISABLE_CURL_CFFI is read at import: run that yfinance in its own interpreter."""
    import os
    import subprocess
    import sys

    script = (
        "import yfproxy_client, yfinance as yf, sys\n"
        f"yf.set_tz_cache_location({str(tmp_path)!r})\n"
        "yfproxy_client.install(sys.argv[1])\n"
        "df = yf.Ticker('ES=F').history(period='5d', interval='1d', raise_errors=True)\n"
        "print(len(df), df['Close'].iloc[-1])\n"
    )
    env = {**os.environ, "YF_DISABLE_CURL_CFFI": "1"}
    outs = [
        subprocess.run(
            [sys.executable, "-c", script, url], env=env, capture_output=True, text=True, timeout=120
        )
        for url in (simulator.base_url, proxy.url)
    ]
    for out in outs:
        assert out.returncode == 0, out.stderr[-2000:]
    assert outs[0].stdout == outs[1].stdout


def _chart_requests(counters: dict[str, Any]) -> int:
    return int(counters["by_kind"]["chart"]) if "by_kind" in counters else int(counters["chart"])
