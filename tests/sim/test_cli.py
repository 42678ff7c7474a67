"""The CLI as a subprocess (bounded waits) through testing.start_simulator, the in-process
runner, and that a bar is the same from another process."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from loadtests.yahoo_sim import SimConfig, answer
from loadtests.yahoo_sim.testing import run_in_process, start_simulator
from tests.sim.conftest import SUNDAY, ny

ROOT = Path(__file__).resolve().parents[2]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> tuple[int, Any, dict[str, str]]:
    try:
        with _OPENER.open(url, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def test_cli_serves_and_admin_helpers_work() -> None:
    with start_simulator(now=SUNDAY) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        status, body, headers = _get(f"{sim.base_url}/v8/finance/chart/IBM?interval=1d&range=5d")
        assert status == 200 and headers["Content-Type"] == "application/json;charset=utf-8"
        # Same bars as this process computes: nothing but (seed, symbol, start) feeds them.
        assert body == answer("IBM", {"interval": "1d", "range": "5d"}, SUNDAY, seed=7).body
        assert sim.counters()["chart_by_symbol"] == {"IBM": 1}
        assert sim.set_faults(error_ratio=1.0, error_statuses=[502])["error_ratio"] == 1.0
        assert _get(f"{sim.base_url}/v8/finance/chart/IBM")[0] == 502
        sim.reset()
        assert sim.counters()["total"] == 0 and sim.faults()["error_ratio"] == 0.0
        sim.set_now(SUNDAY + 86400)
        meta = _get(f"{sim.base_url}/v8/finance/chart/IBM")[1]["chart"]["result"][0]["meta"]
        assert meta["regularMarketTime"] == ny(2026, 9, 28, 16, 0)  # Monday's close
        sim.set_now(None)
    assert sim.proc.poll() is not None  # stopped by the context manager


def test_cli_flags_set_knobs() -> None:
    sim = start_simulator(now=SUNDAY, rate_limit_rps=0.1, rate_limit_burst=1, retry_after_s=3)
    try:
        assert _get(f"{sim.base_url}/v8/finance/chart/ES=F")[0] == 200
        status, body, headers = _get(f"{sim.base_url}/v8/finance/chart/ES=F")
        assert (status, body, headers["Retry-After"]) == (429, "Edge: Too Many Requests", "3")
        knobs = sim.faults()
        assert (knobs["rate_limit_rps"], knobs["rate_limit_burst"], knobs["retry_after_s"]) == (0.1, 1, 3.0)
    finally:
        sim.stop()


def test_cli_rejects_bad_flags() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "loadtests.yahoo_sim", "--error-ratio", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "error_ratio" in run.stderr


async def test_run_in_process() -> None:
    import aiohttp

    async with run_in_process(SimConfig(now=SUNDAY), latency_ms=1) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        url = f"{sim.base_url}/v8/finance/chart/NQ=F?interval=1h&range=1d"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            body = await response.json(content_type=None)
        assert body["chart"]["result"][0]["meta"]["symbol"] == "NQ=F"
        assert sim.counters()["chart_by_symbol_interval"] == {"NQ=F": {"1h": 1}}
        sim.set_faults(error_ratio=1.0)
        sim.reset()
        assert sim.counters()["total"] == 0 and sim.state.faults.knobs.error_ratio == 0.0


@pytest.mark.parametrize("flag", ["--help"])
def test_cli_help(flag: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "loadtests.yahoo_sim", flag],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "--rate-limit-rps" in run.stdout and "--outage-mode" in run.stdout
