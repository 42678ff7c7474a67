"""Series leases on a real Redis: one owner at a time, renewals and releases only by the
owner, expiry hands a dead owner's lease over, and held() keeps it alive while the body
runs and gives it back however the body ends."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy import lease as lease_module
from proxy.lease import Lease, held, lease_factory, lease_key, new_owner
from proxy.series import SeriesKey

KEY = lease_key("yfp", "ES=F|1m|0")


async def owner_of(redis: aioredis.Redis, key: str = KEY) -> str | None:
    value = await redis.get(key)
    return None if value is None else value.decode()


def test_lease_key_shares_the_series_hash_tag() -> None:
    assert KEY == "yfp:{ES=F|1m|0}:lease"
    assert SeriesKey("ES=F", "1m", False).tag == "ES=F|1m|0"


def test_owner_ids_name_host_and_process_and_differ_per_lease() -> None:
    a, b = new_owner(), new_owner()
    assert a.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert a != b


def test_ttl_must_be_positive(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="ttl_ms"):
        Lease(redis_client, KEY, 0)


async def test_one_owner_at_a_time(redis_client: aioredis.Redis) -> None:
    first, second = Lease(redis_client, KEY, 5000), Lease(redis_client, KEY, 5000)
    assert await first.acquire()
    assert not await second.acquire()
    assert not await first.acquire(), "not re-entrant: a second refresh in this process waits too"
    assert await owner_of(redis_client) == first.owner
    assert 0 < await redis_client.pttl(KEY) <= 5000


async def test_only_the_owner_renews(redis_client: aioredis.Redis) -> None:
    first, second = Lease(redis_client, KEY, 1000), Lease(redis_client, KEY, 60_000)
    assert await first.acquire()
    assert not await second.renew()
    assert await redis_client.pttl(KEY) <= 1000, "a stranger's renew must not extend it"
    first.ttl_ms = 60_000
    assert await first.renew()
    assert await redis_client.pttl(KEY) > 1000


async def test_only_the_owner_releases(redis_client: aioredis.Redis) -> None:
    first, second = Lease(redis_client, KEY, 5000), Lease(redis_client, KEY, 5000)
    assert await first.acquire()
    assert not await second.release()
    assert await owner_of(redis_client) == first.owner
    assert await first.release()
    assert await owner_of(redis_client) is None
    assert not await first.release()
    assert not await first.renew(), "a released lease cannot be renewed back to life"


async def test_a_dead_owners_lease_expires_and_another_takes_it(redis_client: aioredis.Redis) -> None:
    dead, survivor = Lease(redis_client, KEY, 200), Lease(redis_client, KEY, 5000)
    assert await dead.acquire()  # then the replica dies: no renew, no release
    assert not await survivor.acquire()
    await asyncio.sleep(0.3)
    assert await survivor.acquire()
    assert await owner_of(redis_client) == survivor.owner
    assert not await dead.renew()
    assert not await dead.release()
    assert await owner_of(redis_client) == survivor.owner


async def test_held_renews_past_the_ttl_while_the_body_runs(redis_client: aioredis.Redis) -> None:
    async with held(redis_client, KEY, 300) as lease:
        assert lease is not None
        for _ in range(5):
            await asyncio.sleep(0.2)
            assert await owner_of(redis_client) == lease.owner
            assert not await Lease(redis_client, KEY, 300).acquire()
        assert not lease.lost
    assert await owner_of(redis_client) is None, "released at the end"


async def test_held_yields_none_and_leaves_anothers_lease_alone(redis_client: aioredis.Redis) -> None:
    other = Lease(redis_client, KEY, 5000)
    assert await other.acquire()
    async with held(redis_client, KEY, 300) as lease:
        assert lease is None
    assert await owner_of(redis_client) == other.owner


async def test_held_releases_when_the_body_raises(redis_client: aioredis.Redis) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with held(redis_client, KEY, 5000) as lease:
            assert lease is not None
            raise RuntimeError("boom")
    assert await owner_of(redis_client) is None


async def test_held_releases_when_the_body_is_cancelled(redis_client: aioredis.Redis) -> None:
    entered = asyncio.Event()

    async def refresh() -> None:
        async with held(redis_client, KEY, 5000):
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(refresh())
    await asyncio.wait_for(entered.wait(), 2)
    assert await owner_of(redis_client) is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await owner_of(redis_client) is None
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("lease-renew")] == []


async def test_held_flags_a_lease_deleted_under_it_and_spares_the_new_owner(
    redis_client: aioredis.Redis,
) -> None:
    newcomer = Lease(redis_client, KEY, 5000)
    async with held(redis_client, KEY, 300) as lease:
        assert lease is not None
        await redis_client.delete(KEY)  # e.g. an operator's purge, or expiry during a stall
        assert await newcomer.acquire()
        await asyncio.sleep(0.25)  # more than one renewal period (100 ms)
        assert lease.lost
    assert await owner_of(redis_client) == newcomer.owner, "the lost lease must not delete the new one"


async def test_a_renewal_blip_is_survived_while_the_lease_still_holds(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_renew = Lease.renew
    failures = iter([True])

    async def flaky(self: Lease) -> bool:
        if next(failures, False):
            raise RedisConnectionError("connection reset")
        return await real_renew(self)

    monkeypatch.setattr(Lease, "renew", flaky)
    async with held(redis_client, KEY, 300) as lease:
        assert lease is not None
        await asyncio.sleep(0.6)
        assert not lease.lost
        assert await owner_of(redis_client) == lease.owner


async def test_renewals_failing_for_a_whole_ttl_count_as_lost(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(self: Lease) -> bool:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(Lease, "renew", down)
    async with held(redis_client, KEY, 300) as lease:
        assert lease is not None
        await asyncio.sleep(0.15)
        assert not lease.lost, "one failed renewal inside the ttl is not a loss yet"
        await asyncio.sleep(0.35)
        assert lease.lost


async def test_a_failed_release_does_not_hide_the_bodys_outcome(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(self: Lease) -> bool:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(Lease, "release", down)
    with pytest.raises(RuntimeError, match="boom"):
        async with held(redis_client, KEY, 5000):
            raise RuntimeError("boom")
    assert 0 < await redis_client.pttl(KEY) <= 5000, "left to expire"


async def test_lease_factory_answers_whether_this_replica_may_fetch(redis_client: aioredis.Redis) -> None:
    leased = lease_factory(redis_client, "yfp", 5000)
    key = SeriesKey("ES=F", "1m", False)
    async with leased(key) as mine:
        assert mine
        async with leased(key) as again:
            assert not again
        assert await redis_client.exists(KEY)
    assert not await redis_client.exists(KEY)
    assert lease_module.lease_key("yfp", key.tag) == KEY
