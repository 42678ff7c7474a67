"""Sliding-window statistics for /status: outcome counts and latency percentiles.

Pure bookkeeping, no I/O; the clock is injectable so tests can move time by hand.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable

Clock = Callable[[], float]

DEFAULT_OUTCOMES = ("success", "rate_limited", "error")


class SlidingWindow:
    """Counts of events by outcome over the last ``window_s`` seconds.

    Events fall into per-second buckets kept in a ring of ``window_s`` slots, with running
    totals beside it: adding is O(1), and expiring costs one step per elapsed second (at
    most ``window_s``), so the cost per event is O(1) amortised and ``snapshot`` is
    O(outcomes). The window is "this second and the ``window_s - 1`` before it".
    """

    def __init__(
        self,
        window_s: int = 60,
        *,
        clock: Clock = time.monotonic,
        outcomes: Iterable[str] = DEFAULT_OUTCOMES,
    ) -> None:
        if isinstance(window_s, bool) or not isinstance(window_s, int) or window_s < 1:
            raise ValueError(f"window_s must be a whole number of seconds >= 1, got {window_s!r}")
        self.window_s = window_s
        self._clock = clock
        self._outcomes = tuple(outcomes)
        self._buckets: list[dict[str, int]] = [{} for _ in range(window_s)]
        self._totals: dict[str, int] = {}
        self._head = math.floor(clock())  # the newest second the ring holds

    def add(self, outcome: str, count: int = 1) -> None:
        self._advance()
        bucket = self._buckets[self._head % self.window_s]
        bucket[outcome] = bucket.get(outcome, 0) + count
        self._totals[outcome] = self._totals.get(outcome, 0) + count

    def snapshot(self) -> dict[str, int]:
        """Counts per outcome in the window; declared outcomes appear even at 0."""
        self._advance()
        counts = dict.fromkeys(self._outcomes, 0)
        counts.update((name, n) for name, n in self._totals.items() if n)
        return counts

    def _advance(self) -> None:
        # A clock that steps back is treated as standing still: counts are never lost early.
        second = max(math.floor(self._clock()), self._head)
        steps = second - self._head
        if steps >= self.window_s:
            for bucket in self._buckets:
                bucket.clear()
            self._totals.clear()
        else:
            for s in range(self._head + 1, second + 1):
                self._expire(self._buckets[s % self.window_s])
        self._head = second

    def _expire(self, bucket: dict[str, int]) -> None:
        for name, n in bucket.items():
            self._totals[name] -= n
        bucket.clear()


class LatencyWindow:
    """The most recent ``size`` latencies, with nearest-rank percentiles."""

    def __init__(self, size: int = 1024) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a whole number >= 1, got {size!r}")
        self._samples: deque[float] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, latency: float) -> None:
        self._samples.append(latency)

    def percentiles(self, points: Iterable[float] = (50, 90, 99)) -> dict[str, float]:
        """``{"p50": ..., "p90": ..., "p99": ...}``; empty when nothing was recorded yet.

        Nearest rank (the smallest sample with at least p% of samples at or below it), so
        every answer is a latency that was actually observed.
        """
        points = tuple(points)
        for p in points:
            if not 0 < p <= 100:
                raise ValueError(f"percentile must be in (0, 100], got {p!r}")
        if not self._samples:
            return {}
        ordered = sorted(self._samples)
        n = len(ordered)
        return {f"p{p:g}": ordered[max(1, math.ceil(p / 100 * n)) - 1] for p in points}
