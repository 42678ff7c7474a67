"""The simulator's notion of now: the real time, or a frozen instant so tests get stable
in-progress bars and windows."""

from __future__ import annotations

import time


class SimClock:
    def __init__(self, frozen: float | None = None) -> None:
        self._frozen = frozen

    @property
    def frozen(self) -> float | None:
        return self._frozen

    def now(self) -> float:
        return time.time() if self._frozen is None else self._frozen

    def freeze(self, at: float | None) -> None:
        """Freeze at ``at`` (epoch seconds); None lets the clock run again."""
        self._frozen = None if at is None else float(at)

    def advance(self, seconds: float) -> None:
        """Move a frozen clock forward (a running clock ignores this)."""
        if self._frozen is not None:
            self._frozen += seconds

    def as_json(self) -> dict[str, float | bool]:
        return {"now": self.now(), "frozen": self._frozen is not None}
