"""The aiobreaker wrapper: counting rules, states and times, the reopen bound inside the
upstream pool, and the asynchronous Redis mirror against a real redis-server."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis
from aiobreaker import CircuitBreakerError

from policies.breaker import Breaker, BreakerMirror, counts_as_failure, mirror_key, read_shared
from policies.errors import Category, FailureContext, UpstreamError

POOL = 3  # the upstream pool's concurrency in these tests
RESET_S = 0.2


def failure(category: Category = Category.UPSTREAM_5XX) -> UpstreamError:
    return UpstreamError(category, "test")


async def raises(exc: BaseException) -> None:
    raise exc


async def ok() -> str:
    return "ok"


async def trip(breaker: Breaker) -> None:
    for _ in range(breaker.fail_max):
        with pytest.raises(UpstreamError):
            await breaker.call(raises, failure())


class CountingUpstream:
    """Counts entries, concurrency and entries while the breaker is half-open."""

    def __init__(self, breaker: Breaker, *, fail: bool) -> None:
        self.breaker = breaker
        self.fail = fail
        self.entered = 0
        self.entered_half_open = 0
        self.active = 0
        self.max_active = 0

    async def __call__(self) -> str:
        self.entered += 1
        self.entered_half_open += self.breaker.state == "half_open"
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0.02)
            if self.fail:
                raise failure(Category.READ_TIMEOUT)
            return "ok"
        finally:
            self.active -= 1


Caller = Callable[[], Awaitable[str]]


def slot_then_breaker(breaker: Breaker, upstream: CountingUpstream, pool: asyncio.Semaphore) -> Caller:
    async def caller() -> str:  # how yfproxy must call it: pool slot first, then the breaker
        async with pool:
            return await breaker.call(upstream)

    return caller


def breaker_only(breaker: Breaker, upstream: CountingUpstream) -> Caller:
    async def caller() -> str:
        return await breaker.call(upstream)

    return caller


def breaker_then_slot(breaker: Breaker, upstream: CountingUpstream, pool: asyncio.Semaphore) -> Caller:
    async def in_slot() -> str:
        async with pool:
            return await upstream()

    async def caller() -> str:  # the slot taken inside the breaker call
        return await breaker.call(in_slot)

    return caller


async def reopen_and_fire(breaker: Breaker, caller: Caller, n: int = 50) -> list[object]:
    await trip(breaker)
    assert breaker.state == "open"
    await asyncio.sleep(RESET_S + 0.05)
    return await asyncio.gather(*(caller() for _ in range(n)), return_exceptions=True)


def states(breaker: Breaker) -> list[tuple[str, str]]:
    return [(old, new) for _, old, new in breaker.transitions]


async def test_reopen_lets_at_most_the_pool_through_and_closes_on_success() -> None:
    breaker = Breaker(fail_max=3, reset_timeout_s=RESET_S)
    upstream = CountingUpstream(breaker, fail=False)
    results = await reopen_and_fire(breaker, slot_then_breaker(breaker, upstream, asyncio.Semaphore(POOL)))
    assert upstream.entered_half_open <= POOL
    assert upstream.max_active <= POOL
    assert results == ["ok"] * 50  # once a probe succeeded the rest ran closed
    assert states(breaker) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert breaker.state == "closed" and breaker.reopens_at is None


async def test_reopen_lets_at_most_the_pool_through_and_reopens_on_failure() -> None:
    breaker = Breaker(fail_max=3, reset_timeout_s=RESET_S)
    upstream = CountingUpstream(breaker, fail=True)
    results = await reopen_and_fire(breaker, slot_then_breaker(breaker, upstream, asyncio.Semaphore(POOL)))
    assert upstream.entered <= POOL  # nobody reached Yahoo after the reopen but the probes
    categories = [r.category for r in results if isinstance(r, UpstreamError)]
    assert categories.count(Category.READ_TIMEOUT) == upstream.entered  # the probes' real failures
    assert categories.count(Category.BREAKER_OPEN) == 50 - upstream.entered
    assert states(breaker) == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    assert breaker.state == "open"


async def test_without_the_pool_every_caller_probes_a_half_open_breaker() -> None:
    # Documents why the pool matters: aiobreaker does not gate half-open.
    breaker = Breaker(fail_max=3, reset_timeout_s=RESET_S)
    upstream = CountingUpstream(breaker, fail=True)
    await reopen_and_fire(breaker, breaker_only(breaker, upstream))
    assert upstream.entered_half_open == 50
    assert upstream.entered > POOL


async def test_a_slot_taken_inside_the_breaker_does_not_bound_the_reopen() -> None:
    # The order matters: callers past the breaker's gate queue for a slot and reach
    # Yahoo even after the first probe failed and the breaker reopened.
    breaker = Breaker(fail_max=3, reset_timeout_s=RESET_S)
    upstream = CountingUpstream(breaker, fail=True)
    await reopen_and_fire(breaker, breaker_then_slot(breaker, upstream, asyncio.Semaphore(POOL)))
    assert upstream.max_active <= POOL
    assert upstream.entered == 50


async def test_failures_open_it_and_the_tripping_failure_reaches_the_caller() -> None:
    breaker = Breaker(fail_max=2, reset_timeout_s=30)
    with pytest.raises(UpstreamError) as first:
        await breaker.call(raises, failure(Category.CONNECT_TIMEOUT))
    with pytest.raises(UpstreamError) as tripping:
        await breaker.call(raises, failure(Category.BAD_PAYLOAD))
    assert first.value.category is Category.CONNECT_TIMEOUT
    assert tripping.value.category is Category.BAD_PAYLOAD
    assert breaker.state == "open"
    ctx = FailureContext(symbol="AAPL", interval="1d")
    with pytest.raises(UpstreamError) as refused:
        await breaker.call(ok, context=ctx)
    assert refused.value.category is Category.BREAKER_OPEN
    assert refused.value.context is ctx
    assert isinstance(refused.value.__cause__, CircuitBreakerError)
    assert 29 < (refused.value.retry_after or 0) <= 30


@pytest.mark.parametrize("category", [Category.NOT_FOUND, Category.INVALID_REQUEST, Category.RATE_LIMITED])
async def test_correct_answers_and_throttling_do_not_count(category: Category) -> None:
    breaker = Breaker(fail_max=2, reset_timeout_s=30)
    for _ in range(5):
        with pytest.raises(UpstreamError):
            await breaker.call(raises, failure(category))
    assert breaker.state == "closed" and breaker.fail_counter == 0
    assert not counts_as_failure(failure(category))


@pytest.mark.parametrize(
    "category",
    [Category.UPSTREAM_5XX, Category.BAD_PAYLOAD, Category.CONNECT_FAILURE, Category.CONNECT_TIMEOUT,
     Category.READ_TIMEOUT],
)  # fmt: skip
async def test_upstream_failures_and_timeouts_count(category: Category) -> None:
    breaker = Breaker(fail_max=5)
    with pytest.raises(UpstreamError):
        await breaker.call(raises, failure(category))
    assert breaker.fail_counter == 1
    assert counts_as_failure(ValueError("a bug counts too"))


async def test_success_resets_the_consecutive_failure_count() -> None:
    breaker = Breaker(fail_max=3)
    with pytest.raises(UpstreamError):
        await breaker.call(raises, failure())
    assert await breaker.call(ok) == "ok"
    assert breaker.fail_counter == 0


@pytest.fixture
def tokyo_local_time() -> Iterator[None]:
    # aiobreaker mixes utcnow() and now(): only a non-UTC zone shows the difference.
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


async def test_open_and_reopen_times_are_correct_utc_in_any_local_zone(tokyo_local_time: None) -> None:
    breaker = Breaker(fail_max=1, reset_timeout_s=60)
    before = dt.datetime.now(dt.UTC)
    await trip(breaker)
    after = dt.datetime.now(dt.UTC)
    assert breaker.opened_at is not None and before <= breaker.opened_at <= after
    assert breaker.reopens_at == breaker.opened_at + dt.timedelta(seconds=60)
    assert 59 < breaker.seconds_until_reopen() <= 60
    assert breaker._cb.opens_at is None  # aiobreaker's own answer is wrong here (local vs UTC)


async def test_snapshot_lists_state_times_and_transitions() -> None:
    clock = iter([100.0, 101.0])
    breaker = Breaker(fail_max=1, reset_timeout_s=60, name="chart", clock=lambda: next(clock))
    assert breaker.snapshot()["state"] == "closed" and breaker.snapshot()["opened_at"] is None
    assert breaker.seconds_until_reopen() == 0.0
    await trip(breaker)
    snap = breaker.snapshot()
    assert snap["name"] == "chart" and snap["state"] == "open"
    assert snap["fail_max"] == 1 and snap["reset_timeout_s"] == 60
    assert dt.datetime.fromisoformat(snap["reopens_at"]).tzinfo is not None
    assert snap["transitions"] == [{"at": 100.0, "from": "closed", "to": "open"}]


async def test_transition_history_is_bounded() -> None:
    breaker = Breaker(fail_max=1, reset_timeout_s=0.01, history=2)
    for _ in range(3):
        await trip(breaker)
        await asyncio.sleep(0.02)
        await breaker.call(ok)
    assert len(breaker.transitions) == 2
    assert states(breaker) == [("open", "half_open"), ("half_open", "closed")]


@pytest.mark.parametrize(("kwargs", "message"), [({"fail_max": 0}, "fail_max"),
                                                 ({"reset_timeout_s": 0}, "reset_timeout_s")])  # fmt: skip
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Breaker(**kwargs)  # type: ignore[arg-type]


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_mirror_publishes_state_changes_for_other_replicas(redis_client: aioredis.Redis) -> None:
    breaker = Breaker(fail_max=1, reset_timeout_s=60, name="yahoo")
    mirror = BreakerMirror(redis_client, "yfp", breaker, source="replica-a")
    assert await read_shared(redis_client, "yfp", "yahoo") is None
    mirror.start()
    mirror.start()  # idempotent
    try:

        async def shows(state: str) -> bool:
            shared = await read_shared(redis_client, "yfp", "yahoo")
            return shared is not None and shared["state"] == state

        await wait_for(lambda: shows("closed"))
        await trip(breaker)
        await wait_for(lambda: shows("open"))
        shared = await read_shared(redis_client, "yfp", "yahoo")
        assert shared is not None
        assert shared["source"] == "replica-a"
        assert shared["reopens_at"] == breaker.snapshot()["reopens_at"]
        assert shared["transitions"][0]["to"] == "open"
        assert mirror_key("yfp", "yahoo") == mirror.key == "yfp:breaker:yahoo"
        assert await redis_client.type(mirror.key) == b"hash"
    finally:
        await mirror.stop()
    assert mirror.writes >= 2 and mirror.errors == 0


async def test_mirror_stop_writes_the_final_state(redis_client: aioredis.Redis) -> None:
    breaker = Breaker(fail_max=1, reset_timeout_s=60)
    mirror = BreakerMirror(redis_client, "yfp", breaker)
    await trip(breaker)  # never started: only the final write publishes
    await mirror.stop()
    shared = await read_shared(redis_client, "yfp", breaker.name)
    assert shared is not None and shared["state"] == "open"


async def test_redis_down_never_blocks_or_fails_breaker_calls() -> None:
    from tests.conftest import free_port

    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    breaker = Breaker(fail_max=1, reset_timeout_s=60)
    mirror = BreakerMirror(dead, "yfp", breaker)
    mirror.start()
    try:
        started = time.monotonic()
        await trip(breaker)
        with pytest.raises(UpstreamError):
            await breaker.call(ok)
        assert time.monotonic() - started < 0.1  # the listener only sets a flag

        async def failed_once() -> bool:
            return mirror.errors >= 1

        await wait_for(failed_once)
        assert breaker.state == "open"
    finally:
        await mirror.stop()
        await dead.aclose()


async def test_a_hanging_final_write_is_abandoned(redis_client: aioredis.Redis) -> None:
    breaker = Breaker()
    mirror = BreakerMirror(redis_client, "yfp", breaker)

    async def hang() -> bool:
        await asyncio.sleep(10)
        return True

    mirror.write = hang  # type: ignore[method-assign]
    started = time.monotonic()
    await mirror.stop(timeout_s=0.05)
    assert time.monotonic() - started < 1
