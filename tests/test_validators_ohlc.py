"""Price checks: OHLC invariants, nulls, impossible prices, spikes versus level shifts
(weekend gaps, contract rollovers), on synthetic series and on Yahoo's recordings."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from proxy.ingest import parse_chart_result
from proxy.series import VOLUME_NULL, Bars
from tests.recordings import all_recordings
from validators.ohlc import check_ohlc
from validators.report import Severity
from validators.score import combine

T0 = 1_764_939_600  # 2025-12-05 13:00 UTC, a Friday
MINUTE = 60


def walk(n: int, *, seed: int = 7, start: float = 100.0, sigma: float = 0.05, step: int = MINUTE) -> Bars:
    """A random-walk series that satisfies every OHLC invariant, with ordinary volume."""
    rng = np.random.default_rng(seed)
    close = start + np.cumsum(rng.normal(0.0, sigma, n))
    open_ = np.concatenate([[start], close[:-1]])
    high = np.maximum(open_, close) + rng.uniform(0.0, sigma, n)
    low = np.minimum(open_, close) - rng.uniform(0.0, sigma, n)
    ts = T0 + step * np.arange(n, dtype=np.int64)
    return Bars(ts, open_, high, low, close, rng.integers(500, 1500, n).astype(np.int64))


def shifted(bars: Bars, at: int, by: float) -> Bars:
    """The same series with every price from bar ``at`` on moved by ``by`` (a level shift)."""
    out = bars.take(slice(None))
    for column in (out.open, out.high, out.low, out.close):
        column[at:] = column[at:] + by
    return out


def codes(bars: Bars, **kwargs: object) -> dict[str, int]:
    return {i.code: i.count for i in check_ohlc(bars, **kwargs).issues}  # type: ignore[arg-type]


def test_a_clean_series_has_no_issues_and_scores_one() -> None:
    bars = walk(500)
    result = check_ohlc(bars)
    assert result.issues == ()
    assert result.bad.size == 0
    assert (result.expected, result.present) == (500, 500)
    assert combine([result], bars=len(bars)).score == 1.0


def test_zt_like_close_above_high_is_an_error_on_that_bar() -> None:
    """ZT=F, Dec 2025: one hourly close printed a tick above the bar's high."""
    tick = 1 / 256
    n = 60
    rng = np.random.default_rng(3)
    close = 104.0 + tick * np.cumsum(rng.integers(-1, 2, n))
    open_ = np.concatenate([[104.0], close[:-1]])
    high = np.maximum(open_, close) + tick
    low = np.minimum(open_, close) - tick
    ts = T0 + 3600 * np.arange(n, dtype=np.int64)
    close[41] = high[41] + tick
    bars = Bars(ts, open_, high, low, close, np.full(n, 2000, dtype=np.int64))

    result = check_ohlc(bars)
    [issue] = result.issues
    assert issue.code == "ohlc.close_above_high"
    assert issue.severity is Severity.ERROR
    assert (issue.start, issue.end, issue.count) == (ts[41], ts[41], 1)
    assert f"C={close[41]:.6g}" in issue.detail
    assert result.bad.tolist() == [41]
    assert combine([result], bars=n).score <= 0.99


@pytest.mark.parametrize(
    ("column", "offset_from", "delta", "code"),
    [
        ("open", "high", 0.5, "ohlc.open_above_high"),
        ("close", "high", 0.5, "ohlc.close_above_high"),
        ("open", "low", -0.5, "ohlc.open_below_low"),
        ("close", "low", -0.5, "ohlc.close_below_low"),
    ],
)
def test_each_broken_invariant_is_grouped_into_one_issue(
    column: str, offset_from: str, delta: float, code: str
) -> None:
    bars = walk(200)
    for i in (30, 90, 150):
        getattr(bars, column)[i] = getattr(bars, offset_from)[i] + delta
    result = check_ohlc(bars)
    [issue] = [i for i in result.issues if i.code == code]
    assert issue.severity is Severity.ERROR
    assert (issue.count, issue.start, issue.end) == (3, bars.ts[30], bars.ts[150])
    assert result.bad.tolist() == [30, 90, 150]


def test_high_below_low_is_reported_once_per_bar_in_integrity() -> None:
    bars = walk(100)
    bars.high[50], bars.low[50] = bars.low[50], bars.high[50]
    result = check_ohlc(bars)
    found = {i.code for i in result.issues}
    assert "ohlc.high_below_low" in found
    assert result.bad.tolist() == [50]  # several invariants fail, the bar counts once


def test_float32_widening_is_not_an_invariant_break() -> None:
    """Yahoo mixes short decimals (pre/post) with float32 values widened to double."""
    bars = walk(20, start=230.0)
    bars.close[10] = 230.67
    bars.high[10] = float(np.float32(230.67))  # 230.6699981689453, below the close
    bars.low[10] = min(bars.low[10], bars.open[10], 230.0)
    bars.open[10] = bars.low[10]
    assert bars.close[10] > bars.high[10]
    assert not any(i.severity is Severity.ERROR for i in check_ohlc(bars).issues)


def test_null_bars_are_missing_not_broken() -> None:
    bars = walk(50)
    for column in (bars.open, bars.high, bars.low, bars.close):
        column[[10, 11, 40]] = np.nan
    bars.volume[[10, 11, 40]] = VOLUME_NULL
    result = check_ohlc(bars)
    [issue] = result.issues
    assert (issue.code, issue.severity, issue.count) == ("ohlc.null_bars", Severity.WARNING, 3)
    assert (issue.start, issue.end) == (bars.ts[10], bars.ts[40])
    assert result.bad.size == 0
    assert (result.expected, result.present) == (50, 47)
    report = combine([result], bars=50)
    assert report.integrity == 1.0
    assert report.completeness == pytest.approx(47 / 50)


def test_a_partly_null_bar_is_broken() -> None:
    bars = walk(50)
    bars.open[5] = np.nan
    result = check_ohlc(bars)
    assert [(i.code, i.severity, i.count) for i in result.issues] == [
        ("ohlc.partial_null", Severity.WARNING, 1)
    ]
    assert result.bad.tolist() == [5]
    assert result.present == 50


def test_infinite_and_non_positive_prices_are_errors() -> None:
    bars = walk(60)
    bars.high[7] = np.inf
    bars.low[20] = -np.inf
    bars.low[33] = 0.0
    bars.close[44] = bars.low[44] = -1.5
    result = check_ohlc(bars)
    found = {i.code: i for i in result.issues}
    assert found["ohlc.not_finite"].count == 2
    assert found["ohlc.non_positive"].count == 2
    assert {found["ohlc.non_positive"].start, found["ohlc.non_positive"].end} == {bars.ts[33], bars.ts[44]}
    assert set(result.bad.tolist()) == {7, 20, 33, 44}


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_batches_are_judged_without_crashing(n: int) -> None:
    result = check_ohlc(walk(n))
    assert result.issues == ()
    assert (result.expected, result.present) == (n, n)


def test_an_all_null_batch_is_all_missing() -> None:
    n = 30
    nan = np.full(n, np.nan)
    bars = Bars(T0 + MINUTE * np.arange(n, dtype=np.int64), nan, nan.copy(), nan.copy(), nan.copy(),
                np.full(n, VOLUME_NULL, dtype=np.int64))  # fmt: skip
    result = check_ohlc(bars)
    assert [(i.code, i.count) for i in result.issues] == [("ohlc.null_bars", n)]
    assert (result.present, result.bad.size) == (0, 0)


def test_a_one_bar_spike_without_volume_is_flagged() -> None:
    bars = walk(300)
    bars.high[120] = bars.close[120] + 3.0  # ~60 typical ranges, then straight back
    result = check_ohlc(bars)
    [issue] = result.issues
    assert (issue.code, issue.severity, issue.count) == ("ohlc.spike", Severity.WARNING, 1)
    assert (issue.start, issue.end) == (bars.ts[120], bars.ts[120])
    assert result.bad.tolist() == [120]


def test_a_two_bar_downward_spike_is_flagged_on_both_bars() -> None:
    bars = walk(300)
    for column in (bars.open, bars.high, bars.low, bars.close):
        column[200:202] -= 4.0  # two bad prints, then the next bar is back where it was
    result = check_ohlc(bars)
    [issue] = result.issues
    assert issue.code == "ohlc.spike"
    assert (issue.count, issue.start, issue.end) == (2, bars.ts[200], bars.ts[201])


def test_a_spike_on_heavy_volume_is_a_real_move() -> None:
    bars = walk(300)
    bars.high[120] = bars.close[120] + 3.0
    bars.volume[120] = 20 * int(np.median(bars.volume))
    assert codes(bars) == {}


def test_the_last_bars_are_not_judged_for_spikes_yet() -> None:
    """Without bars after it, a jump at the end cannot be told from a new level."""
    bars = walk(100)
    bars.high[-1] = bars.close[-1] + 3.0
    assert codes(bars) == {}
    longer = walk(105)
    longer.high[99] = longer.close[99] + 3.0
    assert codes(longer) == {"ohlc.spike": 1}


def test_a_weekend_gap_is_a_level_shift_not_a_spike() -> None:
    friday = walk(200)
    gap_at = 120
    bars = shifted(friday, gap_at, 2.5)  # 2.5 % gap open that holds
    bars.ts[gap_at:] += 2 * 86_400 + 3600  # Friday evening to Sunday evening
    bars.open[gap_at] = bars.close[gap_at - 1] + 2.5
    assert codes(bars) == {}


def test_a_rollover_inside_its_window_is_info_not_a_spike() -> None:
    bars = shifted(walk(400, start=6000.0, sigma=1.0), 250, -45.0)
    window = (int(bars.ts[240]), int(bars.ts[260]))
    result = check_ohlc(bars, roll_windows=[window])
    [issue] = result.issues
    assert (issue.code, issue.severity, issue.count) == ("contract.rollover", Severity.INFO, 1)
    assert issue.start == issue.end == bars.ts[250]
    change = re.search(r"\(([-+][\d.]+),", issue.detail)  # the size of the jump is named
    assert change is not None and float(change[1]) == pytest.approx(-45.0, abs=10.0)
    assert result.bad.size == 0
    assert combine([result], bars=len(bars)).score == 1.0


def test_the_same_shift_outside_every_roll_window_is_not_reported() -> None:
    bars = shifted(walk(400, start=6000.0, sigma=1.0), 250, -45.0)
    assert codes(bars, roll_windows=[(int(bars.ts[0]), int(bars.ts[100]))]) == {}


def test_a_spike_inside_a_roll_window_is_still_a_spike_not_a_rollover() -> None:
    bars = walk(400, start=6000.0, sigma=1.0)
    for column in (bars.open, bars.high, bars.low, bars.close):
        column[250] += 80.0  # the whole bar away and back: it does not persist
    bars.open[251] = bars.close[250]
    bars.high[251] = max(bars.high[251], bars.open[251])
    windows = [(int(bars.ts[200]), int(bars.ts[300]))]
    result = check_ohlc(bars, roll_windows=windows)
    assert [(i.code, i.start) for i in result.issues] == [("ohlc.spike", bars.ts[250])]


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
def test_yahoo_recordings_have_no_price_issues(rec) -> None:  # type: ignore[no-untyped-def]
    bars = parse_chart_result(rec.result).bars
    result = check_ohlc(bars)
    assert result.issues == ()
    assert result.present == len(bars)


@st.composite
def valid_bars(draw: st.DrawFn) -> Bars:
    n = draw(st.integers(0, 60))
    price = st.floats(0.0625, 1e6, allow_nan=False, width=32)
    opens = np.array(draw(st.lists(price, min_size=n, max_size=n)), dtype=np.float64)
    closes = np.array(draw(st.lists(price, min_size=n, max_size=n)), dtype=np.float64)
    up = np.array(draw(st.lists(st.floats(0, 1e3), min_size=n, max_size=n)), dtype=np.float64)
    down = np.array(draw(st.lists(st.floats(0, 0.99), min_size=n, max_size=n)), dtype=np.float64)
    high = np.maximum(opens, closes) + up
    low = np.minimum(opens, closes) * (1 - down)
    volume = np.array(draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)), dtype=np.int64)
    return Bars(T0 + MINUTE * np.arange(n, dtype=np.int64), opens, high, low, closes, volume)


@settings(max_examples=200, deadline=None)
@given(valid_bars())
def test_bars_that_keep_the_invariants_have_no_errors(bars: Bars) -> None:
    result = check_ohlc(bars)
    assert [i for i in result.issues if i.severity is Severity.ERROR] == []
    assert {i.code for i in result.issues} <= {"ohlc.spike"}


any_floats = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 40).flatmap(lambda n: st.tuples(*(hnp.arrays(np.float64, n, elements=any_floats),) * 4))
)
def test_arbitrary_prices_never_crash(columns: tuple[np.ndarray, ...]) -> None:
    n = columns[0].size
    ts = T0 + MINUTE * np.arange(n, dtype=np.int64)
    bars = Bars(ts, *columns, np.full(n, 100, dtype=np.int64))
    result = check_ohlc(bars, roll_windows=[(T0, T0 + 600)])
    assert np.array_equal(result.bad, np.unique(result.bad))
    assert result.bad.size == 0 or 0 <= result.bad.min() <= result.bad.max() < n
    assert 0 <= (result.present or 0) <= n
    for issue in result.issues:
        assert issue.count >= 1
        assert issue.start is not None and issue.end is not None and issue.start <= issue.end
