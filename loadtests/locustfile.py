"""Dashboard traffic for yfproxy: `make loadtest` runs it headless against a proxy and a
simulator it starts (loadtests/run_load.py); `locust -f loadtests/locustfile.py --host
http://127.0.0.1:8080` runs it against one already running.

Users are trading dashboards: each loads 10 instruments × 5 timeframes the way yfinance
and a data service ask (range= and exchange-midnight period1/period2, the time-zone
probe, a crumb parameter), revalidates with If-None-Match, and now and then asks for an
unknown symbol or sends bad input, which must get Yahoo's 4xx (counted as a success when
it does). Chart loads are grouped under one name per timeframe, so thresholds apply to
what users wait on.

Users arrive one by one: Locust starts each second's batch of users in the same
millisecond, so each user first waits a random part of LOAD_ARRIVAL_SPREAD_S (default 1 s,
one spawn interval at --spawn-rate 20; 0 gives Locust's lockstep). The arrival rate is
unchanged; what goes is 20 dashboards opening their connections and first 50 loads at the
same instant, which no desk does and which made all of the tail in earlier runs
(docs/performance.md).

Thresholds (an ``events.quitting`` check sets the exit code): no failures; chart loads
p95 <= LOAD_P95_MS and p99 <= LOAD_P99_MS (env, defaults 10 and 25 ms).
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task

from loadtests.workload import (
    BAD_INPUT_PATH,
    FUTURES,
    UNKNOWN_SYMBOLS,
    dashboard_loads,
    history_loads,
    unknown_symbol_path,
)

P95_MS = float(os.environ.get("LOAD_P95_MS", "10"))
P99_MS = float(os.environ.get("LOAD_P99_MS", "25"))
MAX_FAIL_RATIO = float(os.environ.get("LOAD_MAX_FAIL_RATIO", "0"))
ARRIVAL_SPREAD_S = float(os.environ.get("LOAD_ARRIVAL_SPREAD_S", "1"))


class Dashboard(FastHttpUser):
    # A user looks at the page for a while before the next action: 100 users are then
    # about 500 chart loads a second, a busy desk's worth of dashboards.
    wait_time = between(5.0, 15.0)

    def on_start(self) -> None:
        self.etags: dict[str, str] = {}
        if ARRIVAL_SPREAD_S > 0:
            gevent.sleep(random.uniform(0, ARRIVAL_SPREAD_S))

    def _chart(self, path: str, name: str) -> None:
        with self.client.get(path, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code} for {path}")
                return
            etag = resp.headers.get("ETag")
            if etag:
                self.etags[path] = etag

    @task(10)
    def load_dashboard(self) -> None:
        for name, path in dashboard_loads():
            self._chart(path, name)

    @task(3)
    def yfinance_history(self) -> None:
        for name, path in history_loads(random.choice(FUTURES), time.time()):
            self._chart(path, name)

    @task(3)
    def revalidate(self) -> None:
        if not self.etags:
            return
        path, etag = random.choice(list(self.etags.items()))
        with self.client.get(
            path, headers={"If-None-Match": etag}, name="revalidate", catch_response=True
        ) as resp:
            if resp.status_code not in (200, 304):
                resp.failure(f"revalidation answered {resp.status_code}")

    @task(1)
    def unknown_symbol(self) -> None:
        with self.client.get(
            unknown_symbol_path(random.randint(1, UNKNOWN_SYMBOLS)),
            name="unknown symbol (404 expected)",
            catch_response=True,
        ) as resp:
            if resp.status_code == 404 and b'"Not Found"' in (resp.content or b""):
                resp.success()
            else:
                resp.failure(f"expected Yahoo's 404, got {resp.status_code}")

    @task(1)
    def bad_input(self) -> None:
        with self.client.get(
            BAD_INPUT_PATH,
            name="bad input (400 expected)",
            catch_response=True,
        ) as resp:
            if resp.status_code == 400 and b"Invalid input" in (resp.content or b""):
                resp.success()
            else:
                resp.failure(f"expected Yahoo's 400, got {resp.status_code}")


@events.quitting.add_listener
def check_thresholds(environment: Any, **_kw: Any) -> None:
    stats = environment.stats
    problems = []
    if stats.total.fail_ratio > MAX_FAIL_RATIO:
        problems.append(f"failure ratio {stats.total.fail_ratio:.4f} > {MAX_FAIL_RATIO}")
    for entry in stats.entries.values():
        if not entry.name.startswith("chart ") or not entry.num_requests:
            continue
        p95, p99 = entry.get_response_time_percentile(0.95), entry.get_response_time_percentile(0.99)
        if p95 > P95_MS or p99 > P99_MS:
            problems.append(f"{entry.name}: p95 {p95} ms, p99 {p99} ms (limits {P95_MS:g} / {P99_MS:g})")
    for problem in problems:
        logging.error("threshold missed: %s", problem)
    environment.process_exit_code = 1 if problems else 0
