"""TrackedRegistry: the series the background refresher keeps fresh, shared by all replicas.

Layout: a hash ``{prefix}:{tracked}:series`` (field = series tag ``SYMBOL|interval|0/1``,
value = a JSON record, :class:`Tracked` without its key) and a sorted set
``{prefix}:{tracked}:due`` (member = tag, score = next due unix time). Both keys share the
Cluster hash tag ``{tracked}``, so one Lua script may update a record and its schedule
together (DESIGN.md Scale-out); nothing uses KEYS, SCAN or a multi-slot operation.

Every read-modify-write runs in Lua, so replicas flushing at the same time lose no
update; batches go in one pipeline of scripts of at most ``_CHUNK`` series each (one
round trip, and no single script holds Redis for long). The record's ``next_due`` and
the zset score are always written together by the same script.

``request_rate`` is requests per minute, an exponentially decayed average with a
half-life of ``rate_half_life_s`` (10 min by default): with ``λ = ln 2 / half-life``,
``rate(T) = Σ λ·e^(−λ·(T − tᵢ))`` over the requests ``tᵢ``; a steady rate of r
requests/min reads r. Each flush adds ``n·λ·e^(−λ·(ref − t))`` at the batch's last
request time ``t`` and decays the stored value to ``ref = max(rate_at, t)``, so
concurrent flushes give the same result in any order. Times and rates pass through
Redis's cjson, which keeps 14 significant digits (0.1 ms for unix times).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import orjson
import redis.asyncio as aioredis
import structlog
from redis.commands.core import AsyncScript

from proxy.series import SeriesKey
from proxy.store import parse_tag

log = structlog.get_logger("yfproxy.registry")

_T = TypeVar("_T")

Tier = Literal["active", "dormant", "requested"]
TIERS: tuple[str, ...] = get_args(Tier)
RATE_HALF_LIFE_S = 600.0
# Outcomes after which a series is not failing: anything else counts one more failure.
GOOD_OUTCOMES = frozenset({"ok", "unchanged"})
_CHUNK = 500  # series per script call: bounds how long one script blocks Redis
_MAX_ERROR_CHARS = 500
_MAX_LOGGED_TAGS = 10

# Shared by every script: KEYS[1] = records hash, KEYS[2] = due zset, ARGV[1] = now.
_PRELUDE = r"""
local now = tonumber(ARGV[1])
local function num(v, default)
  if type(v) == 'number' then return v end
  return default
end
local TIERS = {active = true, dormant = true, requested = true}
local NUMBERS = {'first_seen', 'last_request', 'requests', 'request_rate', 'rate_at', 'last_refresh',
                 'next_due', 'fails_in_a_row'}
local STRINGS = {'last_outcome', 'last_category', 'last_error'}
local function optional(v, kind)
  if kind == 'number' and type(v) == 'number' then return v == v and math.abs(v) ~= math.huge end
  return v == nil or v == cjson.null or type(v) == kind
end
-- What proxy.registry._parse accepts, so writers replace what readers would skip.
local function readable(tag, rec)
  if type(rec) ~= 'table' or not TIERS[rec.tier] or not optional(rec.configured, 'boolean') then
    return false
  end
  if not string.find(tag, '^.*|[^|]*|[01]$') then return false end
  for _, k in ipairs(NUMBERS) do
    if not optional(rec[k], 'number') then return false end
  end
  for _, k in ipairs(STRINGS) do
    if not optional(rec[k], 'string') then return false end
  end
  return true
end
-- A record, or nil; the second value says the stored JSON was unreadable.
local function load(tag)
  local raw = redis.call('HGET', KEYS[1], tag)
  if not raw then return nil, false end
  local ok, rec = pcall(cjson.decode, raw)
  if ok and readable(tag, rec) then return rec, false end
  return nil, true
end
local function fresh(tier, configured, seen)
  return {tier = tier, configured = configured, first_seen = seen, last_request = cjson.null,
          requests = 0, request_rate = 0, rate_at = cjson.null, last_refresh = cjson.null,
          last_outcome = cjson.null, last_category = cjson.null, last_error = cjson.null,
          next_due = now, fails_in_a_row = 0}
end
local function save(tag, rec)
  rec.next_due = num(rec.next_due, now)
  redis.call('HSET', KEYS[1], tag, cjson.encode(rec))
  redis.call('ZADD', KEYS[2], rec.next_due, tag)
end
"""

# ARGV: now, λ per second, n, then n × (tag, count, last request time), then (tag, bump time)...
# Returns the tags whose unreadable records were replaced by fresh ones.
_RECORD = (
    _PRELUDE
    + r"""
local lambda = tonumber(ARGV[2])
local replaced = {}
local function get_or_create(tag, seen)
  local rec, corrupt = load(tag)
  if corrupt then table.insert(replaced, tag) end
  return rec or fresh('requested', false, seen)
end
local i = 4
for _ = 1, tonumber(ARGV[3]) do
  local tag, count, at = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  i = i + 3
  local rec = get_or_create(tag, at)
  local rate_at = num(rec.rate_at, at)
  local ref = math.max(rate_at, at)
  rec.request_rate = num(rec.request_rate, 0) * math.exp(-lambda * (ref - rate_at))
                     + count * lambda * 60 * math.exp(-lambda * (ref - at))
  rec.rate_at = ref
  rec.requests = num(rec.requests, 0) + count
  rec.last_request = math.max(num(rec.last_request, at), at)
  if rec.tier == 'dormant' and rec.configured ~= true then rec.tier = 'requested' end
  save(tag, rec)
end
while i <= #ARGV do
  local tag, at = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local rec = get_or_create(tag, at)
  rec.next_due = math.min(num(rec.next_due, at), at)  -- a bump never delays
  save(tag, rec)
end
return replaced
"""
)

# ARGV: now, n, then n × (tag, tier) configured, then tags to demote if still configured.
_SYNC = (
    _PRELUDE
    + r"""
local added, demoted, i = 0, 0, 3
for _ = 1, tonumber(ARGV[2]) do
  local tag, tier = ARGV[i], ARGV[i + 1]
  i = i + 2
  local rec = load(tag)
  if rec == nil then
    rec = fresh(tier, true, now)
    added = added + 1
  else
    rec.tier = tier
    rec.configured = true
  end
  save(tag, rec)
end
while i <= #ARGV do
  local rec = load(ARGV[i])
  if rec ~= nil and rec.configured == true then
    rec.configured = false
    rec.tier = 'requested'
    save(ARGV[i], rec)
    demoted = demoted + 1
  end
  i = i + 1
end
return {added, demoted}
"""
)

# ARGV: now, demote if idle since <= this, remove if idle since <= this, tags...
# Re-checks each candidate: a flush may have landed since the caller read the records.
_EXPIRE = (
    _PRELUDE
    + r"""
local dormant_before, untrack_before = tonumber(ARGV[2]), tonumber(ARGV[3])
local demoted, removed = 0, 0
for i = 4, #ARGV do
  local tag = ARGV[i]
  local rec = load(tag)
  if rec ~= nil and rec.configured ~= true then
    local idle_since = num(rec.last_request, num(rec.first_seen, now))
    if idle_since <= untrack_before then
      redis.call('HDEL', KEYS[1], tag)
      redis.call('ZREM', KEYS[2], tag)
      removed = removed + 1
    elseif rec.tier == 'requested' and idle_since <= dormant_before then
      rec.tier = 'dormant'
      save(tag, rec)
      demoted = demoted + 1
    end
  end
end
return {demoted, removed}
"""
)

# ARGV: now, tag, JSON object of fields to set, fails_in_a_row: 'reset' | 'fail' | 'keep'.
# An untracked series stays untracked (returns 0): a late result must not resurrect it.
_UPDATE = (
    _PRELUDE
    + r"""
local rec = load(ARGV[2])
if rec == nil then return 0 end
for k, v in pairs(cjson.decode(ARGV[3])) do rec[k] = v end
if ARGV[4] == 'reset' then
  rec.fails_in_a_row = 0
elseif ARGV[4] == 'fail' then
  rec.fails_in_a_row = num(rec.fails_in_a_row, 0) + 1
end
save(ARGV[2], rec)
return 1
"""
)

# ARGV: now, then (tag, record as the caller read it, "" if none)... Drops from the schedule the
# tags whose record is still that unreadable value (else they would stay "most overdue"
# forever); a record written meanwhile keeps its place.
_UNSCHEDULE = (
    _PRELUDE
    + r"""
local dropped = 0
for i = 2, #ARGV, 2 do
  if (redis.call('HGET', KEYS[1], ARGV[i]) or '') == ARGV[i + 1] then
    dropped = dropped + redis.call('ZREM', KEYS[2], ARGV[i])
  end
end
return dropped
"""
)


@dataclass(frozen=True, slots=True)
class Tracked:
    key: SeriesKey
    tier: Tier
    configured: bool  # listed in [instruments]: never untracked while it stays listed
    first_seen: float
    last_request: float | None = None  # latest client request (unix time)
    requests: int = 0  # client requests counted since first seen
    request_rate: float = 0.0  # requests per minute as of ``rate_at`` (decayed average)
    rate_at: float | None = None
    last_refresh: float | None = None  # time of the latest refresh attempt
    last_outcome: str | None = None
    last_category: str | None = None
    last_error: str | None = None
    next_due: float = 0.0
    fails_in_a_row: int = 0

    @property
    def idle_since(self) -> float:
        """Since when nobody asked for it: what expiry measures from."""
        return self.first_seen if self.last_request is None else self.last_request

    def rate_now(self, now: float, *, half_life_s: float = RATE_HALF_LIFE_S) -> float:
        """``request_rate`` decayed from ``rate_at`` to ``now`` (requests per minute)."""
        if self.rate_at is None:
            return 0.0
        return self.request_rate * math.exp(-math.log(2) / half_life_s * max(0.0, now - self.rate_at))

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.key.tag,
            "symbol": self.key.symbol,
            "interval": self.key.interval,
            "prepost": self.key.prepost,
            "tier": self.tier,
            "configured": self.configured,
            "first_seen": self.first_seen,
            "last_request": self.last_request,
            "requests": self.requests,
            "request_rate": self.request_rate,
            "rate_at": self.rate_at,
            "last_refresh": self.last_refresh,
            "last_outcome": self.last_outcome,
            "last_category": self.last_category,
            "last_error": self.last_error,
            "next_due": self.next_due,
            "fails_in_a_row": self.fails_in_a_row,
        }


class TrackedRegistry:
    """The tracked series and their schedule; ``clock`` dates new records and flushes."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        rate_half_life_s: float = RATE_HALF_LIFE_S,
    ) -> None:
        self.redis = redis
        self.records_key = f"{prefix}:{{tracked}}:series"
        self.due_key = f"{prefix}:{{tracked}}:due"
        self._keys = [self.records_key, self.due_key]
        self._clock = clock
        self.rate_half_life_s = rate_half_life_s
        self._record = redis.register_script(_RECORD)
        self._sync = redis.register_script(_SYNC)
        self._expire = redis.register_script(_EXPIRE)
        self._update = redis.register_script(_UPDATE)
        self._unschedule = redis.register_script(_UNSCHEDULE)

    async def sync_configured(
        self,
        active: Sequence[str],
        dormant: Sequence[str],
        intervals: Sequence[str],
        *,
        prepost: bool = False,
    ) -> tuple[int, int]:
        """Make the configured set exactly ``(active + dormant) × intervals``; returns (added, demoted).

        New series are due now; existing ones keep their schedule and statistics and take
        the configured tier; series configured before but not now become "requested" and
        age out like any requested series (idle since first seen if nobody ever asked).
        """
        now = self._clock()
        wanted: dict[str, str] = {}
        for tier, symbols in (("dormant", dormant), ("active", active)):
            for symbol in symbols:
                for interval in intervals:
                    # Upper case: the chart route keys series by the normalised symbol.
                    wanted[SeriesKey(symbol.upper(), interval, prepost).tag] = tier
        current = await self._read_all()
        demote = [tag for tag, rec in current.items() if rec.configured and tag not in wanted]
        items = list(wanted.items())
        calls = [[str(len(part)), *(v for pair in part for v in pair)] for part in _chunks(items)]
        calls += [["0", *part] for part in _chunks(demote)]
        results = await self._pipeline(self._sync, now, calls)
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

    async def record_activity(
        self, counts: Mapping[SeriesKey, tuple[int, float]], bumps: Iterable[SeriesKey]
    ) -> None:
        """Add client requests (count, last request time) per series; make ``bumps`` due now.

        Unknown series start being tracked ("requested", due now); an unconfigured dormant
        series becomes "requested" again; configured ones keep their tier. When ``bumps`` is a
        mapping, its values are the bump times and a bump is due from then (never later
        than now, never later than already scheduled).
        """
        now = self._clock()
        seen = [
            (key.tag, count, min(at, now))
            for key, (count, at) in counts.items()
            if count > 0 and math.isfinite(at)
        ]
        times = bumps if isinstance(bumps, Mapping) else dict.fromkeys(bumps, now)
        due = [(key.tag, min(float(at), now)) for key, at in times.items() if math.isfinite(at)]
        if not seen and not due:
            return
        calls = [[str(len(part)), *(_num(v) for item in part for v in item)] for part in _chunks(seen)]
        calls += [["0", *(_num(v) for item in part for v in item)] for part in _chunks(due)]
        lam = math.log(2) / self.rate_half_life_s
        results = await self._pipeline(self._record, now, [[repr(lam), *args] for args in calls])
        replaced = [_text(tag) for result in results for tag in result]
        if replaced:
            log.warning("tracked records unreadable; replaced", count=len(replaced), series=replaced[:10])

    async def due(self, now: float, limit: int) -> list[Tracked]:
        """Series due at ``now``, most overdue first, at most ``limit``."""
        if limit <= 0:
            return []
        tags = await self.redis.zrangebyscore(self.due_key, "-inf", now, start=0, num=limit)
        if not tags:
            return []
        raws = await self.redis.hmget(self.records_key, tags)
        found: list[Tracked] = []
        broken: list[bytes | str] = []
        for tag, raw in zip(tags, raws, strict=True):
            tracked = None if raw is None else _parse(_text(tag), raw)
            if tracked is None:
                broken += [tag, raw or b""]
            else:
                found.append(tracked)
        if broken:
            _warn_unreadable([_text(tag) for tag in broken[::2]], "unscheduled")
            await self._unschedule(keys=self._keys, args=[_num(now), *broken])
        return found

    async def set_result(
        self,
        key: SeriesKey,
        *,
        outcome: str,
        category: str | None,
        refreshed_at: float,
        next_due: float,
        error: str | None = None,
    ) -> bool:
        """Record a refresh attempt; False when the series is no longer tracked."""
        fields = {
            "last_outcome": outcome,
            "last_category": category,
            "last_refresh": refreshed_at,
            "next_due": next_due,
            "last_error": None if error is None else error[:_MAX_ERROR_CHARS],
        }
        return await self._apply(key, fields, "reset" if outcome in GOOD_OUTCOMES else "fail")

    async def reschedule(self, key: SeriesKey, next_due: float) -> bool:
        """Move a series' next refresh; False when it is not tracked."""
        return await self._apply(key, {"next_due": next_due}, "keep")

    async def all(self) -> list[Tracked]:
        """Every readable record, sorted by series tag (one HGETALL)."""
        records = await self._read_all()
        return [records[tag] for tag in sorted(records)]

    async def get(self, key: SeriesKey) -> Tracked | None:
        raw = await self.redis.hget(self.records_key, key.tag)
        if raw is None:
            return None
        tracked = _parse(key.tag, raw)
        if tracked is None:
            _warn_unreadable([key.tag], "skipped")
        return tracked

    async def expire_idle(
        self, now: float, *, dormant_after_s: float, idle_untrack_s: float
    ) -> tuple[int, int]:
        """Requested series idle for ``dormant_after_s`` turn dormant; unconfigured series idle
        for ``idle_untrack_s`` stop being tracked. Returns (demoted, removed)."""
        dormant_before, untrack_before = now - dormant_after_s, now - idle_untrack_s
        candidates = [
            tag
            for tag, rec in (await self._read_all()).items()
            if not rec.configured
            and (
                rec.idle_since <= untrack_before
                or (rec.tier == "requested" and rec.idle_since <= dormant_before)
            )
        ]
        if not candidates:
            return 0, 0
        calls = [[_num(dormant_before), _num(untrack_before), *part] for part in _chunks(candidates)]
        results = await self._pipeline(self._expire, now, calls)
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

    async def untrack(self, key: SeriesKey) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:  # both keys share one slot
            pipe.hdel(self.records_key, key.tag)
            pipe.zrem(self.due_key, key.tag)
            await pipe.execute()

    async def _apply(self, key: SeriesKey, fields: dict[str, Any], fails: str) -> bool:
        args = [_num(self._clock()), key.tag, orjson.dumps(fields), fails]
        return bool(await self._update(keys=self._keys, args=args))

    async def _pipeline(self, script: AsyncScript, now: float, calls: list[list[str]]) -> list[Any]:
        """Run ``script`` once per argument list, all in one round trip."""
        if not calls:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for args in calls:
                await script(keys=self._keys, args=[_num(now), *args], client=pipe)
            return list(await pipe.execute())

    async def _read_all(self) -> dict[str, Tracked]:
        records: dict[str, Tracked] = {}
        broken: list[str] = []
        for field, raw in (await self.redis.hgetall(self.records_key)).items():
            tag = _text(field)
            tracked = _parse(tag, raw)
            if tracked is None:
                broken.append(tag)
            else:
                records[tag] = tracked
        if broken:
            _warn_unreadable(broken, "skipped")
        return records


def _parse(tag: str, raw: bytes | str) -> Tracked | None:
    """A record as stored, or None for anything unreadable (never raises)."""
    key = parse_tag(tag)
    if key is None:
        return None
    try:
        data = orjson.loads(raw)
        tier = data["tier"]
        configured = data.get("configured", False)
        if tier not in TIERS or not isinstance(configured, bool):
            return None
        return Tracked(
            key=key,
            tier=tier,
            configured=configured,
            first_seen=_float(data, "first_seen", 0.0),
            last_request=_optional_float(data, "last_request"),
            requests=int(_float(data, "requests", 0)),
            request_rate=_float(data, "request_rate", 0.0),
            rate_at=_optional_float(data, "rate_at"),
            last_refresh=_optional_float(data, "last_refresh"),
            last_outcome=_optional_str(data, "last_outcome"),
            last_category=_optional_str(data, "last_category"),
            last_error=_optional_str(data, "last_error"),
            next_due=_float(data, "next_due", 0.0),
            fails_in_a_row=int(_float(data, "fails_in_a_row", 0)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _optional_float(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is not a number")
    return float(value)


def _float(data: dict[str, Any], name: str, default: float) -> float:
    value = _optional_float(data, name)
    return default if value is None else value


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value


def _warn_unreadable(tags: list[str], action: str) -> None:
    log.warning(f"tracked records unreadable; {action}", count=len(tags), series=tags[:_MAX_LOGGED_TAGS])


def _chunks(items: list[_T]) -> Iterable[list[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _num(value: float | int | str) -> str:
    # repr keeps every digit of a float; Lua's tonumber reads it back exactly.
    return value if isinstance(value, str) else repr(value)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
