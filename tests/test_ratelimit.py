"""The adaptive limiter: pure AIMD math, the shared Redis budget, and the local fallback."""

from __future__ import annotations

import asyncio
import itertools
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from policies.errors import Category, UpstreamError
from policies.ratelimit import (
    MAX_RETRY_AFTER_S,
    PROBE_PAST_CEILING,
    BucketState,
    LimiterSettings,
    SharedRateLimiter,
    delivered_rate,
    from_legacy_delay,
    next_rate,
    on_success,
    on_throttle,
    phase,
    refill,
    try_take,
    validate_endpoint,
)
from tests.conftest import free_port, redis_server_binary

S = LimiterSettings(
    initial_rps=1.0,
    min_rps=0.1,
    max_rps=2.0,
    burst=3.0,
    increase_rps=0.25,
    decrease_factor=0.5,
    increase_every_s=5.0,
    lockout_s=10.0,
    slow_start_factor=1.5,
    recovery_share=0.8,
)


def busy(state: BucketState, settings: LimiterSettings, until: float) -> BucketState:
    """Take every token the bucket has up to ``until``: requests wait on it (saturated)."""
    now = state.refilled_at
    while now <= until:
        state, wait = try_take(state, settings, now)
        if wait > 0:
            now += max(wait, 1e-6)  # a float wait below now's resolution would never advance
    return state


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_rps": 0}, "min_rps must be > 0"),
        ({"initial_rps": 5.0}, "min_rps <= initial_rps <= max_rps"),
        ({"max_rps": 0.5}, "min_rps <= initial_rps <= max_rps"),
        ({"burst": 0.5}, "burst must be >= 1"),
        ({"increase_rps": -1}, "increase_rps must be >= 0"),
        ({"decrease_factor": 1.0}, "decrease_factor must be strictly between 0 and 1"),
        ({"decrease_factor": 0}, "decrease_factor must be strictly between 0 and 1"),
        ({"increase_every_s": -1}, "increase_every_s must be >= 0"),
        ({"lockout_s": -1}, "lockout_s must be >= 0"),
        ({"burst": math.inf}, "burst must be a finite number"),
        ({"burst": True}, "burst must be a finite number"),
        ({"min_rps": "1"}, "min_rps must be a finite number"),
    ],
)
def test_settings_reject_bad_values_with_the_field_name(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(S, **change)


def test_settings_from_dict_fills_from_base_and_rejects_unknown_keys() -> None:
    assert LimiterSettings.from_dict({"burst": 5}, S) == replace(S, burst=5)
    assert LimiterSettings.from_dict({}) == LimiterSettings()
    with pytest.raises(ValueError, match=r"unknown rate-limit setting\(s\) \['rps'\]"):
        LimiterSettings.from_dict({"rps": 1})


def test_legacy_fixed_delay_becomes_its_rate() -> None:
    assert from_legacy_delay(2.5) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="fixed_delay_seconds"):
        from_legacy_delay(0)


@pytest.mark.parametrize("bad", ["", "Chart", "chart:x", "chart}", "a" * 33, "chart\n", 7])
def test_endpoint_must_be_a_short_lowercase_token(bad: object) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        validate_endpoint(bad)  # type: ignore[arg-type]
    assert validate_endpoint("quote_summary") == "quote_summary"


# ---------------------------------------------------------------- pure AIMD


def test_tokens_refill_at_the_rate_and_never_exceed_burst() -> None:
    state = replace(BucketState.initial(S, 0.0), tokens=0.0)
    assert refill(state, S, 1.5).tokens == pytest.approx(1.5)
    assert refill(state, S, 100.0).tokens == S.burst


def test_take_spends_a_token_or_says_how_long_to_wait() -> None:
    state = BucketState.initial(S, 0.0)
    for _ in range(3):  # the burst
        state, wait = try_take(state, S, 0.0)
        assert wait == 0
    state, wait = try_take(state, S, 0.0)
    assert wait == pytest.approx(1.0)  # one token at 1 rps
    state, wait = try_take(state, S, 0.25)
    assert wait == pytest.approx(0.75)
    state, wait = try_take(state, S, 1.0)
    assert wait == 0


def grow(state: BucketState, settings: LimiterSettings, now: float) -> BucketState:
    """A success at ``now`` while requests were waiting for the bucket."""
    return on_success(busy(state, settings, now), settings, now)


def test_slow_start_multiplies_the_rate_at_most_once_per_period() -> None:
    state = BucketState.initial(S, 0.0)
    state = grow(state, S, 4.9)
    assert state.rate == 1.0  # not yet 5 s since start
    state = grow(state, S, 5.0)
    assert state.rate == 1.5
    for t in (5.1, 6.0, 9.9):  # a burst of successes in one period counts once
        state = grow(state, S, t)
    assert state.rate == 1.5
    assert grow(state, S, 10.0).rate == 2.0  # 2.25 clamped to max_rps


def test_no_growth_while_demand_not_the_bucket_sets_the_pace() -> None:
    state = BucketState.initial(S, 0.0)
    # A success every 6 s leaves the bucket full: nothing says a higher rate would hold.
    for t in (6.0, 12.0, 18.0, 24.0):
        state, wait = try_take(state, S, t)
        assert wait == 0
        state = on_success(state, S, t)
    assert state.rate == 1.0


def test_a_throttle_remembers_what_got_through_and_recovery_climbs_to_it() -> None:
    limits = replace(S, max_rps=10.0, increase_every_s=1.0)
    state = BucketState.initial(limits, 0.0)
    now = 0.0
    while state.rate < 8.0:  # slow start, saturated, successes at the bucket's pace
        now += 1 / state.rate
        state = grow(state, limits, now)
    assert state.ceiling == 0 and phase(state.rate, state.ceiling, 0.8) == "slow_start"
    delivered = delivered_rate(state, limits, now)
    assert 3.0 < delivered < state.rate  # the average lags a climbing rate
    throttled = on_throttle(state, limits, now, retry_after=1.0)
    assert throttled.ceiling == pytest.approx(delivered)
    assert throttled.rate == pytest.approx(state.rate * 0.5)
    # Recovery halves the distance to 0.8 x ceiling per step, then probes linearly.
    target = throttled.ceiling * 0.8
    state, now = throttled, throttled.blocked_until
    rates = []
    for _ in range(12):
        now += 1.0
        state = grow(state, limits, now)
        rates.append(state.rate)
    assert rates == sorted(rates)
    if throttled.rate < target:
        assert rates[0] == pytest.approx(throttled.rate + (target - throttled.rate) / 2)
    steps = [b - a for a, b in itertools.pairwise(rates)]
    past = [d for r, d in zip(rates, steps, strict=False) if r >= state.ceiling]
    assert all(d == pytest.approx(limits.increase_rps * PROBE_PAST_CEILING) for d in past)


def test_next_rate_follows_the_phase() -> None:
    base = BucketState.initial(S, 0.0)
    assert next_rate(base, S) == 1.5  # slow start: x slow_start_factor
    known = replace(base, ceiling=2.0)  # target 0.8 x 2.0 = 1.6
    assert next_rate(known, S) == pytest.approx(1.3)  # half the distance to 1.6
    assert next_rate(replace(known, rate=1.55), S) == pytest.approx(1.8)  # at least increase_rps
    assert next_rate(replace(known, rate=1.7), S) == pytest.approx(1.95)  # linear probe
    assert next_rate(replace(known, rate=2.0), S) == pytest.approx(2.0 + 0.25 * PROBE_PAST_CEILING)
    assert [phase(r, 2.0, 0.8) for r in (1.0, 1.7, 2.0)] == ["recovering", "probing", "past_ceiling"]
    assert phase(1.0, 0.0, 0.8) == "slow_start"


def test_rate_is_clamped_to_max_and_min() -> None:
    state = BucketState.initial(S, 0.0)
    for t in range(0, 200, 5):
        state = grow(state, S, float(t))
    assert state.rate == S.max_rps
    now = 200.0
    for _ in range(20):
        state = on_throttle(state, S, now, retry_after=None)
        now = state.blocked_until
    assert state.rate == S.min_rps


def test_throttle_halves_the_rate_and_blocks_until_retry_after() -> None:
    state = BucketState.initial(S, 0.0)
    state = on_throttle(state, S, 10.0, retry_after=4.0)
    assert state.rate == 0.5
    assert state.tokens == 0
    _, wait = try_take(state, S, 11.0)
    assert wait == pytest.approx(3.0)
    # After the block the bucket refills from empty: no burst straight after a 429.
    _, wait = try_take(state, S, 14.0)
    assert wait == pytest.approx(2.0)  # one token at 0.5 rps
    state, wait = try_take(state, S, 16.0)
    assert wait == 0


def test_throttle_without_retry_after_uses_the_lockout() -> None:
    state = on_throttle(BucketState.initial(S, 0.0), S, 0.0, retry_after=None)
    assert state.blocked_until == S.lockout_s


def test_throttles_during_a_block_extend_it_but_cut_only_once() -> None:
    state = on_throttle(BucketState.initial(S, 0.0), S, 0.0, retry_after=2.0)
    state = on_throttle(state, S, 0.5, retry_after=5.0)  # an in-flight request's 429
    assert state.rate == 0.5
    assert state.blocked_until == 5.5


def test_bogus_retry_after_values_are_bounded() -> None:
    start = BucketState.initial(S, 0.0)
    assert on_throttle(start, S, 0.0, math.inf).blocked_until == MAX_RETRY_AFTER_S
    assert on_throttle(start, S, 0.0, -5.0).blocked_until == 0.0
    assert on_throttle(start, S, 0.0, math.nan).blocked_until == S.lockout_s


def test_no_growth_until_increase_every_s_after_a_block() -> None:
    state = on_throttle(BucketState.initial(S, 0.0), S, 0.0, retry_after=1.0)
    assert grow(state, S, 0.5).rate == 0.5  # still blocked
    assert grow(state, S, 5.9).rate == 0.5  # 4.9 s since the block ended
    assert grow(state, S, 6.0).rate > 0.5


def test_new_settings_clamp_the_state_at_the_next_refill() -> None:
    state = BucketState.initial(S, 0.0)
    tighter = replace(S, max_rps=1.0, initial_rps=0.5, burst=1.0)
    state = refill(replace(state, rate=2.0), tighter, 0.0)
    assert (state.rate, state.tokens) == (1.0, 1.0)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["take", "success", "throttle"]),
        st.floats(0, 20, allow_nan=False),
        st.none() | st.floats(-5, 1e6, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    ops=_ops,
    burst=st.floats(1, 10),
    factor=st.floats(0.05, 0.95),
    increase=st.floats(0, 2),
)
def test_rate_and_tokens_always_stay_within_bounds(
    ops: list[tuple[str, float, float | None]], burst: float, factor: float, increase: float
) -> None:
    limits = replace(S, burst=burst, decrease_factor=factor, increase_rps=increase, increase_every_s=0.5)
    state = BucketState.initial(limits, 0.0)
    now = 0.0
    for op, step, retry_after in ops:
        now += step
        if op == "take":
            state, wait = try_take(state, limits, now)
            assert wait >= 0
        elif op == "success":
            state = on_success(state, limits, now)
        else:
            state = on_throttle(state, limits, now, retry_after)
        assert limits.min_rps <= state.rate <= limits.max_rps
        assert 0 <= state.tokens <= limits.burst


# ---------------------------------------------------------------- shared in Redis


def _limiter(client: aioredis.Redis, limits: LimiterSettings = S, **kwargs: object) -> SharedRateLimiter:
    return SharedRateLimiter(client, "yfp", {"chart": limits, "crumb": limits}, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def second_client(redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)  # a second replica's own connection pool
    try:
        yield client
    finally:
        await client.aclose()


async def test_state_lives_in_one_hash_per_endpoint(redis_client: aioredis.Redis) -> None:
    limiter = _limiter(redis_client)
    assert await limiter.acquire("chart") == 0
    assert await redis_client.keys("*") == [b"yfp:ratelimit:chart"]
    fields = await redis_client.hgetall("yfp:ratelimit:chart")
    assert set(fields) == {
        b"rate", b"tokens", b"refilled_at", b"blocked_until", b"increased_at",
        b"ceiling", b"delivered", b"delivered_at",
    }  # fmt: skip
    assert 0 < await redis_client.ttl("yfp:ratelimit:chart") <= 86400
    state = await limiter.state("chart")
    assert state["current_rps"] == 1.0
    assert 1.9 < state["tokens"] < 2.1
    assert state["fallback"] is False
    assert state["source"] == "shared"
    assert state["settings"]["burst"] == 3.0
    with pytest.raises(ValueError, match="endpoint"):
        await limiter.acquire("chart:x")
    with pytest.raises(ValueError, match="no rate-limit settings"):
        await limiter.acquire("passthrough")
    with pytest.raises(ValueError, match="expected_replicas"):
        _limiter(redis_client, expected_replicas=0)


async def test_two_replicas_stay_within_one_shared_budget(
    redis_client: aioredis.Redis, second_client: aioredis.Redis
) -> None:
    rate, burst, duration = 20.0, 5.0, 2.0
    fixed = LimiterSettings(initial_rps=rate, min_rps=rate, max_rps=rate, burst=burst)
    replicas = [_limiter(redis_client, fixed), _limiter(second_client, fixed)]
    taken = 0
    started = time.monotonic()

    async def worker(limiter: SharedRateLimiter) -> None:
        nonlocal taken
        while time.monotonic() - started < duration:
            await limiter.acquire("chart", max_wait_s=5)
            if time.monotonic() - started < duration:
                taken += 1

    await asyncio.gather(*(worker(limiter) for limiter in replicas for _ in range(4)))
    elapsed = time.monotonic() - started
    assert taken <= rate * elapsed + burst
    assert taken >= 0.8 * rate * duration  # and the budget is actually used


async def test_a_throttle_on_one_replica_slows_the_other(
    redis_client: aioredis.Redis, second_client: aioredis.Redis
) -> None:
    fast = LimiterSettings(initial_rps=10.0, min_rps=1.0, max_rps=20.0, burst=1.0, decrease_factor=0.5)
    one, other = _limiter(redis_client, fast), _limiter(second_client, fast)
    await one.record_throttle("chart", retry_after=0.4)
    state = await other.state("chart")
    assert state["current_rps"] == 5.0
    assert 0.2 < state["blocked_for_s"] <= 0.4
    started = time.monotonic()
    waited = await other.acquire("chart")
    # Blocked until Retry-After, then one token at the halved rate (0.2 s) from an empty bucket.
    assert 0.45 < waited < 0.8
    assert time.monotonic() - started >= 0.45
    with pytest.raises(UpstreamError) as raised:
        await other.acquire("chart", max_wait_s=0.05)
    assert raised.value.category is Category.BUDGET_EXHAUSTED
    assert raised.value.retry_after == pytest.approx(0.2, abs=0.05)


async def test_success_grows_the_shared_rate_once_per_period(redis_client: aioredis.Redis) -> None:
    limiter = _limiter(redis_client, replace(S, increase_every_s=0.0))
    await limiter.record_success("chart")
    assert (await limiter.state("chart"))["current_rps"] == 1.0  # bucket full: demand-limited
    for _ in range(3):
        await limiter.acquire("chart")  # requests now wait on the bucket
    await limiter.record_success("chart")
    state = await limiter.state("chart")
    assert state["current_rps"] == 1.5  # slow start, as on_success computes it
    assert state["phase"] == "slow_start" and state["ceiling_rps"] is None
    await limiter.record_throttle("chart", retry_after=0.0)
    state = await limiter.state("chart")
    assert state["current_rps"] == pytest.approx(0.75)
    # The ceiling is min(rate, delivery average); three quick successes in a 1 s window
    # average above 1.5/s, so the rate is the bound (the lagging case is tested above).
    assert state["ceiling_rps"] == pytest.approx(1.5)
    assert state["phase"] == "recovering"
    # The bucket is empty after a 429, so each success may grow the rate (the Lua twin of
    # next_rate): half-way to 0.8 x 1.5 but at least +0.25, then +0.25, then a quarter step.
    rates = []
    for _ in range(4):
        await limiter.record_success("chart")
        rates.append((await limiter.state("chart"))["current_rps"])
    assert rates == pytest.approx([1.0, 1.25, 1.5, 1.5 + 0.25 * PROBE_PAST_CEILING])
    assert (await limiter.state("chart"))["phase"] == "past_ceiling"
    slow = _limiter(redis_client, replace(S, increase_every_s=60.0))
    await slow.record_success("chart")
    state = await slow.state("chart")
    assert state["current_rps"] == pytest.approx(1.5625)  # not 60 s since the last step
    assert state["window"] == {"success": 1, "rate_limited": 0, "error": 0}


async def test_runtime_settings_apply_to_the_next_call(redis_client: aioredis.Redis) -> None:
    limiter = _limiter(redis_client)
    await limiter.acquire("chart")
    limiter.update_settings("chart", replace(S, initial_rps=0.2, max_rps=0.2, burst=1.0))
    state = await limiter.state("chart")
    assert (state["current_rps"], state["tokens"]) == (0.2, 1.0)
    with pytest.raises(TypeError):
        limiter.update_settings("chart", {"burst": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="endpoint"):
        limiter.update_settings("Chart", S)


async def test_shared_time_is_redis_time_not_the_replica_clock(redis_client: aioredis.Redis) -> None:
    frozen = _limiter(redis_client, replace(S, initial_rps=2.0, burst=1.0), clock=lambda: 0.0)
    await frozen.acquire("chart")
    waited = await frozen.acquire("chart", max_wait_s=2)  # refills although the local clock stands still
    assert 0.3 < waited <= 0.6


async def test_window_counts_successes_throttles_and_errors(redis_client: aioredis.Redis) -> None:
    limiter = _limiter(redis_client, default_settings=S)
    await limiter.record_success("passthrough")
    await limiter.record_throttle("passthrough", None)
    limiter.record_error("passthrough")
    limiter.record_error("passthrough")
    state = await limiter.state("passthrough")
    assert state["window"] == {"success": 1, "rate_limited": 1, "error": 2}
    assert state["blocked_for_s"] > 9  # lockout_s without Retry-After


# ---------------------------------------------------------------- fallback


async def test_unreachable_redis_falls_back_to_a_local_bucket() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    clock = FakeClock()
    limiter = _limiter(dead, expected_replicas=2, clock=clock)
    try:
        with capture_logs() as logs:
            assert await limiter.acquire("chart") == 0
            await limiter.record_success("chart")
            await limiter.record_throttle("chart", 1.0)
            state = await limiter.state("chart")
        assert state["fallback"] is True
        assert state["source"] == "local"
        # This replica's share: initial 1.0 / 2 replicas = 0.5, cut to 0.25 by the throttle.
        assert state["current_rps"] == 0.25
        assert state["window"]["rate_limited"] == 1
        assert [entry["event"] for entry in logs] == ["ratelimit.fallback_local"]  # once per transition
        with pytest.raises(UpstreamError) as raised:
            await limiter.acquire("chart", max_wait_s=0.1)
        assert raised.value.category is Category.BUDGET_EXHAUSTED
    finally:
        await dead.aclose()


class RedisProcess:
    """A private redis-server that a test can stop and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="yfproxy-ratelimit-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def restartable_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def _until(predicate: Callable[[], Awaitable[bool]], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_returns_to_the_shared_budget_when_redis_comes_back(restartable_redis: RedisProcess) -> None:
    client = aioredis.Redis.from_url(restartable_redis.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    limiter = _limiter(client, probe_every_s=0.05)
    try:

        async def shared() -> bool:
            return not (await limiter.state("chart"))["fallback"]

        async def local() -> bool:
            return bool((await limiter.state("chart"))["fallback"])

        await _until(shared)
        await limiter.record_throttle("chart", 0.05)  # shared rate 0.5
        with capture_logs() as logs:
            restartable_redis.stop()
            await _until(local)
            state = await limiter.state("chart")
            assert state["current_rps"] == 0.5  # continues from the last shared reading
            await asyncio.sleep(0.1)
            await limiter.acquire("chart", max_wait_s=3)  # served by the local bucket
            restartable_redis.start()
            await _until(shared)
        events = [entry["event"] for entry in logs]
        assert events == ["ratelimit.fallback_local", "ratelimit.shared_restored"]
        # The restarted server lost the hash: the shared state begins again from the settings.
        assert (await limiter.state("chart"))["current_rps"] == S.initial_rps
    finally:
        await client.aclose()


async def test_waiters_of_one_process_are_served_in_arrival_order(redis_client: aioredis.Redis) -> None:
    slow = LimiterSettings(initial_rps=10.0, min_rps=1.0, max_rps=10.0, burst=1.0, increase_rps=0.0)
    limiter = _limiter(redis_client, slow)
    order: list[int] = []

    async def take(n: int) -> None:
        await limiter.acquire("chart", max_wait_s=5)
        order.append(n)

    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(take(n)))
        await asyncio.sleep(0)  # arrive one after the other
    await asyncio.gather(*tasks)
    assert order == list(range(6))


async def test_a_waiter_queued_past_max_wait_is_budget_exhausted(redis_client: aioredis.Redis) -> None:
    slow = LimiterSettings(initial_rps=1.0, min_rps=0.5, max_rps=1.0, burst=1.0, increase_rps=0.0)
    limiter = _limiter(redis_client, slow)
    await limiter.acquire("chart")  # the one token
    first = asyncio.create_task(limiter.acquire("chart", max_wait_s=5))  # holds the queue ~1 s
    await asyncio.sleep(0.05)
    with pytest.raises(UpstreamError) as info:
        await limiter.acquire("chart", max_wait_s=0.2)
    assert info.value.category is Category.BUDGET_EXHAUSTED
    assert await first > 0
