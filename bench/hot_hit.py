"""Fresh hit of a ~60 KB chart body: yfproxy vs nginx serving the same bytes from a
file, vs a bare aiohttp handler returning them (and the same headers) from memory: the
Python ceiling. Then hits cut from the same series with non-aligned period1/period2,
repeated (one URL) and first (a new cut each request), against the fresh hit.

Each server gets the same wrk load in the same run; the result is the ratio, which
is what carries over between machines. Plain and gzip. Needs redis-server, nginx
and wrk on PATH (Debian packages). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from proxy.cli import resolve_event_loop
from proxy.ingest import parse_chart_result
from proxy.series import Bars, SeriesKey
from proxy.store import SeriesStore

ROOT = Path(__file__).resolve().parents[1]
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "5"))
# Rounds: every target is run once per round, in turn, and each figure is the median over
# rounds. On a 2-core machine one run moves by 10-20 % with what else ran in those seconds;
# interleaving spreads that over every target alike instead of landing on one.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
BARS = 640  # about 60 KB of Yahoo JSON at 1m
# The event loop of yfproxy and of the bare handler alike (server.event_loop): the ceiling
# is the best Python does on the same loop. "auto" is uvloop where it is installed.
LOOP = os.environ.get("BENCH_LOOP", "auto")

# The same bytes and the same response headers as yfproxy's answer (captured from it), so
# the ratio measures yfproxy's own work, not a difference in what is sent.
BARE_SERVER = """
import json, sys
from aiohttp import web
from proxy.cli import new_event_loop
body = open(sys.argv[1], "rb").read()
gz = open(sys.argv[1] + ".gz", "rb").read()
headers = json.load(open(sys.argv[1] + ".headers.json"))
async def handle(request):
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=gz, headers=headers["gzip"])
    return web.Response(body=body, headers=headers["plain"])
app = web.Application()
app.router.add_get("/{tail:.*}", handle)
loop = new_event_loop(sys.argv[3])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None, loop=loop)
"""
# Headers aiohttp writes itself (or that wrk's load makes differ per answer).
_OWN_HEADERS = {"date", "server", "content-length", "connection", "keep-alive", "transfer-encoding"}
# A new cut on every request: period2 steps back one bar per request over CUTS bars, more
# than the hot layer keeps rendered per series (hot_bodies / hot_series * 4 = 32), and
# period1 moves a second per request (still before the first bar), so no URL repeats and
# neither the parsed query nor a reused answer can serve it.
CUTS = 100
FIRST_CUT_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local p1 = {period1} + counter
  local p2 = {period2} - (counter % {cuts}) * 60
  return wrk.format("GET", "{path}&period1=" .. p1 .. "&period2=" .. p2)
end
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  default_type application/json;
  gzip_static on;
  server {{
    listen 127.0.0.1:{port};
    location / {{ root {dir}/www; }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass(frozen=True)
class Run:
    requests_per_s: float
    p99_ms: float
    cpu_us_per_request: float | None  # the server process's CPU time over requests served


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, gzip: bool, script: Path | None = None, duration_s: int = DURATION_S, pid: int | None = None
) -> Run:
    """One wrk run; with ``pid``, also the CPU that process spent per request: unlike
    requests/s, it does not move with what else the machine's cores were doing."""
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--latency", url]
    if gzip:
        args[1:1] = ["-H", "Accept-Encoding: gzip"]
    if script is not None:
        args[1:1] = ["-s", str(script)]
    cpu_before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if rate is None or total is None or p99 is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed against {url}:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    cpu = None
    if pid is not None:
        cpu = round((cpu_seconds(pid) - cpu_before) / int(total.group(1)) * 1e6, 1)
    return Run(float(rate.group(1)), round(float(p99.group(1)) * scale, 3), cpu)


def captured_headers(url: str, gzip: bool) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip else {})
    with urllib.request.urlopen(request) as resp:
        body = resp.read()
        if resp.headers.get("Cache-Status", "").split(";")[1:2] != [" hit"]:
            raise RuntimeError(f"not a fresh hit: {resp.headers.get('Cache-Status')}")
        return body, {k: v for k, v in resp.headers.items() if k.lower() not in _OWN_HEADERS}


async def seed(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from tests.recordings import recording

    rec = recording("MSFT_c62778557c")
    payload = parse_chart_result(rec.result)
    rng = np.random.default_rng(3)
    price = (400 + np.cumsum(rng.normal(0, 0.2, BARS))).astype(np.float32).astype(np.float64)
    start = (int(time.time()) // 60 - BARS) * 60
    payload.bars = Bars(
        start + 60 * np.arange(BARS, dtype=np.int64), price, price + 0.5, price - 0.5, price,
        rng.integers(0, 9000, BARS).astype(np.int64),
    )  # fmt: skip
    client = aioredis.Redis.from_url(redis_url)
    store = SeriesStore(client, "yfp")
    await store.merge(
        SeriesKey("BENCH", "1m", False),
        payload,
        window_start=start - 12 * 86400,  # coverage vouches for range=5d: a fresh hit
        window_end=int(time.time()) + 60,
        fetched_at=time.time(),
    )
    await client.aclose()


def main() -> int:
    for tool in ("redis-server", "nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not on PATH (apt-get install redis-server nginx wrk)", file=sys.stderr)
            return 2
    loop = resolve_event_loop(LOOP)
    work = Path(tempfile.mkdtemp(prefix="yfproxy-bench-"))
    work.chmod(0o755)  # nginx's workers read the body file as an unprivileged user
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_port = free_port()
        redis_cmd = ["redis-server", "--port", str(redis_port), "--save", "", "--dir", str(work)]
        procs.append(subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL))
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        time.sleep(0.5)
        asyncio.run(seed(redis_url))

        proxy_port = free_port()
        env = {**os.environ, "YFPROXY__SERVER__PORT": str(proxy_port), "YFPROXY__REDIS__URL": redis_url,
               "YFPROXY__REDIS__EMBEDDED": "false", "YFPROXY__UPSTREAM__BASE_URL": "http://127.0.0.1:9",
               "YFPROXY__UPSTREAM__TRANSPORT": "aiohttp", "YFPROXY__CACHE__ON_MISS": "reject",
               "YFPROXY__LOGGING__LEVEL": "warning", "YFPROXY__CACHE__FRESH_S__1M": "86400",
               # No upstream here: a refresher would only churn through failing fetches.
               "YFPROXY__BACKGROUND__ENABLED": "false", "YFPROXY__SERVER__EVENT_LOOP": loop}  # fmt: skip
        proxy = subprocess.Popen([sys.executable, "-m", "proxy", "serve"], cwd=ROOT, env=env)
        procs.append(proxy)
        base = f"http://127.0.0.1:{proxy_port}/v8/finance/chart/BENCH?interval=1m"
        chart = f"{base}&range=5d"
        wait_http(chart)
        body, plain_headers = captured_headers(chart, gzip=False)
        gz_body, gz_headers = captured_headers(chart, gzip=True)
        (work / "www").mkdir()
        (work / "www" / "chart.json").write_bytes(body)
        (work / "www" / "chart.json.gz").write_bytes(gz_body)
        (work / "www" / "chart.json.headers.json").write_text(
            json.dumps({"plain": plain_headers, "gzip": gz_headers})
        )
        # Cuts: period1 before the first bar and period2 just short of now, neither on a
        # bar boundary: nearly the same bars as the fresh hit, cut and rendered anew.
        now = int(time.time())
        period1, period2 = now - 3 * 86400 + 17, now - 29
        cut = f"{base}&period1={period1}&period2={period2}"
        wait_http(cut)
        lua = work / "first-cut.lua"
        path = "/v8/finance/chart/BENCH?interval=1m"
        lua.write_text(FIRST_CUT_LUA.format(path=path, period1=period1, period2=period2, cuts=CUTS))

        nginx_port = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=nginx_port))
        procs.append(subprocess.Popen(["nginx", "-c", str(work / "nginx.conf")]))
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(work / "www" / "chart.json"),
                                 str(bare_port), loop], cwd=ROOT)  # fmt: skip
        procs.append(bare)
        targets = {
            "yfproxy": chart,
            "nginx": f"http://127.0.0.1:{nginx_port}/chart.json",
            "aiohttp-bare": f"http://127.0.0.1:{bare_port}/chart.json",
        }
        for url in targets.values():
            wait_http(url)
        pids = {"yfproxy": proxy.pid, "aiohttp-bare": bare.pid}  # nginx serves from a worker child
        for url in targets.values():  # one warm-up second each: first connections, caches
            wrk(url, False, duration_s=1)
        rounds: dict[str, list[dict[str, Run]]] = {"plain": [], "gzip": []}
        for _ in range(ROUNDS):
            for mode, done in rounds.items():
                runs = {name: wrk(url, mode == "gzip", pid=pids.get(name)) for name, url in targets.items()}
                runs["cut-repeated"] = wrk(cut, mode == "gzip", pid=proxy.pid)
                runs["cut-first"] = wrk(cut, mode == "gzip", script=lua, pid=proxy.pid)
                done.append(runs)
        report = {
            "event_loop": loop,
            "body_bytes": len(body),
            "connections": CONNECTIONS,
            "duration_s": DURATION_S,
            "rounds": ROUNDS,
            "requests_per_s": {mode: _medians(runs, "requests_per_s") for mode, runs in rounds.items()},
            "p99_ms": {mode: _medians(runs, "p99_ms") for mode, runs in rounds.items()},
            "cpu_us_per_request": {
                mode: _medians(runs, "cpu_us_per_request", names=pids) for mode, runs in rounds.items()
            },
            "cpu_ratio_aiohttp-bare/yfproxy": {
                mode: _ratio(runs, "aiohttp-bare", "yfproxy", "cpu_us_per_request")
                for mode, runs in rounds.items()
            },
            "ratios": {
                mode: {f"{a}/{b}": _ratio(runs, a, b) for a, b in RATIOS} for mode, runs in rounds.items()
            },
        }
        print(json.dumps(report, indent=2))
        out = ROOT / "reports"
        out.mkdir(exist_ok=True)
        (out / "bench-hot-hit.json").write_text(json.dumps(report, indent=2))
        return 0
    finally:
        for proc in reversed(procs):  # the proxy before its Redis: no warnings of a lost Redis
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


RATIOS = (
    ("yfproxy", "nginx"),
    ("yfproxy", "aiohttp-bare"),
    ("cut-repeated", "yfproxy"),
    ("cut-first", "yfproxy"),
)


def _medians(runs: list[dict[str, Run]], field: str, names: Iterable[str] | None = None) -> dict[str, float]:
    names = list(runs[0]) if names is None else list(names)
    return {name: round(statistics.median(getattr(r[name], field) for r in runs), 3) for name in names}


def _ratio(runs: list[dict[str, Run]], a: str, b: str, field: str = "requests_per_s") -> dict[str, Any]:
    """a/b in each round (both measured within seconds of each other), and their median."""
    each = [round(getattr(r[a], field) / getattr(r[b], field), 3) for r in runs]
    return {"median": round(statistics.median(each), 3), "rounds": each}


if __name__ == "__main__":
    raise SystemExit(main())
