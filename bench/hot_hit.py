"""Fresh hit of a ~60 KB chart body: yfproxy vs nginx serving the same bytes from a
file, vs a bare aiohttp handler returning them from memory (the Python ceiling).

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
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from proxy.ingest import parse_chart_result
from proxy.series import Bars, SeriesKey
from proxy.store import SeriesStore

ROOT = Path(__file__).resolve().parents[1]
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
BARS = 640  # about 60 KB of Yahoo JSON at 1m

BARE_SERVER = """
import sys
from aiohttp import web
body = open(sys.argv[1], "rb").read()
gz = open(sys.argv[1] + ".gz", "rb").read()
async def handle(request):
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=gz, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
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


def wrk(url: str, gzip: bool) -> float:
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", url]
    if gzip:
        args[1:1] = ["-H", "Accept-Encoding: gzip"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed against {url}:\n{out}")
    return float(match.group(1))


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
        window_start=start - 86400,
        window_end=int(time.time()) + 60,
        fetched_at=time.time(),
    )
    await client.aclose()


def main() -> int:
    for tool in ("redis-server", "nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not on PATH (apt-get install redis-server nginx wrk)", file=sys.stderr)
            return 2
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
               "YFPROXY__LOGGING__LEVEL": "warning", "YFPROXY__CACHE__FRESH_S__1M": "86400"}  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, "-m", "proxy", "serve"], cwd=ROOT, env=env))
        chart = f"http://127.0.0.1:{proxy_port}/v8/finance/chart/BENCH?interval=1m&range=5d"
        wait_http(chart)
        with urllib.request.urlopen(chart) as resp:
            body = resp.read()
        (work / "www").mkdir()
        (work / "www" / "chart.json").write_bytes(body)
        import gzip as gz

        (work / "www" / "chart.json.gz").write_bytes(gz.compress(body, 6, mtime=0))

        nginx_port = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=nginx_port))
        procs.append(subprocess.Popen(["nginx", "-c", str(work / "nginx.conf")]))
        bare_port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(work / "www" / "chart.json"),
                                       str(bare_port)]))  # fmt: skip
        targets = {
            "yfproxy": chart,
            "nginx": f"http://127.0.0.1:{nginx_port}/chart.json",
            "aiohttp-bare": f"http://127.0.0.1:{bare_port}/chart.json",
        }
        for url in targets.values():
            wait_http(url)
        results: dict[str, dict[str, float]] = {}
        for mode in ("plain", "gzip"):
            results[mode] = {name: wrk(url, mode == "gzip") for name, url in targets.items()}
        report = {
            "body_bytes": len(body),
            "connections": CONNECTIONS,
            "duration_s": DURATION_S,
            "requests_per_s": results,
            "ratios": {
                mode: {
                    "yfproxy/nginx": round(r["yfproxy"] / r["nginx"], 3),
                    "yfproxy/aiohttp-bare": round(r["yfproxy"] / r["aiohttp-bare"], 3),
                }
                for mode, r in results.items()
            },
        }
        print(json.dumps(report, indent=2))
        out = ROOT / "reports"
        out.mkdir(exist_ok=True)
        (out / "bench-hot-hit.json").write_text(json.dumps(report, indent=2))
        return 0
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
