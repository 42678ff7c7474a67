"""Timeout escalation: a ladder of (connect, read) timeouts per request type.

Each request type ("chart", "passthrough", ...) starts on the lowest, shortest level so a
healthy Yahoo costs little when it stalls. A timeout climbs one level (bounded at the
top), because a slow-but-alive Yahoo needs longer timeouts rather than more attempts; a
run of ``decay_after`` consecutive successes steps one level back down. Pure: the state
is counts, so no clock is needed.

Deadline decision: ``deadline(kind, attempts, backoff_s)`` is the worst case of one
request with its retries. Every retry after a timeout runs one level higher, so it sums
connect + read of the levels from the current one upward (repeating the top level), adds
the retry backoff allowance (``RetrySettings.backoff_allowance()``), and is capped by
``total_cap_s`` when configured, so an operator can bound what a caller ever waits.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Level = tuple[float, float]  # (connect_s, read_s)


def default_levels(connect_s: float = 2.0, read_s: float = 3.0, steps: int = 3) -> tuple[Level, ...]:
    """Doubling ladder from a base: connect 2 -> 4 -> 8 s, read 3 -> 6 -> 12 s."""
    if steps < 1:
        raise ValueError(f"[timeouts] steps must be >= 1, got {steps!r}")
    return tuple((connect_s * 2**n, read_s * 2**n) for n in range(steps))


def _validated(kind: str, levels: Sequence[Sequence[float]]) -> tuple[Level, ...]:
    ladder = tuple((float(c), float(r)) for c, r in levels)
    if not ladder:
        raise ValueError(f"[timeouts] ladder for {kind!r} must have at least one level")
    if any(c <= 0 or r <= 0 for c, r in ladder):
        raise ValueError(f"[timeouts] ladder for {kind!r} must hold positive seconds, got {ladder!r}")
    # A ladder that gets shorter as it climbs would make escalation pointless.
    if any(b[0] < a[0] or b[1] < a[1] for a, b in itertools.pairwise(ladder)):
        raise ValueError(f"[timeouts] ladder for {kind!r} must not decrease, got {ladder!r}")
    return ladder


@dataclass(slots=True)
class _Rung:
    levels: tuple[Level, ...]
    level: int = 0
    streak: int = 0  # consecutive successes at this level


class TimeoutLadder:
    def __init__(
        self,
        levels: Sequence[Sequence[float]] | None = None,
        *,
        per_kind: Mapping[str, Sequence[Sequence[float]]] | None = None,
        decay_after: int = 5,
        total_cap_s: float | None = None,
    ) -> None:
        if decay_after < 1:
            raise ValueError(f"[timeouts] decay_after must be >= 1, got {decay_after!r}")
        if total_cap_s is not None and total_cap_s <= 0:
            raise ValueError(f"[timeouts] total_s must be > 0, got {total_cap_s!r}")
        self._default = _validated("default", levels) if levels is not None else default_levels()
        self._per_kind = {kind: _validated(kind, lv) for kind, lv in (per_kind or {}).items()}
        self.decay_after = decay_after
        self.total_cap_s = total_cap_s
        self._rungs: dict[str, _Rung] = {kind: _Rung(lv) for kind, lv in self._per_kind.items()}

    def current(self, kind: str) -> tuple[float, float, int]:
        """(connect_s, read_s, level) to use for the next request of this kind."""
        rung = self._rung(kind)
        connect_s, read_s = rung.levels[rung.level]
        return connect_s, read_s, rung.level

    def on_timeout(self, kind: str) -> int:
        """A connect or read timeout: climb one level (bounded); returns the new level."""
        rung = self._rung(kind)
        rung.level = min(rung.level + 1, len(rung.levels) - 1)
        rung.streak = 0
        return rung.level

    def on_success(self, kind: str) -> int:
        """An answer in time: after ``decay_after`` in a row, step one level down."""
        rung = self._rung(kind)
        rung.streak += 1
        if rung.streak >= self.decay_after and rung.level > 0:
            rung.level -= 1
            rung.streak = 0
        return rung.level

    def deadline(self, kind: str, attempts: int, backoff_s: float = 0.0) -> float:
        """Worst-case seconds for a request of ``attempts`` attempts (retries included)."""
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts!r}")
        rung = self._rung(kind)
        top = len(rung.levels) - 1
        total = backoff_s + sum(sum(rung.levels[min(rung.level + n, top)]) for n in range(attempts))
        return total if self.total_cap_s is None else min(total, self.total_cap_s)

    def snapshot(self) -> dict[str, dict[str, float | int]]:
        """Level per request type for /status (``timeouts.level``)."""
        return {
            kind: {
                "level": rung.level,
                "levels": len(rung.levels),
                "connect_s": rung.levels[rung.level][0],
                "read_s": rung.levels[rung.level][1],
                "successes_in_row": rung.streak,
            }
            for kind, rung in sorted(self._rungs.items())
        }

    def _rung(self, kind: str) -> _Rung:
        # Kinds without their own ladder (a new passthrough path) start on the default one.
        rung = self._rungs.get(kind)
        if rung is None:
            rung = self._rungs[kind] = _Rung(self._default)
        return rung
