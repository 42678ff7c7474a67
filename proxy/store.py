"""SeriesStore: one Redis hash per series, written atomically, announced on pub/sub.

Layout (all keys of one series share a Cluster hash tag, DESIGN.md Scale-out):
``{prefix}:{SYMBOL|interval|prepost}:series`` is a hash with fields ``bars`` and
``days`` (binary, proxy.codec), ``meta`` / ``events`` / ``info`` (JSON) and
``version``. A write is one compare-and-set Lua script: it checks the version it
read, replaces every field with one HSET and publishes the invalidation, so a crash
leaves the old or the new series, never a mix (ADR 0002).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from proxy.codec import CodecError, decode_bars, decode_days, encode_bars, encode_days
from proxy.ingest import ChartPayload
from proxy.merge import merge_series
from proxy.series import QUOTE_KEYS, Series, SeriesKey

_CAS_WRITE = r"""
local current = redis.call('HGET', KEYS[1], 'version')
if (current or '0') ~= ARGV[1] then
  return -1
end
local version = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'version', version, 'bars', ARGV[2], 'days', ARGV[3],
           'meta', ARGV[4], 'events', ARGV[5], 'info', ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[8] .. '\n' .. version)
return version
"""
_MAX_CAS_RETRIES = 5
_A = TypeVar("_A")
_R = TypeVar("_R")

# Sees the stored series (None: nothing stored) and the upstream answer; returns the
# answer to merge (possibly with bars repaired) or None to refuse it.
MergeGate = Callable[[Series | None, ChartPayload], ChartPayload | None]
Annotate = Callable[[Series], None]


@dataclass(frozen=True, slots=True)
class StoredState:
    """What a bulk check needs of a stored series, without decoding its bars."""

    coverage_end: int
    fetched_at: float
    quality: float | None


class ConflictError(RuntimeError):
    """Another writer kept changing the series; the merge gave up after retries."""


class SeriesStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, cpu: Executor | None = None) -> None:
        """``cpu``: where a merge decodes, validates, merges and encodes (tens of ms for a
        long minute series). The app gives it one thread of its own, so that work does not
        hold up the event loop that answers clients; None runs it inline."""
        self.redis = redis
        self._cpu = cpu
        self.prefix = prefix
        self.channel = f"{prefix}:invalidate"
        self._index_key = f"{prefix}:series-index"
        self._cas = redis.register_script(_CAS_WRITE)

    def key(self, series: SeriesKey) -> str:
        return f"{self.prefix}:{{{series.tag}}}:series"

    async def load(self, key: SeriesKey) -> Series | None:
        return _decode_or_none(key, await self.redis.hgetall(self.key(key)))

    async def merge(
        self,
        key: SeriesKey,
        payload: ChartPayload,
        *,
        window_start: int,
        window_end: int,
        fetched_at: float,
        gate: MergeGate | None = None,
        annotate: Annotate | None = None,
    ) -> Series:
        """Merge an upstream answer; returns the stored series (unchanged if the gate refused).

        ``gate`` sees the stored series and the answer and may repair or refuse the answer;
        ``annotate`` may add derived fields (the quality score) before the write. Both run
        again when a concurrent writer forces a retry, on the newer stored series. They run
        on the store's CPU executor when it has one, so they must not touch the event loop.
        """

        def prepare(fields: dict[Any, Any]) -> tuple[Series | None, Series | None, list[bytes]]:
            current = _decode_or_none(key, fields)
            admitted = payload if gate is None else gate(current, payload)
            if admitted is None:
                return current, None, []
            merged = merge_series(
                current,
                key,
                admitted,
                window_start=window_start,
                window_end=window_end,
                fetched_at=fetched_at,
            )
            if annotate is not None:
                annotate(merged)
            return current, merged, _encode(merged)

        for _ in range(_MAX_CAS_RETRIES):
            fields = await self.redis.hgetall(self.key(key))
            current, merged, encoded = await self._cpu_bound(prepare, fields)
            if merged is None:
                if current is not None:
                    return current
                raise ValueError(f"the gate refused the first answer for {key}, and nothing is stored")
            version = await self._write(merged, current.version if current else 0, encoded)
            if version >= 0:
                merged.version = version
                return merged
        raise ConflictError(f"series {key} kept changing during merge")

    async def _cpu_bound(self, fn: Callable[[_A], _R], arg: _A) -> _R:
        if self._cpu is None:
            return fn(arg)
        return await asyncio.get_running_loop().run_in_executor(self._cpu, fn, arg)

    async def _write(self, series: Series, expected_version: int, encoded: list[bytes] | None = None) -> int:
        args = [str(expected_version), *(encoded or _encode(series)), self.channel, series.key.tag]
        version = int(await self._cas(keys=[self.key(series.key)], args=args))
        if version > 0:
            # The index lives in its own slot, so it is not part of the atomic write: it only
            # lists series to look at, and every write re-adds its series.
            await self.redis.sadd(self._index_key, series.key.tag)
        return version

    async def peek_many(self, keys: list[SeriesKey]) -> list[StoredState | None]:
        """The stored state of many series in one pipelined round trip (None: not stored)."""
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(self.key(key), "info")
            raw = await pipe.execute()
        out: list[StoredState | None] = []
        for value in raw:
            try:
                info = orjson.loads(value) if value else None
                state = None
                if info is not None:
                    end, fetched = int(info["coverage_end"]), float(info["fetched_at"])
                    state = StoredState(end, fetched, info.get("quality"))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                state = None
            out.append(state)
        return out

    async def delete(self, key: SeriesKey) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.key(key))
            pipe.srem(self._index_key, key.tag)
            pipe.publish(self.channel, f"{key.tag}\n0")
            await pipe.execute()

    async def known_series(self) -> list[SeriesKey]:
        tags = await self.redis.smembers(self._index_key)
        return [k for k in (parse_tag(t.decode() if isinstance(t, bytes) else t) for t in tags) if k]

    async def bytes_used(self, key: SeriesKey) -> int:
        return int(await self.redis.memory_usage(self.key(key)) or 0)


def parse_invalidation(message: str) -> tuple[SeriesKey, int] | None:
    """``tag\nversion`` as published by a write (version 0: the series was deleted)."""
    tag, _, version = message.partition("\n")
    key = parse_tag(tag)
    if key is None or not version.isdigit():
        return None
    return key, int(version)


def parse_tag(tag: str) -> SeriesKey | None:
    parts = tag.rsplit("|", 2)
    if len(parts) != 3 or parts[2] not in ("0", "1"):
        return None
    return SeriesKey(parts[0], parts[1], parts[2] == "1")


def _encode(series: Series) -> list[bytes]:
    info = {
        "coverage_start": series.coverage_start,
        "coverage_end": series.coverage_end,
        "fetched_at": series.fetched_at,
        "prev_close": None if math.isnan(series.prev_close) else series.prev_close,
        "quality": series.quality,
        "completeness": series.completeness,
        "quality_issues": list(series.quality_issues),
        "quote_order": list(series.quote_order),
    }
    return [
        encode_bars(series.bars),
        encode_days(series.days),
        orjson.dumps(series.meta),
        orjson.dumps(series.events),
        orjson.dumps(info),
    ]


def _decode_or_none(key: SeriesKey, fields: dict[Any, Any]) -> Series | None:
    """None for a series that is not stored, and for one that no longer decodes (it is then
    replaced by the next merge rather than failing every request)."""
    if not fields:
        return None
    try:
        return _decode(key, fields)
    except (CodecError, orjson.JSONDecodeError, KeyError, ValueError):
        return None


def _decode(key: SeriesKey, fields: dict[Any, Any]) -> Series:
    get = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    info = orjson.loads(get["info"])
    prev = info.get("prev_close")
    order = tuple(info.get("quote_order") or QUOTE_KEYS)
    return Series(
        key=key,
        bars=decode_bars(get["bars"]),
        meta=orjson.loads(get["meta"]),
        days=decode_days(get["days"]),
        events=orjson.loads(get["events"]),
        prev_close=math.nan if prev is None else float(prev),
        coverage_start=int(info["coverage_start"]),
        coverage_end=int(info["coverage_end"]),
        fetched_at=float(info["fetched_at"]),
        version=int(get["version"]),
        quality=info.get("quality"),
        completeness=info.get("completeness"),
        quality_issues=tuple(info.get("quality_issues") or ()),
        quote_order=order if sorted(order) == sorted(QUOTE_KEYS) else QUOTE_KEYS,
    )
