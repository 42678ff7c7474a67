"""ActivityRecorder: which series clients ask for, counted in process and flushed in batches.

Why: the chart hot path must never wait on Redis for bookkeeping. ``note`` and ``bump``
are plain dict updates; ``flush`` hands everything gathered since the last flush to the
registry in one call (one pipeline there), and ``run`` does that every few seconds.
The buffer is bounded: once ``max_keys`` distinct series are waiting, requests for
further series are only counted in ``dropped`` (a flood of distinct bad symbols must
not grow memory). Counts are delivered at least once: a failed flush puts them back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog
from redis.exceptions import RedisError

from proxy.series import SeriesKey
from proxy.tasks import cancel_requested

log = structlog.get_logger("yfproxy.activity")

MAX_KEYS = 10_000


class ActivitySink(Protocol):
    """What the recorder flushes into (proxy.registry.TrackedRegistry)."""

    async def record_activity(
        self, counts: Mapping[SeriesKey, tuple[int, float]], bumps: Iterable[SeriesKey]
    ) -> None: ...


@dataclass(slots=True)
class _Pending:
    count: int
    last: float


class ActivityRecorder:
    def __init__(self, *, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.dropped = 0  # notes and bumps refused because the buffer was full, since start
        self._reported_dropped = 0
        self._counts: dict[SeriesKey, _Pending] = {}
        self._bumps: dict[SeriesKey, float] = {}  # series -> earliest bump time

    def note(self, key: SeriesKey, now: float) -> None:
        """Count one client request for ``key`` (no I/O)."""
        pending = self._counts.get(key)
        if pending is not None:
            pending.count += 1
            if now > pending.last:
                pending.last = now
        elif len(self._counts) < self.max_keys:
            self._counts[key] = _Pending(1, now)
        else:
            self.dropped += 1

    def bump(self, key: SeriesKey, now: float) -> None:
        """Ask for ``key`` to be refreshed first (a stale hit or a miss); no I/O."""
        earlier = self._bumps.get(key)
        if earlier is not None:
            self._bumps[key] = min(earlier, now)
        elif len(self._bumps) < self.max_keys:
            self._bumps[key] = now
        else:
            self.dropped += 1

    def forget(self, key: SeriesKey) -> None:
        """Drop what was gathered for ``key``: a symbol upstream does not know must not be
        entered in the refresher's registry (no I/O)."""
        self._counts.pop(key, None)
        self._bumps.pop(key, None)

    @property
    def pending(self) -> int:
        """Distinct series waiting for the next flush (counted and bumped)."""
        return len(self._counts.keys() | self._bumps.keys())

    async def flush(self, registry: ActivitySink) -> int:
        """Hand everything gathered so far to ``registry`` in one call; returns the series handed.

        Nothing gathered: no call. If the call fails (or is cancelled) the batch goes back
        into the buffer, merged with what arrived meanwhile, and the error propagates.
        """
        if not self._counts and not self._bumps:
            return 0
        counts, bumps = self._counts, self._bumps
        # Swap before awaiting: requests noted during the call belong to the next flush.
        self._counts, self._bumps = {}, {}
        try:
            await registry.record_activity({k: (p.count, p.last) for k, p in counts.items()}, bumps)
        except BaseException:
            self._restore(counts, bumps)
            raise
        return len(counts.keys() | bumps.keys())

    async def run(self, registry: ActivitySink, every_s: float, *, final_flush_limit_s: float = 5.0) -> None:
        """Flush every ``every_s`` seconds until cancelled, then once more (bounded by
        ``final_flush_limit_s``). Redis errors are logged, never raised."""
        try:
            while True:
                await asyncio.sleep(every_s)
                await self._flush_logged(registry)
                if cancel_requested():  # swallowed inside a redis command: stop anyway
                    raise asyncio.CancelledError
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(self._flush_logged(registry), final_flush_limit_s)
            except TimeoutError:
                log.warning("activity flush on shutdown timed out", pending=self.pending)
            raise

    async def _flush_logged(self, registry: ActivitySink) -> None:
        try:
            await self.flush(registry)
        except (RedisError, OSError) as exc:
            log.warning("activity flush failed; kept for the next one", error=repr(exc), pending=self.pending)
        if self.dropped > self._reported_dropped:
            log.warning(
                "activity buffer full; requests not recorded",
                dropped=self.dropped - self._reported_dropped,
                max_keys=self.max_keys,
            )
            self._reported_dropped = self.dropped

    def _restore(self, counts: dict[SeriesKey, _Pending], bumps: dict[SeriesKey, float]) -> None:
        for key, old in counts.items():
            pending = self._counts.get(key)
            if pending is not None:
                pending.count += old.count
                pending.last = max(pending.last, old.last)
            elif len(self._counts) < self.max_keys:
                self._counts[key] = old
            else:
                self.dropped += old.count
        for key, at in bumps.items():
            if key in self._bumps:
                self._bumps[key] = min(self._bumps[key], at)
            elif len(self._bumps) < self.max_keys:
                self._bumps[key] = at
            else:
                self.dropped += 1
