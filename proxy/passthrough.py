"""Allow-listed pass-through of the other Yahoo endpoints yfinance calls.

quoteSummary, quote, search and fundamentals-timeseries are small, user-specific
and rarely repeated, so they are not modelled: they are forwarded through the same
upstream client (same pacing, breaker, retries), coalesced per URL and kept for a
short URL-keyed TTL in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions

from proxy.upstream import UpstreamClient

IGNORED_PARAMS = frozenset({"crumb"})
_HEADER = struct.Struct("<H")


@dataclass(frozen=True, slots=True)
class PassthroughAnswer:
    status: int
    content_type: str
    body: bytes
    cached: bool


class Passthrough:
    def __init__(
        self,
        upstream: UpstreamClient,
        redis: aioredis.Redis,
        *,
        prefix: str,
        allow: Iterable[str],
        ttl_s: int,
    ) -> None:
        self._upstream = upstream
        self._redis = redis
        self._prefix = prefix
        self.allow = tuple(allow)  # swapped whole by a runtime configuration update
        self._ttl_s = ttl_s
        self._inflight: dict[str, asyncio.Future[PassthroughAnswer]] = {}

    def allowed(self, path: str) -> bool:
        return any(path.startswith(prefix) for prefix in self.allow)

    async def get(self, path: str, params: list[tuple[str, str]]) -> PassthroughAnswer:
        kept = sorted((k, v) for k, v in params if k not in IGNORED_PARAMS)
        url_key = path + "?" + "&".join(f"{k}={v}" for k, v in kept)
        cache_key = f"{self._prefix}:pt:" + hashlib.sha256(url_key.encode()).hexdigest()
        cached = await self._cached(cache_key)
        if cached is not None:
            return cached
        running = self._inflight.get(cache_key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[PassthroughAnswer] = asyncio.get_running_loop().create_future()
        self._inflight[cache_key] = future
        try:
            answer = await self._fetch(path, dict(kept), cache_key)
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: joiners re-raise it themselves
            raise
        finally:
            del self._inflight[cache_key]

    async def _fetch(self, path: str, params: dict[str, str], cache_key: str) -> PassthroughAnswer:
        raw = await self._upstream.passthrough(path, params)
        content_type = raw.headers.get("content-type", "application/json;charset=utf-8")
        answer = PassthroughAnswer(raw.status, content_type, raw.body, cached=False)
        if raw.status in (200, 404):
            ct = content_type.encode()
            blob = _HEADER.pack(raw.status) + bytes([len(ct)]) + ct + raw.body
            # A cache we cannot write is only a slower pass-through.
            with contextlib.suppress(redis.exceptions.RedisError):
                await self._redis.set(cache_key, blob, ex=self._ttl_s)
        return answer

    async def _cached(self, cache_key: str) -> PassthroughAnswer | None:
        try:
            blob = await self._redis.get(cache_key)
        except redis.exceptions.RedisError:
            return None
        if not blob or len(blob) < 3:
            return None
        (status,) = _HEADER.unpack_from(blob, 0)
        ct_len = blob[2]
        content_type = blob[3 : 3 + ct_len].decode("latin-1")
        return PassthroughAnswer(status, content_type, blob[3 + ct_len :], cached=True)
