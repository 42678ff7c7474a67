"""Memory: Redis bytes per stored bar, and the proxy process's RSS per stored series.

The real stack in subprocesses (private redis-server, the simulator, one proxy with the
refresher off). Each series is stored the way production stores it: a client's first
request is a miss, and the proxy fetches the interval's ``[cache] initial_depth_days``
(1m 7 days, 5m/15m 59 days, 1h 729 days, 1d 3,650 days) through the quality gate.

- **Redis**: ``MEMORY USAGE … SAMPLES 0`` of every key of each series (those carrying the
  series' hash tag: ``yfp:{ES=F|1m|0}:series``, and a ``:quarantine`` list when there is
  one), divided by the series' bar count; the keys shared by all series (the series
  index, the tracked-instrument registry, quality scores) are reported apart and as a
  share per series; ``INFO memory`` used_memory before/after as a cross-check.
- **Proxy RSS** (``/proc/<pid>/status`` VmRSS): at start, after storing the series (each
  is then held decoded in the hot layer), peak during a wrk run over those series
  (dashboard ranges plus a longer one each: cut, render and body caches fill), and after.

    .venv/bin/python -m bench.memory                          # 10 futures × 5 intervals
    .venv/bin/python -m bench.memory --symbols ES=F --intervals 1m,1d --load-seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import redis

from bench._common import (
    FUTURES,
    MORE_FUTURES,
    Stack,
    chart_path,
    get,
    rss_kib,
    stack,
    warm,
    write_report,
    wrk,
)
from proxy.codec import decode_bars

INTERVALS = ("1m", "5m", "15m", "1h", "1d")
# A second, longer cut of each series for the load phase.
LONG_RANGES = {"1m": "5d", "5m": "1mo", "15m": "1mo", "1h": "1y", "1d": "5y"}
PREFIX = "yfp"
REPORT = "bench-memory.json"
SPARE = MORE_FUTURES[0]


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def redis_usage(client: redis.Redis, tags: Sequence[str], ignore: Sequence[str] = ()) -> dict[str, Any]:
    """Bytes and bars of every series (all its keys), and the keys no single series owns
    (the keys of the ``ignore`` series are in neither)."""
    owned: set[bytes] = set()
    for tag in ignore:
        owned.update(client.scan_iter(match=f"{PREFIX}:{{{_glob_escape(tag)}}}:*", count=1000))
    per_series: dict[str, dict[str, Any]] = {}
    for tag in tags:
        keys = sorted(client.scan_iter(match=f"{PREFIX}:{{{_glob_escape(tag)}}}:*", count=1000))
        owned.update(keys)
        blob = client.hget(f"{PREFIX}:{{{tag}}}:series", "bars")
        if blob is None:
            raise RuntimeError(f"series {tag} is not stored")
        usage = {k.decode(): int(client.memory_usage(k, samples=0) or 0) for k in keys}
        per_series[tag] = {"bars": len(decode_bars(blob)), "bytes": sum(usage.values()), "keys": usage}
    shared = {
        k.decode(): int(client.memory_usage(k, samples=0) or 0)
        for k in client.scan_iter(count=1000)
        if k not in owned
    }
    return {"series": per_series, "shared_keys": shared}


class RssSampler:
    """Samples a process's RSS every ``every_s`` in a thread, between start() and stop()."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(rss_kib(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def _client_load(
    base_url: str, paths: Sequence[str], seconds: float, connections: int
) -> dict[str, Any]:
    """The load without wrk: ``connections`` aiohttp clients rotating over ``paths``."""
    deadline = time.monotonic() + seconds
    counts = {"requests": 0, "errors": 0}

    async def worker(offset: int, session: aiohttp.ClientSession) -> None:
        i = offset
        while time.monotonic() < deadline:
            try:
                async with session.get(base_url + paths[i % len(paths)]) as resp:
                    await resp.read()
                    counts["errors"] += resp.status != 200
            except aiohttp.ClientError:
                counts["errors"] += 1
            counts["requests"] += 1
            i += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(n, session) for n in range(connections)))
    return {"tool": "aiohttp", **counts, "requests_per_s": round(counts["requests"] / seconds, 1)}


def load(st: Stack, paths: Sequence[str], seconds: int, connections: int) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return asyncio.run(_client_load(st.proxy.url, paths, seconds, min(connections, 8)))
    result = wrk(st.proxy.url, paths, seconds, connections)
    return {
        "tool": f"wrk -t1 -c{connections} -d{seconds}s",
        "requests": result.requests,
        "errors": result.non_2xx + result.socket_errors,
        "requests_per_s": result.requests_per_s,
        "latency_p50_ms": result.latency_p50_ms,
        "latency_p99_ms": result.latency_p99_ms,
    }


def run(
    *,
    symbols: Sequence[str] = FUTURES,
    intervals: Sequence[str] = INTERVALS,
    load_seconds: int = 20,
    connections: int = 32,
    settle_s: float = 1.0,
) -> dict[str, Any]:
    started = time.monotonic()
    series = [(s, i) for s in symbols for i in intervals]
    tags = [f"{s}|{i}|0" for s, i in series]
    with stack() as st:
        client = redis.Redis.from_url(st.redis.url)
        try:
            time.sleep(settle_s)
            rss_start = rss_kib(st.pid)
            # First-use costs (lazy imports, trading calendars, the first numpy and Lua paths)
            # on a spare symbol's series, so the per-series figures below are the marginal cost.
            warm(st.proxy.url, [chart_path(SPARE, i) for i in intervals])
            time.sleep(settle_s)
            rss_base = rss_kib(st.pid)
            used_before = int(client.info("memory")["used_memory"])
            t0 = time.monotonic()
            warm(st.proxy.url, [chart_path(s, i) for s, i in series], timeout_s=600)
            store_s = time.monotonic() - t0
            time.sleep(settle_s)
            rss_stored = rss_kib(st.pid)
            used_after = int(client.info("memory")["used_memory"])
            usage = redis_usage(client, tags, ignore=[f"{SPARE}|{i}|0" for i in intervals])
            _, _, status_body = get(st.proxy.url + "/status")
            hot_series = json.loads(status_body)["cache"]["hot_series"]
            paths = [chart_path(s, i) for s, i in series] + [
                chart_path(s, i, LONG_RANGES[i]) for s, i in series
            ]
            with RssSampler(st.pid) as sampler:
                traffic = load(st, paths, load_seconds, connections)
            time.sleep(settle_s)
            rss_after = rss_kib(st.pid)
            _, _, status_body = get(st.proxy.url + "/status")
            cache_after = json.loads(status_body)["cache"]
        finally:
            client.close()
    rows = usage["series"]
    total_bars = sum(r["bars"] for r in rows.values())
    total_bytes = sum(r["bytes"] for r in rows.values())
    shared_bytes = sum(usage["shared_keys"].values())
    by_interval: dict[str, dict[str, Any]] = {}
    for interval in intervals:
        mine = [rows[f"{s}|{interval}|0"] for s in symbols]
        bars = sum(r["bars"] for r in mine)
        nbytes = sum(r["bytes"] for r in mine)
        by_interval[interval] = {
            "series": len(mine),
            "bars_per_series": round(bars / len(mine)),
            "bytes_per_series": round(nbytes / len(mine)),
            "bytes_per_bar": round(nbytes / bars, 2),
            "bytes_per_bar_with_shared": round((nbytes + shared_bytes * len(mine) / len(rows)) / bars, 2),
        }
    n = len(series)
    rss_peak = max([*sampler.samples, rss_after])
    return {
        "series": n,
        "symbols": list(symbols),
        "intervals": list(intervals),
        "store_s": round(store_s, 1),
        "redis": {
            "bars": total_bars,
            "series_bytes": total_bytes,
            "bytes_per_bar": round(total_bytes / total_bars, 2),
            "bytes_per_bar_min_max_over_series": [
                round(min(r["bytes"] / r["bars"] for r in rows.values()), 2),
                round(max(r["bytes"] / r["bars"] for r in rows.values()), 2),
            ],
            "shared_keys_bytes": shared_bytes,
            "shared_bytes_per_series": round(shared_bytes / n),
            "bytes_per_bar_with_shared": round((total_bytes + shared_bytes) / total_bars, 2),
            "used_memory_delta": used_after - used_before,
            "used_memory_delta_per_bar": round((used_after - used_before) / total_bars, 2),
            "by_interval": by_interval,
            "shared_keys": usage["shared_keys"],
            "per_series": {t: {"bars": r["bars"], "bytes": r["bytes"]} for t, r in rows.items()},
        },
        "proxy_rss_kib": {
            "start": rss_start,
            "after_first_use": rss_base,
            "after_storing": rss_stored,
            "load_peak": rss_peak,
            "after_load": rss_after,
            "load_median": round(statistics.median(sampler.samples)) if sampler.samples else None,
        },
        "hot_series_after_storing": hot_series,
        "cache_after_load": cache_after,
        # Marginal costs: from the RSS after the first-use series, per series of the set.
        "rss_first_use_kib": rss_base - rss_start,
        "rss_per_stored_series_kib": round((rss_stored - rss_base) / n, 1),
        "rss_per_stored_series_kib_after_load": round((rss_after - rss_base) / n, 1),
        "rss_per_hot_bar_bytes_after_storing": round((rss_stored - rss_base) * 1024 / total_bars, 1),
        "rss_per_hot_bar_bytes_after_load": round((rss_after - rss_base) * 1024 / total_bars, 1),
        "rss_per_hot_bar_bytes_load_peak": round((rss_peak - rss_base) * 1024 / total_bars, 1),
        "rss_over_redis_bytes_after_load": round((rss_after - rss_base) * 1024 / total_bytes, 1),
        "load": traffic,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default=",".join(FUTURES))
    parser.add_argument("--intervals", default=",".join(INTERVALS))
    parser.add_argument("--load-seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    report = run(
        symbols=args.symbols.split(","),
        intervals=args.intervals.split(","),
        load_seconds=args.load_seconds,
        connections=args.connections,
    )
    summary = {k: v for k, v in report.items() if k not in ("cache_after_load",)}
    summary["redis"] = {k: v for k, v in report["redis"].items() if k not in ("per_series", "shared_keys")}
    print(json.dumps(summary, indent=2))
    print(f"report: {write_report(REPORT, report)}")
    return 0 if report["load"]["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
