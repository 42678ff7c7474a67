"""Merging upstream answers: revisions replace, nothing stored is lost, meta from the newest."""

from __future__ import annotations

import math

import numpy as np

from proxy.ingest import ChartPayload, parse_chart_result
from proxy.merge import merge_series
from proxy.series import Bars, SeriesKey, TradingDays
from tests.recordings import recording

KEY = SeriesKey("ES=F", "1m", False)


def _payload(ts: list[int], close: float, meta: dict | None = None, prev: float = math.nan) -> ChartPayload:
    n = len(ts)
    f = np.full(n, close)
    bars = Bars(np.array(ts, dtype=np.int64), f, f + 1, f - 1, f.copy(), np.ones(n, dtype=np.int64))
    return ChartPayload(bars=bars, meta=meta or {"m": close}, days=TradingDays.empty(), prev_close=prev)


def test_first_answer_becomes_the_series() -> None:
    s = merge_series(
        None, KEY, _payload([60, 120], 1.0, prev=0.5), window_start=0, window_end=180, fetched_at=5
    )
    assert list(s.bars.ts) == [60, 120]
    assert (s.coverage_start, s.coverage_end, s.prev_close) == (0, 180, 0.5)


def test_tail_fetch_revises_overlap_and_appends() -> None:
    s = merge_series(None, KEY, _payload([60, 120, 180], 1.0), window_start=0, window_end=200, fetched_at=5)
    s = merge_series(
        s, KEY, _payload([180, 240], 2.0, {"m": 2}), window_start=150, window_end=300, fetched_at=9
    )
    assert list(s.bars.ts) == [60, 120, 180, 240]
    assert list(s.bars.close) == [1.0, 1.0, 2.0, 2.0]
    assert (s.coverage_start, s.coverage_end, s.fetched_at, s.meta) == (0, 300, 9, {"m": 2})


def test_empty_answer_deletes_nothing() -> None:
    s = merge_series(None, KEY, _payload([60, 120], 1.0), window_start=0, window_end=200, fetched_at=5)
    s = merge_series(s, KEY, _payload([], 0.0), window_start=0, window_end=250, fetched_at=9)
    assert list(s.bars.ts) == [60, 120]


def test_backfill_keeps_newer_meta_and_takes_earlier_prev_close() -> None:
    s = merge_series(
        None, KEY, _payload([600], 1.0, {"new": 1}, 0.9), window_start=500, window_end=700, fetched_at=9
    )
    s = merge_series(
        s, KEY, _payload([60], 0.5, {"old": 1}, 0.4), window_start=0, window_end=500, fetched_at=10
    )
    assert s.meta == {"new": 1}
    assert s.prev_close == 0.4
    assert (s.coverage_start, s.coverage_end) == (0, 700)
    assert s.fetched_at == 9  # a backfill says nothing about how fresh the tail is


def test_disjoint_newer_window_becomes_the_vouched_coverage() -> None:
    s = merge_series(None, KEY, _payload([60], 1.0), window_start=0, window_end=100, fetched_at=1)
    s = merge_series(s, KEY, _payload([900], 1.0), window_start=800, window_end=1000, fetched_at=2)
    assert (s.coverage_start, s.coverage_end) == (800, 1000)
    assert list(s.bars.ts) == [60, 900]


def test_adjclose_kept_when_one_side_lacks_it() -> None:
    rec = recording("IBM_28e796ef1b")  # daily, with adjclose
    daily = parse_chart_result(rec.result)
    s = merge_series(
        None, SeriesKey("IBM", "1d", False), daily, window_start=0, window_end=2**31, fetched_at=1
    )
    later = _payload([int(daily.bars.ts[-1]) + 86400], 3.0)
    s = merge_series(s, s.key, later, window_start=0, window_end=2**31, fetched_at=2)
    assert s.bars.adjclose is not None and s.bars.adjclose[-1] == 3.0


def test_trading_days_merge_by_session() -> None:
    a = parse_chart_result(recording("IBM_45951dc5fe").result)
    key = SeriesKey("IBM", "1h", True)
    s = merge_series(None, key, a, window_start=0, window_end=2**31, fetched_at=1)
    s2 = merge_series(s, key, a, window_start=0, window_end=2**31, fetched_at=2)
    assert len(s2.days) == len(s.days) == 5
    assert np.all(np.diff(s2.days.regular_start) > 0)
