"""Every error Yahoo gives on the chart endpoint, with its exact status, code and text."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loadtests.yahoo_sim import INTERVALS, answer
from tests.sim.conftest import SUNDAY, get_chart

DAY = 86400


def _error(body: dict[str, Any]) -> tuple[str, str]:
    assert body["chart"]["result"] is None
    return body["chart"]["error"]["code"], body["chart"]["error"]["description"]


@pytest.mark.parametrize("symbol", ["NOPE", "ESU26.CME", "ESF27.CME", "ESZ26.NYM", "ESZ35.CME", "AAPL.X"])
async def test_unknown_expired_or_unlisted_symbol_is_404(sim: TestClient[Any, Any], symbol: str) -> None:
    status, body = await get_chart(sim, symbol, interval="1d", range="1d")
    assert status == 404
    assert body == {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }


async def test_bad_interval_is_400(sim: TestClient[Any, Any]) -> None:
    status, body = await get_chart(sim, "IBM", interval="4x", range="1d")
    assert status == 400
    assert _error(body) == (
        "Bad Request",
        "Invalid input - interval=4x is not supported. Valid intervals: "
        "[1m, 2m, 5m, 15m, 30m, 60m, 90m, 1h, 4h, 1d, 5d, 1wk, 1mo, 3mo]",
    )


async def test_start_after_end_is_400(sim: TestClient[Any, Any]) -> None:
    status, body = await get_chart(sim, "IBM", interval="1d", period1=1790000000, period2=1780000000)
    assert status == 400
    assert _error(body) == (
        "Bad Request",
        "Invalid input - start date cannot be after end date. startDate = 1790000000, endDate = 1780000000",
    )


async def test_one_minute_more_than_seven_days(sim: TestClient[Any, Any]) -> None:
    p1, p2 = SUNDAY - 8 * DAY, SUNDAY
    status, body = await get_chart(sim, "ES=F", interval="1m", period1=p1, period2=p2)
    assert status == 422
    assert _error(body) == (
        "Unprocessable Entity",
        f"1m data not available for startTime={p1} and endTime={p2}. "
        "Only 7 days worth of 1m granularity data are allowed to be fetched per request.",
    )
    status, _ = await get_chart(sim, "ES=F", interval="1m", period1=SUNDAY - 7 * DAY, period2=SUNDAY)
    assert status == 200
    status, body = await get_chart(sim, "ES=F", interval="1m", range="8d")
    assert status == 422 and "Only 7 days worth of 1m granularity" in _error(body)[1]


async def test_one_minute_older_than_thirty_days(sim: TestClient[Any, Any]) -> None:
    p1, p2 = SUNDAY - 31 * DAY, SUNDAY - 30 * DAY
    status, body = await get_chart(sim, "IBM", interval="1m", period1=p1, period2=p2)
    assert status == 422
    assert _error(body) == (
        "Unprocessable Entity",
        f"1m data not available for startTime={p1} and endTime={p2}. "
        "The requested range must be within the last 30 days.",
    )
    status, body = await get_chart(sim, "IBM", interval="1m", range="1mo")
    assert status == 422  # a calendar month of minutes crosses a limit: no partial data


@pytest.mark.parametrize(
    ("interval", "days"),
    [("2m", 60), ("5m", 60), ("15m", 60), ("30m", 60), ("90m", 60), ("60m", 730), ("1h", 730), ("4h", 730)],
)
async def test_intraday_age_limits(sim: TestClient[Any, Any], interval: str, days: int) -> None:
    p1, p2 = SUNDAY - (days + 1) * DAY, SUNDAY - (days - 5) * DAY
    status, body = await get_chart(sim, "IBM", interval=interval, period1=p1, period2=p2)
    assert status == 422
    assert _error(body) == (
        "Unprocessable Entity",
        f"{interval} data not available for startTime={p1} and endTime={p2}. "
        f"The requested range must be within the last {days} days.",
    )
    inside = SUNDAY - (days - 1) * DAY
    status, _ = await get_chart(sim, "IBM", interval=interval, period1=inside, period2=inside + 3 * DAY)
    assert status == 200


async def test_daily_has_no_age_limit_and_bad_range_is_refused(sim: TestClient[Any, Any]) -> None:
    status, _ = await get_chart(sim, "IBM", interval="1d", period1=-1331523852, period2=SUNDAY)
    assert status == 200
    status, body = await get_chart(sim, "IBM", interval="1d", range="7x")
    assert status == 422 and _error(body)[0] == "Unprocessable Entity"
    status, body = await get_chart(sim, "IBM", interval="1d", period1="soon")
    assert status == 400 and _error(body)[0] == "Bad Request"


async def test_unknown_params_and_crumb_are_ignored(sim: TestClient[Any, Any]) -> None:
    status, plain = await get_chart(sim, "IBM", interval="1d", range="5d")
    status2, noisy = await get_chart(
        sim, "IBM", interval="1d", range="5d", crumb="abc", corsDomain="x", lang="en"
    )
    assert status == status2 == 200 and plain == noisy


async def test_ytd_of_minutes_is_refused_but_hours_are_served(sim: TestClient[Any, Any]) -> None:
    status, body = await get_chart(sim, "IBM", interval="1m", range="ytd")
    assert status == 422 and "Only 7 days worth" in _error(body)[1]
    status, _ = await get_chart(sim, "IBM", interval="1h", range="ytd")
    assert status == 200


@pytest.mark.parametrize("symbol", ["IBM", "ES=F", "EURUSD=X", "7974.T", "ESZ26.CME"])
def test_every_interval_and_range_answers_cleanly(symbol: str) -> None:
    """No combination crashes: each is data (sorted, consistent) or one of Yahoo's refusals."""
    for interval in INTERVALS:
        for range_ in ("1d", "5d", "1mo", "ytd", "max"):
            for prepost in ("true", "false"):
                params = {"interval": interval, "range": range_, "includePrePost": prepost}
                result = answer(symbol, params, SUNDAY, seed=3)
                assert result.status in (200, 422), (params, result.body)
                if result.status != 200:
                    continue
                chart = result.body["chart"]["result"][0]
                stamps = chart.get("timestamp", [])
                assert stamps == sorted(set(stamps)), params
                quote = chart["indicators"]["quote"][0]
                for i in range(len(stamps)):
                    assert quote["low"][i] <= min(quote["open"][i], quote["close"][i]), (params, i)
                    assert max(quote["open"][i], quote["close"][i]) <= quote["high"][i], (params, i)


async def test_ranges_judged_by_nominal_length_and_cut_at_the_age_limit(sim: TestClient[Any, Any]) -> None:
    """yfinance's usual period="60d" (5m) and "730d"/"2y" (1h) calls are served, the data
    cut at the age limit; one day more is refused."""
    for interval, served, refused, days in (("5m", "60d", "61d", 60), ("1h", "2y", "3y", 730)):
        status, body = await get_chart(sim, "ES=F", interval=interval, range=served)
        assert status == 200
        assert body["chart"]["result"][0]["timestamp"][0] >= SUNDAY - days * DAY
        status, body = await get_chart(sim, "ES=F", interval=interval, range=refused)
        assert status == 422
        assert _error(body)[1].endswith(f"The requested range must be within the last {days} days.")
