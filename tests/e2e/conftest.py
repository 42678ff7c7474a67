"""Processes for end-to-end tests: the simulator and a proxy in front of it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from loadtests.processes import ProxyProcess, start_proxy
from loadtests.yahoo_sim.testing import start_simulator


@pytest.fixture(scope="module")
def simulator() -> Iterator[object]:
    # Frozen at a real, recent minute so both clients see the same in-progress bar.
    sim = start_simulator()
    sim.set_now(int(time.time()) // 60 * 60)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def proxy(
    simulator: object, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    db_url = redis_url.rsplit("/", 1)[0] + "/5"  # away from the unit tests' database
    import redis

    redis.Redis.from_url(db_url).flushdb()
    started = start_proxy(simulator.base_url, db_url, tmp_path_factory.mktemp("proxy"))  # type: ignore[attr-defined]
    try:
        yield started
    finally:
        started.stop()
