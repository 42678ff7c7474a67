"""`make loadtest`: Locust, headless and bounded, against a proxy and a simulator it starts.

Starts a private redis-server, the Yahoo simulator and one proxy process (refresher on,
the locustfile's 10 futures as active instruments), waits until every series the
dashboards ask for is stored, then runs loadtests/locustfile.py for LOAD_RUN_TIME with
LOAD_USERS users, writes reports/locust_*.csv and reports/locust.html, stops everything,
and exits with Locust's exit code (1 when a threshold of the locustfile was missed).

    make loadtest                                   # 100 users, 60 s
    LOAD_USERS=50 LOAD_RUN_TIME=30s make loadtest
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from loadtests.processes import ROOT, start_proxy, start_redis
from loadtests.workload import FUTURES, TIMEFRAMES
from loadtests.yahoo_sim.testing import start_simulator

REPORTS = ROOT / "reports"


def warm(base: str, timeout_s: float = 300.0) -> int:
    """Ask for every dashboard series until each answers 200 (first loads are misses)."""
    pending = [(s, i, r) for s in FUTURES for i, r in TIMEFRAMES.items()]
    deadline = time.monotonic() + timeout_s
    while pending:
        symbol, interval, period = pending[0]
        url = f"{base}/v8/finance/chart/{symbol}?interval={interval}&range={period}"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                ok = resp.status == 200
        except (urllib.error.HTTPError, OSError):
            ok = False
        if ok:
            pending.pop(0)
        elif time.monotonic() > deadline:
            raise RuntimeError(f"warm-up did not finish: {len(pending)} series left")
        else:
            time.sleep(0.5)
    return len(FUTURES) * len(TIMEFRAMES)


def main() -> int:
    users = os.environ.get("LOAD_USERS", "100")
    run_time = os.environ.get("LOAD_RUN_TIME", "60s")
    REPORTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="yfproxy-load-"))
    redis = start_redis(work)
    sim = start_simulator()
    proxy = None
    try:
        proxy = start_proxy(
            sim.base_url,
            redis.url,
            work,
            YFPROXY__BACKGROUND__ENABLED="true",
            YFPROXY__INSTRUMENTS__ACTIVE=",".join(FUTURES),
            YFPROXY__INSTRUMENTS__INTERVALS=",".join(TIMEFRAMES),
            YFPROXY__LOGGING__LEVEL="warning",
        )
        print(f"warming {warm(proxy.url)} series ...", flush=True)
        command = [
            sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
            "--headless", "--users", users, "--spawn-rate", "20", "--run-time", run_time,
            "--stop-timeout", "5", "--host", proxy.url, "--only-summary",
            "--csv", str(REPORTS / "locust"), "--html", str(REPORTS / "locust.html"),
        ]  # fmt: skip
        print(" ".join(command[1:]), flush=True)
        return subprocess.run(command, cwd=ROOT, check=False).returncode
    finally:
        if proxy is not None:
            proxy.stop()
        sim.stop()
        redis.stop()


if __name__ == "__main__":
    raise SystemExit(main())
