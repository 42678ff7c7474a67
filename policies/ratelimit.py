"""Adaptive upstream rate limiter: a token bucket whose rate follows Yahoo's answers.

The rule is AIMD (additive increase, multiplicative decrease) with two additions that
bench/ratelimit.py and tests/ratelimit_model.py showed are needed against a fixed,
unpublished budget like Yahoo's:

- slow start: until the first 429 the rate grows multiplicatively (``slow_start_factor``
  per ``increase_every_s``), so a cold limiter finds the budget in seconds, not minutes;
- a remembered ceiling: a 429 records the rate it happened at. After the cut the rate
  climbs back quickly to ``recovery_share`` of that ceiling (halving the distance per
  step, as CUBIC's concave phase does) and only then probes on at ``increase_rps``, so
  the next 429 comes rarely. Every 429 sets the ceiling again, so an estimate that was
  too high (a 429 is only seen some time after the rate passed the budget) comes down.

The rate grows only while the bucket is the bottleneck (no whole token left when a
request succeeds): a quiet period proves nothing about a higher rate, and growing
through it would release a burst of 429s when traffic returns (RFC 7661's point about
application-limited senders).

We chose this over the plain CUBIC curve of the AWS SDK's adaptive mode: Yahoo's
budget does not drift like a congestion window, and CUBIC's regrowth past the last
known-good rate means more 429s near the ceiling, which Yahoo punishes with lock-outs.

The math lives in pure functions over a small state record (``refill``, ``try_take``,
``on_success``, ``on_throttle``). ``SharedRateLimiter`` runs the same math inside Redis
Lua scripts, one hash per endpoint, so every replica spends ONE budget; when Redis does
not answer it falls back to a conservative local bucket driven by the same functions.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from policies.errors import Category, FailureContext, UpstreamError
from policies.stats import SlidingWindow

log = structlog.get_logger("yfproxy.ratelimit")

Clock = Callable[[], float]

# Endpoints name Redis keys, so only short fixed-alphabet tokens are accepted.
_ENDPOINT = re.compile(r"[a-z_]{1,32}")
# Redis errors that mean "no answer", as opposed to a bug in a script or a command.
# ReadOnlyError: a failover left us on a replica, which cannot run the write scripts.
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    OSError,
)
# Growth past the last 429's rate, as a share of increase_rps.
PROBE_PAST_CEILING = 0.25
# Retry-After is Yahoo's (or a middlebox's) word: bound it so a bogus header cannot stop us for days.
MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class LimiterSettings:
    initial_rps: float = 0.5
    min_rps: float = 0.05
    max_rps: float = 2.0
    burst: float = 1.0  # tokens: how many requests may start back to back
    increase_rps: float = 0.005  # linear probe per increase_every_s once the ceiling is known
    decrease_factor: float = 0.7  # rate multiplier on a 429
    increase_every_s: float = 5.0  # grow at most this often, and only this long after a 429
    lockout_s: float = 5.0  # send nothing for this long after a 429 without Retry-After
    slow_start_factor: float = 1.5  # rate multiplier per step until the first 429 (1 = off)
    recovery_share: float = 0.9  # after a 429, climb fast back to this share of its rate

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        if self.min_rps <= 0:
            raise ValueError(f"min_rps must be > 0, got {self.min_rps:g}")
        if not self.min_rps <= self.initial_rps <= self.max_rps:
            raise ValueError(
                f"need min_rps <= initial_rps <= max_rps, got {self.min_rps:g} <= "
                f"{self.initial_rps:g} <= {self.max_rps:g}"
            )
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1 token, got {self.burst:g}")
        if self.increase_rps < 0:
            raise ValueError(f"increase_rps must be >= 0, got {self.increase_rps:g}")
        if not 0 < self.decrease_factor < 1:
            raise ValueError(
                f"decrease_factor must be strictly between 0 and 1, got {self.decrease_factor:g}"
            )
        if self.increase_every_s < 0:
            raise ValueError(f"increase_every_s must be >= 0, got {self.increase_every_s:g}")
        if self.lockout_s < 0:
            raise ValueError(f"lockout_s must be >= 0, got {self.lockout_s:g}")
        if self.slow_start_factor < 1:
            raise ValueError(f"slow_start_factor must be >= 1, got {self.slow_start_factor:g}")
        if not 0 <= self.recovery_share <= 1:
            raise ValueError(f"recovery_share must be between 0 and 1, got {self.recovery_share:g}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: LimiterSettings | None = None) -> LimiterSettings:
        """Settings from a config or admin mapping; missing keys come from ``base``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown rate-limit setting(s) {unknown}; allowed: {sorted(known)}")
        return replace(base or cls(), **data)


def from_legacy_delay(delay_s: float) -> float:
    """The rate equivalent to the old fixed pause between requests (``[legacy] fixed_delay_seconds``)."""
    if not delay_s > 0:
        raise ValueError(f"fixed_delay_seconds must be > 0, got {delay_s!r}")
    return 1.0 / delay_s


def validate_endpoint(endpoint: str) -> str:
    if not isinstance(endpoint, str) or not _ENDPOINT.fullmatch(endpoint):
        raise ValueError(f"endpoint must match [a-z_]{{1,32}} (e.g. 'chart'), got {endpoint!r}")
    return endpoint


# ---------------------------------------------------------------- pure AIMD math


@dataclass(frozen=True, slots=True)
class BucketState:
    rate: float  # tokens per second
    tokens: float
    refilled_at: float
    blocked_until: float  # nothing is sent before this (Retry-After / lock-out)
    increased_at: float  # last growth, or the end of the last block
    ceiling: float = 0.0  # the rate the last 429 came at; 0 = none yet (slow start)
    delivered: float = 0.0  # successes per second, a moving average over delivery_window_s
    delivered_at: float = 0.0

    @classmethod
    def initial(cls, settings: LimiterSettings, now: float) -> BucketState:
        # The delivery average starts at the initial rate, as if it had run a while: from
        # zero it would lag the real rate through the whole slow start.
        return cls(settings.initial_rps, settings.burst, now, 0.0, now, 0.0, settings.initial_rps, now)


def refill(state: BucketState, settings: LimiterSettings, now: float) -> BucketState:
    """Add the tokens earned since the last refill; also clamps to (possibly new) settings."""
    rate = min(max(state.rate, settings.min_rps), settings.max_rps)
    elapsed = max(0.0, now - state.refilled_at)  # tokens never accrue before a block ends
    tokens = min(settings.burst, state.tokens + elapsed * rate)
    return replace(state, rate=rate, tokens=tokens, refilled_at=max(state.refilled_at, now))


def try_take(state: BucketState, settings: LimiterSettings, now: float) -> tuple[BucketState, float]:
    """Take one token: ``(new_state, 0.0)``, or ``(state, seconds to wait)`` when none is there."""
    state = refill(state, settings, now)
    if now < state.blocked_until:
        return state, state.blocked_until - now
    if state.tokens >= 1:
        return replace(state, tokens=state.tokens - 1), 0.0
    return state, (1 - state.tokens) / state.rate


def delivery_window_s(settings: LimiterSettings) -> float:
    # Two growth steps: long enough to average over a hidden burst, short enough to
    # describe the rate that was running when a 429 came.
    return max(1.0, 2 * settings.increase_every_s)


def delivered_rate(state: BucketState, settings: LimiterSettings, now: float) -> float:
    """The moving average of successes per second, decayed to ``now``."""
    return state.delivered * math.exp(-max(0.0, now - state.delivered_at) / delivery_window_s(settings))


def on_success(state: BucketState, settings: LimiterSettings, now: float) -> BucketState:
    """Grow the rate, at most once per ``increase_every_s``, while the bucket is the bottleneck."""
    state = refill(state, settings, now)
    window = delivery_window_s(settings)
    state = replace(state, delivered=delivered_rate(state, settings, now) + 1 / window, delivered_at=now)
    if now < state.blocked_until or now - state.increased_at < settings.increase_every_s:
        return state
    if state.tokens >= 1:
        return state  # demand, not the bucket, set the pace: nothing was learned about a higher rate
    return replace(state, rate=min(settings.max_rps, next_rate(state, settings)), increased_at=now)


def next_rate(state: BucketState, settings: LimiterSettings) -> float:
    """One growth step: slow start, fast recovery towards the ceiling, or a linear probe."""
    if state.ceiling <= 0:
        return max(state.rate * settings.slow_start_factor, state.rate + settings.increase_rps)
    target = state.ceiling * settings.recovery_share
    if state.rate < target:
        return max(state.rate + (target - state.rate) / 2, state.rate + settings.increase_rps)
    if state.rate < state.ceiling:
        return state.rate + settings.increase_rps
    # Past the rate a 429 came at: each step here is a bet against a known limit.
    return state.rate + settings.increase_rps * PROBE_PAST_CEILING


def on_throttle(
    state: BucketState, settings: LimiterSettings, now: float, retry_after: float | None
) -> BucketState:
    """Multiplicative decrease, and send nothing until Retry-After (or the lock-out) has passed."""
    state = refill(state, settings, now)
    retry_after = clean_retry_after(retry_after)
    wait = settings.lockout_s if retry_after is None else retry_after
    until = max(state.blocked_until, now + wait)
    # 429s landing while already blocked answer requests sent before the cut: extend the
    # block but cut once, or a burst of in-flight requests would collapse the rate to min.
    already_blocked = now < state.blocked_until
    rate = state.rate if already_blocked else max(settings.min_rps, state.rate * settings.decrease_factor)
    # The ceiling is what got through, not what was asked for: a 429 arrives only once
    # the hidden burst is spent, by when the rate may be well past the budget.
    delivered = delivered_rate(state, settings, now)
    ceiling = state.ceiling if already_blocked else min(state.rate, delivered) or state.rate
    # An empty bucket that starts filling when the block ends: no burst right after a 429.
    return BucketState(rate, 0.0, until, until, until, ceiling, delivered, now)


def phase(rate: float, ceiling: float, recovery_share: float) -> str:
    """Where the rate is on its curve, for /status: which rule its next step follows."""
    if ceiling <= 0:
        return "slow_start"
    if rate < ceiling * recovery_share:
        return "recovering"
    return "probing" if rate < ceiling else "past_ceiling"


def clean_retry_after(retry_after: float | None) -> float | None:
    """Retry-After in [0, MAX_RETRY_AFTER_S]; None (use the lock-out) when absent or not a number."""
    if retry_after is None or math.isnan(retry_after):
        return None
    return min(max(0.0, retry_after), MAX_RETRY_AFTER_S)


# ---------------------------------------------------------------- Redis scripts

# All scripts: KEYS[1] = the endpoint's hash; ARGV[1..10] = the settings in LimiterSettings
# field order, ARGV[11] = idle expiry in ms; the throttle script adds ARGV[12] = Retry-After
# seconds ("" = none). Time is Redis server TIME, so replicas with skewed clocks agree.
# Every script replies {wait_s, rate, tokens, blocked_for_s, ceiling} as strings ("%.17g": Lua
# numbers would be truncated to integers in the reply, and tostring keeps only 14 digits).
_LUA_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local initial, min_rps, max_rps = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local burst, increase_rps, decrease_factor = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local increase_every_s, lockout_s = tonumber(ARGV[7]), tonumber(ARGV[8])
local slow_start_factor, recovery_share, ttl_ms = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local h = redis.call('HMGET', KEYS[1], 'rate', 'tokens', 'refilled_at', 'blocked_until', 'increased_at',
  'ceiling', 'delivered', 'delivered_at')
local rate = tonumber(h[1]) or initial
local tokens = tonumber(h[2]) or burst
local refilled_at = tonumber(h[3]) or now
local blocked_until = tonumber(h[4]) or 0
local increased_at = tonumber(h[5]) or now
local ceiling = tonumber(h[6]) or 0
local delivered = tonumber(h[7]) or initial
local delivered_at = tonumber(h[8]) or now
-- refill (ratelimit.refill)
rate = math.min(math.max(rate, min_rps), max_rps)
tokens = math.min(burst, tokens + math.max(0, now - refilled_at) * rate)
refilled_at = math.max(refilled_at, now)
-- delivered_rate (ratelimit.delivered_rate)
local window = math.max(1, 2 * increase_every_s)
local function decayed() return delivered * math.exp(-math.max(0, now - delivered_at) / window) end
local function f(x) return string.format('%.17g', x) end
local function save()
  redis.call('HSET', KEYS[1], 'rate', f(rate), 'tokens', f(tokens), 'refilled_at', f(refilled_at),
    'blocked_until', f(blocked_until), 'increased_at', f(increased_at), 'ceiling', f(ceiling),
    'delivered', f(delivered), 'delivered_at', f(delivered_at))
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end
local function reply(wait)
  return {f(wait), f(rate), f(tokens), f(math.max(0, blocked_until - now)), f(ceiling)}
end
"""

_LUA_ACQUIRE = (
    _LUA_PRELUDE
    + """
-- try_take: no reservation when a wait is returned; the caller asks again after it
local wait = 0
if now < blocked_until then
  wait = blocked_until - now
elseif tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
save()
return reply(wait)
"""
)

_LUA_SUCCESS = (
    _LUA_PRELUDE
    + """
delivered = decayed() + 1 / window
delivered_at = now
-- on_success / next_rate
if now >= blocked_until and now - increased_at >= increase_every_s and tokens < 1 then
  local nxt
  if ceiling <= 0 then
    nxt = math.max(rate * slow_start_factor, rate + increase_rps)
  elseif rate < ceiling * recovery_share then
    nxt = math.max(rate + (ceiling * recovery_share - rate) / 2, rate + increase_rps)
  elseif rate < ceiling then
    nxt = rate + increase_rps
  else
    nxt = rate + increase_rps * PROBE_PAST_CEILING
  end
  rate = math.min(max_rps, nxt)
  increased_at = now
end
save()
return reply(0)
""".replace("PROBE_PAST_CEILING", repr(PROBE_PAST_CEILING))
)

_LUA_THROTTLE = (
    _LUA_PRELUDE
    + """
local wait = lockout_s
if ARGV[12] ~= '' then wait = tonumber(ARGV[12]) end
local already_blocked = now < blocked_until
local until_ = math.max(blocked_until, now + wait)
delivered = decayed()
delivered_at = now
if not already_blocked then
  local got_through = math.min(rate, delivered)
  if got_through <= 0 then got_through = rate end
  ceiling = got_through
  rate = math.max(min_rps, rate * decrease_factor)
end
tokens, refilled_at, blocked_until, increased_at = 0, until_, until_, until_
save()
return reply(0)
"""
)

_LUA_PEEK = _LUA_PRELUDE + "return reply(0)\n"

# A bucket untouched for a day starts again from initial_rps.
_IDLE_EXPIRY_MS = 24 * 3600 * 1000


# ---------------------------------------------------------------- the shared limiter


@dataclass(frozen=True, slots=True)
class _Reading:
    """One answer from a bucket, shared or local."""

    wait_s: float
    rate: float
    tokens: float
    blocked_for_s: float
    ceiling: float


class SharedRateLimiter:
    """One adaptive budget per endpoint, shared by every replica through Redis.

    When Redis does not answer, each replica paces itself with a local bucket (see
    ``_local_settings``) and probes Redis again every ``probe_every_s``.
    """

    def __init__(
        self,
        redis_client: aioredis.Redis,
        prefix: str,
        settings: Mapping[str, LimiterSettings],
        *,
        default_settings: LimiterSettings | None = None,
        expected_replicas: int = 1,
        probe_every_s: float = 1.0,
        window_s: int = 60,
        clock: Clock = time.monotonic,
    ) -> None:
        if expected_replicas < 1:
            raise ValueError(f"expected_replicas must be >= 1, got {expected_replicas!r}")
        self._prefix = prefix
        self._settings: dict[str, LimiterSettings] = {}
        for endpoint, value in settings.items():
            self.update_settings(endpoint, value)
        self._default = default_settings
        self._replicas = expected_replicas
        self._probe_every_s = probe_every_s
        self._window_s = window_s
        self._clock = clock
        self._scripts = {
            name: redis_client.register_script(src)
            for name, src in (
                ("acquire", _LUA_ACQUIRE),
                ("success", _LUA_SUCCESS),
                ("throttle", _LUA_THROTTLE),
                ("peek", _LUA_PEEK),
            )
        }
        self._windows: dict[str, SlidingWindow] = {}
        self._last_shared: dict[str, _Reading] = {}
        self._local: dict[str, BucketState] = {}
        self._fallback_since: float | None = None
        self._last_probe = 0.0
        self._queues: dict[str, asyncio.Lock] = {}

    # -- public API

    def key(self, endpoint: str) -> str:
        return f"{self._prefix}:ratelimit:{validate_endpoint(endpoint)}"

    def settings_for(self, endpoint: str) -> LimiterSettings:
        validate_endpoint(endpoint)
        found = self._settings.get(endpoint, self._default)
        if found is None:
            raise ValueError(f"no rate-limit settings for endpoint {endpoint!r}")
        return found

    def update_settings(self, endpoint: str, settings: LimiterSettings) -> None:
        """Change an endpoint's settings at run time; the next script call applies them."""
        validate_endpoint(endpoint)
        if not isinstance(settings, LimiterSettings):
            raise TypeError(f"settings must be LimiterSettings, got {type(settings).__name__}")
        self._settings[endpoint] = settings

    @property
    def fallback(self) -> bool:
        return self._fallback_since is not None

    async def acquire(self, endpoint: str, max_wait_s: float = 30.0) -> float:
        """Wait for a token; returns the seconds waited.

        Raises ``UpstreamError(Category.BUDGET_EXHAUSTED, retry_after=...)`` as soon as the
        next wait would take the total past ``max_wait_s`` (sleeping first would only
        delay the same answer).
        """
        # Waiters of this process queue in order (asyncio.Lock is FIFO): without it a
        # waiter can lose several polling rounds in a row to later arrivals and run out
        # of max_wait_s while the budget is being spent (seen in bench/ratelimit.py).
        queue = self._queues.setdefault(endpoint, asyncio.Lock())
        waited = 0.0
        if queue.locked():
            started = self._clock()
            try:
                async with asyncio.timeout(max_wait_s):
                    await queue.acquire()
            except TimeoutError:
                raise budget_exhausted(endpoint, 0.0, self._clock() - started) from None
            waited = self._clock() - started
        else:
            await queue.acquire()  # free: taken at once
        try:
            while True:
                reading = await self._call(endpoint, "acquire")
                if reading.wait_s <= 0:
                    return waited
                if waited + reading.wait_s > max_wait_s:
                    raise budget_exhausted(endpoint, reading.wait_s, waited)
                await asyncio.sleep(reading.wait_s)
                waited += reading.wait_s
        finally:
            queue.release()

    async def record_success(self, endpoint: str) -> None:
        self._window(endpoint).add("success")
        await self._call(endpoint, "success")

    async def record_throttle(self, endpoint: str, retry_after: float | None = None) -> None:
        self._window(endpoint).add("rate_limited")
        await self._call(endpoint, "throttle", retry_after)

    def record_error(self, endpoint: str) -> None:
        """A failure that says nothing about the rate (5xx, timeout): counted, no rate change."""
        self._window(endpoint).add("error")

    async def state(self, endpoint: str) -> dict[str, Any]:
        reading = await self._call(endpoint, "peek")
        settings = self.settings_for(endpoint)
        return {
            "endpoint": endpoint,
            "current_rps": reading.rate,
            # The rate the last 429 let through; null until the first 429 (slow start).
            "ceiling_rps": reading.ceiling or None,
            "phase": phase(reading.rate, reading.ceiling, settings.recovery_share),
            "tokens": reading.tokens,
            "blocked_for_s": reading.blocked_for_s,
            "fallback": self.fallback,
            "source": "local" if self.fallback else "shared",
            "window": self._window(endpoint).snapshot(),
            "settings": asdict(settings),
        }

    def last_reading(self, endpoint: str) -> _Reading | None:
        """The bucket as last seen, without a Redis call (for /metrics at scrape time): the
        local bucket while in fallback, else the newest shared reading; None before any."""
        if self.fallback:
            state = self._local.get(endpoint)
            if state is not None:
                now = self._clock()
                blocked = max(0.0, state.blocked_until - now)
                return _Reading(0.0, state.rate, state.tokens, blocked, state.ceiling)
        return self._last_shared.get(endpoint)

    # -- shared or local

    async def _call(self, endpoint: str, op: str, retry_after: float | None = None) -> _Reading:
        settings = self.settings_for(endpoint)
        if self._should_try_redis():
            try:
                reading = await self._shared(endpoint, op, settings, retry_after)
            except _UNAVAILABLE as exc:
                self._enter_fallback(exc)
            else:
                self._leave_fallback()
                self._last_shared[endpoint] = reading
                return reading
        return self._local_call(endpoint, op, settings, retry_after)

    async def _shared(
        self, endpoint: str, op: str, settings: LimiterSettings, retry_after: float | None
    ) -> _Reading:
        args: list[str] = [repr(float(getattr(settings, f.name))) for f in fields(settings)]
        args.append(str(_IDLE_EXPIRY_MS))
        if op == "throttle":
            cleaned = clean_retry_after(retry_after)
            args.append("" if cleaned is None else repr(cleaned))
        reply = await self._scripts[op](keys=[self.key(endpoint)], args=args)
        wait, rate, tokens, blocked, ceiling = (float(x) for x in reply)
        return _Reading(wait, rate, tokens, blocked, ceiling)

    def _local_call(
        self, endpoint: str, op: str, settings: LimiterSettings, retry_after: float | None
    ) -> _Reading:
        now = self._clock()
        local = self._local_settings(settings)
        state = self._local.get(endpoint) or self._local_start(endpoint, local, now)
        wait = 0.0
        if op == "acquire":
            state, wait = try_take(state, local, now)
        elif op == "success":
            state = on_success(state, local, now)
        elif op == "throttle":
            state = on_throttle(state, local, now, retry_after)
        else:
            state = refill(state, local, now)
        self._local[endpoint] = state
        return _Reading(wait, state.rate, state.tokens, max(0.0, state.blocked_until - now), state.ceiling)

    def _local_settings(self, settings: LimiterSettings) -> LimiterSettings:
        # Fallback policy: without Redis the replicas cannot see each other, so each takes
        # its share of the ceiling (max_rps / expected_replicas, never below min_rps) with
        # a burst of one, and keeps adapting inside that with the same AIMD functions.
        ceiling = max(settings.min_rps, settings.max_rps / self._replicas)
        start = min(max(settings.initial_rps / self._replicas, settings.min_rps), ceiling)
        return replace(settings, max_rps=ceiling, initial_rps=start, burst=1.0)

    def _local_start(self, endpoint: str, local: LimiterSettings, now: float) -> BucketState:
        # Start from this replica's share of the last shared rate it saw, and honour a block
        # (Retry-After) that was running when Redis went away.
        last = self._last_shared.get(endpoint)
        if last is None:
            return BucketState.initial(local, now)
        rate = min(max(last.rate / self._replicas, local.min_rps), local.max_rps)
        blocked_until = now + last.blocked_for_s if last.blocked_for_s > 0 else 0.0
        start = max(now, blocked_until)
        # A ceiling the shared budget learned holds for this replica's share of it too.
        return BucketState(rate, 1.0, start, blocked_until, start, last.ceiling / self._replicas, rate, now)

    def _should_try_redis(self) -> bool:
        if self._fallback_since is None:
            return True
        if self._clock() - self._last_probe >= self._probe_every_s:
            self._last_probe = self._clock()
            return True
        return False

    def _enter_fallback(self, exc: BaseException) -> None:
        self._last_probe = self._clock()
        if self._fallback_since is None:
            self._fallback_since = self._last_probe
            log.warning(
                "ratelimit.fallback_local",
                reason=f"{type(exc).__name__}: {exc}",
                replicas=self._replicas,
                detail="Redis unavailable; pacing with a conservative local bucket",
            )

    def _leave_fallback(self) -> None:
        if self._fallback_since is not None:
            log.info(
                "ratelimit.shared_restored", fallback_for_s=round(self._clock() - self._fallback_since, 3)
            )
            self._fallback_since = None
            self._local.clear()  # a later outage starts again from the newest shared reading

    def _window(self, endpoint: str) -> SlidingWindow:
        validate_endpoint(endpoint)
        window = self._windows.get(endpoint)
        if window is None:
            window = self._windows[endpoint] = SlidingWindow(self._window_s, clock=self._clock)
        return window


def budget_exhausted(endpoint: str, wait_s: float, waited_s: float) -> UpstreamError:
    """The taxonomy's error for a request the limiter will not let through within its deadline."""
    return UpstreamError(
        Category.BUDGET_EXHAUSTED,
        f"rate budget of {endpoint!r} exhausted: next token in {wait_s:.2f}s after waiting {waited_s:.2f}s",
        FailureContext(),  # the caller fills in the request's context, as for transport errors
        retry_after=wait_s,
    )
