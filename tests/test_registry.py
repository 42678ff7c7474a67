"""TrackedRegistry on a real redis-server: tiers, schedule, decayed rates, replicas, batching."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Iterator

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from structlog.testing import capture_logs

from proxy.registry import RATE_HALF_LIFE_S, TrackedRegistry
from proxy.series import SeriesKey

T0 = 1_700_000_000.0
LAM_PER_MIN = math.log(2) / RATE_HALF_LIFE_S * 60  # what one request adds to the rate, at once
ES_1M = SeriesKey("ES=F", "1m", False)
ES_1D = SeriesKey("ES=F", "1d", False)
NQ_1M = SeriesKey("NQ=F", "1m", False)
NQ_1D = SeriesKey("NQ=F", "1d", False)
AAPL = SeriesKey("AAPL", "1d", False)
MSFT = SeriesKey("MSFT", "1h", False)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(redis_client: aioredis.Redis, clock: Clock) -> TrackedRegistry:
    return TrackedRegistry(redis_client, "yfp", clock=clock)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts writes to Redis sockets: a pipeline is one, a single command is one."""
    sent = [0]
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent[0] += 1
        await original(self, command, check_health)  # type: ignore[arg-type]

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    yield sent


def _keys(n: int) -> list[SeriesKey]:
    return [SeriesKey(f"S{i:04d}", "1d", False) for i in range(n)]


async def _raw(redis_client: aioredis.Redis, key: SeriesKey) -> dict[str, object]:
    raw = await redis_client.hget("yfp:{tracked}:series", key.tag)
    assert raw is not None
    return orjson.loads(raw)


async def test_both_keys_share_one_cluster_hash_tag(registry: TrackedRegistry) -> None:
    assert registry.records_key == "yfp:{tracked}:series"
    assert registry.due_key == "yfp:{tracked}:due"


# sync_configured


async def test_sync_configured_adds_every_series_due_now(registry: TrackedRegistry) -> None:
    added = await registry.sync_configured(["ES=F"], ["nq=f"], ["1m", "1d"])
    assert added == (4, 0)
    tracked = {t.key: t for t in await registry.all()}
    assert set(tracked) == {ES_1M, ES_1D, NQ_1M, NQ_1D}  # symbols upper-cased like chart requests
    assert [tracked[k].tier for k in (ES_1M, ES_1D, NQ_1M, NQ_1D)] == [
        "active",
        "active",
        "dormant",
        "dormant",
    ]
    assert all(t.configured and t.next_due == T0 and t.first_seen == T0 for t in tracked.values())
    assert {t.key for t in await registry.due(T0, 10)} == set(tracked)
    assert await registry.due(T0 - 1, 10) == []


async def test_sync_configured_updates_tier_and_keeps_schedule_and_stats(
    registry: TrackedRegistry, clock: Clock
) -> None:
    await registry.sync_configured(["ES=F"], [], ["1m"])
    await registry.record_activity({ES_1M: (3, T0)}, [])
    await registry.set_result(ES_1M, outcome="ok", category=None, refreshed_at=T0, next_due=T0 + 300)
    clock.now = T0 + 10
    assert await registry.sync_configured([], ["ES=F"], ["1m"]) == (0, 0)
    es = await registry.get(ES_1M)
    assert es is not None
    assert (es.tier, es.configured, es.next_due, es.requests, es.first_seen) == (
        "dormant",
        True,
        T0 + 300,
        3,
        T0,
    )


async def test_sync_configured_demotes_series_no_longer_listed(
    registry: TrackedRegistry, clock: Clock
) -> None:
    await registry.sync_configured(["ES=F", "NQ=F"], [], ["1m"])
    await registry.record_activity({NQ_1M: (1, T0)}, [])
    clock.now = T0 + 60
    assert await registry.sync_configured(["ES=F"], [], ["1m"]) == (0, 1)
    nq = await registry.get(NQ_1M)
    assert nq is not None and (nq.tier, nq.configured) == ("requested", False)
    es = await registry.get(ES_1M)
    assert es is not None and (es.tier, es.configured) == ("active", True)
    # Demoted series age out like requested ones: NQ was asked for at T0.
    assert await registry.expire_idle(T0 + 700, dormant_after_s=600, idle_untrack_s=3600) == (1, 0)
    assert await registry.expire_idle(T0 + 3600, dormant_after_s=600, idle_untrack_s=3600) == (0, 1)
    assert [t.key for t in await registry.all()] == [ES_1M]


async def test_sync_configured_with_nothing_to_do_writes_nothing(
    registry: TrackedRegistry, round_trips: list[int]
) -> None:
    assert await registry.sync_configured([], [], ["1m"]) == (0, 0)
    assert round_trips[0] == 1  # the read of the current records
    assert await registry.redis.exists(registry.records_key, registry.due_key) == 0


async def test_sync_configured_states_the_whole_set_including_prepost(registry: TrackedRegistry) -> None:
    await registry.sync_configured(["ES=F"], [], ["1m"], prepost=True)
    assert [t.key for t in await registry.all()] == [SeriesKey("ES=F", "1m", True)]
    assert await registry.sync_configured(["ES=F"], [], ["1m"]) == (1, 1)


# record_activity


async def test_record_activity_tracks_new_series_as_requested_due_now(
    registry: TrackedRegistry, clock: Clock
) -> None:
    clock.now = T0 + 5
    await registry.record_activity({AAPL: (4, T0 + 2)}, [])
    aapl = await registry.get(AAPL)
    assert aapl is not None
    assert (aapl.tier, aapl.configured, aapl.requests, aapl.last_request) == ("requested", False, 4, T0 + 2)
    assert (aapl.first_seen, aapl.next_due, aapl.rate_at) == (T0 + 2, T0 + 5, T0 + 2)
    assert aapl.request_rate == pytest.approx(4 * LAM_PER_MIN)
    assert [t.key for t in await registry.due(T0 + 5, 10)] == [AAPL]


async def test_record_activity_with_nothing_does_no_io(
    registry: TrackedRegistry, round_trips: list[int]
) -> None:
    await registry.record_activity({AAPL: (0, T0)}, [])
    assert round_trips[0] == 0
    assert await registry.all() == []


async def test_request_rate_decays_with_the_half_life(registry: TrackedRegistry, clock: Clock) -> None:
    await registry.record_activity({AAPL: (10, T0)}, [])
    clock.now = T0 + RATE_HALF_LIFE_S
    await registry.record_activity({AAPL: (5, T0 + RATE_HALF_LIFE_S)}, [])
    aapl = await registry.get(AAPL)
    assert aapl is not None
    assert aapl.request_rate == pytest.approx((10 * 0.5 + 5) * LAM_PER_MIN)
    assert aapl.requests == 15 and aapl.last_request == T0 + RATE_HALF_LIFE_S
    assert aapl.rate_now(T0 + 2 * RATE_HALF_LIFE_S) == pytest.approx(aapl.request_rate / 2)
    assert aapl.rate_now(T0) == aapl.request_rate  # never decays backwards


async def test_steady_traffic_reads_as_requests_per_minute(registry: TrackedRegistry, clock: Clock) -> None:
    # One request a second, flushed every 30 s for 12 half-lives: the average is 60/min
    # (slightly above, since a batch is counted at its last request).
    for step in range(1, 2 * 60 * 2 + 1):
        clock.now = T0 + 30 * step
        await registry.record_activity({AAPL: (30, clock.now)}, [])
    aapl = await registry.get(AAPL)
    assert aapl is not None
    assert aapl.request_rate == pytest.approx(60, rel=0.03)


async def test_flushes_give_the_same_rate_in_any_order(redis_client: aioredis.Redis, clock: Clock) -> None:
    clock.now = T0 + 1000
    batches = [(AAPL, (3, T0 + 100)), (AAPL, (7, T0 + 900)), (AAPL, (2, T0 + 400))]
    rates = []
    for order, prefix in (((0, 1, 2), "a"), ((2, 1, 0), "b"), ((1, 0, 2), "c")):
        registry = TrackedRegistry(redis_client, prefix, clock=clock)
        for i in order:
            key, count = batches[i]
            await registry.record_activity({key: count}, [])
        aapl = await registry.get(AAPL)
        assert aapl is not None and aapl.rate_at == T0 + 900 and aapl.last_request == T0 + 900
        rates.append(aapl.request_rate)
    expected = LAM_PER_MIN * sum(n * math.exp(-LAM_PER_MIN / 60 * (900 - (t - T0))) for _, (n, t) in batches)
    assert rates == pytest.approx([expected] * 3, rel=1e-12)


async def test_request_times_in_the_future_count_as_now(registry: TrackedRegistry) -> None:
    await registry.record_activity({AAPL: (1, T0 + 3600)}, {MSFT: T0 + 3600})
    aapl, msft = await registry.get(AAPL), await registry.get(MSFT)
    assert aapl is not None and aapl.last_request == T0 and aapl.rate_at == T0
    assert msft is not None and msft.next_due == T0


async def test_activity_brings_an_unconfigured_dormant_series_back_but_not_a_configured_one(
    registry: TrackedRegistry, clock: Clock
) -> None:
    await registry.sync_configured([], ["ES=F"], ["1m"])
    await registry.record_activity({AAPL: (1, T0)}, [])
    assert await registry.expire_idle(T0 + 700, dormant_after_s=600, idle_untrack_s=86400) == (1, 0)
    clock.now = T0 + 800
    await registry.record_activity({AAPL: (1, T0 + 800), ES_1M: (1, T0 + 800)}, [])
    aapl, es = await registry.get(AAPL), await registry.get(ES_1M)
    assert aapl is not None and aapl.tier == "requested"
    assert es is not None and (es.tier, es.configured, es.requests) == ("dormant", True, 1)


# bumps and the schedule


async def test_bump_moves_a_series_to_the_front(registry: TrackedRegistry, clock: Clock) -> None:
    await registry.sync_configured(["ES=F", "NQ=F"], [], ["1m"])
    await registry.set_result(ES_1M, outcome="ok", category=None, refreshed_at=T0, next_due=T0 + 300)
    await registry.set_result(NQ_1M, outcome="ok", category=None, refreshed_at=T0, next_due=T0 + 100)
    clock.now = T0 + 50
    assert await registry.due(T0 + 50, 10) == []
    await registry.record_activity({}, [ES_1M])
    due = await registry.due(T0 + 50, 10)
    assert [t.key for t in due] == [ES_1M] and due[0].next_due == T0 + 50
    assert [t.key for t in await registry.due(T0 + 100, 10)] == [ES_1M, NQ_1M]


async def test_bump_never_delays_a_series(registry: TrackedRegistry, clock: Clock) -> None:
    await registry.sync_configured(["ES=F"], [], ["1m"])  # due at T0
    clock.now = T0 + 40
    await registry.record_activity({}, {ES_1M: T0 + 30})
    await registry.record_activity({}, [ES_1M])
    es = await registry.get(ES_1M)
    assert es is not None and es.next_due == T0
    assert await registry.redis.zscore(registry.due_key, ES_1M.tag) == T0


async def test_bump_times_order_the_bumped_series(registry: TrackedRegistry, clock: Clock) -> None:
    clock.now = T0 + 10
    await registry.record_activity({}, {AAPL: T0 + 7, MSFT: T0 + 3})
    due = await registry.due(T0 + 10, 10)
    assert [(t.key, t.next_due, t.tier, t.last_request) for t in due] == [
        (MSFT, T0 + 3, "requested", None),
        (AAPL, T0 + 7, "requested", None),
    ]


async def test_due_is_most_overdue_first_within_the_limit(registry: TrackedRegistry) -> None:
    keys = _keys(5)
    await registry.record_activity({k: (1, T0) for k in keys}, [])
    for i, key in enumerate(keys):
        await registry.reschedule(key, T0 + 100 - i * 10)  # the last key is the most overdue
    assert [t.key for t in await registry.due(T0 + 100, 3)] == [keys[4], keys[3], keys[2]]
    assert [t.key for t in await registry.due(T0 + 75, 10)] == [keys[4], keys[3]]
    assert await registry.due(T0 + 100, 0) == []


async def test_reschedule_of_an_untracked_series_does_not_track_it(registry: TrackedRegistry) -> None:
    assert await registry.reschedule(AAPL, T0) is False
    assert await registry.get(AAPL) is None
    assert await registry.redis.zcard(registry.due_key) == 0


# set_result


async def test_set_result_counts_failures_in_a_row_and_resets_on_success(registry: TrackedRegistry) -> None:
    await registry.sync_configured(["ES=F"], [], ["1m"])
    for i in range(3):
        assert await registry.set_result(
            ES_1M,
            outcome="error",
            category="timeout",
            refreshed_at=T0 + i,
            next_due=T0 + 60,
            error="x" * 2000,
        )
    es = await registry.get(ES_1M)
    assert es is not None
    assert (es.fails_in_a_row, es.last_outcome, es.last_category, es.last_refresh) == (
        3,
        "error",
        "timeout",
        T0 + 2,
    )
    assert es.last_error == "x" * 500 and es.next_due == T0 + 60
    await registry.reschedule(ES_1M, T0 + 5)
    es = await registry.get(ES_1M)
    assert es is not None and (es.fails_in_a_row, es.next_due) == (3, T0 + 5)
    for outcome in ("unchanged", "ok"):
        await registry.set_result(
            ES_1M, outcome="throttled", category="rate_limit", refreshed_at=T0, next_due=T0
        )
        await registry.set_result(
            ES_1M, outcome=outcome, category=None, refreshed_at=T0 + 9, next_due=T0 + 99
        )
        es = await registry.get(ES_1M)
        assert es is not None
        assert (es.fails_in_a_row, es.last_outcome, es.last_error, es.next_due) == (0, outcome, None, T0 + 99)
    assert await registry.redis.zscore(registry.due_key, ES_1M.tag) == T0 + 99


async def test_set_result_of_an_untracked_series_does_not_resurrect_it(registry: TrackedRegistry) -> None:
    await registry.record_activity({AAPL: (1, T0)}, [])
    await registry.untrack(AAPL)
    assert await registry.get(AAPL) is None
    assert not await registry.set_result(AAPL, outcome="ok", category=None, refreshed_at=T0, next_due=T0 + 60)
    assert await registry.all() == [] and await registry.due(T0 + 60, 10) == []


# expire_idle


async def test_expire_idle_demotes_then_removes_but_keeps_configured(
    registry: TrackedRegistry, clock: Clock
) -> None:
    await registry.sync_configured(["ES=F"], ["NQ=F"], ["1m"])
    clock.now = T0 + 500
    await registry.record_activity({AAPL: (1, T0), MSFT: (1, T0 + 500), ES_1M: (1, T0), NQ_1M: (1, T0)}, [])
    assert await registry.expire_idle(T0 + 599, dormant_after_s=600, idle_untrack_s=3600) == (0, 0)
    assert await registry.expire_idle(T0 + 600, dormant_after_s=600, idle_untrack_s=3600) == (1, 0)
    tiers = {t.key: t.tier for t in await registry.all()}
    assert tiers == {AAPL: "dormant", MSFT: "requested", ES_1M: "active", NQ_1M: "dormant"}
    assert await registry.expire_idle(T0 + 1100, dormant_after_s=600, idle_untrack_s=3600) == (1, 0)
    assert await registry.expire_idle(T0 + 3600, dormant_after_s=600, idle_untrack_s=3600) == (0, 1)
    assert await registry.expire_idle(T0 + 10**7, dormant_after_s=600, idle_untrack_s=3600) == (0, 1)
    assert {t.key: t.tier for t in await registry.all()} == {ES_1M: "active", NQ_1M: "dormant"}
    assert set(await registry.redis.zrange(registry.due_key, 0, -1)) == {
        ES_1M.tag.encode(),
        NQ_1M.tag.encode(),
    }


async def test_expire_idle_rechecks_records_a_flush_changed_meanwhile(
    registry: TrackedRegistry, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await registry.record_activity({AAPL: (1, T0), MSFT: (1, T0)}, [])
    snapshot = await registry._read_all()
    clock.now = T0 + 4000
    await registry.record_activity({AAPL: (1, T0 + 4000)}, [])  # lands after expire_idle read

    async def stale() -> dict[str, object]:
        return snapshot

    monkeypatch.setattr(registry, "_read_all", stale)
    assert await registry.expire_idle(T0 + 4000, dormant_after_s=600, idle_untrack_s=3600) == (0, 1)
    monkeypatch.undo()
    aapl = await registry.get(AAPL)
    assert aapl is not None and aapl.tier == "requested" and await registry.get(MSFT) is None


# reads, replicas, corrupt records, round trips


async def test_all_and_to_json(registry: TrackedRegistry, clock: Clock) -> None:
    await registry.record_activity({MSFT: (2, T0), AAPL: (1, T0)}, [])
    clock.now = T0 + 1
    await registry.set_result(MSFT, outcome="ok", category=None, refreshed_at=T0 + 1, next_due=T0 + 61)
    assert [t.key for t in await registry.all()] == [AAPL, MSFT]
    msft = await registry.get(MSFT)
    assert msft is not None
    assert msft.to_json() == {
        "series": "MSFT|1h|0", "symbol": "MSFT", "interval": "1h", "prepost": False,
        "tier": "requested", "configured": False, "first_seen": T0, "last_request": T0,
        "requests": 2, "request_rate": pytest.approx(2 * LAM_PER_MIN), "rate_at": T0,
        "last_refresh": T0 + 1, "last_outcome": "ok", "last_category": None, "last_error": None,
        "next_due": T0 + 61, "fails_in_a_row": 0,
    }  # fmt: skip
    assert msft.idle_since == T0 and await registry.get(SeriesKey("IBM", "1d", False)) is None


async def test_two_replicas_flushing_at_once_lose_no_counts(redis_url: str, clock: Clock) -> None:
    clients = [aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)]
    try:
        await clients[0].flushdb()
        replicas = [TrackedRegistry(client, "yfp", clock=clock) for client in clients]
        clock.now = T0 + 100
        keys = _keys(20)
        batches = [{key: (i % 7 + 1, T0 + (i * 37) % 100) for key in keys} for i in range(50)]
        await asyncio.gather(
            *(replicas[i % 2].record_activity(b, [keys[i % 20]]) for i, b in enumerate(batches))
        )
        tracked = {t.key: t for t in await replicas[0].all()}
        assert set(tracked) == set(keys)
        ref = max(t for b in batches for _, t in b.values())
        expected = sum(
            n * LAM_PER_MIN * math.exp(-LAM_PER_MIN / 60 * (ref - t)) for b in batches for n, t in b.values()
        ) / len(keys)
        for t in tracked.values():
            assert t.requests == sum(i % 7 + 1 for i in range(50))
            assert t.last_request == ref and t.rate_at == ref
            assert t.request_rate == pytest.approx(expected, rel=1e-9)
            assert t.next_due == T0 + 100
    finally:
        for client in clients:
            await client.aclose()


async def test_corrupt_records_are_skipped_and_never_crash(
    registry: TrackedRegistry, redis_client: aioredis.Redis
) -> None:
    await registry.sync_configured(["ES=F"], [], ["1m"])
    garbage = {
        AAPL.tag: b"{not json",
        MSFT.tag: orjson.dumps({"tier": "vip", "configured": False, "first_seen": T0}),
        "NQ=F|1m|0": orjson.dumps({"tier": "requested", "first_seen": "yesterday"}),
        "IBM|1d|0": b"[1, 2]",
        "no-tag-at-all": orjson.dumps({"tier": "requested", "first_seen": T0}),
        "GE|1d|0": orjson.dumps({"tier": "requested", "configured": "yes"}),
        "F|1d|0": orjson.dumps({"tier": "requested", "last_error": 3}),
    }
    await redis_client.hset(registry.records_key, mapping=garbage)
    await redis_client.zadd(registry.due_key, {tag: T0 - 10 for tag in [*garbage, "ORPHAN|1d|0"]})
    with capture_logs() as logs:
        assert [t.key for t in await registry.all()] == [ES_1M]
        assert await registry.get(AAPL) is None
        assert [t.key for t in await registry.due(T0, 100)] == [ES_1M]
        assert await registry.expire_idle(T0 + 10**6, dormant_after_s=1, idle_untrack_s=2) == (0, 0)
        assert await registry.sync_configured(["ES=F"], [], ["1m"]) == (0, 0)
    assert all(entry["log_level"] == "warning" for entry in logs)
    assert any("skipped" in entry["event"] and entry["count"] == 7 for entry in logs)
    assert any("unscheduled" in entry["event"] and entry["count"] == 8 for entry in logs)
    # Unreadable ones left the schedule, so they cannot hold the head of the queue.
    assert await redis_client.zrange(registry.due_key, 0, -1) == [ES_1M.tag.encode()]
    # Activity for an unreadable series starts it afresh.
    with capture_logs() as logs:
        await registry.record_activity({AAPL: (2, T0)}, [MSFT])
    assert logs[0]["event"] == "tracked records unreadable; replaced" and logs[0]["count"] == 2
    aapl, msft = await registry.get(AAPL), await registry.get(MSFT)
    assert aapl is not None and aapl.requests == 2 and msft is not None and msft.tier == "requested"


async def test_corrupt_configured_record_is_rebuilt_by_sync(
    registry: TrackedRegistry, redis_client: aioredis.Redis
) -> None:
    await redis_client.hset(registry.records_key, ES_1M.tag, b"\xff")
    assert await registry.sync_configured(["ES=F"], [], ["1m"]) == (1, 0)
    es = await registry.get(ES_1M)
    assert es is not None and es.configured


async def test_records_missing_fields_read_with_defaults(
    registry: TrackedRegistry, redis_client: aioredis.Redis, clock: Clock
) -> None:
    await redis_client.hset(registry.records_key, AAPL.tag, orjson.dumps({"tier": "requested"}))
    aapl = await registry.get(AAPL)
    assert aapl is not None and (aapl.first_seen, aapl.requests, aapl.rate_now(T0)) == (0.0, 0, 0.0)
    clock.now = T0 + 1
    await registry.record_activity({AAPL: (1, T0)}, [])
    aapl = await registry.get(AAPL)
    assert aapl is not None and aapl.requests == 1 and aapl.request_rate == pytest.approx(LAM_PER_MIN)
    raw = await _raw(redis_client, AAPL)
    assert (raw["tier"], raw["next_due"], raw["requests"]) == ("requested", T0 + 1, 1)


async def _round_trips_per_step(registry: TrackedRegistry, n: int, round_trips: list[int]) -> list[int]:
    active = [f"A{i:04d}" for i in range(n // 2)]
    dormant = [f"D{i:04d}" for i in range(n - n // 2)]
    keys = _keys(n)
    costs: list[int] = []

    async def measure(step: Awaitable[object]) -> None:
        before = round_trips[0]
        await step
        costs.append(round_trips[0] - before)

    await measure(registry.sync_configured(active, dormant, ["1d"]))
    await measure(registry.record_activity({k: (1, T0) for k in keys}, keys))
    assert len(await registry.due(T0, 2 * n)) == 2 * n
    await measure(registry.due(T0, n))
    await measure(registry.all())
    await measure(registry.sync_configured(active[:1], [], ["1d"]))  # demotes n - 1
    await measure(registry.expire_idle(T0 + 10**6, dormant_after_s=600, idle_untrack_s=3600))
    assert len(await registry.all()) == 1
    return costs


async def test_batched_operations_cost_the_same_round_trips_for_10_and_1000_series(
    redis_client: aioredis.Redis, clock: Clock, round_trips: list[int]
) -> None:
    costs = {}
    await redis_client.config_resetstat()  # commandstats is server-wide: other tests use KEYS
    for n in (2, 10, 1000):  # the first run also loads the scripts into Redis
        await redis_client.flushdb()
        costs[n] = await _round_trips_per_step(
            TrackedRegistry(redis_client, "yfp", clock=clock), n, round_trips
        )
    assert costs[10] == costs[1000]
    assert max(costs[1000]) <= 3, costs  # a read, then SCRIPT EXISTS and one pipeline
    stats = await redis_client.info("commandstats")
    assert not {"cmdstat_keys", "cmdstat_scan"} & set(stats)


@pytest.fixture
async def second_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_replica_sees_another_replicas_records(
    registry: TrackedRegistry, second_client: aioredis.Redis, clock: Clock
) -> None:
    other = TrackedRegistry(second_client, "yfp", clock=clock)
    await registry.record_activity({AAPL: (1, T0)}, [])
    assert [t.key for t in await other.due(T0, 5)] == [AAPL]
    await other.untrack(AAPL)
    assert await registry.all() == []
