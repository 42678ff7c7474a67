"""Circuit breaker: aiobreaker 1.2.0 in memory, its state mirrored to Redis.

aiobreaker is the design card's choice; this module only adapts it (ADR 0003):

- Half-open is not gated in aiobreaker: every caller that arrives while half-open goes
  through. Call ``Breaker.call`` only from inside the bounded upstream pool (take the pool
  slot first, then call the breaker), so a reopen lets at most the pool's size reach Yahoo.
  Taking the slot *inside* the breaker call does not bound it: callers pass the breaker's
  gate, then queue for a slot and reach Yahoo even after the probe failed and it reopened.
- aiobreaker stamps ``opened_at`` with naive ``datetime.utcnow()`` but computes
  ``opens_at`` (and ``CircuitBreakerError.reopen_time``) against local ``datetime.now()``,
  wrong whenever the host's zone is not UTC. ``opened_at``/``reopens_at`` here are
  computed from the stored UTC stamp and returned as aware UTC datetimes.
- The failure that trips the breaker reaches the caller as itself (aiobreaker wraps it in
  ``CircuitBreakerError``); only calls refused without reaching upstream are BREAKER_OPEN.

What counts as a failure: 5xx, bad payload, connect failures and both timeouts. Not
counted: NOT_FOUND and INVALID_REQUEST (Yahoo answering correctly) and RATE_LIMITED —
a 429 is Yahoo alive and protecting itself, which the adaptive limiter handles by slowing
down and honouring Retry-After; opening the breaker on it would stop all traffic for the
reset timeout and report "breaker open" for what is a rate problem. Note that aiobreaker
treats excluded errors as successes: they reset the consecutive-failure count and close a
half-open breaker, which is right for an upstream that answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
import structlog
from aiobreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerListener, CircuitBreakerState
from redis.exceptions import RedisError

from policies.errors import Category, FailureContext, UpstreamError

log = structlog.get_logger("yfproxy.breaker")

T = TypeVar("T")
Clock = Callable[[], float]

_NOT_COUNTED = frozenset({Category.NOT_FOUND, Category.INVALID_REQUEST, Category.RATE_LIMITED})
_STATE_NAMES = {
    CircuitBreakerState.CLOSED: "closed",
    CircuitBreakerState.OPEN: "open",
    CircuitBreakerState.HALF_OPEN: "half_open",
}


def counts_as_failure(exc: BaseException) -> bool:
    """Whether an exception from upstream counts towards opening the breaker."""
    return not (isinstance(exc, UpstreamError) and exc.category in _NOT_COUNTED)


def _state_name(state: object) -> str:
    # aiobreaker passes state objects to listeners despite its CircuitBreakerState hint.
    enum_value = getattr(state, "state", state)
    return _STATE_NAMES.get(enum_value, "closed")  # type: ignore[arg-type]


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


class _TransitionListener(CircuitBreakerListener):
    def __init__(self, owner: Breaker) -> None:
        self._owner = owner

    def state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
        self._owner._record(_state_name(old), _state_name(new))


class Breaker:
    def __init__(
        self,
        fail_max: int = 5,
        reset_timeout_s: float = 30.0,
        name: str = "yahoo",
        *,
        history: int = 50,
        clock: Clock = time.time,
    ) -> None:
        if fail_max < 1:
            raise ValueError(f"[breaker] fail_max must be >= 1, got {fail_max!r}")
        if reset_timeout_s <= 0:
            raise ValueError(f"[breaker] reset_timeout_s must be > 0, got {reset_timeout_s!r}")
        self.name = name
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self.transitions: deque[tuple[float, str, str]] = deque(maxlen=history)
        self._subscribers: list[Callable[[], None]] = []
        self._cb = CircuitBreaker(
            fail_max=fail_max,
            timeout_duration=dt.timedelta(seconds=reset_timeout_s),
            exclude=[lambda exc: not counts_as_failure(exc)],
            listeners=[_TransitionListener(self)],
            name=name,
        )

    async def call(
        self, fn: Callable[..., Awaitable[T]], *args: Any, context: FailureContext | None = None
    ) -> T:
        """Run ``fn(*args)`` through the breaker. Call it while holding an upstream pool slot."""
        try:
            return await self._cb.call_async(fn, *args)
        except CircuitBreakerError as exc:
            if exc.__cause__ is not None:
                # This call reached upstream and its failure tripped the breaker: report
                # the real failure; later callers get BREAKER_OPEN.
                raise exc.__cause__ from None
            raise self._open_error(context) from exc

    @property
    def state(self) -> str:
        """One of closed, open, half_open; stays open after the reset timeout until a call probes."""
        return _STATE_NAMES[self._cb.current_state]

    @property
    def fail_counter(self) -> int:
        return int(self._cb.fail_counter)

    @property
    def fail_max(self) -> int:
        return int(self._cb.fail_max)

    @property
    def opened_at(self) -> dt.datetime | None:
        """When it last opened, aware UTC (aiobreaker stores naive ``utcnow()``)."""
        stamp: dt.datetime | None = self._cb._state_storage.opened_at
        return stamp.replace(tzinfo=dt.UTC) if stamp is not None else None

    @property
    def reopens_at(self) -> dt.datetime | None:
        """When an open breaker lets the next probe through, aware UTC; None unless open."""
        opened = self.opened_at
        if self.state != "open" or opened is None:
            return None
        return opened + dt.timedelta(seconds=self.reset_timeout_s)

    def seconds_until_reopen(self) -> float:
        reopens = self.reopens_at
        if reopens is None:
            return 0.0
        return max(0.0, (reopens - dt.datetime.now(dt.UTC)).total_seconds())

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (synchronously, keep it O(1)) after every state change."""
        self._subscribers.append(callback)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state for /status and the Redis mirror."""
        return {
            "name": self.name,
            "state": self.state,
            "fail_counter": self.fail_counter,
            "fail_max": self.fail_max,
            "reset_timeout_s": self.reset_timeout_s,
            "opened_at": _iso(self.opened_at),
            "reopens_at": _iso(self.reopens_at),
            "transitions": [{"at": at, "from": old, "to": new} for at, old, new in self.transitions],
        }

    def _record(self, old: str, new: str) -> None:
        # A concurrent half-open probe failing after another already reopened it gives
        # open -> open: not a transition worth listing, but opened_at moved, so notify.
        if old != new:
            self.transitions.append((self._clock(), old, new))
            log.info("breaker transition", breaker=self.name, old=old, new=new)
        for callback in self._subscribers:
            callback()

    def _open_error(self, context: FailureContext | None) -> UpstreamError:
        wait = self.seconds_until_reopen()
        return UpstreamError(
            Category.BREAKER_OPEN,
            f"circuit breaker {self.name!r} open; next probe in {wait:.1f}s",
            context or FailureContext(),
            retry_after=wait,
        )


def mirror_key(prefix: str, name: str) -> str:
    return f"{prefix}:breaker:{name}"


class BreakerMirror:
    """Writes a breaker's snapshot to the Redis hash ``{prefix}:breaker:{name}``.

    The breaker's listener only sets a flag (never blocks, never awaits); a background task
    writes the latest snapshot, so a burst of transitions costs one write. Each field is
    JSON-encoded so ``read_shared`` gets the same types back. Redis errors are logged and
    ignored: the mirror is for /status and other replicas, never on the request path.
    """

    def __init__(
        self, redis: aioredis.Redis, prefix: str, breaker: Breaker, *, source: str | None = None
    ) -> None:
        self._redis = redis
        self._breaker = breaker
        self.key = mirror_key(prefix, breaker.name)
        self.source = source or f"{socket.gethostname()}:{os.getpid()}"
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        self.errors = 0
        breaker.subscribe(self.notify)

    def notify(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        if self._task is None:
            self._dirty.set()  # publish the initial state too
            self._task = asyncio.create_task(self._run(), name=f"breaker-mirror-{self._breaker.name}")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the task, then try one last write so readers see the final state."""
        if self._task is not None:
            # Cancel until it ends: redis-py can swallow a cancellation that lands inside a
            # command, and the loop would then wait for the next change forever.
            for _ in range(50):
                if self._task.done():
                    break
                self._task.cancel()
                await asyncio.wait([self._task], timeout=0.1)
            if self._task.done() and not self._task.cancelled():
                self._task.exception()
            self._task = None
        try:
            await asyncio.wait_for(self.write(), timeout_s)
        except TimeoutError:
            log.warning("breaker mirror final write timed out", key=self.key)

    async def write(self) -> bool:
        snapshot = self._breaker.snapshot()
        snapshot["source"] = self.source
        snapshot["updated_at"] = time.time()
        mapping = {field: orjson.dumps(value) for field, value in snapshot.items()}
        try:
            await self._redis.hset(self.key, mapping=mapping)  # type: ignore[arg-type]
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning("breaker mirror write failed", key=self.key, error=repr(exc))
            return False
        self.writes += 1
        return True

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.write()


async def read_shared(redis: aioredis.Redis, prefix: str, name: str) -> dict[str, Any] | None:
    """Another replica's mirrored breaker snapshot, or None when none was written."""
    raw: dict[bytes | str, bytes | str] = await redis.hgetall(mirror_key(prefix, name))  # type: ignore[misc]
    if not raw:
        return None
    return {(k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in raw.items()}
