"""The in-process hot layer: decoded series and their rendered bodies, in memory.

Why: a fresh hit must cost no Redis round trip and no JSON encoding. Entries are
dropped when Redis announces a change on the store's pub/sub channel; when that
subscription breaks, messages may have been missed, so everything is dropped once it
is back. While Redis is down, entries stay and keep being served (stale beats down).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog

from proxy.series import Series, SeriesKey
from proxy.store import parse_invalidation
from proxy.tasks import cancel_requested
from proxy.window import SeriesIndex

log = structlog.get_logger("yfproxy.hot")

_GZIP_MIN_BYTES = 1024


@dataclass(slots=True)
class RenderedBody:
    body: bytes
    etag: str
    headers: dict[str, str]  # the headers that depend only on this body
    _gzipped: bytes | None = None

    @classmethod
    def of(cls, body: bytes, *, quality: str = "1") -> RenderedBody:
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        headers = {
            "Content-Type": "application/json;charset=utf-8",
            "ETag": etag,
            "Vary": "Accept-Encoding",
            "X-Data-Quality": quality,
        }
        return cls(body, etag, headers)

    @property
    def gzipped(self) -> bytes | None:
        """Compressed once, on first demand; None when compression would not pay."""
        if self._gzipped is None and len(self.body) >= _GZIP_MIN_BYTES:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped


@dataclass(slots=True)
class HotEntry:
    series: Series
    index: SeriesIndex
    bodies: OrderedDict[Hashable, RenderedBody] = field(default_factory=OrderedDict)


class HotLayer:
    def __init__(self, max_series: int, max_bodies: int) -> None:
        self._entries: OrderedDict[SeriesKey, HotEntry] = OrderedDict()
        self._max_series = max_series
        self._max_bodies_per_series = max(1, max_bodies // max(1, max_series) * 4)
        self._max_bodies = max_bodies
        self._body_count = 0
        self.subscribed = False
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: SeriesKey) -> HotEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, series: Series) -> HotEntry:
        current = self._entries.get(series.key)
        if current is not None and current.series.version >= series.version and series.version:
            return current
        self._drop(series.key)
        entry = HotEntry(series, SeriesIndex(series))
        self._entries[series.key] = entry
        while len(self._entries) > self._max_series:
            self._drop(next(iter(self._entries)))
        return entry

    def body(self, entry: HotEntry, cut: Hashable) -> RenderedBody | None:
        found = entry.bodies.get(cut)
        if found is not None:
            entry.bodies.move_to_end(cut)
        return found

    def keep_body(self, entry: HotEntry, cut: Hashable, rendered: RenderedBody) -> None:
        if entry.series.key not in self._entries:
            return  # invalidated while rendering: do not resurrect
        entry.bodies[cut] = rendered
        self._body_count += 1
        if len(entry.bodies) > self._max_bodies_per_series:
            entry.bodies.popitem(last=False)
            self._body_count -= 1
        if self._body_count > self._max_bodies:
            self._evict_bodies()

    def _evict_bodies(self) -> None:
        for entry in self._entries.values():
            while entry.bodies and self._body_count > self._max_bodies * 3 // 4:
                entry.bodies.popitem(last=False)
                self._body_count -= 1

    def invalidate(self, key: SeriesKey, version: int = 0) -> None:
        """Drop the entry unless it already holds ``version`` or newer (our own write)."""
        entry = self._entries.get(key)
        if entry is not None and (version == 0 or entry.series.version < version):
            self._drop(key)

    def clear(self) -> None:
        self._entries.clear()
        self._body_count = 0

    def _drop(self, key: SeriesKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._body_count -= len(entry.bodies)

    @property
    def body_count(self) -> int:
        return self._body_count


async def listen_for_invalidations(
    redis: aioredis.Redis, channel: str, hot: HotLayer, *, retry_s: float = 1.0
) -> None:
    """Keep the hot layer coherent with Redis until cancelled."""
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            # Anything could have changed while we were not listening.
            hot.clear()
            hot.subscribed = True
            while True:
                # Polled, not pubsub.listen(): a cancellation redis-py swallows inside the read
                # is seen here within a second instead of never.
                message = await pubsub.get_message(timeout=1.0)
                if cancel_requested():
                    raise asyncio.CancelledError
                if message is None:
                    continue
                data = message.get("data")
                parsed = parse_invalidation(data.decode() if isinstance(data, bytes) else str(data))
                if parsed is not None:
                    hot.invalidate(*parsed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # redis errors of every kind: keep serving, retry
            if hot.subscribed:
                log.warning("invalidation_subscription_lost", error=str(exc))
            hot.subscribed = False
            await asyncio.sleep(retry_s)
        finally:
            # Bounded: shutting down must never wait on a dead connection.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await pubsub.aclose()
