"""validators.engine over whole chart answers: every real recording, and the simulator's futures."""

from __future__ import annotations

import orjson
import pytest

from loadtests.yahoo_sim import chart
from proxy.ingest import parse_chart_body, parse_chart_result
from tests.recordings import Recording, all_recordings
from validators.engine import validate
from validators.report import Severity

# Known, real defects in the recordings (INDEX.md): IBM's 1h pre/post answer lacks the
# 06:00 pre-market bar of 2026-09-23, which the timestamps check reports as sparse (INFO).
EXPLAINED = {"IBM_45951dc5fe": {"time.sparse"}}


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
def test_every_recording_scores_high_with_no_false_issues(rec: Recording) -> None:
    payload = parse_chart_result(rec.result)
    report = validate(
        payload.bars,
        payload.meta,
        payload.days,
        symbol=rec.symbol,
        interval=rec.params.get("interval", "1d"),
        prepost=rec.params.get("includePrePost", "false").lower() == "true",
        window=None,
    )
    assert report.codes() == EXPLAINED.get(rec.name, set()), [i.detail for i in report.issues]
    assert all(i.severity is Severity.INFO for i in report.issues)
    assert report.score >= 0.99


@pytest.mark.parametrize("symbol", ["ES=F", "CL=F", "ZN=F", "GC=F", "6E=F", "EURUSD=X", "AAPL"])
@pytest.mark.parametrize("interval", ["1m", "15m", "1h", "1d"])
def test_the_simulators_answers_are_clean(symbol: str, interval: str) -> None:
    now = 1_796_083_200  # 2026-12-01 00:00 UTC: the windows span Thanksgiving
    ranges = {"1m": "5d", "15m": "1mo", "1h": "3mo", "1d": "1y"}
    params = {"interval": interval, "range": ranges[interval]}
    answer = chart.answer(symbol, params, now, 7)
    payload = parse_chart_body(orjson.dumps(answer.body))
    report = validate(
        payload.bars, payload.meta, payload.days, symbol=symbol, interval=interval, prepost=False, window=None
    )
    assert report.score == 1.0, [i.detail for i in report.issues]
    assert not [i for i in report.issues if i.severity is not Severity.INFO]


def test_an_unknown_interval_is_a_programming_error() -> None:
    payload = parse_chart_result(all_recordings()[0].result)
    with pytest.raises(ValueError, match="unknown interval"):
        validate(payload.bars, payload.meta, None, symbol="X", interval="7m", prepost=False, window=None)
