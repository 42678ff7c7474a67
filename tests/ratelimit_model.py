"""A discrete-event model of the limiter's pure functions against a hidden Yahoo budget.

Simulated time, no sleeping, no Redis: ``workers`` refresh ``series`` requests through
``try_take`` / ``on_success`` / ``on_throttle`` while a hidden token bucket (optionally
with Yahoo's lock-out after repeated 429s) decides which requests it answers. A run of
100 series takes milliseconds, so the convergence of the adaptive rule can be tested
over many budgets; bench/ratelimit.py measures the same against the real simulator.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from policies.ratelimit import BucketState, LimiterSettings, on_success, on_throttle, try_take


@dataclass(frozen=True)
class HiddenBudget:
    rps: float
    burst: float
    retry_after_s: float | None = None
    lockout_after: int = 0  # 429s in a row that lock the client out (0: never)
    lockout_s: float = 0.0


@dataclass(frozen=True)
class ModelResult:
    done: int
    answers: int
    throttled: int
    time_s: float
    locked_out: int  # requests refused while locked out

    @property
    def success_ratio(self) -> float:
        return (self.answers - self.throttled) / self.answers if self.answers else 1.0

    def budget_share(self, budget: HiddenBudget) -> float:
        return self.done / (self.time_s * budget.rps) if self.time_s else 0.0


class _Yahoo:
    def __init__(self, budget: HiddenBudget) -> None:
        self.b = budget
        self.tokens = budget.burst
        self.at = 0.0
        self.in_a_row = 0
        self.locked_until = 0.0
        self.locked_out = 0

    def answer(self, now: float) -> bool:
        self.tokens = min(self.b.burst, self.tokens + (now - self.at) * self.b.rps)
        self.at = now
        if now < self.locked_until:
            self.locked_out += 1
            return False
        if self.tokens >= 1:
            self.tokens -= 1
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        if self.b.lockout_after and self.in_a_row >= self.b.lockout_after:
            self.locked_until = now + self.b.lockout_s
        return False


def run(
    settings: LimiterSettings,
    budget: HiddenBudget,
    *,
    series: int = 100,
    workers: int = 3,
    latency_s: float = 0.05,
    cap_s: float = 900.0,
) -> ModelResult:
    yahoo = _Yahoo(budget)
    state = BucketState.initial(settings, 0.0)
    left = series
    answers = throttled = 0
    # (time, seq, worker): each worker asks for a token, waits, sends, and starts over.
    events = [(0.0, i, i) for i in range(workers)]
    heapq.heapify(events)
    seq = workers
    now = 0.0
    in_flight = 0
    while events and now <= cap_s:
        now, _, worker = heapq.heappop(events)
        if left - in_flight <= 0:
            continue  # nothing left to start; this worker stops
        state, wait = try_take(state, settings, now)
        if wait > 0:
            # at least a microsecond: a float wait below now's resolution would never advance
            heapq.heappush(events, (now + max(wait, 1e-6), seq, worker))
            seq += 1
            continue
        in_flight += 1
        arrive = now + latency_s / 2
        ok = yahoo.answer(arrive)
        back = now + latency_s
        answers += 1
        in_flight -= 1
        if ok:
            left -= 1
            state = on_success(state, settings, back)
        else:
            throttled += 1
            state = on_throttle(state, settings, back, budget.retry_after_s)
        if left == 0:
            now = back
            break
        heapq.heappush(events, (back, seq, worker))
        seq += 1
    return ModelResult(series - left, answers, throttled, now if left == 0 else math.inf, yahoo.locked_out)
