"""The background refresher: the component that keeps every tracked series fresh.

Each cycle it asks the registry (proxy.registry, shared by all replicas) which series are
due, groups them by instrument, and refreshes up to ``max_concurrent_instruments``
instruments at once, each one's due intervals in sequence (one instrument's 1m, 5m, 1h
... are fetched back to back: the timeframe-aware batch), within ``batch_timeout_s``.

A refresh asks only for the tail since the last stored bar (proxy.schedule.tail_window)
through the fetcher, which runs it through the policies, the quality gate and the store,
and holds the series' lease so that one replica fetches it (proxy.lease). The next due
time comes from the tier, the interval and the trading calendar (proxy.schedule.next_due);
a failure backs off. Gaps the validators found in the stored series become backfill
fetches, queued behind fresh-data work (the fetcher's queue orders by kind).

Chart requests never wait on any of this, except the bounded first-time wait of
``on_miss = "wait"``, which the service handles.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions
import structlog

from policies.errors import Category, UpstreamError
from proxy.fetcher import FetchCoordinator, FetchKind
from proxy.intervals import DAY, lookup
from proxy.registry import Tracked, TrackedRegistry
from proxy.schedule import ScheduleSettings, backfill_windows, next_due, refresh_period, tail_window
from proxy.series import Series, SeriesKey
from proxy.store import SeriesStore
from proxy.tasks import cancel_all, cancel_requested
from validators.calendars import calendar_for

log = structlog.get_logger("yfproxy.refresher")

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class RefresherSettings:
    active: tuple[str, ...] = ()
    dormant: tuple[str, ...] = ()
    intervals: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d")
    max_concurrent_instruments: int = 3
    batch_timeout_s: float = 60.0
    # A series a client asked for within this long is refreshed on the priority period.
    priority_window_s: float = 600.0
    dormant_after_s: float = 3600.0  # unasked requested series drop to the dormant period
    idle_untrack_s: float = 86400.0  # ... and stop being tracked after this
    warm_on_start: bool = True
    poll_s: float = 1.0  # how often the registry is asked what is due
    expire_every_s: float = 60.0
    failure_backoff_s: float = 30.0  # first retry after a failed refresh; doubles per failure
    # One window per refresh: the fetcher keeps one pending job per series and would merge
    # several windows into one wide fetch; the next refreshes take the next windows.
    max_backfills_per_refresh: int = 1
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    initial_depth_days: Callable[[str], int] = lambda _interval: 30


@dataclass(slots=True)
class RefresherStats:
    cycles: int = 0
    refreshes: int = 0
    failures: int = 0
    backfills_queued: int = 0
    batches_timed_out: int = 0
    last_cycle_at: float | None = None
    last_error: str | None = None
    redis_errors: int = 0  # Redis failures that paused a cycle, a start or a batch (/metrics)
    outcomes: Counter[str] = field(default_factory=Counter)


class Refresher:
    def __init__(
        self,
        registry: TrackedRegistry,
        store: SeriesStore,
        fetcher: FetchCoordinator,
        settings: RefresherSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._store = store
        self._fetcher = fetcher
        self.settings = settings  # replaced whole by a runtime configuration update
        self._clock = clock
        self._busy: dict[str, asyncio.Task[None]] = {}  # symbol -> its running batch
        self._finished: dict[str, float] = {}  # symbol -> loop time its last batch ended
        self._last_expire = 0.0
        self._running = False
        self.stats = RefresherStats()
        # How late the schedule runs, as of the last cycle (None before one): kept here so
        # /metrics reads it without a registry round trip.
        self.last_lag_s: float | None = None
        self.last_lag_periods: float | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def instruments_in_flight(self) -> list[str]:
        return sorted(self._busy)

    # -- the loop

    async def run(self) -> None:
        """Refresh until cancelled; Redis outages pause it, they never end it."""
        self._running = True
        try:
            await self._until_ready(self._start)
            resync = False
            while True:
                try:
                    if resync:
                        # Redis may have come back empty (no persistence, a failover): track
                        # the configured series again, and fetch what is missing.
                        await self._start()
                        resync = False
                    await self.cycle()
                except _REDIS_DOWN as exc:
                    resync = True
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    self.stats.redis_errors += 1
                    log.warning("refresher.redis_unavailable", error=self.stats.last_error)
                    await asyncio.sleep(max(self.settings.poll_s, 1.0))
                    continue
                await asyncio.sleep(self.settings.poll_s)
                if cancel_requested():  # swallowed inside a redis command: stop anyway
                    raise asyncio.CancelledError
        finally:
            self._running = False
            await cancel_all(list(self._busy.values()))

    async def _until_ready(self, step: Callable[[], Any]) -> None:
        delay = 0.5
        while True:
            try:
                await step()
                return
            except _REDIS_DOWN as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self.stats.redis_errors += 1
                log.warning("refresher.start_delayed", error=self.stats.last_error, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _start(self) -> None:
        s = self.settings
        added, demoted = await self._registry.sync_configured(s.active, s.dormant, s.intervals)
        log.info("refresher.started", configured_added=added, demoted=demoted, warm=s.warm_on_start)
        if s.warm_on_start:
            await self.warm()

    async def warm(self) -> int:
        """Make every configured active series that is missing or stale due now.

        One pipelined read of every tracked series' stored state, not a round trip each;
        the cycle then fetches them, the most overdue first.
        """
        now = self._clock()
        tracked = [t for t in await self._registry.all() if t.configured and t.tier == "active"]
        states = await self._store.peek_many([t.key for t in tracked])
        due_now = 0
        for item, state in zip(tracked, states, strict=True):
            fresh_until = None if state is None else state.fetched_at + self._period(item, now)
            if fresh_until is None or fresh_until <= now:
                await self._registry.reschedule(item.key, now)
                due_now += 1
        log.info("refresher.warm", tracked=len(tracked), due_now=due_now)
        return due_now

    async def cycle(self) -> int:
        """One look at the registry: start the batches that are due; returns how many."""
        s = self.settings
        now = self._clock()
        self.stats.cycles += 1
        self.stats.last_cycle_at = now
        if now - self._last_expire >= s.expire_every_s:
            self._last_expire = now
            await self._registry.expire_idle(
                now, dormant_after_s=s.dormant_after_s, idle_untrack_s=s.idle_untrack_s
            )
        free = s.max_concurrent_instruments - len(self._busy)
        if free <= 0:
            # Every slot busy is when the lag grows: still measure it, with one small read.
            self._note_lag(await self._registry.due(now, limit=1), now)
            return 0
        asked = asyncio.get_running_loop().time()
        due = await self._registry.due(now, limit=max(32, 8 * s.max_concurrent_instruments))
        self._note_lag(due, now)
        batches: dict[str, list[Tracked]] = {}
        for item in due:  # most overdue first: the batch order follows it
            symbol = item.key.symbol
            # A batch that ended while the registry was being read may have refreshed
            # these very series: the answer predates its results, so wait for the next look.
            if symbol not in self._busy and self._finished.get(symbol, -1.0) < asked:
                batches.setdefault(symbol, []).append(item)
        started = 0
        for symbol, items in list(batches.items())[:free]:
            task = asyncio.create_task(self._batch(symbol, items), name=f"refresh:{symbol}")
            self._busy[symbol] = task
            task.add_done_callback(lambda _t, sym=symbol: self._batch_done(sym))
            started += 1
        return started

    def _note_lag(self, due: Sequence[Tracked], now: float) -> None:
        """Seconds the most overdue series is late, and the most refresh periods any of
        ``due`` (the most overdue few) is late: one number an alert can hold against every
        interval's own period."""
        self.last_lag_s = max(0.0, now - due[0].next_due) if due else 0.0
        late = ((now - t.next_due) / max(self._period(t, now), 1.0) for t in due)
        self.last_lag_periods = max(late, default=0.0)

    def _batch_done(self, symbol: str) -> None:
        self._busy.pop(symbol, None)
        self._finished[symbol] = asyncio.get_running_loop().time()

    async def _batch(self, symbol: str, items: Sequence[Tracked]) -> None:
        # Shorter bars first: they go stale first, and a timeout should cost the slow ones.
        ordered = sorted(items, key=lambda t: _bar_seconds(t.key.interval))
        done = 0
        try:
            async with asyncio.timeout(self.settings.batch_timeout_s):
                for item in ordered:
                    await self.refresh(item)
                    done += 1
        except TimeoutError:
            self.stats.batches_timed_out += 1
            log.warning("refresher.batch_timeout", symbol=symbol, done=done, left=len(ordered) - done)
            # What is left stays due: the next cycle picks it up.
        except _REDIS_DOWN as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self.stats.redis_errors += 1
            log.warning("refresher.batch_redis_unavailable", symbol=symbol, error=self.stats.last_error)
        except Exception:  # a bug must not stop the other instruments' refreshes
            log.exception("refresher.batch_crashed", symbol=symbol)

    # -- one series

    async def refresh(self, item: Tracked) -> str:
        """Refresh one tracked series; returns the outcome recorded in the registry."""
        key = item.key
        now = self._clock()
        stored = await self._store.load(key)
        if stored is not None and stored.fetched_at >= item.next_due:
            # Fetched since it became due (a client's stale hit refreshed it, on any replica):
            # nothing to fetch, only the next due time to set.
            await self._registry.set_result(
                key, outcome="unchanged", category=None, refreshed_at=stored.fetched_at,
                next_due=self._next_due(item, stored, now),
            )  # fmt: skip
            return "unchanged"
        start = self.start_of(key, stored, int(now))
        future, _ = self._fetcher.submit(key, start, FetchKind.MISS if stored is None else FetchKind.STALE)
        try:
            series = await asyncio.shield(future)
        except UpstreamError as exc:
            if exc.category is Category.NOT_FOUND and stored is None and not item.configured:
                # A client asked for a symbol Yahoo does not know: nothing to keep fresh.
                await self._registry.untrack(key)
                self.stats.outcomes["untracked"] += 1
                log.info("refresher.untracked_unknown", series=str(key))
                return "untracked"
            return await self._failed(item, exc, now)
        outcome = "unchanged" if stored is not None and series.version == stored.version else "ok"
        self.stats.refreshes += 1
        self.stats.outcomes[outcome] += 1
        await self._registry.set_result(
            key,
            outcome=outcome,
            category=None,
            refreshed_at=now,
            next_due=self._next_due(item, series, self._clock()),
        )
        self._queue_backfills(series)
        return outcome

    def start_of(self, key: SeriesKey, stored: Series | None, now: int) -> int:
        """Where a refresh of ``key`` starts: the tail of what is stored, or its full depth."""
        if stored is None or stored.coverage_end == 0:
            return now - self.settings.initial_depth_days(key.interval) * DAY
        last_bar = int(stored.bars.ts[-1]) if len(stored.bars) else None
        return tail_window(stored.coverage_end, last_bar, key.interval, now)[0]

    async def _failed(self, item: Tracked, exc: UpstreamError, now: float) -> str:
        self.stats.failures += 1
        outcome = "failed"
        self.stats.outcomes[outcome] += 1
        # Back off per series: 30 s, 1, 2, 4 ... min, never longer than its dormant period.
        backoff = min(
            self.settings.failure_backoff_s * 2 ** min(item.fails_in_a_row, 10),
            max(self.settings.schedule.dormant_every_s, self.settings.failure_backoff_s),
        )
        if exc.retry_after:
            backoff = max(backoff, exc.retry_after)
        await self._registry.set_result(
            item.key,
            outcome=outcome,
            category=exc.category.value,
            refreshed_at=now,
            next_due=now + backoff,
            error=str(exc)[:200],
        )
        log.info(
            "refresher.failed",
            series=str(item.key),
            category=exc.category.value,
            fails_in_a_row=item.fails_in_a_row + 1,
            retry_in_s=round(backoff, 1),
        )
        return outcome

    def _tier(self, item: Tracked, now: float) -> str:
        if item.last_request is not None and now - item.last_request <= self.settings.priority_window_s:
            return "priority"
        return "dormant" if item.tier == "dormant" else "active"

    def _period(self, item: Tracked, now: float) -> float:
        return refresh_period(self._tier(item, now), item.key.interval, self.settings.schedule)

    def _next_due(self, item: Tracked, series: Series, now: float) -> float:
        last_bar = int(series.bars.ts[-1]) if len(series.bars) else None
        return next_due(
            now,
            tier=self._tier(item, now),
            interval=item.key.interval,
            calendar=calendar_for(item.key.symbol, series.meta),
            last_bar=last_bar,
            settings=self.settings.schedule,
            prepost=item.key.prepost,
            coverage_end=series.coverage_end,
        )

    def _queue_backfills(self, series: Series) -> None:
        """Gaps the validators found become backfill fetches behind the fresh-data work."""
        interval = lookup(series.key.interval)
        if interval is None:
            return
        gaps = [
            (int(issue["start"]), int(issue["end"]) + interval.seconds)
            for issue in series.quality_issues
            if issue.get("code") in ("time.gap", "time.missing_last_session")
            and issue.get("start") is not None
            and issue.get("end") is not None
        ]
        if not gaps:
            return
        windows = backfill_windows(gaps, series.key.interval, int(self._clock()))
        for start, end in windows[: self.settings.max_backfills_per_refresh]:
            self._fetcher.submit(series.key, start, FetchKind.BACKFILL, end=end)
            self.stats.backfills_queued += 1

    # -- /status

    async def status(self, limit: int = 200) -> dict[str, Any]:
        now = self._clock()
        tracked = await self._registry.all()
        tracked.sort(key=lambda t: t.next_due)
        overdue = [t for t in tracked if t.next_due <= now]
        return {
            "running": self._running,
            "queue": self._fetcher.queue_by_kind(),
            "in_flight": self._fetcher.in_flight,
            "instruments_in_flight": self.instruments_in_flight,
            "tracked": len(tracked),
            "due_now": len(overdue),
            "max_lag_s": round(now - overdue[0].next_due, 1) if overdue else 0.0,
            "cycles": self.stats.cycles,
            "refreshes": self.stats.refreshes,
            "failures": self.stats.failures,
            "outcomes": dict(self.stats.outcomes),
            "backfills_queued": self.stats.backfills_queued,
            "batches_timed_out": self.stats.batches_timed_out,
            "last_error": self.stats.last_error,
            "series": [_row(t, now) for t in tracked[:limit]],
        }


def _row(t: Tracked, now: float) -> dict[str, Any]:
    return {
        "series": t.key.tag,
        "tier": t.tier,
        "configured": t.configured,
        "last_refresh": t.last_refresh,
        "age_s": None if t.last_refresh is None else round(now - t.last_refresh, 1),
        "next_due": t.next_due,
        "due_in_s": round(t.next_due - now, 1),
        "last_outcome": t.last_outcome,
        "last_category": t.last_category,
        "fails_in_a_row": t.fails_in_a_row,
        "request_rate_per_min": round(t.rate_now(now), 3),
    }


def _bar_seconds(interval: str) -> int:
    found = lookup(interval)
    return found.seconds if found is not None else DAY
