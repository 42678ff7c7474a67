"""Helpers to run the simulator from tests.

``start_simulator(**knobs)`` runs ``python -m loadtests.yahoo_sim`` as a subprocess on a
free 127.0.0.1 port (the OS picks it: ``--port 0`` and the READY line) and talks to its
admin routes with stdlib urllib only. ``run_in_process(...)`` starts the same app inside
the running event loop with aiohttp's AppRunner, for async tests."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from aiohttp import web

from .app import STATE, SimState, create_app
from .config import SimConfig
from .faults import update_knobs

ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "YAHOO_SIM_READY "
# urllib without proxies: a developer's http_proxy must never see simulator traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(base_url: str, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{method} {path} -> {err.code}: {err.read().decode(errors='replace')}") from None


class AdminClient:
    """The admin API over HTTP (stdlib only)."""

    base_url: str

    def counters(self) -> dict[str, Any]:
        return dict(_call(self.base_url, "GET", "/__sim/counters"))

    def faults(self) -> dict[str, Any]:
        return dict(_call(self.base_url, "GET", "/__sim/faults"))

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        return dict(_call(self.base_url, "POST", "/__sim/faults", knobs))

    def reset(self) -> None:
        _call(self.base_url, "POST", "/__sim/reset", {})

    def set_now(self, ts: float | None) -> None:
        """Freeze the clock at ``ts`` (None lets it run)."""
        _call(self.base_url, "POST", "/__sim/clock", {"now": ts})

    def advance(self, seconds: float) -> None:
        _call(self.base_url, "POST", "/__sim/clock", {"advance": seconds})


def _flags(knobs: dict[str, Any]) -> list[str]:
    """Keyword arguments → CLI flags (rate_limit_rps=2 → --rate-limit-rps 2)."""
    names = {"retry_after_s": "retry-after"}
    out: list[str] = []
    for key, value in knobs.items():
        if value is None:
            continue
        out += [f"--{names.get(key, key.replace('_', '-'))}", str(value)]
    return out


class SimulatorProcess(AdminClient):
    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, log: IO[bytes]) -> None:
        self.proc = proc
        self.base_url = base_url
        self.port = int(base_url.rsplit(":", 1)[1])
        self._log = log

    def log_text(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_simulator(
    *, seed: int = 7, now: float | None = None, timeout: float = 30.0, **knobs: Any
) -> SimulatorProcess:
    """Start ``python -m loadtests.yahoo_sim`` on 127.0.0.1 and wait (bounded) until it
    answers. ``knobs`` are fault knobs by name (rate_limit_rps=2, error_ratio=0.1, ...)."""
    args = [
        sys.executable,
        "-m",
        "loadtests.yahoo_sim",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--seed",
        str(seed),
    ]
    if now is not None:
        args += ["--now", str(now)]
    args += _flags(knobs)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = tempfile.TemporaryFile(prefix="yahoo-sim-")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
    )
    try:
        base_url = _wait_ready(proc, timeout)
        sim = SimulatorProcess(proc, base_url, log)
        _call(base_url, "GET", "/__sim/health", timeout=timeout)
        return sim
    except BaseException:
        proc.kill()
        proc.wait(10)
        log.seek(0)
        detail = log.read().decode(errors="replace")[-3000:]
        log.close()
        raise RuntimeError(f"simulator did not start within {timeout}s:\n{detail}") from None


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    line = b""
    try:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise TimeoutError("no READY line")
            if selector.select(min(left, 0.2)):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    raise TimeoutError("stdout closed")
                line += chunk
    finally:
        selector.close()
    text = line.decode().strip()
    if not text.startswith(READY_PREFIX):
        raise RuntimeError(f"unexpected output: {text!r}")
    return text.removeprefix(READY_PREFIX)


@dataclass
class InProcessSimulator:
    """A simulator running in this event loop; knobs and counters are reached directly."""

    runner: web.AppRunner
    base_url: str

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def state(self) -> SimState:
        return self.app[STATE]

    def counters(self) -> dict[str, Any]:
        return self.state.counters.as_json()

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        engine = self.state.faults
        engine.set_knobs(update_knobs(engine.knobs, knobs, time.time()))
        return engine.knobs.as_json(time.time())

    def reset(self) -> None:
        self.state.reset()

    def set_now(self, ts: float | None) -> None:
        self.state.clock.freeze(ts)

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_in_process(config: SimConfig | None = None, **knobs: Any) -> InProcessSimulator:
    """Serve on 127.0.0.1 (an OS-chosen port) inside the running loop. ``knobs`` are
    applied on top of ``config.faults``."""
    config = replace(config or SimConfig(), host="127.0.0.1", port=0)
    if knobs:
        config = replace(config, faults=update_knobs(config.faults, knobs, time.time()))
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return InProcessSimulator(runner, f"http://{host}:{port}")


@contextlib.asynccontextmanager
async def run_in_process(config: SimConfig | None = None, **knobs: Any) -> AsyncIterator[InProcessSimulator]:
    """``async with run_in_process(SimConfig(now=...), error_ratio=0.5) as sim: ...``"""
    sim = await start_in_process(config, **knobs)
    try:
        yield sim
    finally:
        await sim.close()
