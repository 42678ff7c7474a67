"""Rendering is proven on every real Yahoo recording: store the recorded series,
ask for the same window back, and get Yahoo's body value for value."""

from __future__ import annotations

import orjson
import pytest

from proxy.ingest import parse_chart_result
from proxy.merge import merge_series
from proxy.query import parse_chart_query
from proxy.render import render_chart
from proxy.series import Series
from proxy.window import SeriesIndex, resolve
from tests.recordings import Recording, all_recordings, recording


def stored_series(rec: Recording) -> Series:
    """The series a fetch of exactly this recording would have stored."""
    query = parse_chart_query(rec.symbol, rec.params, now=rec.recorded_at)
    payload = parse_chart_result(rec.result)
    if query.period1 is not None:
        start, end = query.period1, query.period2 or rec.recorded_at
    else:
        # A range answer vouches for its window: from the first session's midnight to now.
        probe = merge_series(None, query.series_key, payload, window_start=0, window_end=0, fetched_at=0)
        index = SeriesIndex(probe)
        start, end = index.midnight(int(index.session[0])), rec.recorded_at
    return merge_series(
        None, query.series_key, payload, window_start=start, window_end=end, fetched_at=rec.recorded_at
    )


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
def test_same_window_renders_the_recorded_body(rec: Recording) -> None:
    series = stored_series(rec)
    query = parse_chart_query(rec.symbol, rec.params, now=rec.recorded_at)
    view = resolve(SeriesIndex(series), query, rec.recorded_at)
    assert view.required_start >= series.coverage_start, "the recorded window must be a full hit"
    assert orjson.loads(render_chart(series, view, query)) == rec.body


def test_a_narrower_window_is_cut_from_the_stored_year() -> None:
    """IBM 1y stored; range=5d asked: Yahoo's own 5d recording is what comes back."""
    year, five = recording("IBM_1fe458b33e"), recording("IBM_5a39654f52")
    series = stored_series(year)
    query = parse_chart_query("IBM", {"interval": "1d", "range": "5d"}, now=five.recorded_at)
    body = orjson.loads(render_chart(series, resolve(SeriesIndex(series), query, five.recorded_at), query))
    got, want = body["chart"]["result"][0], five.result
    assert got["timestamp"] == want["timestamp"]
    assert got["indicators"] == want["indicators"]
    assert got["meta"]["chartPreviousClose"] == want["meta"]["chartPreviousClose"]
    assert got["meta"]["range"] == "5d"


def test_key_order_of_meta_follows_yahoo() -> None:
    rec = recording("IBM_45951dc5fe")
    series = stored_series(rec)
    query = parse_chart_query(rec.symbol, rec.params, now=rec.recorded_at)
    raw = render_chart(series, resolve(SeriesIndex(series), query, rec.recorded_at), query)
    meta = orjson.loads(raw)["chart"]["result"][0]["meta"]
    assert list(meta) == list(rec.result["meta"])
    assert list(meta["tradingPeriods"]) == ["pre", "post", "regular"]
