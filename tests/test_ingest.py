"""Upstream bodies are checked for shape before anything can be stored."""

from __future__ import annotations

import math

import orjson
import pytest

from proxy.ingest import PayloadError, UpstreamChartError, parse_chart_body, parse_trading_periods
from tests.recordings import all_recordings, recording


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
def test_every_recording_parses(rec) -> None:
    payload = parse_chart_body(orjson.dumps(rec.body))
    assert len(payload.bars) == len(rec.result["timestamp"])
    assert payload.prev_close == rec.result["meta"]["chartPreviousClose"]
    assert (payload.bars.adjclose is not None) == ("adjclose" in rec.result["indicators"])


def test_prepost_trading_periods_pair_up_by_day() -> None:
    days = parse_trading_periods(recording("IBM_45951dc5fe").result["meta"]["tradingPeriods"])
    assert len(days) == 5
    assert all(days.pre_end == days.regular_start)
    assert all(days.post_start == days.regular_end)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>Will be right back</html>",
        b'{"chart": {"result": [{"meta": {}, "timestamp": [1, 2], "indicators": {"quote": [{"open": [1]',
        b'{"finance": {}}',
        b'{"chart": {"result": []}}',
        b'{"chart": {"result": [{"timestamp": []}]}}',
        b'{"chart":{"result":[{"meta":{},"timestamp":[1,2],"indicators":{"quote":[{"open":[1]}]}}]}}',
        b'{"chart":{"result":[{"meta":{},"timestamp":[1],"indicators":{"quote":[{"open":["x"]}]}}]}}',
        b'{"chart": {"result": [{"meta": {}, "timestamp": [1], "indicators": {"quote": [{}]}}]}}',
        b'{"chart": {"result": [{"meta": {}, "timestamp": 5}]}}',
        b"[1, 2]",
    ],
)
def test_bad_bodies_are_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_chart_body(body)


def test_error_body_is_reported_with_yahoo_code() -> None:
    body = b'{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found"}}}'
    with pytest.raises(UpstreamChartError) as info:
        parse_chart_body(body)
    assert info.value.code == "Not Found"


def test_nulls_and_duplicate_live_bar() -> None:
    body = orjson.dumps(
        {
            "chart": {
                "result": [
                    {
                        "meta": {"symbol": "X"},
                        "timestamp": [120, 60, 120],
                        "indicators": {
                            "quote": [
                                {
                                    "open": [1, None, 3],
                                    "high": [1, 2, 3],
                                    "low": [1, 2, 3],
                                    "close": [1, 2, 3],
                                    "volume": [1, None, 3],
                                }
                            ]
                        },
                    }
                ],
                "error": None,
            }
        }
    )
    payload = parse_chart_body(body)
    assert list(payload.bars.ts) == [60, 120]
    assert math.isnan(payload.bars.open[0])
    assert list(payload.bars.close) == [2.0, 3.0]  # the later copy of the live bar wins
    assert payload.bars.volume[0] == -1


def test_bad_trading_periods_are_payload_errors() -> None:
    with pytest.raises(PayloadError):
        parse_trading_periods([[{"start": "x"}]])
