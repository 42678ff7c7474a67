"""Dashboard traffic replayed against the refresher, on a simulated clock.

10 futures × 5 intervals are configured as active instruments. After the warm-up (every
series fetched once), a dashboard asks for all 50 charts every 10 s of simulated time
while the refresher keeps them fresh; the simulator (in process, its clock moved with
ours) is the upstream. The market is open (a Wednesday, 15:00 UTC onwards).

Measured: the share of chart answers that were fresh hits (Cache-Status `hit`), the
upstream requests per series against the number of due periods that passed, whether
every steady-state request was an incremental tail, and the upstream bytes of a refresh
cycle against what full-range fetches of the same series cost.

    .venv/bin/python -m bench.refresher_replay            # 60 simulated minutes
    .venv/bin/python -m bench.refresher_replay --minutes 15
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
import structlog

from loadtests.yahoo_sim.config import SimConfig
from loadtests.yahoo_sim.testing import InProcessSimulator, start_in_process
from proxy.activity import ActivityRecorder
from proxy.config import DEFAULT_FRESH_S, DEFAULT_INITIAL_DEPTH_DAYS
from proxy.fetcher import FetchCoordinator, NegativeCache
from proxy.hot import HotLayer
from proxy.intervals import lookup
from proxy.quality import QualityGate
from proxy.query import parse_chart_query
from proxy.refresher import Refresher, RefresherSettings
from proxy.registry import TrackedRegistry
from proxy.schedule import ScheduleSettings, refresh_period
from proxy.service import ChartService, ServiceSettings
from proxy.store import SeriesStore
from proxy.transport import AiohttpTransport, RawResponse, Timeouts
from proxy.upstream import UpstreamClient, UpstreamSettings

REPORT = Path(__file__).resolve().parents[1] / "reports" / "bench-refresher-replay.json"
START = calendar.timegm((2026, 11, 18, 15, 0, 0))  # Wednesday 10:00 New York
SYMBOLS = ("ES=F", "NQ=F", "YM=F", "RTY=F", "CL=F", "GC=F", "SI=F", "ZN=F", "ZB=F", "6E=F")
INTERVALS = ("1m", "5m", "15m", "1h", "1d")
RANGES = {"1m": "1d", "5m": "5d", "15m": "5d", "1h": "1mo", "1d": "1y"}
STEP_S = 5.0
DASHBOARD_EVERY_S = 10.0


@dataclass
class Upstream:
    """The transport as the bench sees it: every request, its window and its bytes."""

    inner: AiohttpTransport
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def get(
        self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts
    ) -> RawResponse:
        answer = await self.inner.get(url, params=params, headers=headers, timeouts=timeouts)
        symbol = unquote(url.rsplit("/", 1)[1])
        self.calls.append({"symbol": symbol, **params, "bytes": len(answer.body), "status": answer.status})
        return answer

    async def close(self) -> None:
        await self.inner.close()


class SimClock:
    def __init__(self, now: float, sim: InProcessSimulator) -> None:
        self.now, self.sim = now, sim
        sim.set_now(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.sim.set_now(self.now)


async def replay(redis_client: aioredis.Redis, minutes: float) -> dict[str, Any]:
    sim = await start_in_process(SimConfig(now=START, warm=False))
    clock = SimClock(START, sim)
    upstream = Upstream(AiohttpTransport())
    client_settings = UpstreamSettings(
        base_url=sim.base_url, max_concurrency=4, min_interval_s=0.0, timeouts=Timeouts(5, 5),
        max_attempts=2, backoff_base_s=0.0, backoff_max_s=0.0, breaker_fail_max=100, breaker_reset_s=30,
    )  # fmt: skip
    store = SeriesStore(redis_client, "bench")
    hot = HotLayer(256, 2048)
    negative = NegativeCache(store, 300, clock)
    registry = TrackedRegistry(redis_client, "bench", clock=clock)
    fetcher = FetchCoordinator(
        UpstreamClient(upstream, client_settings), store, hot, negative, workers=4, clock=clock,
        quality=QualityGate(redis_client, "bench", min_quality=0.5, clock=clock),
    )  # fmt: skip
    schedule = ScheduleSettings(fresh_s=DEFAULT_FRESH_S)
    refresher = Refresher(
        registry, store, fetcher,
        RefresherSettings(
            active=SYMBOLS, intervals=INTERVALS, schedule=schedule, poll_s=0.0,
            initial_depth_days=lambda interval: DEFAULT_INITIAL_DEPTH_DAYS[interval],
        ),
        clock=clock,
    )  # fmt: skip
    activity = ActivityRecorder()
    service = ChartService(
        store, hot, fetcher, negative,
        ServiceSettings(
            on_miss="wait", miss_wait_s=30, fresh_s=lambda i: DEFAULT_FRESH_S[i],
            initial_depth_days=lambda i: DEFAULT_INITIAL_DEPTH_DAYS[i],
        ),
        clock=clock, activity=activity,
    )  # fmt: skip

    async def settle() -> None:
        async with asyncio.timeout(120):
            while True:
                await refresher.cycle()
                await asyncio.sleep(0)
                if not refresher.instruments_in_flight and not fetcher.in_flight and not fetcher.queue_depth:
                    return
                await asyncio.sleep(0.005)

    try:
        started = time.monotonic()
        await refresher._start()
        await settle()
        warm_calls = len(upstream.calls)
        warm_bytes = {(c["symbol"], c["interval"]): c["bytes"] for c in upstream.calls}
        outcomes: Counter[str] = Counter()
        not_fresh: Counter[str] = Counter()
        steps = int(minutes * 60 / STEP_S)
        next_dashboard = 0.0
        for step in range(steps):
            if step * STEP_S >= next_dashboard:
                next_dashboard += DASHBOARD_EVERY_S
                for symbol in SYMBOLS:
                    for interval in INTERVALS:
                        query = parse_chart_query(
                            symbol, {"interval": interval, "range": RANGES[interval]}, now=clock()
                        )
                        outcome = (await service.answer(query)).outcome
                        outcomes[outcome] += 1
                        if outcome != "hit":
                            not_fresh[f"{symbol}|{interval}"] += 1
                await activity.flush(registry)
            clock.advance(STEP_S)
            await settle()
        steady = upstream.calls[warm_calls:]
        per_series = Counter((c["symbol"], c["interval"]) for c in steady)
        elapsed = steps * STEP_S
        periods = {i: refresh_period("priority", i, schedule) for i in INTERVALS}
        allowed = {i: elapsed / periods[i] + 1 for i in INTERVALS}  # due periods that passed (+ the first)
        over = {f"{s}|{i}": n for (s, i), n in per_series.items() if n > allowed[i]}
        # A tail: from a few bars before the last stored one (the overlap) to now; its width
        # is bounded by the overlap plus the time since the series' previous refresh.
        tails = [
            c for c in steady if int(c["period2"]) - int(c["period1"]) <= tail_bound(c["interval"], periods)
        ]
        steady_bytes = sum(c["bytes"] for c in steady)
        cycles = max(1.0, elapsed / min(periods.values()))
        full_bytes_per_cycle = sum(warm_bytes[(c["symbol"], c["interval"])] for c in steady) / cycles
        total_answers = sum(outcomes.values())
        report = {
            "simulated_minutes": minutes,
            "series": len(SYMBOLS) * len(INTERVALS),
            "dashboard_answers": total_answers,
            "outcomes": dict(outcomes),
            "fresh_hit_ratio": round(outcomes["hit"] / total_answers, 5) if total_answers else None,
            "not_fresh_by_series": dict(not_fresh.most_common(10)),
            "warm_up_requests": warm_calls,
            "steady_requests": len(steady),
            "refresh_periods_s": periods,
            "requests_per_series_max": max(per_series.values(), default=0),
            "series_over_one_per_period": over,
            "steady_requests_all_tails": len(tails) == len(steady),
            "not_tails": [c for c in steady if c not in tails][:5],
            "upstream_bytes_steady": steady_bytes,
            "upstream_bytes_per_cycle": round(steady_bytes / cycles),
            "full_range_bytes_per_cycle": round(full_bytes_per_cycle),
            "tail_vs_full_bytes": round(steady_bytes / max(1.0, full_bytes_per_cycle * cycles), 4),
            "wall_s": round(time.monotonic() - started, 1),
        }
        return report
    finally:
        await fetcher.close()
        await upstream.close()
        await sim.close()


def tail_bound(interval: str, periods: dict[str, float]) -> float:
    found = lookup(interval)
    bar = found.seconds if found is not None else 86400
    # overlap + the live bar (stamped at its start: a daily bar up to a day ago) + time since
    # the previous refresh (at most two periods) + an hour of slack
    return max(3 * bar, 900) + bar + 2 * periods[interval] + 3600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def run() -> dict[str, Any]:
        client = aioredis.Redis.from_url(args.redis)
        try:
            await client.flushdb()
            return await replay(client, args.minutes)
        finally:
            with contextlib.suppress(Exception):
                await client.flushdb()
            await client.aclose()

    report = asyncio.run(run())
    print(json.dumps(report, indent=2))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if (report["fresh_hit_ratio"] or 0) >= 0.99 and not report["series_over_one_per_period"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
