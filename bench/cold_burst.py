"""Cold burst: 200 clients ask for one uncached series at the same instant.

The real stack in subprocesses (private redis-server, the simulator answering after
``latency_ms`` like a real upstream, one proxy with the refresher off). Each round takes
two symbols no request has touched at that interval: one cold fetch alone (one client),
then the burst on the other — every client on its own keep-alive connection, opened
beforehand, all released by one event. Measured per round:

- upstream chart requests for the burst's series (the simulator's counters): must be 1;
- the burst's latency (from the release to the last byte of each answer) p50/p99/max,
  as ratios to the lone cold fetch of the same round;
- every answer is 200 with the same body; Cache-Status: one ``stored``, the rest
  ``collapsed`` (or ``hit`` for a client that came after the write).

Before the rounds, one throwaway cold fetch and a 1d load of every symbol used pay the
process's one-off costs (calendars, first-use imports), so the lone fetch is not
inflated by them.

    .venv/bin/python -m bench.cold_burst                      # 200 clients, 5 rounds
    .venv/bin/python -m bench.cold_burst --clients 50 --rounds 2 --latency-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench._common import FUTURES, MORE_FUTURES, Stack, chart_path, get, percentile, stack, warm, write_report

SYMBOLS = (*FUTURES, *MORE_FUTURES)
SPARE = SYMBOLS[-1]  # the throwaway cold fetch
MAX_ROUNDS = (len(SYMBOLS) - 1) // 2
REPORT = "bench-cold-burst.json"


@dataclass(frozen=True)
class Answer:
    status: int
    cache: str
    digest: str
    size: int
    since_release_s: float  # from the release of the burst to the answer's last byte
    own_s: float  # from this request's own start to its last byte


async def _connect(base_url: str, n: int) -> list[aiohttp.ClientSession]:
    """``n`` clients, each with one keep-alive connection already open (a /healthz each)."""
    # gzip, as yfinance asks, but not decompressed here: the client's CPU is the proxy's too.
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=60),
            headers={"Accept-Encoding": "gzip"},
            auto_decompress=False,
        )
        for _ in range(n)
    ]
    gate = asyncio.Semaphore(32)

    async def open_one(session: aiohttp.ClientSession) -> None:
        async with gate, session.get(f"{base_url}/healthz") as resp:
            await resp.read()

    try:
        await asyncio.gather(*(open_one(s) for s in sessions))
    except BaseException:
        await asyncio.gather(*(s.close() for s in sessions))
        raise
    return sessions


async def _fire(base_url: str, path: str, clients: int) -> list[Answer]:
    sessions = await _connect(base_url, clients)
    release = asyncio.Event()
    released_at = 0.0

    async def one(session: aiohttp.ClientSession) -> Answer:
        await release.wait()
        start = time.perf_counter()
        async with session.get(base_url + path) as resp:
            body = await resp.read()
            end = time.perf_counter()
            return Answer(
                resp.status, resp.headers.get("Cache-Status", ""), hashlib.sha1(body).hexdigest(),
                len(body), end - released_at, end - start,
            )  # fmt: skip

    try:
        tasks = [asyncio.create_task(one(s)) for s in sessions]
        await asyncio.sleep(0.05)  # every task is parked on the event
        released_at = time.perf_counter()
        release.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        await asyncio.gather(*(s.close() for s in sessions))


def _chart_count(sim_counters: dict[str, Any], symbol: str, interval: str) -> int:
    return int(sim_counters["chart_by_symbol_interval"].get(symbol, {}).get(interval, 0))


def _outcome(cache: str) -> str:
    for word in ("stored", "collapsed", "hit", "stale"):
        if word in cache:
            return word
    return cache or "none"


def one_round(st: Stack, lone_symbol: str, burst_symbol: str, interval: str, clients: int) -> dict[str, Any]:
    lone_path = chart_path(lone_symbol, interval)
    burst_path = chart_path(burst_symbol, interval)
    before = st.sim.counters()
    [lone] = asyncio.run(_fire(st.proxy.url, lone_path, 1))
    answers = asyncio.run(_fire(st.proxy.url, burst_path, clients))
    time.sleep(1.0)  # a duplicate fetch started late would show up in the counters by now
    after = st.sim.counters()
    # The same burst on the series now stored: what answering 200 clients costs by itself.
    hot = asyncio.run(_fire(st.proxy.url, burst_path, clients))
    hot_p99 = percentile([a.since_release_s for a in hot], 99)
    upstream = _chart_count(after, burst_symbol, interval) - _chart_count(before, burst_symbol, interval)
    lone_upstream = _chart_count(after, lone_symbol, interval) - _chart_count(before, lone_symbol, interval)
    latencies = [a.since_release_s for a in answers]
    own = [a.own_s for a in answers]
    p50, p99, worst = percentile(latencies, 50), percentile(latencies, 99), max(latencies)
    return {
        "lone_series": f"{lone_symbol} {interval}",
        "burst_series": f"{burst_symbol} {interval}",
        "clients": clients,
        "upstream_chart_requests": upstream,
        "lone_upstream_chart_requests": lone_upstream,
        "other_upstream_chart_requests": after["by_kind"]["chart"]
        - before["by_kind"]["chart"]
        - upstream
        - lone_upstream,
        "statuses": dict(Counter(a.status for a in answers)),
        "cache_status": dict(Counter(_outcome(a.cache) for a in answers)),
        "distinct_bodies": len({a.digest for a in answers}),
        "body_bytes": answers[0].size,
        "lone": {
            "status": lone.status,
            "cache": _outcome(lone.cache),
            "latency_ms": round(lone.own_s * 1e3, 1),
        },
        "burst_ms": {
            "p50": round(p50 * 1e3, 1),
            "p99": round(p99 * 1e3, 1),
            "max": round(worst * 1e3, 1),
            "own_p50": round(percentile(own, 50) * 1e3, 1),
            "own_p99": round(percentile(own, 99) * 1e3, 1),
            "hot_burst_p99": round(hot_p99 * 1e3, 1),
        },
        # Collapsing costs nothing when the cold burst takes the lone fetch plus what the
        # same burst takes on the stored series (≈ 1).
        "burst_p99_over_lone_plus_hot_p99": round(p99 / (lone.own_s + hot_p99), 3),
        "ratio_to_lone": {
            "p50": round(p50 / lone.own_s, 3),
            "p99": round(p99 / lone.own_s, 3),
            "max": round(worst / lone.own_s, 3),
        },
    }


def run(
    *, clients: int = 200, rounds: int = 5, latency_ms: float = 300.0, interval: str = "1m"
) -> dict[str, Any]:
    if not 1 <= rounds <= MAX_ROUNDS:
        raise ValueError(f"rounds must be 1..{MAX_ROUNDS} (two fresh symbols per round)")
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with stack({"latency_ms": latency_ms}, YFPROXY__CACHE__MISS_WAIT_S="60") as st:
        used = SYMBOLS[: 2 * rounds]
        # One-off costs first: a throwaway cold fetch, and each symbol's 1d series (calendars).
        warm(st.proxy.url, [chart_path(SPARE, interval), *(chart_path(s, "1d") for s in used)])
        for i in range(rounds):
            row = one_round(st, used[2 * i], used[2 * i + 1], interval, clients)
            results.append(row)
            print(
                f"round {i + 1}: {row['burst_series']} upstream={row['upstream_chart_requests']} "
                f"lone={row['lone']['latency_ms']} ms burst p50/p99/max={row['burst_ms']['p50']}/"
                f"{row['burst_ms']['p99']}/{row['burst_ms']['max']} ms "
                f"ratio p99={row['ratio_to_lone']['p99']} "
                f"hot burst p99={row['burst_ms']['hot_burst_p99']} ms "
                f"cache={row['cache_status']}",
                flush=True,
            )
        status, _, _ = get(st.proxy.url + "/healthz")
    ratios = {
        q: {
            "median": round(statistics.median(r["ratio_to_lone"][q] for r in results), 3),
            "worst": round(max(r["ratio_to_lone"][q] for r in results), 3),
        }
        for q in ("p50", "p99", "max")
    }
    return {
        "clients": clients,
        "rounds": rounds,
        "interval": interval,
        "range": chart_path("X", interval).rsplit("=", 1)[1],
        "upstream_latency_ms": latency_ms,
        "upstream_requests_per_burst": [r["upstream_chart_requests"] for r in results],
        "one_upstream_request_per_burst": all(r["upstream_chart_requests"] == 1 for r in results),
        "all_answers_200": all(set(r["statuses"]) == {200} for r in results),
        "one_body_per_burst": all(r["distinct_bodies"] == 1 for r in results),
        "lone_ms_median": round(statistics.median(r["lone"]["latency_ms"] for r in results), 1),
        "hot_burst_p99_ms_median": round(
            statistics.median(r["burst_ms"]["hot_burst_p99"] for r in results), 1
        ),
        "burst_p99_over_lone_plus_hot_p99_median": round(
            statistics.median(r["burst_p99_over_lone_plus_hot_p99"] for r in results), 3
        ),
        "ratio_to_lone": ratios,
        "proxy_healthy_after": status == 200,
        "rounds_detail": results,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_burst", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help=f"1..{MAX_ROUNDS}")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="the simulator's added latency")
    parser.add_argument("--interval", default="1m", choices=["1m", "5m", "15m", "1h", "1d"])
    args = parser.parse_args(argv)
    report = run(clients=args.clients, rounds=args.rounds, latency_ms=args.latency_ms, interval=args.interval)
    summary = {k: v for k, v in report.items() if k != "rounds_detail"}
    print(json.dumps(summary, indent=2))
    print(f"report: {write_report(REPORT, report)}")
    ok = (
        report["one_upstream_request_per_burst"]
        and report["all_answers_200"]
        and report["one_body_per_burst"]
    )
    if not ok:
        print(
            "FAIL: a burst cost more than one upstream request, or not every client got the same 200",
            file=sys.stderr,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
