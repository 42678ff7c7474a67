"""Real, unmodified yfinance 1.7 code, redirected to the fake proxy: in process, through
the YFPROXY_URL autoload, and on its requests backend (YF_DISABLE_CURL_CFFI=1)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yfinance as yf
from conftest import CLIENT, TESTS, child_env, venv_python
from curl_cffi import requests as curl_requests
from yfpc_fake_yahoo import CRUMB, FakeYahoo

import yfproxy_client

# The recording's window: period1/period2 = 2026-08-28/2026-09-28 at New York midnight.
START, END = "2026-08-28", "2026-09-28"
HISTORY_SCRIPT = TESTS / "yfpc_history.py"


def recorded_rows(exchange: dict[str, Any]) -> list[list[Any]]:
    result = exchange["response"]["json"]["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    new_york = dt.timezone(dt.timedelta(hours=-4))  # EDT all through the window
    days = [str(dt.datetime.fromtimestamp(ts, new_york).date()) for ts in result["timestamp"]]
    return [list(row) for row in zip(days, quote["close"], quote["volume"])]


def assert_went_through_the_proxy(server: FakeYahoo, exchange: dict[str, Any]) -> None:
    """Every request carried a Yahoo X-Forwarded-Host, and the chart request was the recording's."""
    seen = server.requests()
    assert seen, "yfinance sent nothing to the proxy"
    assert all(s.forwarded_host and s.forwarded_host.endswith("yahoo.com") for s in seen), seen
    assert any(s.forwarded_host == "fc.yahoo.com" for s in seen), "no cookie handshake"
    charts = [s for s in seen if s.path == "/v8/finance/chart/MSFT" and "period1" in s.query]
    assert charts, [s.path for s in seen]
    params = exchange["request"]["params"]
    for name in ("period1", "period2", "interval"):
        assert charts[-1].query[name] == [params[name]]
    assert charts[-1].query["crumb"] == [CRUMB]
    assert charts[-1].forwarded_host == "query2.finance.yahoo.com"


def frame_rows(frame: Any) -> list[list[Any]]:
    if frame.columns.nlevels == 2:  # yf.download: (Price, Ticker) columns
        frame = frame.xs("MSFT", axis=1, level="Ticker")
    return [[str(ts.date()), row.Close, int(row.Volume)] for ts, row in frame.iterrows()]


def run_history(python: Path | str, cache: Path, *extra: str, **env: str) -> dict[str, Any]:
    """yfpc_history.py in a new interpreter; its JSON report, after checking it stayed local."""
    out = subprocess.run(
        [str(python), str(HISTORY_SCRIPT), str(cache), START, END, *extra],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["violations"] == []
    return report


@pytest.fixture
def fresh_yfinance(tmp_path: Path) -> None:
    """yfinance as in a new process: private caches, no cookie/crumb, no cached answers."""
    from yfinance.data import YfData

    yf.set_tz_cache_location(str(tmp_path))
    YfData.cache_get.cache_clear()  # past date ranges are served from an in-process lru_cache
    data = YfData(session=None)
    data._cookie, data._crumb = None, None  # so that the handshake is redone (and checked)


def _ticker() -> Any:
    return yf.Ticker("MSFT").history(start=START, end=END, interval="1d")


def _download() -> Any:
    # download() puts yfinance's own singleton session back: patching the class is what survives.
    return yf.download("MSFT", start=START, end=END, interval="1d", progress=False, threads=True)


def _own_session() -> Any:
    session = curl_requests.Session(impersonate="chrome")
    return yf.Ticker("MSFT", session=session).history(start=START, end=END, interval="1d")


@pytest.mark.parametrize(
    "fetch", [_ticker, _download, _own_session], ids=["ticker", "download", "own-session"]
)
@pytest.mark.usefixtures("fresh_yfinance")
def test_history_in_process(
    fake_yahoo: FakeYahoo, msft_exchange: dict[str, Any], fetch: Callable[[], Any]
) -> None:
    yfproxy_client.install(fake_yahoo.url)
    rows = frame_rows(fetch())
    assert len(rows) == 20
    assert rows == recorded_rows(msft_exchange)
    assert_went_through_the_proxy(fake_yahoo, msft_exchange)


def test_history_through_the_env_var_autoload(
    fake_yahoo: FakeYahoo, msft_exchange: dict[str, Any], site_venv: Path, tmp_path: Path
) -> None:
    report = run_history(venv_python(site_venv), tmp_path, YFPROXY_URL=fake_yahoo.url)
    assert report["installed_url"] == fake_yahoo.url
    assert report["imported_at_start"] == []  # the autoload imported no HTTP library itself
    assert report["session"].startswith("curl_cffi")
    assert report["rows"] == recorded_rows(msft_exchange)
    assert_went_through_the_proxy(fake_yahoo, msft_exchange)


@pytest.mark.parametrize("how", ["autoload", "install"])
def test_history_on_the_requests_backend(
    fake_yahoo: FakeYahoo, msft_exchange: dict[str, Any], site_venv: Path, tmp_path: Path, how: str
) -> None:
    # yfinance reads YF_DISABLE_CURL_CFFI when it is imported: only a new process can test it.
    if how == "autoload":
        report = run_history(
            venv_python(site_venv), tmp_path, YF_DISABLE_CURL_CFFI="1", YFPROXY_URL=fake_yahoo.url
        )
    else:
        report = run_history(
            sys.executable,
            tmp_path,
            "--install",
            fake_yahoo.url,
            YF_DISABLE_CURL_CFFI="1",
            PYTHONPATH=f"{TESTS}:{CLIENT}",
        )
    assert report["session"].startswith("requests")
    assert report["installed_url"] == fake_yahoo.url
    assert report["rows"] == recorded_rows(msft_exchange)
    assert_went_through_the_proxy(fake_yahoo, msft_exchange)
