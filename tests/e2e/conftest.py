"""Processes for end-to-end tests: the simulator and a proxy in front of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtests.yahoo_sim.testing import start_simulator
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ProxyProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_proxy(upstream: str, redis_url: str, tmp: Path, **env: str) -> ProxyProcess:
    port = free_port()
    log = tmp / f"proxy-{port}.log"
    environ = {
        **os.environ,
        "YFPROXY__SERVER__PORT": str(port),
        "YFPROXY__REDIS__URL": redis_url,
        "YFPROXY__REDIS__EMBEDDED": "false",
        "YFPROXY__UPSTREAM__BASE_URL": upstream,
        "YFPROXY__UPSTREAM__TRANSPORT": "aiohttp",
        "YFPROXY__RATE_LIMIT__MAX_RPS": "100",
        "YFPROXY__RATE_LIMIT__INITIAL_RPS": "50",
        "YFPROXY__CACHE__MISS_WAIT_S": "30",
        "YFPROXY__LOGGING__FORMAT": "json",
        # Upstream counts in these tests are per request; refresher tests turn it on.
        "YFPROXY__BACKGROUND__ENABLED": "false",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve"], cwd=ROOT, env=environ, stdout=out, stderr=out
        )
    proxy = ProxyProcess(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{proxy.url}/healthz", timeout=1):
                return proxy
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proxy.stop()
                raise RuntimeError(f"proxy did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)


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
