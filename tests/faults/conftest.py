"""What the fault scenarios share: a stack of their own per test (the Yahoo simulator, a
private redis-server and a proxy process, each on 127.0.0.1 and a free port), stopped
for sure at the end whatever the test did to it (killed Redis, SIGKILLed proxy)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from loadtests.processes import ProxyProcess, RedisProcess, start_proxy, start_redis
from loadtests.yahoo_sim.testing import SimulatorProcess, start_simulator


@dataclass
class Stack:
    sim: SimulatorProcess
    redis: RedisProcess
    proxy: ProxyProcess
    workdir: Path


class StartStack(Protocol):
    def __call__(self, *, freeze_sim: bool = True, **proxy_env: str) -> Stack: ...


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[StartStack]:
    """``start_stack(YFPROXY__X__Y="1", ...)``: simulator, redis-server, then the proxy with
    those environment overrides (on top of loadtests.processes.start_proxy's). The
    simulator's clock is frozen at the current minute unless ``freeze_sim=False``."""
    stops: list[Callable[[], None]] = []

    def start(*, freeze_sim: bool = True, **proxy_env: str) -> Stack:
        sim = start_simulator()
        stops.append(sim.stop)
        if freeze_sim:
            sim.set_now(int(time.time()) // 60 * 60)
        redis = start_redis(tmp_path)
        stops.append(redis.stop)
        proxy = start_proxy(sim.base_url, redis.url, tmp_path, **proxy_env)
        stops.append(proxy.stop)
        return Stack(sim, redis, proxy, tmp_path)

    try:
        yield start
    finally:
        for stop in reversed(stops):
            with contextlib.suppress(Exception):
                stop()
