"""Redis dies under the proxy and comes back: hot series keep being served from memory,
everything else gets a fast 503 + Retry-After (never a hang or a 500), /readyz says why,
and it all recovers by itself when Redis returns. The proxy and its Redis are processes
of their own; the simulator is upstream. Traffic goes to 127.0.0.1 only. The same fault
under client traffic, with the refresher on: test_process_faults.py."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.yahoo_sim.testing import start_simulator
from tests.e2e.conftest import ProxyProcess, start_proxy
from tests.faults.test_process_faults import RestartableRedis


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Any, RestartableRedis, ProxyProcess]]:
    sim = start_simulator()
    redis_proc = RestartableRedis(tmp_path)
    proxy: ProxyProcess | None = None
    try:
        sim.set_now(int(time.time()) // 60 * 60)
        redis_proc.start()
        proxy = start_proxy(sim.base_url, redis_proc.url, tmp_path, YFPROXY__REDIS__SOCKET_TIMEOUT_S="0.5")
        yield sim, redis_proc, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        redis_proc.kill()
        sim.stop()


def get(url: str) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            resp.read()
            return resp.status, dict(resp.headers), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        body = exc.read()
        headers = dict(exc.headers)
        headers["_body"] = body.decode(errors="replace")
        return exc.code, headers, time.monotonic() - started


def test_redis_down_and_back(stack: tuple[Any, RestartableRedis, ProxyProcess]) -> None:
    _sim, redis_proc, proxy = stack
    hot = f"{proxy.url}/v8/finance/chart/ES=F?interval=5m&range=5d"
    cold = f"{proxy.url}/v8/finance/chart/NQ=F?interval=5m&range=5d"
    assert get(hot)[0] == 200  # stored, and kept decoded in the process's hot layer
    assert get(f"{proxy.url}/readyz")[0] == 200

    redis_proc.kill()
    statuses = [get(hot) for _ in range(20)]
    assert {status for status, _, _ in statuses} == {200}  # served from memory
    status, headers, took = get(cold)
    assert status == 503 and int(headers["Retry-After"]) > 0
    assert took < 3.0  # a fast refusal, not a hang
    assert json.loads(headers["_body"])["chart"]["error"]["code"] == "Service Unavailable"
    status, headers, _ = get(f"{proxy.url}/readyz")
    assert status == 503 and "redis" in json.loads(headers["_body"])["checks"]
    assert get(f"{proxy.url}/healthz")[0] == 200  # the process itself is alive

    redis_proc.start()  # an empty Redis comes back on the same port
    back = time.monotonic()
    deadline = back + 30
    while get(f"{proxy.url}/readyz")[0] != 200:
        assert time.monotonic() < deadline, "never ready again"
        time.sleep(0.2)
    recovered_s = time.monotonic() - back
    status, headers, _ = get(cold)  # fetched and stored again, no manual step
    assert status == 200 and headers["Cache-Status"].startswith("yfproxy; fwd=miss")
    assert get(hot)[0] == 200
    assert recovered_s < 10
