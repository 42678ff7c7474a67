"""Fixtures for the simulator's tests: the app in-process behind aiohttp's test client,
a frozen clock, and the real Yahoo recordings to compare shapes against."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from loadtests.yahoo_sim import SimConfig, create_app
from tests.recordings import Recording, all_recordings

# Sunday 2026-09-27 20:15:41 UTC, when the recordings were made (latest session: Fri 25th).
SUNDAY = 1790540141
NY = ZoneInfo("America/New_York")

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Epoch seconds of a New York wall-clock time."""
    return int(dt.datetime(year, month, day, hour, minute, second, tzinfo=NY).timestamp())


def ny_time(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, NY)


def load_recordings() -> list[Recording]:
    return all_recordings()


@pytest.fixture
async def sim(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    """The simulator frozen at the recordings' Sunday."""
    return await aiohttp_client(create_app(SimConfig(now=SUNDAY)))


async def get_chart(client: TestClient[Any, Any], symbol: str, **params: Any) -> tuple[int, Any]:
    response = await client.get(f"/v8/finance/chart/{symbol}", params={k: str(v) for k, v in params.items()})
    return response.status, await response.json(content_type=None)


async def get_result(client: TestClient[Any, Any], symbol: str, **params: Any) -> dict[str, Any]:
    status, body = await get_chart(client, symbol, **params)
    assert status == 200, body
    assert body["chart"]["error"] is None
    return dict(body["chart"]["result"][0])
