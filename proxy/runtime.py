"""Changing the running configuration: POST /admin/config and SIGHUP.

An update is validated whole against the same schema as proxy.toml (config.merge_update)
and then applied to every running component under one lock, so a request never sees half
an update and a refused update changes nothing. Sections whose objects are built once at
start (sockets, pools, Redis, the breaker, timeouts, retries, the admin token) need a
restart; an update touching them is refused with that reason.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from proxy.config import UPSTREAM_ENDPOINTS, Config, ConfigError
from proxy.keys import PASSTHROUGH, QUALITY, REFRESHER, REGISTRY, SERVICE, UPSTREAM
from proxy.logs import configure_logging
from proxy.refresher import RefresherSettings
from proxy.schedule import ScheduleSettings
from proxy.service import ServiceSettings

log = structlog.get_logger("yfproxy.runtime")

# Sections applied to the running components; any other section needs a restart.
RUNTIME_SECTIONS = frozenset(
    {"rate_limit", "background", "instruments", "validation", "features", "cache", "logging", "legacy"}
)
# Keys inside runtime sections that are still read only at start.
RESTART_KEYS = frozenset(
    {
        "rate_limit.expected_replicas",
        "cache.hot_series",
        "cache.hot_bodies",
        "cache.negative_ttl_s",
        "cache.passthrough_ttl_s",
        "background.enabled",
        "background.lease_ttl_s",
    }
)


@dataclass(slots=True)
class LiveConfig:
    """The configuration in force, and how many times it changed since start."""

    current: Config
    generation: int = 0
    updated_at: float | None = None
    source: str = "start"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def status(self) -> dict[str, Any]:
        return {"generation": self.generation, "updated_at": self.updated_at, "source": self.source}


def refresher_settings(config: Config) -> RefresherSettings:
    bg, instruments, cache = config.background, config.instruments, config.cache
    return RefresherSettings(
        active=instruments.active,
        dormant=instruments.dormant,
        intervals=instruments.intervals,
        max_concurrent_instruments=bg.max_concurrent_instruments,
        batch_timeout_s=bg.batch_timeout_s,
        dormant_after_s=bg.dormant_after_s,
        idle_untrack_s=bg.idle_untrack_s,
        warm_on_start=bg.warm_on_start,
        schedule=ScheduleSettings.from_config(bg, cache.fresh_s),
        initial_depth_days=lambda interval: cache.initial_depth_days[interval],
    )


def service_settings(config: Config) -> ServiceSettings:
    cache = config.cache
    return ServiceSettings(
        on_miss=cache.on_miss,
        strict=config.features.strict_cache_only,
        miss_wait_s=cache.miss_wait_s,
        fresh_s=lambda interval: cache.fresh_s[interval],
        initial_depth_days=lambda interval: cache.initial_depth_days[interval],
    )


def changed_keys(old: Config, new: Config) -> list[str]:
    before, after = old.model_dump(), new.model_dump()
    out = []
    for section, keys in after.items():
        for key, value in keys.items():
            if before.get(section, {}).get(key) != value:
                out.append(f"{section}.{key}")
    return sorted(out)


async def apply(app: web.Application, live: LiveConfig, new: Config, *, source: str) -> list[str]:
    """Apply ``new`` to the running app; returns the keys that changed. Raises ConfigError
    (nothing applied) when a changed key needs a restart."""
    async with live.lock:
        changed = changed_keys(live.current, new)
        restart = [k for k in changed if k.split(".", 1)[0] not in RUNTIME_SECTIONS or k in RESTART_KEYS]
        if restart:
            raise ConfigError([f"{key}: read only at start; restart yfproxy to change it" for key in restart])
        if not changed:
            return []
        _apply_components(app, live.current, new)
        if "instruments" in {k.split(".", 1)[0] for k in changed}:
            s = new.instruments
            await app[REGISTRY].sync_configured(s.active, s.dormant, s.intervals)
        live.current = new
        live.generation += 1
        live.updated_at = time.time()
        live.source = source
    log.info("config.applied", source=source, generation=live.generation, changed=changed)
    return changed


def _apply_components(app: web.Application, old: Config, new: Config) -> None:
    # Plain attribute swaps, no awaits: the whole update lands between two requests.
    upstream = app[UPSTREAM]
    if upstream.limiter is not None:
        for endpoint in UPSTREAM_ENDPOINTS:
            adaptive = new.features.adaptive_limiter
            upstream.limiter.update_settings(
                endpoint, new.rate_limit.limiter_settings(endpoint, adaptive=adaptive)
            )
    upstream.budget_wait_s = new.rate_limit.max_wait_s
    gate = app[QUALITY]
    gate.min_quality = new.validation.min_quality
    gate.enabled = new.features.validation_gate
    app[PASSTHROUGH].allow = tuple(new.upstream.passthrough_allow) if new.features.passthrough else ()
    app[SERVICE].settings = service_settings(new)
    app[REFRESHER].settings = refresher_settings(new)
    if new.logging != old.logging:
        configure_logging(new.logging.level, new.logging.format, new.logging.components)
