"""Processes the load runner and the tests start: a private redis-server and a proxy,
each on 127.0.0.1 and a free port, each stopped for sure (terminate, then kill)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProcess:
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_redis(workdir: Path) -> RedisProcess:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return RedisProcess(f"redis://127.0.0.1:{port}/0", proc)
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not answer")
        time.sleep(0.05)


@dataclass
class ProxyProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_proxy(
    upstream: str, redis_url: str, tmp: Path, *, config: Path | None = None, **env: str
) -> ProxyProcess:
    port = free_port()
    log = tmp / f"proxy-{port}.log"
    environ = {
        **os.environ,
        "YFPROXY__SERVER__PORT": str(port),
        "YFPROXY__REDIS__URL": redis_url,
        "YFPROXY__REDIS__EMBEDDED": "false",
        "YFPROXY__UPSTREAM__BASE_URL": upstream,
        "YFPROXY__UPSTREAM__TRANSPORT": "aiohttp",
        "YFPROXY__RATE_LIMIT__MAX_RPS": "100",
        "YFPROXY__RATE_LIMIT__INITIAL_RPS": "50",
        "YFPROXY__CACHE__MISS_WAIT_S": "30",
        "YFPROXY__LOGGING__FORMAT": "json",
        # Upstream counts in these tests are per request; refresher tests turn it on.
        "YFPROXY__BACKGROUND__ENABLED": "false",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", *(["--config", str(config)] if config else [])],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=out,
        )
    proxy = ProxyProcess(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{proxy.url}/healthz", timeout=1):
                return proxy
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proxy.stop()
                raise RuntimeError(f"proxy did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)
