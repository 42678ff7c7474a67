"""Process faults under client traffic: Redis killed and restarted, the proxy SIGKILLed in
the middle of a merge and restarted on the same Redis, a replica lost in the middle of a
refresh. Each scenario asserts what clients saw (harness.Traffic), checks what Redis holds
against what the simulator serves, and records its row for docs/reliability.md.

Every process is real (redis-server, ``python -m proxy serve``, the simulator) and listens
on 127.0.0.1. A merge reads the series (HGETALL), merges and encodes it, then writes it
with one compare-and-set Lua script (proxy/store.py); to kill the proxy between that read
and that write, a MONITOR connection watches the commands Redis runs and sends SIGKILL the
moment the merge's read arrives (the merge then has tens of milliseconds of CPU work left).
Whether the write ever reached Redis is read back from the same stream, so each kill is
known to have landed mid-merge or not."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import orjson
import pytest
import redis

from loadtests.processes import ProxyProcess, RedisProcess, free_port, start_proxy, start_redis
from loadtests.yahoo_sim.testing import SimulatorProcess, start_simulator
from proxy.codec import CodecError, decode_bars, decode_days
from proxy.series import VOLUME_NULL
from tests.conftest import redis_server_binary
from tests.faults import harness
from tests.faults.harness import Answer, Row, Traffic, tally

FULL = harness.full_run()
pytestmark = pytest.mark.timeout(900 if FULL else 150)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_TEST = "tests/faults/test_process_faults.py::"


# -- processes


class RestartableRedis:
    """A redis-server on a fixed port, so it can be killed and started again where the proxy
    expects it (no persistence: it comes back empty)."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_proxy_on(port: int, upstream: str, redis_url: str, workdir: Path, **env: str) -> ProxyProcess:
    """loadtests.processes.start_proxy on a port chosen by the caller: a restarted proxy
    comes back where its clients are pointed."""
    workdir.mkdir(parents=True, exist_ok=True)
    with mock.patch("loadtests.processes.free_port", return_value=port):
        return start_proxy(upstream, redis_url, workdir, **env)


def get_json(url: str, timeout: float = 10.0) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers); errors with a body are returned, not raised."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else {}, dict(exc.headers)


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> float:
    """Poll ``check`` until true (bounded); returns the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)
    return time.monotonic() - started


def chart_requests(sim: SimulatorProcess) -> dict[str, dict[str, int]]:
    return dict(sim.counters()["chart_by_symbol_interval"])


def chart_total(sim: SimulatorProcess) -> int:
    return int(sim.counters()["by_kind"]["chart"])


def n(value: int) -> str:
    return f"{value:,}"


# -- watching Redis: kill the proxy between a merge's read and its write

_MONITOR_LINE = re.compile(
    rb'^\+[\d.]+ \[\d+ ([^\]]*)\] "(\w+)"(?: "([^"]*)")?(?: "([^"]*)")?(?: "([^"]*)")?'
)


@dataclass(frozen=True)
class Command:
    at: float  # monotonic, when the test read it
    lua: bool  # run by a script (the compare-and-set write shows its HSET so)
    name: str
    args: tuple[str, ...]  # the first three arguments (enough for keys and the version)


@dataclass(frozen=True)
class Kill:
    series: str  # the series tag whose merge was in flight
    how: str
    at: float  # monotonic
    stored_version: int  # the version Redis holds after the kill
    mid_merge: bool  # its write never reached Redis


def series_key(tag: str) -> str:
    return f"yfp:{{{tag}}}:series"


def lease_key(tag: str) -> str:
    return f"yfp:{{{tag}}}:lease"


def _tag(key: str, suffix: str) -> str | None:
    if key.startswith("yfp:{") and key.endswith("}:" + suffix):
        return key[len("yfp:{") : -len(suffix) - 2]
    return None


class MergeKiller:
    """A MONITOR connection (raw RESP, stdlib socket) that, once armed with a pid, SIGKILLs
    it on the first HGETALL of a series that ``primes`` marked at least ``min_gap_s`` before:
    the read a merge starts with (see the primers for why no other read is taken for it)."""

    def __init__(
        self, redis_port: int, primes: Callable[[Command], str | None], how: str, *, min_gap_s: float = 0.0
    ) -> None:
        self.primes, self.how, self.min_gap_s = primes, how, min_gap_s
        self.pid: int | None = None  # set by arm(): until then nothing is killed
        self.commands: list[Command] = []
        self.fired: tuple[str, int] | None = None  # (series tag, index of the trigger)
        self._fired = threading.Event()
        self._stop = threading.Event()
        self._primed: dict[str, float] = {}  # series tag -> when
        self._sock = socket.create_connection(("127.0.0.1", redis_port), timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = bytearray()
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                chunk = self._sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            start = 0
            while (end := buf.find(b"\r\n", start)) >= 0:
                self._line(bytes(buf[start : min(end, start + 400)]))
                start = end + 2
            del buf[:start]

    def _line(self, line: bytes) -> None:
        match = _MONITOR_LINE.match(line)
        if match is None:
            return
        client, name, *args = match.groups()
        command = Command(time.monotonic(), client == b"lua", name.decode().upper(),
                          tuple(a.decode(errors="replace") for a in args if a is not None))  # fmt: skip
        self.commands.append(command)
        if self.fired is not None:
            return
        primed = self.primes(command)
        if primed is not None:
            self._primed[primed] = command.at
        elif written := _written(command):
            self._primed.pop(written, None)  # that refresh is over: wait for the next one
        elif command.name == "HGETALL" and not command.lua and command.args:
            tag = _tag(command.args[0], "series") or ""
            since = command.at - self._primed.get(tag, math.inf)
            if since >= self.min_gap_s and self.pid is not None:
                os.kill(self.pid, signal.SIGKILL)  # from this thread: no hop to the test's
                self.fired = (tag, len(self.commands) - 1)
                self._fired.set()

    def arm(self, pid: int) -> None:
        self.pid = pid

    def wait(self, timeout: float) -> bool:
        return self._fired.wait(timeout)

    def wrote_after_trigger(self, tag: str) -> bool:
        """True when the series' write (the CAS script or its HSET) ran after the trigger."""
        assert self.fired is not None
        return any(_written(c) == tag for c in self.commands[self.fired[1] + 1 :])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self._sock.close()


def _written(c: Command) -> str | None:
    """The series a command writes (the CAS script, or the HSET it runs)."""
    if c.name == "HSET" and c.args:
        return _tag(c.args[0], "series")
    if c.name == "EVALSHA" and len(c.args) > 2:
        return _tag(c.args[2], "series")
    return None


def primed_by_chunk(tag: str, chunks: int) -> Callable[[Command], str | None]:
    """A chunk of a first fetch of ``chunks`` chunks has been written (version 1 to
    chunks - 1): the next read of the series is the merge of the next chunk (clients are
    answered from the hot layer, or join the running first fetch, without reading Redis)."""
    versions = {str(v) for v in range(1, chunks)}

    def primes(c: Command) -> str | None:
        written = c.lua and c.name == "HSET" and c.args[:2] == (series_key(tag), "version")
        return tag if written and c.args[2:3] and c.args[2] in versions else None

    return primes


def primed_by_lease(c: Command) -> str | None:
    """A refresh took the series' lease (SET NX); the merge reads the series once upstream
    has answered. Upstream answers after a set latency, and the watch takes the first read
    at least that long after the lease: not the refresher's own read of the series (before
    it asks for a refresh, which may join the one running). Armed only while no dead process
    holds a lease, so every lease SET it sees is one that succeeded."""
    return _tag(c.args[0], "lease") if c.name == "SET" and not c.lua and c.args else None


# -- what Redis holds, against what the simulator serves


@dataclass
class StoredCheck:
    series: int = 0
    bars: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.series > 0 and not self.problems


_MAX_SIM_WINDOW_S = {"1m": 6 * 86400, "5m": 50 * 86400, "1h": 600 * 86400}


def sim_bars(
    sim: SimulatorProcess, symbol: str, interval: str, start: int, end: int
) -> dict[str, np.ndarray]:
    """The simulator's bars stamped in ``[start, end)``, asked in windows it accepts."""
    columns: dict[str, list[Any]] = {k: [] for k in ("ts", "open", "high", "low", "close", "volume")}
    width = _MAX_SIM_WINDOW_S.get(interval, 3650 * 86400)
    lo = start
    while lo < end:
        hi = min(end, lo + width)
        query = f"interval={interval}&period1={lo}&period2={hi}&includePrePost=false&events=div,splits"
        status, body, _ = get_json(f"{sim.base_url}/v8/finance/chart/{symbol}?{query}")
        assert status == 200, (symbol, interval, lo, hi, body)
        result = body["chart"]["result"][0]
        quote = result["indicators"]["quote"][0]
        stamps = result.get("timestamp") or []
        columns["ts"] += stamps
        for name in ("open", "high", "low", "close"):
            columns[name] += [math.nan if v is None else v for v in quote.get(name, [None] * len(stamps))]
        columns["volume"] += [
            VOLUME_NULL if v is None else v for v in quote.get("volume", [None] * len(stamps))
        ]
        lo = hi
    return {
        k: np.array(v, dtype=np.int64 if k in ("ts", "volume") else np.float64) for k, v in columns.items()
    }


def stored_tags(redis_url: str) -> set[str]:
    keys = redis.Redis.from_url(redis_url).scan_iter(match="yfp:{*}:series", count=1000)
    return {tag for tag in (_tag(k.decode(), "series") for k in keys) if tag and "|" in tag}


def check_stored(redis_url: str, sim: SimulatorProcess) -> StoredCheck:
    """Every stored series decodes whole, its bars strictly increase and sit inside the
    coverage it vouches for, each bar has its trading day, its metadata belongs to it, it is
    listed in the series index, and inside its coverage it holds exactly the simulator's
    bars: none missing, none doubled, none altered."""
    client = redis.Redis.from_url(redis_url)
    out = StoredCheck()
    indexed = {t.decode() for t in client.smembers("yfp:series-index")}
    for raw_key in sorted(client.scan_iter(match="yfp:{*}:series", count=1000)):
        key = raw_key.decode()
        tag = _tag(key, "series")
        if tag is None or "|" not in tag:
            continue
        out.series += 1
        problems = _check_one(tag, client.hgetall(raw_key), sim, out)
        if tag not in indexed:
            problems.append("missing from yfp:series-index")
        out.problems += [f"{tag}: {p}" for p in problems]
    return out


def _check_one(tag: str, fields: dict[bytes, bytes], sim: SimulatorProcess, out: StoredCheck) -> list[str]:
    symbol, interval, prepost = tag.rsplit("|", 2)
    wanted = {b"version", b"bars", b"days", b"meta", b"events", b"info"}
    if set(fields) != wanted:
        return [f"fields {sorted(f.decode() for f in fields)}"]
    try:
        bars = decode_bars(fields[b"bars"])
        days = decode_days(fields[b"days"])
        meta, info = orjson.loads(fields[b"meta"]), orjson.loads(fields[b"info"])
        orjson.loads(fields[b"events"])
        version = int(fields[b"version"])
    except (CodecError, orjson.JSONDecodeError, ValueError) as exc:
        return [f"does not decode: {exc}"]
    out.bars += len(bars)
    problems: list[str] = []
    start, end = int(info["coverage_start"]), int(info["coverage_end"])
    if version < 1 or not start < end or not 0 < float(info["fetched_at"]) <= time.time() + 1:
        problems.append(f"info {info} version {version}")
    if meta.get("symbol") != symbol or meta.get("exchangeTimezoneName") is None:
        problems.append(f"meta of another series: {meta.get('symbol')}")
    if len(bars) == 0:
        return [*problems, "no bars"]
    if not bool(np.all(np.diff(bars.ts) > 0)):
        problems.append("bars not strictly increasing")
    if int(bars.ts[0]) < start or int(bars.ts[-1]) >= end:
        problems.append(f"bars {bars.ts[0]}..{bars.ts[-1]} outside coverage {start}..{end}")
    if len(days) and prepost == "0":
        day = np.searchsorted(days.regular_start, bars.ts, side="right") - 1
        # Yahoo ends a futures day on its last minute (04:59), where a bar is stamped.
        inside = (day >= 0) & (bars.ts <= days.regular_end[np.maximum(day, 0)])
        if not bool(np.all(inside)):
            problems.append(f"{int(np.count_nonzero(~inside))} bars outside the stored trading days")
    truth = sim_bars(sim, symbol, interval, start, end)
    if not np.array_equal(truth["ts"], bars.ts):
        lost = np.setdiff1d(truth["ts"], bars.ts)
        extra = np.setdiff1d(bars.ts, truth["ts"])
        dup = len(bars.ts) - len(np.unique(bars.ts))
        problems.append(f"bars differ from upstream: {len(lost)} lost, {len(extra)} extra, {dup} doubled")
        return problems
    for name in ("open", "high", "low", "close"):
        if not np.array_equal(truth[name], getattr(bars, name), equal_nan=True):
            problems.append(f"{name} differs from upstream")
    if not np.array_equal(truth["volume"], bars.volume):
        problems.append("volume differs from upstream")
    return problems


# -- 1. Redis killed under traffic and restarted


@pytest.fixture
def redis_stack(tmp_path: Path) -> Iterator[tuple[SimulatorProcess, RestartableRedis, ProxyProcess]]:
    sim = start_simulator()
    sim.set_now(int(time.time()) // 60 * 60)
    redis_proc = RestartableRedis(tmp_path)
    proxy: ProxyProcess | None = None
    try:
        redis_proc.start()
        proxy = start_proxy(
            sim.base_url,
            redis_proc.url,
            tmp_path,
            YFPROXY__REDIS__SOCKET_TIMEOUT_S="0.5",
            YFPROXY__BACKGROUND__ENABLED="true",
            YFPROXY__BACKGROUND__WARM_ON_START="true",
            YFPROXY__INSTRUMENTS__ACTIVE="ES=F",
            YFPROXY__INSTRUMENTS__INTERVALS="5m,1d",
        )
        yield sim, redis_proc, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        redis_proc.kill()
        sim.stop()


def tracked(proxy: ProxyProcess) -> set[str]:
    status, body, _ = get_json(f"{proxy.url}/status")
    return {row["series"] for row in body["refresher"]["series"]} if status == 200 else set()


def refreshed_ok(proxy: ProxyProcess, tags: set[str]) -> bool:
    status, body, _ = get_json(f"{proxy.url}/status")
    rows = {r["series"]: r for r in body["refresher"]["series"]} if status == 200 else {}
    return all(rows.get(t, {}).get("last_outcome") == "ok" for t in tags)


def first_ok(answers: list[Answer], url: str, since: float) -> Answer | None:
    return next((a for a in sorted(answers, key=lambda a: a.at) if a.url == url and a.at >= since
                 and a.status == 200), None)  # fmt: skip


def test_redis_killed_under_traffic(
    redis_stack: tuple[SimulatorProcess, RestartableRedis, ProxyProcess],
) -> None:
    """Redis dies under client traffic and comes back empty: series in the hot layer keep
    their 200s from memory, every other series gets a fast 503 + Retry-After (never a 500 or
    a hang), /readyz says redis, and everything recovers by itself, the refresher's
    configured series included."""
    sim, redis_proc, proxy = redis_stack
    chart = f"{proxy.url}/v8/finance/chart"
    hot = [f"{chart}/ES=F?interval=5m&range=5d", f"{chart}/ES=F?interval=5m&range=1d",
           f"{chart}/NQ=F?interval=1h&range=5d"]  # fmt: skip
    cold = [f"{chart}/CL=F?interval=5m&range=5d", f"{chart}/GC=F?interval=1h&range=5d"]
    configured = {"ES=F|5m|0", "ES=F|1d|0"}  # ES=F 1d: refreshed, never asked for by a client
    wait_for("the refresher's first refreshes", lambda: refreshed_ok(proxy, configured), 60, every=0.3)
    for url in hot:
        assert harness.fetch(url).status == 200  # stored, and kept decoded in the hot layer
    assert get_json(f"{proxy.url}/readyz")[0] == 200
    outage_s = 60.0 if FULL else 4.0

    hot_traffic = Traffic(hot, clients=3, max_s=outage_s + 90).start()
    time.sleep(1.0)
    redis_proc.kill()
    killed = time.monotonic()
    upstream_at_kill = chart_total(sim)
    cold_traffic = Traffic(cold, clients=2, max_s=outage_s + 90).start()
    status, body, headers = get_json(cold[0])
    assert status == 503 and int(headers["Retry-After"]) > 0
    assert body["chart"]["error"]["code"] == "Service Unavailable"
    status, body, _ = get_json(f"{proxy.url}/readyz")
    assert status == 503 and "redis" in body["checks"] and body["checks"]["redis"] != "ok"
    assert get_json(f"{proxy.url}/healthz")[0] == 200  # the process itself is alive
    time.sleep(max(0.0, killed + outage_s - time.monotonic()))

    asked_before, upstream_at_back = chart_requests(sim), chart_total(sim)
    back = time.monotonic()
    redis_proc.start()  # an empty Redis comes back on the same port
    wait_for("ready again", lambda: get_json(f"{proxy.url}/readyz", 5)[0] == 200, 30)
    ready_s = time.monotonic() - back
    firsts: dict[str, Answer] = {}

    def every_url_answered() -> bool:
        for url in hot + cold:
            answers = hot_traffic.answers if url in hot else cold_traffic.answers
            found = first_ok(list(answers), url, back)
            if found is not None:
                firsts[url] = found
        return len(firsts) == len(hot + cold)

    wait_for("every series answered again", every_url_answered, 40)
    wait_for("configured series tracked again", lambda: configured <= tracked(proxy), 30, 0.3)
    registry_s = time.monotonic() - back
    lost = {"ES=F|5m|0", "ES=F|1d|0", "NQ=F|1h|0", "CL=F|5m|0", "GC=F|1h|0"}
    wait_for("every series stored again", lambda: lost <= stored_tags(redis_proc.url), 45, 0.3)
    restored_s = time.monotonic() - back
    time.sleep(1.0)  # some traffic after recovery
    answers = hot_traffic.stop() + cold_traffic.stop()

    during = [a for a in answers if killed <= a.at and a.at + a.took_s < back]
    hot_during = tally([a for a in during if a.url in hot])
    cold_during = tally([a for a in during if a.url in cold])
    assert hot_during.total > 0 and set(hot_during.statuses) == {200}, hot_during  # served from memory
    assert all(a.cache_status.startswith("yfproxy; hit") for a in during if a.url in hot)
    assert cold_during.total > 0 and set(cold_during.statuses) == {503}, cold_during
    assert cold_during.max_took_s < 3.0  # fast refusals, not hangs
    overall = tally(answers)
    assert overall.server_errors == 0 and overall.unanswered == 0, overall  # never a 500, never a hang
    recovered = max(firsts.values(), key=lambda a: a.at)
    after = tally(answers, since=recovered.at)
    assert set(after.statuses) == {200}, after
    # Fetched and stored again, no manual step: by the request itself (fwd=miss) or, as
    # clients asked for them during the outage, by the refresher first (a fresh hit).
    for url in cold:
        assert re.match(r"yfproxy; (fwd=miss|hit; ttl=[1-9])", firsts[url].cache_status), firsts[url]
    refetched, upstream_at_end = chart_requests(sim), chart_total(sim)
    for symbol, interval, _ in (tag.split("|") for tag in lost):  # ES=F 1d too, never asked for
        assert refetched[symbol][interval] > asked_before.get(symbol, {}).get(interval, 0), symbol
    recovery_s = max(a.at + a.took_s for a in firsts.values()) - back  # every series answered
    assert ready_s < 10 and recovery_s < 15, (ready_s, recovery_s)
    stored = check_stored(redis_proc.url, sim)
    assert stored.intact, stored.problems

    harness.record_row(
        Row(
            scenario="redis-killed-under-traffic",
            title="Redis killed under client traffic, restarted empty",
            fault=f"redis-server SIGKILLed for {outage_s:.0f} s, restarted empty on the same port",
            client_errors=(
                f"{n(overall.errors)} of {n(overall.total)}: all 503 + Retry-After on the "
                f"{len(cold)} series not in memory while Redis was down (slowest "
                f"{cold_during.max_took_s * 1000:.0f} ms); hot series 0 of {n(hot_during.total)}; "
                "0 500s, 0 hangs"
            ),
            stale_answers=f"{n(overall.stale)} of {n(overall.total)}",
            upstream_requests=(
                f"{upstream_at_back - upstream_at_kill} chart requests during the outage, "
                f"{upstream_at_end - upstream_at_back} after it, for the {len(lost)} series Redis lost"
            ),
            recovery_s=round(recovery_s, 2),
            data_intact=stored.intact,
            notes=(
                f"/readyz 503 (redis) during the outage, 200 {ready_s:.1f} s after Redis returned; "
                f"configured series tracked again within {registry_s:.1f} s, all {len(lost)} series "
                f"stored again within {restored_s:.1f} s and checked against upstream"
            ),
            test=_TEST + "test_redis_killed_under_traffic",
        )
    )


# -- 2. the proxy SIGKILLed in the middle of a merge, restarted on the same Redis

MERGE_ENV = {
    "YFPROXY__BACKGROUND__ENABLED": "true",
    "YFPROXY__BACKGROUND__WARM_ON_START": "true",
    "YFPROXY__INSTRUMENTS__ACTIVE": "ES=F,NQ=F",
    "YFPROXY__INSTRUMENTS__INTERVALS": "1m,5m",
    # 29 days of minute bars: a first fetch of five 7-day chunks, each a merge of its own,
    # and tens of thousands of bars for every later merge to decode, merge and encode.
    "YFPROXY__CACHE__INITIAL_DEPTH_DAYS__1M": "29",
    # Stale after a second: client traffic keeps refreshes (and merges) going all the time.
    "YFPROXY__CACHE__FRESH_S__1M": "1",
    "YFPROXY__CACHE__FRESH_S__5M": "1",
    "YFPROXY__BACKGROUND__LEASE_TTL_S": "2",
}


UPSTREAM_LATENCY_S = 0.4  # Yahoo-like; it also tells a merge's read from other reads


@dataclass
class Incarnation:
    proxy: ProxyProcess
    spawned: float  # monotonic
    ready: float


def dead_leases(redis_url: str, alive_pid: int) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    found = []
    for key in client.scan_iter(match="yfp:{*}:lease", count=1000):
        owner = client.get(key)
        if owner is not None and int(owner.decode().split(":")[1]) != alive_pid:
            found.append(key.decode())
    return found


def stored_version(redis_url: str, tag: str) -> int:
    value = redis.Redis.from_url(redis_url).hget(series_key(tag), "version")
    return int(value or 0)


@pytest.fixture
def sim_and_redis(tmp_path: Path) -> Iterator[tuple[SimulatorProcess, RedisProcess]]:
    """The simulator, frozen at the current minute (the oracle then sees the bars the proxy
    saw), and a private redis-server; the test starts and stops its proxies."""
    sim = start_simulator()
    try:
        sim.set_now(int(time.time()) // 60 * 60)
        redis_proc = start_redis(tmp_path)
        try:
            yield sim, redis_proc
        finally:
            redis_proc.stop()
    finally:
        sim.stop()


def test_proxy_sigkilled_mid_merge(
    tmp_path: Path, sim_and_redis: tuple[SimulatorProcess, RedisProcess]
) -> None:
    """SIGKILL the proxy while a merge has read its series and not yet written it, again and
    again (first in the middle of a five-chunk first fetch, then in tail refreshes under
    client traffic), restarting it on the same Redis each time: Redis never holds a torn
    series, and clients see connection errors only while the process is down."""
    sim, redis_proc = sim_and_redis
    redis_port = int(redis_proc.url.rsplit(":", 1)[1].split("/")[0])
    port = free_port()
    base = f"http://127.0.0.1:{port}/v8/finance/chart"
    urls = [f"{base}/ES=F?interval=1m&range=5d", f"{base}/ES=F?interval=5m&range=1mo",
            f"{base}/NQ=F?interval=1m&range=1d", f"{base}/NQ=F?interval=5m&range=5d"]  # fmt: skip
    lives: list[Incarnation] = []
    kills: list[Kill] = []
    wanted_mid = 6 if FULL else 3
    attempts = wanted_mid + (4 if FULL else 2)
    traffic = Traffic(urls, clients=3, max_s=600 if FULL else 120, pause_s=0.02)

    def spawn() -> Incarnation:
        spawned = time.monotonic()
        proxy = start_proxy_on(
            port, sim.base_url, redis_proc.url, tmp_path / f"life{len(lives)}", **MERGE_ENV
        )
        life = Incarnation(proxy, spawned, time.monotonic())
        lives.append(life)
        return life

    def kill_mid_merge(killer: MergeKiller, life: Incarnation, timeout: float) -> Kill:
        try:
            killer.arm(life.proxy.proc.pid)
            assert killer.wait(timeout), f"{killer.how}: no merge started within {timeout:.0f} s"
            at = time.monotonic()
            life.proxy.proc.wait(10)
            time.sleep(0.3)  # a write already sent would show up in MONITOR by now
            assert killer.fired is not None
            tag = killer.fired[0]
            return Kill(
                tag, killer.how, at, stored_version(redis_proc.url, tag), not killer.wrote_after_trigger(tag)
            )
        finally:
            killer.close()

    try:
        # The first kill lands in a chunk's merge of ES=F 1m's first fetch (after the first
        # chunk). Upstream answers slowly at first, so the watch is armed with the pid before.
        killer = MergeKiller(redis_port, primed_by_chunk("ES=F|1m|0", 5), "first fetch")
        sim.set_faults(latency_ms=2000)
        life = spawn()
        sim.set_faults(latency_ms=UPSTREAM_LATENCY_S * 1000)
        traffic.start()
        kills.append(kill_mid_merge(killer, life, 30))
        while sum(k.mid_merge for k in kills) < wanted_mid and len(kills) < attempts:
            life = spawn()
            # A lease a killed process held blocks its series until it expires (the new
            # process answers with what is stored meanwhile). Armed once none is left, so
            # every lease SET the watch sees is one that succeeded.
            pid = life.proxy.proc.pid
            wait_for("dead leases expired", lambda pid=pid: not dead_leases(redis_proc.url, pid), 10)
            time.sleep(0.5)
            killer = MergeKiller(
                redis_port, primed_by_lease, "tail refresh", min_gap_s=UPSTREAM_LATENCY_S - 0.05
            )
            kills.append(kill_mid_merge(killer, life, 20))
        life = spawn()
        last = kills[-1]
        wait_for(
            f"{last.series} written again after the restart",
            lambda: stored_version(redis_proc.url, last.series) > last.stored_version,
            15,
        )
        resumed_s = time.monotonic() - life.spawned
        time.sleep(1.5)  # traffic on the last incarnation
        answers = traffic.stop()
        upstream = chart_requests(sim)
        stored = check_stored(redis_proc.url, sim)
    finally:
        traffic.stop()
        for life in lives:
            if life.proxy.proc.poll() is None:
                life.proxy.stop()

    # Down: from a kill to the next incarnation's first answer.
    downs = [(k.at, nxt.ready) for k, nxt in zip(kills, lives[1:], strict=True)]

    def while_down(a: Answer) -> bool:
        return any(a.at <= ready and a.at + a.took_s >= killed - 0.05 for killed, ready in downs)

    down = [a for a in answers if while_down(a)]
    up = [a for a in answers if not while_down(a)]
    down_tally, up_tally = tally(down), tally(up)
    assert set(down_tally.statuses) <= {0, 200}, down_tally  # connection errors only, no 5xx
    assert set(up_tally.statuses) == {200}, up_tally  # outside the down windows every answer is a 200
    recoveries = []
    for life in lives[1:]:
        answered = next((a for a in sorted(answers, key=lambda a: a.at) if a.at >= life.ready
                         and a.status == 200), None)  # fmt: skip
        assert answered is not None, "no 200 after a restart"
        recoveries.append(answered.at + answered.took_s - life.spawned)
    mid = [k for k in kills if k.mid_merge]
    assert len(mid) >= wanted_mid, kills  # the kills did land between a merge's read and write
    assert stored.series == 4 and stored.intact, stored.problems
    assert max(recoveries) < 15, recoveries

    down_s = sum(ready - killed for killed, ready in downs)
    total_up = sum(sum(by.values()) for by in upstream.values())
    harness.record_row(
        Row(
            scenario="proxy-sigkill-mid-merge",
            title="Proxy SIGKILLed in the middle of a merge, restarted on the same Redis",
            fault=(
                f"{len(kills)} SIGKILLs ({len(mid)} between a merge's read and its write: "
                f"{sum(k.how == 'first fetch' for k in mid)} in a 5-chunk first fetch, "
                f"{sum(k.how == 'tail refresh' for k in mid)} in tail refreshes), each followed by a restart"
            ),
            client_errors=(
                f"0 of {n(up_tally.total)} while a process was up; {n(down_tally.unanswered)} connection "
                f"errors of {n(down_tally.total)} requests while the killed process was down "
                f"({down_s:.1f} s down in all)"
            ),
            stale_answers=f"{n(tally(answers).stale)} of {n(len(answers))}",
            upstream_requests=(
                f"{n(total_up)} chart requests for 4 series in {lives[-1].ready - lives[0].spawned:.0f} s "
                "(clients find them stale after 1 s)"
            ),
            recovery_s=round(max(recoveries), 2),
            data_intact=stored.intact,
            notes=(
                f"first-fetch kills in the merge of chunk "
                f"{', '.join(str(k.stored_version + 1) for k in mid if k.how == 'first fetch')} of 5; "
                f"{stored.series} series, {n(stored.bars)} bars compared with upstream: none torn, lost or "
                f"doubled; the last interrupted series was written again {resumed_s:.1f} s after its "
                "restart began"
            ),
            test=_TEST + "test_proxy_sigkilled_mid_merge",
        )
    )


# -- 3. a replica lost in the middle of a refresh, under load

REPLICA_LEASE_TTL_S = 10.0 if FULL else 3.0
REPLICA_FRESH_S = 2
REPLICA_ENV = {
    "YFPROXY__BACKGROUND__ENABLED": "true",
    "YFPROXY__BACKGROUND__WARM_ON_START": "true",
    "YFPROXY__INSTRUMENTS__ACTIVE": "ES=F,NQ=F",
    "YFPROXY__INSTRUMENTS__INTERVALS": "5m,1d",
    "YFPROXY__BACKGROUND__LEASE_TTL_S": str(REPLICA_LEASE_TTL_S),
    "YFPROXY__CACHE__FRESH_S__5M": str(REPLICA_FRESH_S),  # traffic asks for a refresh every 2 s
    "YFPROXY__TIMEOUTS__READ_S": "20",  # a hanging upstream holds the lease
    "YFPROXY__RETRY__MAX_ATTEMPTS": "1",
}


class CounterTimeline:
    """The simulator's chart requests for one series, sampled every 0.1 s (bounded)."""

    def __init__(self, sim: SimulatorProcess, symbol: str, interval: str, max_s: float) -> None:
        self.sim, self.symbol, self.interval = sim, symbol, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(time.monotonic() + max_s,), daemon=True)
        self._thread.start()

    def count(self) -> int:
        return int(chart_requests(self.sim).get(self.symbol, {}).get(self.interval, 0))

    def _run(self, deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.samples.append((time.monotonic(), self.count()))
            self._stop.wait(0.1)

    def first_above(self, value: int, since: float) -> tuple[float, int] | None:
        return next(((t, c) for t, c in list(self.samples) if t >= since and c > value), None)

    def at(self, when: float) -> int:
        """The count last sampled at or before ``when``."""
        return max((c for t, c in list(self.samples) if t <= when), default=0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def lease_owner(client: redis.Redis, tag: str) -> str | None:
    value = client.get(lease_key(tag))
    return None if value is None else value.decode()


def test_replica_lost_mid_refresh(
    tmp_path: Path, sim_and_redis: tuple[SimulatorProcess, RedisProcess]
) -> None:
    """Three proxies on one Redis, clients spread over them. The one holding a series' lease
    is SIGKILLed while its upstream request hangs: the others keep answering (no 5xx), none
    fetches the series while the dead one's lease stands, one takes it over when it runs out,
    and upstream sees one request for it, not one per replica."""
    sim, redis_proc = sim_and_redis
    replicas: list[ProxyProcess] = []
    tag = "ES=F|5m|0"
    try:
        for _ in range(3):
            replicas.append(start_proxy(sim.base_url, redis_proc.url, tmp_path, **REPLICA_ENV))
        series = {"ES=F|5m|0", "ES=F|1d|0", "NQ=F|5m|0", "NQ=F|1d|0"}
        wait_for("first refreshes", lambda: refreshed_ok(replicas[0], series), 60, every=0.3)
        paths = ["/v8/finance/chart/ES=F?interval=5m&range=5d", "/v8/finance/chart/NQ=F?interval=5m&range=1d",
                 "/v8/finance/chart/ES=F?interval=1d&range=1y"]  # fmt: skip
        urls = [r.url + p for p in paths for r in replicas]
        client = redis.Redis.from_url(redis_proc.url)
        upstream_before = chart_total(sim)
        timeline = CounterTimeline(sim, "ES=F", "5m", max_s=120)
        traffic = Traffic(urls, clients=3, max_s=120, pause_s=0.02).start()
        try:
            time.sleep(1.0)
            sim.set_faults(hang_ratio=1.0, hang_s=60)
            owners: list[str] = []

            def held_through_a_hang() -> bool:
                # The same owner twice, 0.5 s apart: its fetch hangs (a good one takes ms).
                owners.append(lease_owner(client, tag) or "")
                return len(owners) > 1 and owners[-1] != "" and owners[-1] == owners[-2]

            wait_for("a replica holding the lease in a hung fetch", held_through_a_hang, 15, every=0.5)
            pid = int(owners[-1].split(":")[1])
            holder = next(r for r in replicas if r.proc.pid == pid)
            before_kill = timeline.count()
            os.kill(pid, signal.SIGKILL)  # dies holding the lease, in the middle of the fetch
            killed = time.monotonic()
            killed_wall = time.time()
            holder.proc.wait(10)
            sim.set_faults(hang_ratio=0.0)
            wait_for("the series taken over", lambda: timeline.first_above(before_kill, killed) is not None,
                     REPLICA_LEASE_TTL_S + 15, every=0.1)  # fmt: skip
            taken = timeline.first_above(before_kill, killed)
            assert taken is not None
            took_over_at = taken[0]
            time.sleep(3 * REPLICA_FRESH_S + 0.5)  # refreshes after the takeover, at their pace
            ended = time.monotonic()
            answers = traffic.stop()
        finally:
            traffic.stop()
            timeline.stop()
        owner_after = lease_owner(client, tag)
        info = orjson.loads(client.hget(series_key(tag), "info") or b"{}")
        upstream_total = chart_total(sim) - upstream_before
        stored = check_stored(redis_proc.url, sim)
    finally:
        for proxy in replicas:
            if proxy.proc.poll() is None:
                proxy.stop()

    survivors = [a for a in answers if not a.url.startswith(holder.url + "/")]
    on_dead = [a for a in answers if a.url.startswith(holder.url + "/")]
    survivors_tally = tally(survivors)
    assert set(survivors_tally.statuses) == {200}, survivors_tally  # no 5xx, no error of any kind
    # The dead replica: 200s until it died (one in flight may have been answered), then
    # connection errors only.
    dead_after = tally([a for a in on_dead if a.at + a.took_s >= killed])
    assert set(tally([a for a in on_dead if a.at + a.took_s < killed]).statuses) <= {200}
    assert set(dead_after.statuses) <= {0, 200} and dead_after.statuses.get(200, 0) <= 3, dead_after
    assert set(tally([a for a in on_dead if a.at >= killed]).statuses) <= {0}
    takeover_s = took_over_at - killed
    # The dead replica renewed its lease every third of its TTL: at least 2/3 of it was left.
    assert takeover_s >= REPLICA_LEASE_TTL_S * 2 / 3 - 0.3, takeover_s
    assert owner_after is None or f":{pid}:" not in owner_after
    assert float(info["fetched_at"]) > killed_wall  # refreshed again, by a survivor
    # Upstream: one request per refresh period however many replicas ask for it (each
    # replica's clients do), from the takeover on.
    in_first_period = timeline.at(took_over_at + REPLICA_FRESH_S - 0.3) - before_kill
    assert in_first_period == 1, in_first_period  # the takeover alone, no duplicate
    after_kill = timeline.at(ended) - before_kill
    assert after_kill <= 2 + math.ceil((ended - took_over_at) / REPLICA_FRESH_S), after_kill
    assert stored.intact, stored.problems

    harness.record_row(
        Row(
            scenario="replica-lost-mid-refresh",
            title="A replica SIGKILLed mid-refresh, holding the series' lease, under load",
            fault=(
                f"3 replicas on one Redis; the lease holder of {tag} SIGKILLed while its upstream "
                f"request hung (lease TTL {REPLICA_LEASE_TTL_S:.0f} s)"
            ),
            client_errors=(
                f"0 of {n(survivors_tally.total)} on the surviving replicas; {n(dead_after.unanswered)} "
                f"connection errors of {n(dead_after.total)} requests sent to the killed replica after "
                "its death"
            ),
            stale_answers=f"{n(tally(answers).stale)} of {n(len(answers))}",
            upstream_requests=(
                f"{after_kill} for {tag} from the kill to the end ({ended - killed:.1f} s): "
                f"0 while the dead lease stood, 1 takeover, then the {REPLICA_FRESH_S} s refresh "
                f"period's pace; {n(upstream_total)} chart requests in all"
            ),
            recovery_s=round(takeover_s, 2),
            data_intact=stored.intact,
            notes=(
                f"taken over {takeover_s:.1f} s after the kill; {stored.series} series, "
                f"{n(stored.bars)} bars compared with upstream"
            ),
            test=_TEST + "test_replica_lost_mid_refresh",
        )
    )
