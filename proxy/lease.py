"""Leases: one replica at a time refreshes a series (DESIGN.md "Scale-out").

A lease is a Redis key holding its owner's id with an expiry: taken with ``SET NX PX``,
renewed and released by Lua scripts that act only while the value is still ours, so a
replica whose lease expired (a long GC pause, a partition) can neither extend nor delete
the lease another replica took over since. A replica that dies simply stops renewing:
the key expires after ``ttl_ms`` and the next replica takes it.

The key lives under the series' Cluster hash tag (:func:`lease_key`), next to its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from proxy.series import SeriesKey
from proxy.tasks import cancel_all, cancel_requested

log = structlog.get_logger("yfproxy.lease")

# PEXPIRE only while the lease is still ours: 1 when renewed, 0 when lost.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# DEL only while the lease is still ours: never delete the lease another replica holds.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(prefix: str, series_tag: str) -> str:
    return f"{prefix}:{{{series_tag}}}:lease"


def new_owner() -> str:
    """hostname:pid:random: readable in Redis, unique per lease even within one process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    def __init__(self, redis: aioredis.Redis, key: str, ttl_ms: int, *, owner: str | None = None) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        self.redis = redis
        self.key = key
        self.ttl_ms = ttl_ms
        self.owner = owner or new_owner()
        # Set by held() when a renewal finds the lease gone: another replica may be
        # refreshing the series now, so exclusive work should stop before writing.
        self.lost = False
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> bool:
        return bool(await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]))

    async def release(self) -> bool:
        return bool(await self._release(keys=[self.key], args=[self.owner]))


@contextlib.asynccontextmanager
async def held(
    redis: aioredis.Redis, key: str, ttl_ms: int, *, owner: str | None = None
) -> AsyncIterator[Lease | None]:
    """Hold the lease ``key`` for the body: yields the :class:`Lease`, or None when another
    owner holds it. While held it is renewed every ``ttl_ms / 3``; it is released at the
    end, also on an exception or a cancellation."""
    lease = Lease(redis, key, ttl_ms, owner=owner)
    asked = asyncio.get_running_loop().time()
    if not await lease.acquire():
        yield None
        return
    keeper = asyncio.create_task(_keep(lease, asked), name=f"lease-renew:{key}")
    try:
        yield lease
    finally:
        keeper.cancel()
        # Shielded: a second cancellation of the body must not leave the lease to expire.
        await asyncio.shield(_release_quietly(lease, keeper))


async def _keep(lease: Lease, confirmed: float) -> None:
    """Renew every ttl/3. ``confirmed``: loop time before the last command that set the
    expiry, so the lease surely runs until ``confirmed + ttl``."""
    loop = asyncio.get_running_loop()
    every_s = lease.ttl_ms / 3000
    while True:
        await asyncio.sleep(every_s)
        sent = loop.time()
        try:
            renewed = await lease.renew()
            if cancel_requested():  # a cancellation redis-py swallowed inside renew()
                raise asyncio.CancelledError
        except (RedisError, OSError) as exc:
            # A blip is survivable while the last renewal still holds; after that another
            # replica may have taken the lease.
            if loop.time() - confirmed < lease.ttl_ms / 1000:
                log.warning("lease_renew_failed", key=lease.key, error=str(exc))
                continue
            renewed = False
        if not renewed:
            lease.lost = True
            log.warning("lease_lost", key=lease.key, owner=lease.owner)
            return
        confirmed = sent


async def _release_quietly(lease: Lease, keeper: asyncio.Task[None]) -> None:
    # Re-cancels until the keeper has ended: a cancellation that lands inside its renew()
    # can be swallowed by redis-py, and waiting once would then wait forever.
    await cancel_all([keeper])
    try:
        await lease.release()
    except (RedisError, OSError) as exc:
        # The body's own outcome matters more; the lease expires by itself.
        log.warning("lease_release_failed", key=lease.key, error=str(exc))


def lease_factory(
    redis: aioredis.Redis, prefix: str, ttl_ms: int
) -> Callable[[SeriesKey], AbstractAsyncContextManager[bool]]:
    """proxy.fetcher's ``LeaseFactory``: per series, True when this replica holds its lease."""

    @contextlib.asynccontextmanager
    async def lease_for(key: SeriesKey) -> AsyncIterator[bool]:
        async with held(redis, lease_key(prefix, key.tag), ttl_ms) as lease:
            yield lease is not None

    return lease_for
