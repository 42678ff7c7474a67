"""Soak: steady traffic against the proxy with the refresher on, bounded (10 minutes by
default), failing when memory or errors keep growing after warm-up.

The real stack in subprocesses: a private redis-server, the simulator on a real-time
clock (so the refresher's tails keep coming; bars are added only while the simulated
market is open), one proxy with the background refresher on and the 10 futures × 5
intervals as active instruments. After every series is stored once, ``SOAK_RPS`` chart
requests per second (8 keep-alive clients, paced) go round the dashboard ranges, the
time-zone probe yfinance sends, and revalidations with If-None-Match (304s). Every
``SOAK_SAMPLE_S`` it samples: proxy RSS (/proc VmRSS), Redis ``used_memory`` (INFO
memory), client requests and errors (anything but 200/304, or no answer), the proxy's
/metrics error counters (5xx chart answers, failed upstream attempts, Redis errors,
quarantined batches) and the simulator's chart request count (the refresher at work).

Verdict (exit 1 on failure), over the samples of the second half (the first half is
warm-up: caches and allocator pools fill):

- proxy RSS: least-squares slope ≤ ``SOAK_RSS_TOL_KIB_PER_MIN`` (default 256 KiB/min,
  15 MiB an hour);
- Redis used_memory: slope ≤ ``SOAK_REDIS_TOL_KIB_PER_MIN`` (default 64 KiB/min);
- errors: no client error and no proxy error counter increase over the whole run.

    make soak                                   # 10 minutes
    SOAK_MINUTES=2 SOAK_SAMPLE_S=5 make soak
Report: reports/soak.json (every sample, the slopes, the verdict).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench._common import (
    FUTURES,
    RANGES,
    Stack,
    chart_path,
    error_counters,
    rss_kib,
    slope_per_min,
    stack,
    warm,
    write_report,
)

INTERVALS = tuple(RANGES)
CLIENTS = 8
REPORT = "soak.json"


@dataclass
class Traffic:
    requests: int = 0
    errors: int = 0
    not_modified: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(what)


def soak_paths(symbols: Sequence[str], intervals: Sequence[str]) -> list[str]:
    paths = [chart_path(s, i) for s in symbols for i in intervals]
    paths += [chart_path(s, "1d", "1d") for s in symbols]  # yfinance's time-zone probe
    return paths


async def _clients(base_url: str, paths: Sequence[str], rps: float, until: float, traffic: Traffic) -> None:
    """``CLIENTS`` keep-alive clients sending ``rps`` requests per second in total until
    ``until`` (monotonic); every second request for a path revalidates its last ETag."""
    etags: dict[str, str] = {}
    ticket = itertools.count()
    start = time.monotonic()

    async def client(session: aiohttp.ClientSession) -> None:
        while True:
            k = next(ticket)
            due = start + k / rps
            if due >= until:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            path = paths[k % len(paths)]
            revalidate = (k // len(paths)) % 2 == 1 and path in etags
            headers = {"Accept-Encoding": "gzip"}
            if revalidate:
                headers["If-None-Match"] = etags[path]
            try:
                async with session.get(base_url + path, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        etags[path] = resp.headers.get("ETag", "")
                    elif resp.status == 304 and revalidate:
                        traffic.not_modified += 1
                    else:
                        traffic.error(f"{resp.status} {path}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                traffic.error(f"{type(exc).__name__} {path}")
            traffic.requests += 1

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CLIENTS), timeout=timeout, auto_decompress=False
    ) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))


async def _sample(
    st: Stack, session: aiohttp.ClientSession, rdb: aioredis.Redis, t: float, traffic: Traffic
) -> dict[str, Any]:
    async with session.get(st.proxy.url + "/metrics") as resp:
        metrics = error_counters(await resp.text())
    info = await rdb.info("memory")
    sim = await asyncio.to_thread(st.sim.counters)
    return {
        "t_s": round(t, 1),
        "rss_kib": rss_kib(st.pid),
        "redis_used_memory": int(info["used_memory"]),
        "client_requests": traffic.requests,
        "client_errors": traffic.errors,
        "proxy_errors": metrics,
        "upstream_chart_requests": int(sim["by_kind"]["chart"]),
    }


async def _soak(
    st: Stack, paths: Sequence[str], seconds: float, sample_s: float, rps: float
) -> tuple[list[dict[str, Any]], Traffic]:
    traffic = Traffic()
    samples: list[dict[str, Any]] = []
    start = time.monotonic()
    until = start + seconds
    load = asyncio.create_task(_clients(st.proxy.url, paths, rps, until, traffic))
    rdb = aioredis.Redis.from_url(st.redis.url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for n in itertools.count():
                at = start + n * sample_s
                if at > until + 0.01:
                    break
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                row = await _sample(st, session, rdb, time.monotonic() - start, traffic)
                samples.append(row)
                print(
                    f"t={row['t_s']:6.1f}s rss={row['rss_kib'] / 1024:7.1f} MiB "
                    f"redis={row['redis_used_memory'] / 2**20:6.2f} MiB requests={row['client_requests']} "
                    f"errors={row['client_errors']} upstream={row['upstream_chart_requests']} "
                    f"proxy_errors={sum(row['proxy_errors'].values()):.0f}",
                    flush=True,
                )
        await asyncio.wait_for(load, 60)
    finally:
        load.cancel()
        await rdb.aclose()
    return samples, traffic


def verdict(samples: Sequence[dict[str, Any]], rss_tol_kib: float, redis_tol_kib: float) -> dict[str, Any]:
    """Slopes over the second half of the run, and whether they stay within tolerance."""
    end = samples[-1]["t_s"]
    late = [s for s in samples if s["t_s"] >= end / 2]
    times = [s["t_s"] for s in late]
    rss_slope = slope_per_min(times, [s["rss_kib"] for s in late])
    redis_slope = slope_per_min(times, [s["redis_used_memory"] / 1024 for s in late])
    first, last = samples[0], samples[-1]
    proxy_errors = {k: last["proxy_errors"][k] - first["proxy_errors"][k] for k in first["proxy_errors"]}
    checks = {
        "rss_slope_ok": rss_slope <= rss_tol_kib,
        "redis_slope_ok": redis_slope <= redis_tol_kib,
        "no_client_errors": last["client_errors"] == 0,
        "no_proxy_errors": all(v == 0 for v in proxy_errors.values()),
    }
    return {
        "second_half_samples": len(late),
        "rss_slope_kib_per_min": round(rss_slope, 1),
        "redis_slope_kib_per_min": round(redis_slope, 2),
        "rss_tolerance_kib_per_min": rss_tol_kib,
        "redis_tolerance_kib_per_min": redis_tol_kib,
        "rss_growth_kib_whole_run": last["rss_kib"] - first["rss_kib"],
        "rss_growth_kib_second_half": late[-1]["rss_kib"] - late[0]["rss_kib"],
        "redis_growth_bytes_second_half": late[-1]["redis_used_memory"] - late[0]["redis_used_memory"],
        "proxy_error_increase": proxy_errors,
        "client_errors": last["client_errors"],
        **checks,
        "passed": all(checks.values()),
    }


def run(
    *,
    minutes: float = 10.0,
    sample_s: float = 10.0,
    rps: float = 100.0,
    symbols: Sequence[str] = FUTURES,
    intervals: Sequence[str] = INTERVALS,
    rss_tol_kib: float = 256.0,
    redis_tol_kib: float = 64.0,
) -> dict[str, Any]:
    started = time.monotonic()
    with stack(
        {"latency_ms": 50},
        YFPROXY__BACKGROUND__ENABLED="true",
        YFPROXY__INSTRUMENTS__ACTIVE=",".join(symbols),
        YFPROXY__INSTRUMENTS__INTERVALS=",".join(intervals),
    ) as st:
        paths = soak_paths(symbols, intervals)
        warm(st.proxy.url, paths, timeout_s=300)
        warm_s = time.monotonic() - started
        samples, traffic = asyncio.run(_soak(st, paths, minutes * 60, sample_s, rps))
    result = verdict(samples, rss_tol_kib, redis_tol_kib)
    return {
        "minutes": minutes,
        "sample_s": sample_s,
        "target_rps": rps,
        "series": len(symbols) * len(intervals),
        "paths": len(paths),
        "startup_and_warm_s": round(warm_s, 1),
        "client_requests": traffic.requests,
        "client_rps": round(traffic.requests / (minutes * 60), 1),
        "not_modified": traffic.not_modified,
        "client_error_samples": traffic.error_samples,
        "upstream_chart_requests_during_soak": samples[-1]["upstream_chart_requests"]
        - samples[0]["upstream_chart_requests"],
        "rss_kib_first_last": [samples[0]["rss_kib"], samples[-1]["rss_kib"]],
        "redis_used_memory_first_last": [samples[0]["redis_used_memory"], samples[-1]["redis_used_memory"]],
        "verdict": result,
        "samples": samples,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> int:
    report = run(
        minutes=float(os.environ.get("SOAK_MINUTES", "10")),
        sample_s=float(os.environ.get("SOAK_SAMPLE_S", "10")),
        rps=float(os.environ.get("SOAK_RPS", "100")),
        rss_tol_kib=float(os.environ.get("SOAK_RSS_TOL_KIB_PER_MIN", "256")),
        redis_tol_kib=float(os.environ.get("SOAK_REDIS_TOL_KIB_PER_MIN", "64")),
    )
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    print(f"report: {write_report(REPORT, report)}")
    if not report["verdict"]["passed"]:
        print("SOAK FAILED: see verdict above")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
