"""What the cold-burst, memory and soak benchmarks share: the real stack in subprocesses
(a private redis-server, the Yahoo simulator, one proxy process in front of it) and the
readings taken of it (proxy RSS, Redis memory, /metrics error counters, wrk).

Everything listens on 127.0.0.1; every wait is bounded; every process started here is
stopped here (terminate, then kill)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from loadtests.processes import ROOT, ProxyProcess, RedisProcess, start_proxy, start_redis
from loadtests.yahoo_sim.testing import SimulatorProcess, start_simulator

REPORTS = ROOT / "reports"
# The dashboards of the load test and the refresher replay: 10 futures × 5 timeframes.
FUTURES = ("ES=F", "NQ=F", "YM=F", "RTY=F", "CL=F", "GC=F", "SI=F", "ZN=F", "ZB=F", "6E=F")
# The simulator's other continuous futures: fresh symbols for rounds that need uncached series.
MORE_FUTURES = ("HG=F", "NG=F", "ZF=F", "ZT=F")
RANGES = {"1m": "1d", "5m": "5d", "15m": "5d", "1h": "1mo", "1d": "1y"}
# urllib without proxies: a developer's http_proxy must never see benchmark traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Stack:
    work: Path
    redis: RedisProcess
    sim: SimulatorProcess
    proxy: ProxyProcess

    @property
    def pid(self) -> int:
        return self.proxy.proc.pid


@contextlib.contextmanager
def stack(sim_knobs: dict[str, Any] | None = None, **proxy_env: str) -> Iterator[Stack]:
    """A private redis-server, the simulator (real-time clock) and one proxy process;
    ``proxy_env`` are extra ``YFPROXY__…`` variables (the refresher is off unless asked)."""
    work = Path(tempfile.mkdtemp(prefix="yfproxy-bench-"))
    redis = start_redis(work)
    sim: SimulatorProcess | None = None
    proxy: ProxyProcess | None = None
    try:
        sim = start_simulator(**(sim_knobs or {}))
        env = {"YFPROXY__LOGGING__LEVEL": "warning", **proxy_env}
        proxy = start_proxy(sim.base_url, redis.url, work, **env)
        yield Stack(work, redis, sim, proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        if sim is not None:
            sim.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


def chart_path(symbol: str, interval: str, range_: str | None = None) -> str:
    return f"/v8/finance/chart/{symbol}?interval={interval}&range={range_ or RANGES[interval]}"


def get(url: str, timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    """One GET without proxies: status, headers, body (HTTP errors are answers too)."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


def warm(base_url: str, paths: Iterable[str], timeout_s: float = 300.0) -> int:
    """Ask for every path until it answers 200 (a first request is a miss that waits on
    the fetch); bounded by ``timeout_s`` overall. Returns how many paths were loaded."""
    pending = list(paths)
    total = len(pending)
    deadline = time.monotonic() + timeout_s
    while pending:
        status, _, _ = get(base_url + pending[0])
        if status == 200:
            pending.pop(0)
        elif time.monotonic() > deadline:
            raise RuntimeError(
                f"warm-up did not finish: {len(pending)} of {total} left ({pending[0]}: {status})"
            )
        else:
            time.sleep(0.5)
    return total


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(match.group(1))


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def slope_per_min(times_s: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against time, per minute (0 with fewer than 2 points)."""
    if len(times_s) < 2:
        return 0.0
    slope, _ = np.polyfit(np.asarray(times_s, dtype=np.float64), np.asarray(values, dtype=np.float64), 1)
    return float(slope) * 60.0


def error_counters(metrics_text: str) -> dict[str, float]:
    """The proxy's own error counters from a /metrics scrape: chart answers with a 5xx,
    upstream attempts that failed (any category but ok), Redis errors, quarantined batches."""
    out = {"chart_5xx": 0.0, "upstream_failures": 0.0, "redis_errors": 0.0, "quarantined": 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            if family.name == "yfproxy_chart_requests" and sample.labels.get("code", "").startswith("5"):
                out["chart_5xx"] += sample.value
            elif family.name == "yfproxy_upstream_requests" and sample.labels.get("category") != "ok":
                out["upstream_failures"] += sample.value
            elif family.name == "yfproxy_redis_errors":
                out["redis_errors"] += sample.value
            elif family.name == "yfproxy_quality_quarantined_batches":
                out["quarantined"] += sample.value
    return out


@dataclass(frozen=True)
class WrkResult:
    requests: int
    requests_per_s: float
    non_2xx: int
    socket_errors: int
    latency_p50_ms: float
    latency_p99_ms: float


_WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[match.group(2)]
    return float(match.group(1)) * scale


def wrk(base_url: str, paths: Sequence[str], seconds: int, connections: int = 32) -> WrkResult:
    """``wrk -t1`` rotating over ``paths`` (a Lua script), with its latency percentiles."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % ", ".join(json.dumps(p) for p in paths))
    try:
        args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, base_url]
        out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    if rate is None or total is None or p50 is None or p99 is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=int(total.group(1)),
        requests_per_s=float(rate.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        latency_p50_ms=_ms(p50.group(1)),
        latency_p99_ms=_ms(p99.group(1)),
    )


def write_report(name: str, report: dict[str, Any]) -> Path:
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / name
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
