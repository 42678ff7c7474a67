"""`make loadtest`: Locust, headless and bounded, against a proxy and a simulator it starts.

Starts a private redis-server, the Yahoo simulator and one proxy process (refresher on,
the locustfile's 10 futures as active instruments), waits until every series the
dashboards ask for is stored, then runs loadtests/locustfile.py for LOAD_RUN_TIME with
LOAD_USERS users, writes reports/locust_*.csv and reports/locust.html, then runs the same
load against the control (loadtests/control_server.py: the proxy's answers replayed from
memory by a bare aiohttp server; LOAD_CONTROL=0 skips it), prints both side by side
(reports/locust_comparison.json), stops everything, and exits with the proxy run's Locust
exit code (1 when a threshold of the locustfile was missed).

    make loadtest                                   # 100 users, 60 s
    LOAD_USERS=50 LOAD_RUN_TIME=30s make loadtest
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from csv import DictReader
from pathlib import Path
from typing import Any

from loadtests.processes import ROOT, free_port, start_proxy, start_redis
from loadtests.workload import FUTURES, TIMEFRAMES, every_path
from loadtests.yahoo_sim.testing import start_simulator

REPORTS = ROOT / "reports"
QUANTILES = ("50%", "95%", "99%")


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


def locust(host: str, users: str, run_time: str, csv: str, html: bool) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
        "--headless", "--users", users, "--spawn-rate", "20", "--run-time", run_time,
        "--stop-timeout", "5", "--host", host, "--only-summary", "--csv", str(REPORTS / csv),
        *(["--html", str(REPORTS / f"{csv}.html")] if html else []),
    ]  # fmt: skip
    print(" ".join(command[1:]), flush=True)
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def start_control(origin: str) -> tuple[subprocess.Popen[bytes], str]:
    """The control server, every path of the scenario recorded from ``origin``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests.control_server", "--origin", origin, "--port", str(port)], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    paths = "\n".join(every_path(time.time())).encode()
    while True:
        try:
            request = urllib.request.Request(f"{url}/_record", data=paths)
            with urllib.request.urlopen(request, timeout=120) as r:
                print(f"control recorded {json.loads(r.read())['recorded']} answers", flush=True)
                return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.2)


def percentiles(csv: Path) -> dict[str, dict[str, float]]:
    with csv.open() as f:
        return {
            row["Name"]: {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"])}
            | {q: float(row[q]) for q in QUANTILES}
            for row in DictReader(f)
            if row["Name"] != "Aggregated"
        }


def compare() -> dict[str, Any]:
    """Per request name: the proxy's and the control's percentiles, side by side."""
    proxy = percentiles(REPORTS / "locust_stats.csv")
    control = percentiles(REPORTS / "locust_control_stats.csv")
    table = {name: {"yfproxy": proxy[name], "control": control.get(name)} for name in sorted(proxy)}
    # A failing control would make its latencies meaningless: failures are shown beside them.
    print(f"{'request':32} {'yfproxy p50/p95/p99 ms, failed':>32} {'control p50/p95/p99 ms, failed':>32}")
    for name, row in table.items():
        cells = [
            "/".join(f"{r[q]:g}" for q in QUANTILES) + f", {r['failures']}" if r else "-"
            for r in (row["yfproxy"], row["control"])
        ]
        print(f"{name:32} {cells[0]:>32} {cells[1]:>32}")
    (REPORTS / "locust_comparison.json").write_text(json.dumps(table, indent=2))
    return table


def main() -> int:
    users = os.environ.get("LOAD_USERS", "100")
    run_time = os.environ.get("LOAD_RUN_TIME", "60s")
    with_control = os.environ.get("LOAD_CONTROL", "1") != "0"
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
        code = locust(proxy.url, users, run_time, "locust", html=True)
        if with_control:
            # The same load on a server that only replays the proxy's answers: what is left
            # of a latency there belongs to this machine and the load generator.
            control, control_url = start_control(proxy.url)
            try:
                locust(control_url, users, run_time, "locust_control", html=False)
            finally:
                control.terminate()
                control.wait(10)
            compare()
        return code  # the thresholds judge the proxy's run; the control's is for reading
    finally:
        if proxy is not None:
            proxy.stop()
        sim.stop()
        redis.stop()


if __name__ == "__main__":
    raise SystemExit(main())
