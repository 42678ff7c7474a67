"""Coalesced background fetches: the seam between chart requests and upstream.

A chart request never downloads: it asks for a fetch here and (on a miss, when the
config says so) waits a bounded time on the shared future. Every request for the same
series joins one job, so 200 clients of a cold series cost Yahoo one request. Jobs
run on a bounded pool, most urgent first (misses, then stale refreshes, then
backfills). The background refresher of a later issue feeds the same queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import redis.exceptions
import structlog

from policies.errors import Category, UpstreamError
from proxy.hot import HotLayer
from proxy.ingest import ChartPayload
from proxy.intervals import DAY, Interval, lookup
from proxy.quality import QualityGate, Verdict
from proxy.series import Series, SeriesKey
from proxy.store import SeriesStore
from proxy.tasks import cancel_all
from proxy.upstream import UpstreamClient

log = structlog.get_logger("yfproxy.fetcher")

# Keep a margin inside Yahoo's limits so a request built a moment ago is not refused.
LIMIT_MARGIN_S = 600  # public: proxy.schedule clamps windows the same way
# A first fetch asks for the widest window Yahoo allows; trimming its oldest hour is
# cheaper than spending a second request on it.
_TRIM_S = 3600


class FetchKind(enum.IntEnum):
    MISS = 0
    STALE = 1
    BACKFILL = 2


@dataclass(slots=True)
class FetchJob:
    key: SeriesKey
    start: int
    kind: FetchKind
    future: asyncio.Future[Series]
    joined: int = 0  # requests that joined this job after it was created
    end: int | None = None  # None: up to now (a refresh); a time: a backfill of [start, end)
    asked_at: float = 0.0  # clock time the job was created


# "Only one replica refreshes a series": given a series, an async context manager that
# yields True when this process may fetch it now (proxy.lease.held), False when another
# replica is already at it.
LeaseFactory = Callable[[SeriesKey], AbstractAsyncContextManager[bool]]


@dataclass(slots=True)
class FetchStats:
    submitted: int = 0
    coalesced: int = 0
    completed: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0  # batches the quality gate refused
    leased_elsewhere: int = 0  # refreshes skipped: another replica held the series' lease
    redis_errors: int = 0  # fetches that failed on Redis (load, merge, lease), for /metrics


class NegativeCache:
    """Upstream 404s remembered for a while, in Redis (shared) and in memory (fast)."""

    def __init__(self, store: SeriesStore, ttl_s: int, clock: Callable[[], float]) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._local: dict[str, float] = {}

    def _key(self, symbol: str) -> str:
        return f"{self._store.prefix}:neg:{{{symbol}}}"

    async def remember(self, symbol: str) -> None:
        self._local[symbol] = self._clock() + self._ttl_s
        await self._store.redis.set(self._key(symbol), b"1", ex=self._ttl_s)

    def known_locally(self, symbol: str) -> bool:
        until = self._local.get(symbol)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._local[symbol]
        return False

    async def is_known_missing(self, symbol: str) -> bool:
        if self.known_locally(symbol):
            return True
        ttl = await self._store.redis.ttl(self._key(symbol))
        if ttl is not None and ttl > 0:
            self._local[symbol] = self._clock() + ttl
            return True
        return False


class FetchCoordinator:
    def __init__(
        self,
        upstream: UpstreamClient,
        store: SeriesStore,
        hot: HotLayer,
        negative: NegativeCache,
        *,
        workers: int,
        clock: Callable[[], float] = time.time,
        quality: QualityGate | None = None,
        lease: LeaseFactory | None = None,
    ) -> None:
        self._upstream = upstream
        self._quality = quality
        self._lease = lease
        self._store = store
        self._hot = hot
        self._negative = negative
        self._clock = clock
        self._queue: asyncio.PriorityQueue[tuple[int, int, FetchJob]] = asyncio.PriorityQueue()
        self._pending: dict[SeriesKey, FetchJob] = {}
        self._running: dict[SeriesKey, FetchJob] = {}
        self._order = itertools.count()
        self._tasks = [asyncio.create_task(self._worker(), name=f"fetch-worker-{i}") for i in range(workers)]
        self.stats = FetchStats()

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def queue_by_kind(self) -> dict[str, int]:
        """Queued fetches by kind (miss, stale = fresh data, backfill), for /status."""
        out = {kind.name.lower(): 0 for kind in FetchKind}
        for job in self._pending.values():
            out[job.kind.name.lower()] += 1
        return out

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def miss_in_progress(self, key: SeriesKey) -> bool:
        """True while a first fetch of ``key`` is queued or running: join it, skip Redis."""
        job = self._pending.get(key) or self._running.get(key)
        return job is not None and job.kind is FetchKind.MISS

    def submit(
        self, key: SeriesKey, start: int, kind: FetchKind, *, end: int | None = None
    ) -> tuple[asyncio.Future[Series], bool]:
        """The future of the fetch that will cover ``[start, end)`` (``end`` None: up to now);
        True when it joined a fetch already queued or running."""
        self.stats.submitted += 1
        running = self._running.get(key)
        if running is not None and running.start <= start and _covers(running.end, end):
            self.stats.coalesced += 1
            running.joined += 1
            return running.future, True
        pending = self._pending.get(key)
        if pending is not None:
            self.stats.coalesced += 1
            pending.joined += 1
            pending.start = min(pending.start, start)
            pending.end = None if pending.end is None or end is None else max(pending.end, end)
            if kind < pending.kind:
                pending.kind = kind
                self._queue.put_nowait((int(kind), next(self._order), pending))
            return pending.future, True
        job = FetchJob(
            key, start, kind, asyncio.get_running_loop().create_future(), end=end, asked_at=self._clock()
        )
        # Nobody may be waiting (reject mode, stale refresh): never warn about an unread error.
        job.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending[key] = job
        self._queue.put_nowait((int(kind), next(self._order), job))
        return job.future, False

    async def close(self) -> None:
        await cancel_all(self._tasks)  # re-cancels: redis-py can swallow a cancellation
        for job in [*self._pending.values(), *self._running.values()]:
            if not job.future.done():
                job.future.cancel()

    async def _worker(self) -> None:
        while True:
            _prio, _n, job = await self._queue.get()
            if self._pending.get(job.key) is not job:
                continue  # a duplicate queue entry of a job already taken
            if job.key in self._running:
                # One fetch per series at a time: retry this one when the running one ends.
                self._running[job.key].future.add_done_callback(
                    lambda _f, j=job: self._queue.put_nowait((int(j.kind), next(self._order), j))
                )
                continue
            del self._pending[job.key]
            self._running[job.key] = job
            try:
                series = await self._run(job)
            except UpstreamError as exc:
                self.stats.failed[exc.category.value] = self.stats.failed.get(exc.category.value, 0) + 1
                log.warning("fetch_failed", series=str(job.key), category=exc.category.value, detail=str(exc))
                if exc.category is Category.NOT_FOUND and exc.context.attempt > 0:
                    await self._remember_missing(job.key.symbol)
                job.future.set_exception(exc)
            except asyncio.CancelledError:
                job.future.cancel()
                raise
            except Exception as exc:  # a bug or Redis down: fail the waiters, keep the worker
                self.stats.redis_errors += isinstance(exc, redis.exceptions.RedisError)
                log.exception("fetch_crashed", series=str(job.key))
                job.future.set_exception(exc)
            else:
                self.stats.completed += 1
                job.future.set_result(series)
            finally:
                self._running.pop(job.key, None)

    async def _remember_missing(self, symbol: str) -> None:
        with contextlib.suppress(Exception):
            await self._negative.remember(symbol)

    async def _run(self, job: FetchJob) -> Series:
        if job.kind is FetchKind.MISS and await self._negative.is_known_missing(job.key.symbol):
            raise UpstreamError(Category.NOT_FOUND, "remembered as not found (negative cache)")
        if self._lease is None or job.kind is FetchKind.MISS:
            # A first fetch is not leased: a client waits on it, and a duplicate across
            # replicas happens once per series, not on every refresh.
            return await self._fetch(job)
        async with self._lease(job.key) as mine:
            if mine:
                if job.kind is FetchKind.STALE:
                    # Refreshed since this job was asked for (another replica held the lease
                    # meanwhile, or a job queued behind ours): what is stored is the answer.
                    (state,) = await self._store.peek_many([job.key])
                    if state is not None and state.fetched_at >= job.asked_at:
                        stored = await self._store.load(job.key)
                        if stored is not None:
                            return stored
                return await self._fetch(job)
        # Another replica is refreshing this series; its write reaches every hot layer
        # through the invalidation channel. Answer with what is stored now.
        self.stats.leased_elsewhere += 1
        stored = await self._store.load(job.key)
        if stored is None:
            raise UpstreamError(Category.BUDGET_EXHAUSTED, "another replica is fetching this series")
        return stored

    async def _fetch(self, job: FetchJob) -> Series:
        interval = lookup(job.key.interval)
        assert interval is not None, job.key
        now = int(self._clock())
        # period2 is exclusive: up to now + 1 includes the live bar stamped at or before now.
        end = now + 1 if job.end is None else min(job.end, now + 1)
        series: Series | None = None
        for chunk_start, chunk_end in fetch_chunks(interval, job.start, end, now):
            try:
                payload = await self._upstream.fetch_chart(job.key, chunk_start, chunk_end)
            except UpstreamError:
                if series is None:
                    raise
                break  # keep what the newer chunks brought; coverage says what is missing
            series = await self._store_batch(job.key, payload, (chunk_start, chunk_end))
            self._hot.put(series)
        assert series is not None
        log.info("fetched", series=str(job.key), kind=job.kind.name.lower(), bars=len(series.bars))
        return series

    async def _store_batch(self, key: SeriesKey, payload: ChartPayload, window: tuple[int, int]) -> Series:
        """Merge one upstream answer through the quality gate (proxy.quality)."""
        gate = self._quality
        if gate is None:
            return await self._store.merge(
                key, payload, window_start=window[0], window_end=window[1], fetched_at=self._clock()
            )
        verdicts: list[Verdict] = []

        def admit(current: Series | None, answer: ChartPayload) -> ChartPayload | None:
            admitted, verdict = gate.judge(key, current, answer, window)
            verdicts.append(verdict)
            return admitted

        series = await self._store.merge(
            key, payload, window_start=window[0], window_end=window[1], fetched_at=self._clock(),
            gate=admit, annotate=gate.annotate,
        )  # fmt: skip
        verdict = verdicts[-1] if verdicts else None
        if verdict is not None and not verdict.admitted:
            self.stats.quarantined += 1
        else:
            await gate.record(series)
        if verdict is not None and verdict.reason:
            # Refused batches, and admitted ones whose bad bars were replaced by stored
            # ones, are kept for inspection either way.
            await gate.quarantine(key, verdict, window, payload.bars)
        return series


def _covers(running_end: int | None, wanted_end: int | None) -> bool:
    return running_end is None or (wanted_end is not None and running_end >= wanted_end)


def fetch_chunks(interval: Interval, start: int, end: int, now: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` into windows Yahoo answers, newest first."""
    if interval.lookback_days is not None:
        start = max(start, now - interval.lookback_days * DAY + LIMIT_MARGIN_S)
    start = min(start, end - 1)
    if interval.per_request_days is None:
        return [(start, end)]
    width = interval.per_request_days * DAY - LIMIT_MARGIN_S
    if end - start - width <= _TRIM_S:
        start = max(start, end - width)
    chunks = []
    hi = end
    while hi > start:
        lo = max(start, hi - width)
        chunks.append((lo, hi))
        hi = lo
    return chunks
