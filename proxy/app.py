"""The app factory: one aiohttp application, every long-lived resource owned by one
cleanup context (STYLE.md, aiohttp's server), started in dependency order and
closed in reverse."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from policies.breaker import BreakerMirror
from policies.ratelimit import SharedRateLimiter
from policies.retry import LEGACY_DELAY_S
from proxy.activity import ActivityRecorder
from proxy.admin import add_admin_routes
from proxy.config import UPSTREAM_ENDPOINTS, Config, ConfigError, load_config, merge_update
from proxy.embedded_redis import ensure_redis
from proxy.fetcher import FetchCoordinator, NegativeCache
from proxy.hot import HotLayer, listen_for_invalidations
from proxy.keys import (
    ACTIVITY,
    CRUMB,
    FETCHER,
    HOT,
    LIVE_CONFIG,
    METRICS,
    PASSTHROUGH,
    QUALITY,
    REDIS,
    REFRESHER,
    REGISTRY,
    SERVICE,
    SETTINGS,
    STORE,
    UPSTREAM,
)
from proxy.lease import lease_factory
from proxy.metrics import install_metrics
from proxy.passthrough import Passthrough
from proxy.quality import QualityGate
from proxy.refresher import Refresher
from proxy.registry import TrackedRegistry
from proxy.routes import add_fallback, add_routes, new_crumb
from proxy.runtime import LiveConfig, apply, refresher_settings, service_settings
from proxy.service import ChartService
from proxy.store import SeriesStore
from proxy.tasks import cancel_all
from proxy.transport import Timeouts, Transport, make_transport
from proxy.upstream import UpstreamClient, UpstreamSettings

log = structlog.get_logger("yfproxy.app")

# Seconds between flushes of request activity to the registry: the hot path only counts.
ACTIVITY_FLUSH_S = 2.0


def create_app(
    config: Config,
    *,
    transport: Transport | None = None,
    clock: Callable[[], float] = time.time,
    config_source: Path | None = None,
    reload_overrides: Mapping[str, Any] | None = None,
) -> web.Application:
    """The proxy. ``config_source``: the file ``config`` came from, re-read on SIGHUP."""
    app = web.Application()  # no middleware: each route is Yahoo-shaped (proxy.routes)
    app[SETTINGS] = config  # as started; what is in force now is app[LIVE_CONFIG].current
    app[LIVE_CONFIG] = LiveConfig(config)
    app[CRUMB] = new_crumb()
    app[METRICS] = install_metrics(app)  # reads the components below when scraped
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_upstream_ctx(transport))
    app.cleanup_ctx.append(_service_ctx(clock))
    if config_source is not None:
        app.on_startup.append(_reload_on_sighup(config_source, reload_overrides or {}))
        app.on_cleanup.append(_stop_sighup)
    add_routes(app)
    add_admin_routes(app)
    add_fallback(app)  # last
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[SETTINGS].redis
    url, embedded = await ensure_redis(cfg.url, embedded=cfg.embedded, data_dir=Path(cfg.embedded_dir))
    # A blocking pool: a burst waits briefly for a connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=64,
        timeout=cfg.socket_timeout_s,
        socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.socket_timeout_s,
        # One quick retry: a cache that cannot answer must fail fast (503), not hang.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
    )
    client = aioredis.Redis(connection_pool=pool)
    app[REDIS] = client
    try:
        yield
    finally:
        await client.aclose()
        if embedded is not None:
            await embedded.stop()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[SETTINGS]
    # One thread: merges queue behind each other instead of fighting over the GIL.
    cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="yfproxy-merge")
    store = SeriesStore(app[REDIS], config.redis.key_prefix, cpu=cpu)
    hot = HotLayer(config.cache.hot_series, config.cache.hot_bodies)
    app[STORE] = store
    app[HOT] = hot
    listener = asyncio.create_task(listen_for_invalidations(app[REDIS], store.channel, hot))
    try:
        yield
    finally:
        await cancel_all([listener])  # re-cancels: redis-py can swallow a cancellation
        cpu.shutdown(wait=False, cancel_futures=True)


def _upstream_ctx(transport: Transport | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[SETTINGS]
        up = config.upstream
        settings = UpstreamSettings(
            base_url=str(up.base_url).rstrip("/"),
            max_concurrency=up.max_concurrency,
            min_interval_s=1.0 / config.rate_limit.initial_rps,
            timeouts=Timeouts(config.timeouts.connect_s, config.timeouts.read_s),
            max_attempts=config.retry.max_attempts,
            backoff_base_s=config.retry.backoff_base_s,
            backoff_max_s=config.retry.backoff_max_s,
            breaker_fail_max=config.breaker.fail_max,
            breaker_reset_s=config.breaker.reset_timeout_s,
            retry_budget_ratio=config.retry.budget_ratio,
            retry_budget_min=config.retry.budget_min_retries,
            retry_window_s=config.retry.budget_window_s,
            legacy_retry_delay_s=LEGACY_DELAY_S if config.retry.preset == "legacy" else None,
            ladder_steps=config.timeouts.ladder_steps,
            ladder_decay_after=config.timeouts.decay_after,
        )
        chosen = transport or make_transport(
            up.transport, impersonate=up.impersonate, limit=up.max_concurrency * 2
        )
        client = UpstreamClient(
            chosen, settings, _limiter(app[REDIS], config), budget_wait_s=config.rate_limit.max_wait_s
        )
        app[UPSTREAM] = client
        # Breaker state goes to Redis in the background, for /status and other replicas.
        mirror = BreakerMirror(app[REDIS], config.redis.key_prefix, client.breaker)
        mirror.start()
        try:
            yield
        finally:
            await mirror.stop()
            await client.close()

    return ctx


def _limiter(redis: aioredis.Redis, config: Config) -> SharedRateLimiter:
    rl = config.rate_limit
    adaptive = config.features.adaptive_limiter
    return SharedRateLimiter(
        redis,
        config.redis.key_prefix,
        {endpoint: rl.limiter_settings(endpoint, adaptive=adaptive) for endpoint in UPSTREAM_ENDPOINTS},
        expected_replicas=rl.expected_replicas,
    )


def _service_ctx(clock: Callable[[], float]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[SETTINGS]
        cache = config.cache
        negative = NegativeCache(app[STORE], cache.negative_ttl_s, clock)
        gate = QualityGate(
            app[REDIS],
            config.redis.key_prefix,
            min_quality=config.validation.min_quality,
            enabled=config.features.validation_gate,
            clock=clock,
        )
        app[QUALITY] = gate
        fetcher = FetchCoordinator(
            app[UPSTREAM],
            app[STORE],
            app[HOT],
            negative,
            workers=config.upstream.max_concurrency,
            clock=clock,
            quality=gate,
            # One replica refreshes a series at a time; the lease outlives a stuck fetch
            # by little and is renewed while the fetch runs.
            lease=lease_factory(
                app[REDIS], config.redis.key_prefix, ttl_ms=int(config.background.lease_ttl_s * 1000)
            ),
        )
        app[FETCHER] = fetcher
        registry = TrackedRegistry(app[REDIS], config.redis.key_prefix, clock=clock)
        app[REGISTRY] = registry
        activity = ActivityRecorder()
        app[ACTIVITY] = activity
        settings = service_settings(config)
        breaker = app[UPSTREAM].breaker
        app[SERVICE] = ChartService(
            app[STORE], app[HOT], fetcher, negative, settings, clock=clock,
            upstream_down=lambda: breaker.state == "open", activity=activity,
        )  # fmt: skip
        refresher = Refresher(registry, app[STORE], fetcher, refresher_settings(config), clock=clock)
        app[REFRESHER] = refresher
        tasks = [asyncio.create_task(activity.run(registry, ACTIVITY_FLUSH_S), name="activity-flush")]
        if config.background.enabled:
            tasks.append(asyncio.create_task(refresher.run(), name="refresher"))
        app[PASSTHROUGH] = Passthrough(
            app[UPSTREAM],
            app[REDIS],
            prefix=config.redis.key_prefix,
            allow=config.upstream.passthrough_allow if config.features.passthrough else (),
            ttl_s=cache.passthrough_ttl_s,
        )
        try:
            yield
        finally:
            await cancel_all(tasks)
            await fetcher.close()

    return ctx


def _reload_on_sighup(
    source: Path, overrides: Mapping[str, Any]
) -> Callable[[web.Application], Awaitable[None]]:
    """On SIGHUP, read ``source`` again (with the environment, then ``overrides``: what the
    process was started with beyond the file) and apply it like an update."""

    pending: set[asyncio.Future[None]] = set()  # reloads in progress, kept referenced

    async def install(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        async def reload() -> None:
            live = app[LIVE_CONFIG]
            try:
                loaded = load_config(source, os.environ)
                config = merge_update(loaded.config, overrides) if overrides else loaded.config
                changed = await apply(app, live, config, source="sighup")
            except ConfigError as exc:
                log.warning("config.reload_refused", source=str(source), problems=exc.problems)
                return
            log.info("config.reloaded", source=str(source), changed=changed, generation=live.generation)

        def on_hup() -> None:
            task = asyncio.ensure_future(reload())
            pending.add(task)
            task.add_done_callback(pending.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)

    return install


async def _stop_sighup(_app: web.Application) -> None:
    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
