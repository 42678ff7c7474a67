"""Volume checks: nulls and impossible counts, Yahoo's random zero volumes, long zero
runs, quiet overnight sessions, hourly closing stamps and volume-less instruments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.ingest import parse_chart_result
from proxy.series import VOLUME_NULL, Bars
from tests.recordings import all_recordings, recording
from validators.report import Severity
from validators.volume import check_volume

T0 = 1_764_939_600  # 2025-12-05 13:00 UTC
MINUTE, HOUR, DAY = 60, 3600, 86_400


def traded(n: int, *, step: int = MINUTE, seed: int = 5) -> Bars:
    rng = np.random.default_rng(seed)
    close = 50.0 + np.cumsum(rng.normal(0, 0.02, n))
    open_ = np.concatenate([[50.0], close[:-1]])
    high = np.maximum(open_, close) + 0.01
    low = np.minimum(open_, close) - 0.01
    ts = T0 + step * np.arange(n, dtype=np.int64)
    return Bars(ts, open_, high, low, close, rng.integers(100, 5000, n).astype(np.int64))


def found(bars: Bars, **kwargs: object) -> dict[str, tuple[Severity, int]]:
    result = check_volume(bars, **kwargs)  # type: ignore[arg-type]
    return {i.code: (i.severity, i.count) for i in result.issues}


def test_traded_bars_have_no_issues() -> None:
    result = check_volume(traded(300), interval_s=MINUTE)
    assert result.issues == ()
    assert result.bad.size == 0


def test_empty_batch_is_clean() -> None:
    assert check_volume(traded(0), interval_s=MINUTE).issues == ()


def test_null_volume_on_priced_bars_is_missing() -> None:
    bars = traded(100)
    bars.volume[[3, 50]] = VOLUME_NULL
    # A bar with neither prices nor volume is ohlc's null bar, not reported here again.
    for column in (bars.open, bars.high, bars.low, bars.close):
        column[70] = np.nan
    bars.volume[70] = VOLUME_NULL
    result = check_volume(bars, interval_s=MINUTE)
    [issue] = result.issues
    assert (issue.code, issue.severity, issue.count) == ("volume.missing", Severity.WARNING, 2)
    assert (issue.start, issue.end) == (bars.ts[3], bars.ts[50])
    assert result.bad.size == 0


def test_other_negative_volumes_are_errors() -> None:
    bars = traded(100)
    bars.volume[[10, 11]] = [-5, -2]
    result = check_volume(bars, interval_s=MINUTE)
    assert found(bars, interval_s=MINUTE) == {"volume.negative": (Severity.ERROR, 2)}
    assert result.bad.tolist() == [10, 11]
    assert "volume=-5" in result.issues[0].detail


def test_float_volumes_must_be_whole_counts() -> None:
    bars = traded(50)
    volume = bars.volume.astype(np.float64)
    volume[[4, 9]] = [12.5, np.inf]
    volume[20] = np.nan
    bars.volume = volume  # type: ignore[assignment]
    result = check_volume(bars, interval_s=MINUTE)
    assert {i.code: i.count for i in result.issues} == {"volume.not_integer": 2, "volume.missing": 1}
    assert result.bad.tolist() == [4, 9]


def test_random_zero_volumes_between_trades_are_flagged() -> None:
    bars = traded(200)
    bars.volume[[40, 120, 121]] = 0  # one single zero, one pair
    result = check_volume(bars, interval_s=MINUTE)
    [issue] = result.issues
    assert (issue.code, issue.severity, issue.count) == ("volume.zero", Severity.WARNING, 3)
    assert (issue.start, issue.end) == (bars.ts[40], bars.ts[121])
    assert result.bad.tolist() == [40, 120, 121]


def test_a_long_zero_run_in_active_hours_is_a_warning_not_bad_bars() -> None:
    bars = traded(200)
    bars.volume[60:90] = 0  # 30 minutes without a trade
    result = check_volume(bars, interval_s=MINUTE)
    [issue] = result.issues
    assert (issue.code, issue.severity, issue.count) == ("volume.zero_run", Severity.WARNING, 30)
    assert (issue.start, issue.end) == (bars.ts[60], bars.ts[89])
    assert result.bad.size == 0


def test_a_few_untraded_minutes_are_an_ordinary_lull() -> None:
    bars = traded(200)
    bars.volume[60:65] = 0  # 5 minutes: longer than a random zero, shorter than ZERO_RUN_MIN_S
    assert found(bars, interval_s=MINUTE) == {}


def test_on_hourly_bars_three_zero_hours_are_a_run() -> None:
    bars = traded(40, step=HOUR)
    bars.volume[10:13] = 0
    assert found(bars, interval_s=HOUR) == {"volume.zero_run": (Severity.WARNING, 3)}


def test_quiet_overnight_runs_are_not_flagged() -> None:
    """A futures night session: zero volume for hours while the quiet mask is set."""
    bars = traded(24 * 60)
    quiet = np.zeros(len(bars), dtype=bool)
    quiet[600:1100] = True
    bars.volume[600:1100] = 0
    bars.volume[1100] = 0  # the session edge is off by a bar: still the quiet run
    assert found(bars, interval_s=MINUTE, quiet=quiet) == {}
    assert "volume.zero_run" in found(bars, interval_s=MINUTE)  # the same bars without the mask


def test_the_hourly_closing_stamp_is_normal() -> None:
    """Yahoo ends each hourly equity session with a 16:00 bar: volume 0 and O=H=L=C."""
    days, per_day = 5, 8  # 09:30 .. 15:30 and the 16:00 stamp
    offsets = np.array([0, 1, 2, 3, 4, 5, 6, 6.5]) * HOUR
    ts = np.concatenate([T0 + d * DAY + offsets for d in range(days)]).astype(np.int64)
    bars = traded(days * per_day)
    bars.ts = ts
    last = np.arange(per_day - 1, days * per_day, per_day)
    for column in (bars.open, bars.high, bars.low):
        column[last] = bars.close[last]
    bars.volume[last] = 0
    assert found(bars, interval_s=HOUR) == {}

    bars.high[last[2]] += 0.5  # a stamp whose price moved must have traded: a lost volume
    result = check_volume(bars, interval_s=HOUR)
    assert [(i.code, i.count, i.start) for i in result.issues] == [("volume.zero", 1, ts[last[2]])]


def test_a_flat_zero_bar_on_daily_bars_is_not_a_closing_stamp() -> None:
    bars = traded(30, step=DAY)
    bars.open[12] = bars.high[12] = bars.low[12] = bars.close[12]
    bars.volume[12] = 0
    bars.ts[13:] += 2 * DAY  # a weekend after it
    assert found(bars, interval_s=DAY) == {"volume.zero": (Severity.WARNING, 1)}


def test_an_index_without_volume_is_info_only() -> None:
    bars = traded(250, step=DAY)
    bars.volume[:] = 0
    result = check_volume(bars, interval_s=DAY)
    [issue] = result.issues
    assert (issue.code, issue.severity, issue.count) == ("volume.none", Severity.INFO, 250)
    assert (issue.start, issue.end) == (bars.ts[0], bars.ts[-1])
    assert result.bad.size == 0


@pytest.mark.parametrize("rec", all_recordings(), ids=lambda r: r.name)
def test_yahoo_recordings_are_clean_given_their_quiet_hours(rec) -> None:  # type: ignore[no-untyped-def]
    payload = parse_chart_result(rec.result)
    ts, days = payload.bars.ts, payload.days
    intraday = rec.params["interval"] != "1d"
    regular = ((ts[:, None] >= days.regular_start) & (ts[:, None] < days.regular_end)).any(axis=1)
    quiet = ~regular if intraday and len(days) else None
    assert check_volume(payload.bars, interval_s=HOUR if intraday else DAY, quiet=quiet).issues == ()


def test_pre_and_post_hours_without_their_quiet_mask_are_zero_runs() -> None:
    """IBM 1h with includePrePost: all 50 bars outside regular hours have volume 0; the
    answer's last bar (a post-market one) is the still-forming bar and is not judged."""
    bars = parse_chart_result(recording("IBM_45951dc5fe").result).bars
    result = check_volume(bars, interval_s=HOUR)
    assert [(i.code, i.count) for i in result.issues] == [("volume.zero_run", 49)]


def test_the_still_forming_last_bar_may_be_untraded() -> None:
    bars = traded(10)
    bars.volume[-1] = 0  # the live bar, seconds old
    assert check_volume(bars, interval_s=MINUTE).issues == ()
    bars.volume[-3] = 0  # a zero between trades is still Yahoo's defect
    assert [i.code for i in check_volume(bars, interval_s=MINUTE).issues] == ["volume.zero"]


def test_bad_arguments_are_refused() -> None:
    bars = traded(10)
    with pytest.raises(ValueError, match="interval_s"):
        check_volume(bars, interval_s=0)
    with pytest.raises(ValueError, match="quiet"):
        check_volume(bars, interval_s=MINUTE, quiet=np.zeros(9, dtype=bool))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 80).flatmap(
        lambda n: st.tuples(
            st.lists(st.sampled_from([VOLUME_NULL, -3, 0, 0, 0, 1, 500]), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=n, max_size=n),
        )
    ),
    st.sampled_from([MINUTE, 5 * MINUTE, HOUR, DAY]),
)
def test_arbitrary_volumes_never_crash_and_only_zeros_or_negatives_are_bad(
    columns: tuple[list[int], list[bool]], interval_s: int
) -> None:
    volume, quiet = np.array(columns[0], dtype=np.int64), np.array(columns[1])
    bars = traded(volume.size)
    bars.volume = volume
    result = check_volume(bars, interval_s=interval_s, quiet=quiet)
    bad = result.bad
    assert np.all((volume[bad] == 0) | ((volume[bad] < 0) & (volume[bad] != VOLUME_NULL)))
    assert np.all(~quiet[bad] | (volume[bad] < 0))
    assert all(i.count >= 1 for i in result.issues)
