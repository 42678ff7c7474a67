"""What the load test's dashboards look at; shared by the locustfile and its runner, so the
runner does not import locust (which monkey-patches the standard library on import)."""

from __future__ import annotations

FUTURES = ["ES=F", "NQ=F", "YM=F", "RTY=F", "CL=F", "GC=F", "SI=F", "ZN=F", "ZB=F", "6E=F"]
TIMEFRAMES = {"1m": "1d", "5m": "5d", "15m": "5d", "1h": "1mo", "1d": "1y"}
