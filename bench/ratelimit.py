"""Pacing schemes against a hidden Yahoo budget: the legacy fixed 2.5 s delay, a fixed
2-per-5-s bucket and yfproxy's adaptive (AIMD) limiter, in one run.

The Yahoo simulator enforces a token bucket the proxy does not know (a profile: rate,
burst, optional Retry-After on its 429s). Each scheme refreshes the same workload
(instruments x intervals) through ``UpstreamClient.fetch_chart`` in process, with a
fresh limiter state in Redis and a freshly reset simulator; a series whose fetch failed
(429, budget exhausted) goes back to the end of the queue until every series succeeded
or the time cap is reached. Every scheme of a profile runs at the same time against its
OWN simulator process and its own Redis db, so each has a whole hidden budget to itself
and the run takes as long as the slowest scheme, not the sum.

Measured per scheme: success ratio (non-429 upstream answers / all upstream answers,
from the simulator's counters), throughput as a share of the hidden rate, mean limiter
wait per upstream request, and time to refresh the whole workload.

    .venv/bin/python -m bench.ratelimit            # full: 20 x 5 series, cap 300 s
    .venv/bin/python -m bench.ratelimit --quick    # smoke: 5 x 5 series, cap 60 s

Environment (each also a flag): BENCH_RL_CAP_S, BENCH_RL_INSTRUMENTS (how many of the
list), BENCH_RL_PROFILES (name=rps:burst[:retry_after_s|-[:lockout_after]][@share], see
DEFAULT_PROFILES),
BENCH_RL_SCHEMES (comma list), BENCH_RL_QUICK=1. Needs redis-server on PATH; traffic
stays on 127.0.0.1. The JSON report lands in reports/bench-ratelimit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog

from bench.hot_hit import free_port
from loadtests.yahoo_sim.testing import SimulatorProcess, start_simulator
from policies.errors import UpstreamError
from policies.ratelimit import LimiterSettings, SharedRateLimiter
from proxy.series import SeriesKey
from proxy.transport import AiohttpTransport, Timeouts
from proxy.upstream import UpstreamClient, UpstreamSettings

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench-ratelimit.json"

FUTURES = ["ES=F", "NQ=F", "YM=F", "RTY=F", "CL=F", "GC=F", "SI=F", "HG=F", "NG=F", "ZN=F", "ZB=F"]
FUTURES += ["ZF=F", "ZT=F", "6E=F"]
INSTRUMENTS = [*FUTURES, "AAPL", "MSFT", "IBM", "NVDA", "AMZN", "GOOGL"]
INTERVALS = ("1m", "5m", "15m", "1h", "1d")
INTRADAY_WINDOW_S = 2 * 86400
DAILY_WINDOW_S = 60 * 86400

MAX_CONCURRENCY = 3
MAX_ATTEMPTS = 3
BUDGET_WAIT_S = 30.0
ENDPOINT = "chart"

# The schemes compared. "legacy" is how yfproxy expresses the old fixed 2.5 s pause
# (1 / 2.5 = 0.4 req/s, one token); "fixed-2per5" lets two requests start back to back
# every 5 s; "adaptive" is proxy.toml's [rate_limit] defaults; "adaptive-fast" probes
# upward faster and higher, to show how fast a steeper climb converges and what it costs.
SCHEMES: dict[str, LimiterSettings] = {
    "legacy": LimiterSettings(initial_rps=0.4, min_rps=0.4, max_rps=0.4, burst=1.0),
    "fixed-2per5": LimiterSettings(initial_rps=0.4, min_rps=0.4, max_rps=0.4, burst=2.0),
    "adaptive": LimiterSettings(),
    # Not in the default run: the plain AIMD of the first release (no slow start, no
    # ceiling), for comparison; --schemes aimd-v1 to run it.
    "aimd-v1": LimiterSettings(
        burst=2.0,
        increase_rps=0.05,
        decrease_factor=0.5,
        lockout_s=10.0,
        slow_start_factor=1.0,
        recovery_share=0.0,
    ),
}
DEFAULT_SCHEMES = ("legacy", "fixed-2per5", "adaptive")
FIXED = ("legacy", "fixed-2per5")
# name=rps:burst[:retry_after_s|-[:lockout_after]][@arrival_share]. A: Yahoo-like, 429s
# without Retry-After and a 60 s lock-out after 3 in a row; B: stricter, with Retry-After;
# A-paced: A's budget with series arriving at 60 % of it (not a backlog), where a mean
# delay under 1.5 s is possible at all.
DEFAULT_PROFILES = "A=1.5:3:-:3,B=0.8:2:5:3,A-paced=1.5:3:-:3@0.6"
LOCKOUT_S = 60.0

TARGET_SUCCESS = 0.99
TARGET_SHARE = 0.80
TARGET_DELAY_S = 1.5


@dataclass(frozen=True)
class Profile:
    name: str
    rps: float
    burst: int
    retry_after_s: float | None
    lockout_after: int = 0
    arrival_share: float | None = None  # None: the whole workload is queued at the start

    def knobs(self) -> dict[str, Any]:
        return {
            "rate_limit_rps": self.rps,
            "rate_limit_burst": self.burst,
            "retry_after_s": self.retry_after_s,
            "lockout_after": self.lockout_after,
            "lockout_s": LOCKOUT_S,
        }


def parse_profiles(text: str) -> list[Profile]:
    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, spec = item.partition("=")
        spec, _, share = spec.partition("@")
        parts = spec.split(":")
        if not name or not 2 <= len(parts) <= 4:
            raise ValueError(
                f"profile {item!r}: expected name=rps:burst[:retry_after_s|-[:lockout_after]][@share]"
            )
        retry_after = float(parts[2]) if len(parts) >= 3 and parts[2] != "-" else None
        lockout_after = int(parts[3]) if len(parts) == 4 else 0
        arrival = float(share) if share else None
        out.append(Profile(name, float(parts[0]), int(parts[1]), retry_after, lockout_after, arrival))
    return out


@dataclass
class SchemeResult:
    profile: str
    scheme: str
    settings: dict[str, float]
    series_total: int
    hidden_rps: float
    series_done: int = 0
    time_to_refresh_s: float | None = None  # None: the cap came first
    run_s: float = 0.0
    upstream_answers: int = 0
    upstream_ok: int = 0
    upstream_429: int = 0
    success_ratio: float = 0.0
    throughput_rps: float = 0.0
    budget_share: float = 0.0
    limiter_wait_total_s: float = 0.0
    mean_delay_s: float = 0.0  # limiter wait (granted and refused) / upstream requests
    mean_granted_wait_s: float = 0.0  # mean wait of the acquires that got a token
    budget_exhausted: int = 0
    client_failures: dict[str, int] = field(default_factory=dict)
    final_rps: float = 0.0
    reached_80pct_s: float | None = None  # first time the limiter's rate was >= 0.8 x hidden
    lockouts: int = 0  # times the simulator locked the client out (429s in a row)
    rate_trace: list[tuple[float, float]] = field(default_factory=list)


def workload(n_instruments: int, now: int) -> list[tuple[SeriesKey, int, int]]:
    out = []
    for symbol in INSTRUMENTS[:n_instruments]:
        for interval in INTERVALS:
            window = DAILY_WINDOW_S if interval == "1d" else INTRADAY_WINDOW_S
            out.append((SeriesKey(symbol, interval, False), now - window, now))
    return out


def upstream_settings(base_url: str) -> UpstreamSettings:
    return UpstreamSettings(
        base_url=base_url,
        max_concurrency=MAX_CONCURRENCY,
        min_interval_s=2.0,  # unused: the shared limiter paces
        timeouts=Timeouts(3.0, 3.0),
        max_attempts=MAX_ATTEMPTS,
        backoff_base_s=0.5,
        backoff_max_s=8.0,
        breaker_fail_max=5,
        breaker_reset_s=30.0,
    )


async def run_scheme(
    profile: Profile,
    scheme: str,
    sim: SimulatorProcess,
    redis_url: str,
    series: list[tuple[SeriesKey, int, int]],
    cap_s: float,
) -> SchemeResult:
    settings = SCHEMES[scheme]
    result = SchemeResult(profile.name, scheme, asdict(settings), len(series), profile.rps)
    redis_client = aioredis.Redis.from_url(redis_url)
    await redis_client.flushdb()
    sim.reset()
    sim.set_faults(**profile.knobs())
    limiter = SharedRateLimiter(redis_client, "bench", {ENDPOINT: settings})
    client = UpstreamClient(
        AiohttpTransport(limit=MAX_CONCURRENCY * 2),
        upstream_settings(sim.base_url),
        limiter,
        budget_wait_s=BUDGET_WAIT_S,
    )

    waits: list[tuple[float, bool]] = []
    acquire = limiter.acquire

    async def timed_acquire(endpoint: str, max_wait_s: float = 30.0) -> float:
        started = time.monotonic()
        granted = False
        try:
            value = await acquire(endpoint, max_wait_s)
            granted = True
            return value
        finally:
            waits.append((time.monotonic() - started, granted))

    limiter.acquire = timed_acquire  # type: ignore[method-assign]

    queue: asyncio.Queue[tuple[SeriesKey, int, int]] = asyncio.Queue()
    failures: Counter[str] = Counter()
    started = time.monotonic()
    all_done = asyncio.Event()

    async def feeder() -> None:
        # A backlog (everything due at once), or arrivals at a steady share of the budget.
        gap = 1 / (profile.arrival_share * profile.rps) if profile.arrival_share else 0.0
        for item in series:
            queue.put_nowait(item)
            if gap:
                await asyncio.sleep(gap)

    async def worker() -> None:
        while True:
            key, start, end = await queue.get()
            try:
                await client.fetch_chart(key, start, end)
            except UpstreamError as exc:
                failures[exc.category.value] += 1
                queue.put_nowait((key, start, end))
                continue
            result.series_done += 1
            if result.series_done == len(series):
                result.time_to_refresh_s = time.monotonic() - started
                all_done.set()

    async def trace() -> None:
        while True:
            state = await limiter.state(ENDPOINT)
            t = round(time.monotonic() - started, 1)
            result.rate_trace.append((t, round(state["current_rps"], 3)))
            if result.reached_80pct_s is None and state["current_rps"] >= 0.8 * profile.rps:
                result.reached_80pct_s = t
            await asyncio.sleep(2.0)

    workers = [asyncio.create_task(worker()) for _ in range(MAX_CONCURRENCY)]
    tracer, feeding = asyncio.create_task(trace()), asyncio.create_task(feeder())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), cap_s)
    result.run_s = result.time_to_refresh_s or (time.monotonic() - started)
    for task in (*workers, tracer, feeding):
        task.cancel()
    await asyncio.gather(*workers, tracer, feeding, return_exceptions=True)
    result.final_rps = (await limiter.state(ENDPOINT))["current_rps"]
    await client.close()
    await redis_client.aclose()

    counters = await asyncio.to_thread(sim.counters)
    chart = counters["by_kind_outcome"]["chart"]
    result.lockouts = int(counters.get("lockouts", 0))
    result.upstream_answers = sum(chart.values())
    result.upstream_429 = chart["rate_limited"]
    result.upstream_ok = result.upstream_answers - result.upstream_429
    result.success_ratio = result.upstream_ok / result.upstream_answers if result.upstream_answers else 0.0
    result.throughput_rps = result.upstream_ok / result.run_s
    # Paced runs are judged against what was offered, not the whole hidden budget.
    result.budget_share = result.throughput_rps / (profile.rps * (profile.arrival_share or 1.0))
    result.limiter_wait_total_s = sum(w for w, _ in waits)
    granted = [w for w, ok in waits if ok]
    result.mean_delay_s = result.limiter_wait_total_s / max(1, len(granted))
    result.mean_granted_wait_s = sum(granted) / max(1, len(granted))
    result.budget_exhausted = failures.get("budget_exhausted", 0)
    result.client_failures = dict(failures)
    return result


def wait_redis(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not answer")
        time.sleep(0.1)


def fmt_s(value: float | None, cap_s: float) -> str:
    return f">{cap_s:.0f}" if value is None else f"{value:.1f}"


def delay_floor_s(hidden_rps: float) -> float:
    return MAX_CONCURRENCY / hidden_rps


def verdicts(rows: list[SchemeResult], scheme: str, paced: bool) -> dict[str, Any]:
    """The issue's targets for one adaptive scheme of one profile."""
    me = next(r for r in rows if r.scheme == scheme)
    # A backlog of MAX_CONCURRENCY waiters sharing the hidden rate cannot wait less than
    # MAX_CONCURRENCY / rps per request; paced arrivals can (one waiter at a time).
    floor = 0.0 if paced else delay_floor_s(rows[0].hidden_rps)
    fixed = [r for r in rows if r.scheme in FIXED]
    inf = float("inf")

    def ttr(r: SchemeResult) -> float:
        return inf if r.time_to_refresh_s is None else r.time_to_refresh_s

    return {
        "success_ge_99pct": me.success_ratio >= TARGET_SUCCESS,
        "budget_share_ge_80pct": me.budget_share >= TARGET_SHARE,
        "mean_delay_lt_1_5s": me.mean_delay_s < TARGET_DELAY_S,
        "no_lockout": me.lockouts == 0,
        "delay_floor_s": round(floor, 2),
        "budget_allows_delay_target": floor < TARGET_DELAY_S,
        "faster_than_fixed": bool(fixed) and all(ttr(me) < ttr(r) for r in fixed),
    }


def print_table(profile: Profile, rows: list[SchemeResult], cap_s: float) -> None:
    ra = f", Retry-After {profile.retry_after_s:g} s" if profile.retry_after_s else ""
    if profile.lockout_after:
        ra += f", lock-out {LOCKOUT_S:g} s after {profile.lockout_after} 429s in a row"
    if profile.arrival_share:
        ra += f"; series arrive at {profile.arrival_share:.0%} of it"
    print(f"\nprofile {profile.name}: hidden bucket {profile.rps:g} req/s, burst {profile.burst}{ra}")
    head = (
        f"{'scheme':<14}{'done':>8}{'refresh s':>11}{'success':>9}{'429s':>6}"
        f"{'budget':>8}{'delay s':>9}{'exhaust':>8}{'final rps':>10}{'80% at s':>9}{'lockouts':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.scheme:<14}{f'{r.series_done}/{r.series_total}':>8}{fmt_s(r.time_to_refresh_s, cap_s):>11}"
            f"{r.success_ratio:>9.1%}{r.upstream_429:>6}{r.budget_share:>8.0%}{r.mean_delay_s:>9.2f}"
            f"{r.budget_exhausted:>8}{r.final_rps:>10.2f}{fmt_s(r.reached_80pct_s, cap_s):>9}{r.lockouts:>9}"
        )


async def run_all(
    profiles: list[Profile], schemes: list[str], sims: list[SimulatorProcess], redis_port: int, args: Any
) -> dict[str, Any]:
    series = workload(args.instruments, int(time.time()))
    report: dict[str, Any] = {
        "workload": {"instruments": INSTRUMENTS[: args.instruments], "intervals": list(INTERVALS),
                     "series": len(series), "intraday_window_s": INTRADAY_WINDOW_S,
                     "daily_window_s": DAILY_WINDOW_S},
        "client": {"max_concurrency": MAX_CONCURRENCY, "max_attempts": MAX_ATTEMPTS,
                   "budget_wait_s": BUDGET_WAIT_S, "workers": MAX_CONCURRENCY},
        "cap_s": args.cap_s,
        "profiles": [],
    }  # fmt: skip
    for profile in profiles:
        print(f"profile {profile.name}: {len(schemes)} schemes in parallel, cap {args.cap_s:g} s ...",
              flush=True)  # fmt: skip
        rows = await asyncio.gather(
            *(
                run_scheme(profile, scheme, sim, f"redis://127.0.0.1:{redis_port}/{i}", series, args.cap_s)
                for i, (scheme, sim) in enumerate(zip(schemes, sims, strict=True))
            )
        )
        print_table(profile, rows, args.cap_s)
        targets = {s: verdicts(rows, s, profile.arrival_share is not None) for s in schemes if s not in FIXED}
        for scheme, checks in targets.items():
            shown = ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in checks.items()
                              if isinstance(v, bool) and k != "budget_allows_delay_target")  # fmt: skip
            allows = ""
            if not checks["budget_allows_delay_target"]:
                allows = f" (budget does not allow the delay target: floor {checks['delay_floor_s']:g} s)"
            print(f"  targets for {scheme}: {shown}{allows}")
        report["profiles"].append({**asdict(profile), "results": [asdict(r) for r in rows],
                                   "targets": targets})  # fmt: skip
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    quick = env("BENCH_RL_QUICK", "") not in ("", "0")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=quick,
                        help="smoke run: 5 instruments, cap 60 s (BENCH_RL_QUICK=1)")  # fmt: skip
    parser.add_argument("--cap-s", type=float, default=None, help="time cap per scheme (BENCH_RL_CAP_S)")
    parser.add_argument(
        "--instruments", type=int, default=None, help="first N of the 20 (BENCH_RL_INSTRUMENTS)"
    )
    parser.add_argument("--profiles", default=env("BENCH_RL_PROFILES", DEFAULT_PROFILES),
                        help=f"name=rps:burst[:retry_after_s|-[:lockout_after]][@share],... "
                             f"(default {DEFAULT_PROFILES})")  # fmt: skip
    parser.add_argument("--schemes", default=env("BENCH_RL_SCHEMES", ",".join(DEFAULT_SCHEMES)),
                        help=f"comma list from {list(SCHEMES)}")  # fmt: skip
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    cap_env, inst_env = env("BENCH_RL_CAP_S"), env("BENCH_RL_INSTRUMENTS")
    if args.cap_s is None:
        args.cap_s = float(cap_env) if cap_env else (60.0 if args.quick else 300.0)
    if args.instruments is None:
        args.instruments = int(inst_env) if inst_env else (5 if args.quick else len(INSTRUMENTS))
    if not 1 <= args.instruments <= len(INSTRUMENTS):
        parser.error(f"--instruments must be 1..{len(INSTRUMENTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profiles = parse_profiles(args.profiles)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    unknown = sorted(set(schemes) - set(SCHEMES))
    if unknown or not schemes or not profiles:
        print(f"bench: unknown scheme(s) {unknown}; known {list(SCHEMES)}", file=sys.stderr)
        return 2
    if shutil.which("redis-server") is None:
        print("bench: redis-server is not on PATH (apt-get install redis-server)", file=sys.stderr)
        return 2
    # The client logs every failed attempt at info: keep the table readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    work = Path(tempfile.mkdtemp(prefix="yfproxy-bench-rl-"))
    redis_port = free_port()
    redis_cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(work)]  # fmt: skip
    redis_proc = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
    sims: list[SimulatorProcess] = []
    began = time.monotonic()
    try:
        wait_redis(redis_port)
        sims = [start_simulator() for _ in schemes]
        report = asyncio.run(run_all(profiles, schemes, sims, redis_port, args))
    finally:
        for sim in sims:
            sim.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    report["command"] = " ".join(["python -m bench.ratelimit", *(argv if argv is not None else sys.argv[1:])])
    report["wall_s"] = round(time.monotonic() - began, 1)
    report["date"] = time.strftime("%Y-%m-%d")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwall time {report['wall_s']:.0f} s; report: {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
