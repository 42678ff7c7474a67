"""Typed application keys: every long-lived resource the app factory owns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from aiohttp import web

if TYPE_CHECKING:
    from proxy.activity import ActivityRecorder
    from proxy.config import Config
    from proxy.fetcher import FetchCoordinator
    from proxy.hot import HotLayer
    from proxy.metrics import Metrics
    from proxy.passthrough import Passthrough
    from proxy.quality import QualityGate
    from proxy.refresher import Refresher
    from proxy.registry import TrackedRegistry
    from proxy.runtime import LiveConfig
    from proxy.service import ChartService
    from proxy.store import SeriesStore
    from proxy.upstream import UpstreamClient

SETTINGS: web.AppKey[Config] = web.AppKey("settings")
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis")
STORE: web.AppKey[SeriesStore] = web.AppKey("store")
HOT: web.AppKey[HotLayer] = web.AppKey("hot")
UPSTREAM: web.AppKey[UpstreamClient] = web.AppKey("upstream")
FETCHER: web.AppKey[FetchCoordinator] = web.AppKey("fetcher")
SERVICE: web.AppKey[ChartService] = web.AppKey("service")
PASSTHROUGH: web.AppKey[Passthrough] = web.AppKey("passthrough")
QUALITY: web.AppKey[QualityGate] = web.AppKey("quality")
REGISTRY: web.AppKey[TrackedRegistry] = web.AppKey("registry")
ACTIVITY: web.AppKey[ActivityRecorder] = web.AppKey("activity")
REFRESHER: web.AppKey[Refresher] = web.AppKey("refresher")
LIVE_CONFIG: web.AppKey[LiveConfig] = web.AppKey("live_config")
CRUMB: web.AppKey[str] = web.AppKey("crumb")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
