"""Several proxy processes on one Redis, with their background refreshers on: Yahoo (the
simulator) sees each series fetched once, and a replica killed in the middle of a
refresh hands the series over to another when its lease runs out."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from loadtests.yahoo_sim.testing import start_simulator
from tests.e2e.conftest import ProxyProcess, start_proxy

SYMBOLS = ("ES=F", "NQ=F")
INTERVALS = ("5m", "1h", "1d")
LEASE_TTL_S = 3


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    simulator = start_simulator()
    simulator.set_now(int(time.time()) // 60 * 60)
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(scope="module")
def db_url(redis_url: str) -> str:
    url = redis_url.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def replicas(sim: Any, db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ProxyProcess]]:
    started: list[ProxyProcess] = []
    try:
        for _ in range(3):
            started.append(
                start_proxy(
                    sim.base_url,
                    db_url,
                    tmp_path_factory.mktemp("replica"),
                    YFPROXY__BACKGROUND__ENABLED="true",
                    YFPROXY__INSTRUMENTS__ACTIVE=",".join(SYMBOLS),
                    YFPROXY__INSTRUMENTS__INTERVALS=",".join(INTERVALS),
                    YFPROXY__BACKGROUND__LEASE_TTL_S=str(LEASE_TTL_S),
                    YFPROXY__CACHE__FRESH_S__5M="1",
                    YFPROXY__TIMEOUTS__READ_S="20",  # a hanging upstream holds the lease
                    YFPROXY__RETRY__MAX_ATTEMPTS="1",
                )
            )
        yield started
    finally:
        for proxy in started:
            proxy.stop()


def status(proxy: ProxyProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{proxy.url}/status", timeout=10) as resp:
        return dict(json.load(resp))


def chart_counts(sim: Any, symbol: str) -> dict[str, int]:
    return dict(sim.counters()["chart_by_symbol_interval"].get(symbol, {}))


def test_three_replicas_fetch_each_series_once(sim: Any, replicas: list[ProxyProcess]) -> None:
    deadline = time.monotonic() + 60
    while True:
        rows = status(replicas[0])["refresher"]["series"]
        if len(rows) == len(SYMBOLS) * len(INTERVALS) and all(r["last_outcome"] == "ok" for r in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.3)
    time.sleep(2)  # let any duplicate that was going to happen arrive
    for symbol in SYMBOLS:
        assert chart_counts(sim, symbol) == dict.fromkeys(INTERVALS, 1), symbol
    # Every replica sees the same registry, and each did part of the work.
    assert {len(status(p)["refresher"]["series"]) for p in replicas} == {6}


def test_a_replica_killed_mid_refresh_hands_the_series_over(
    sim: Any, replicas: list[ProxyProcess], db_url: str
) -> None:
    lease = "yfp:{ES=F|5m|0}:lease"
    client = redis.Redis.from_url(db_url)
    before = chart_counts(sim, "ES=F")["5m"]
    sim.set_faults(hang_ratio=1.0, hang_s=60)
    url = "/v8/finance/chart/ES=F?interval=5m&range=1d"
    time.sleep(1.1)  # past fresh_s: the next request refreshes
    with urllib.request.urlopen(f"{replicas[0].url}{url}", timeout=10) as resp:
        assert resp.headers["Cache-Status"].startswith("yfproxy; hit; fwd=stale")
    deadline = time.monotonic() + 10
    while (owner := client.get(lease)) is None:
        assert time.monotonic() < deadline, "nobody took the lease"
        time.sleep(0.05)
    pid = int(owner.decode().split(":")[1])
    holder = next(p for p in replicas if p.proc.pid == pid)
    os.kill(pid, signal.SIGKILL)  # dies holding the lease, in the middle of the fetch
    holder.proc.wait(10)
    killed_at = time.monotonic()
    sim.set_faults(hang_ratio=0.0)
    survivor = next(p for p in replicas if p is not holder)
    deadline = time.monotonic() + LEASE_TTL_S + 15
    while chart_counts(sim, "ES=F")["5m"] < before + 2:  # the hung request + the takeover
        assert time.monotonic() < deadline, status(survivor)["refresher"]
        with urllib.request.urlopen(f"{survivor.url}{url}", timeout=10):
            pass
        time.sleep(0.5)
    took_over_after = time.monotonic() - killed_at
    assert took_over_after >= LEASE_TTL_S - 1.5  # not before the dead replica's lease ran out
    row = next(r for r in status(survivor)["refresher"]["series"] if r["series"] == "ES=F|5m|0")
    assert row["series"] == "ES=F|5m|0"
    assert client.get(lease) is None or client.get(lease) != owner  # not the dead one's any more
