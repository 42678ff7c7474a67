"""Price checks on one batch of bars: nulls, impossible values, broken OHLC invariants,
spikes, and contract rollovers of continuous futures.

How each kind of bar counts (``bad`` feeds integrity, ``expected``/``present`` feed
completeness):

- A *null bar* (all four prices NaN, Yahoo's ``null``) is not broken, it is absent: one
  WARNING ``ohlc.null_bars`` for all of them, and the result says ``expected`` = bars,
  ``present`` = bars with prices. A *partial* bar (some prices NaN) is broken: WARNING
  ``ohlc.partial_null``, bad.
- Infinite (``ohlc.not_finite``) or zero/negative (``ohlc.non_positive``) prices, and the
  invariants low <= open, close <= high (``ohlc.open_above_high``, ``ohlc.close_above_high``,
  ``ohlc.open_below_low``, ``ohlc.close_below_low``, ``ohlc.high_below_low``) are ERRORs,
  bad. Yahoo prices are float32 values widened to double, mixed with short decimals (pre/post
  bars), so comparisons allow ``REL_TOL`` (1 ppm): above float32 rounding, below any real
  tick (ZT's 1/256 on ~104 is 37 ppm). Note: CL=F really printed negative prices in April
  2020; this check calls them errors, which is right for everything else.
- A *spike* is a bar whose high (or low) lies far outside the levels before *and* after it:
  more than ``SPIKE_K`` typical bar ranges from the median close of the ``NEIGHBOURS`` bars on
  each side, with volume no higher than ``VOLUME_SUPPORT`` times the neighbours' median (a
  move that real volume backs is news, not a bad print). WARNING ``ohlc.spike``, bad. The
  medians ignore one or two outliers, so a one- or two-bar excursion that comes back is a
  spike, while a *level shift* (a weekend gap, a rollover) has a different level after the
  bar and is never one. Bars with fewer than ``MIN_SIDE`` priced neighbours on either side
  (the first and last few of a batch) are not judged: a jump at the very end of a batch
  cannot yet be told from a new level.
- A level shift inside one of ``roll_windows`` (the dates the contracts module says the
  continuous series switches contract) is reported as INFO ``contract.rollover``, one issue
  per jump with its size. Level shifts elsewhere (gaps over weekends and holidays) are
  ordinary market behaviour and are not reported.

The typical bar range is the median true range (max of high - low and the close-to-close
move) of the neighbours, floored at ``SCALE_FLOOR_REL`` of the price so that a flat, untraded
stretch does not make every tick a spike.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from proxy.series import Bars
from validators.report import (
    SHOWN,
    CheckResult,
    QualityIssue,
    Severity,
    grouped_issue,
    plural,
    span,
    utc,
)

REL_TOL = 1e-6
NEIGHBOURS = 5  # bars on each side; the median of 5 shrugs off two outliers
MIN_SIDE = 3
SPIKE_K = 8.0
JUMP_K = 8.0  # a close-to-close move this many typical ranges starts a level shift
SCALE_FLOOR_REL = 5e-4  # 5 bp of price: a spike must exceed SPIKE_K * 5 bp = 0.4 %
VOLUME_SUPPORT = 2.0

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def check_ohlc(bars: Bars, *, roll_windows: Sequence[tuple[int, int]] = ()) -> CheckResult:
    """Judge the prices of ``bars``; see the module docstring for what counts how."""
    n = len(bars)
    o, h, lo, c = (np.asarray(a, dtype=np.float64) for a in (bars.open, bars.high, bars.low, bars.close))
    prices = np.stack([o, h, lo, c]) if n else np.empty((4, 0))
    nan = np.isnan(prices)
    null = nan.all(axis=0)
    finite = np.isfinite(prices).all(axis=0)
    with np.errstate(all="ignore"):  # NaN and inf are judged below, not warned about
        tol = REL_TOL * np.abs(prices).max(axis=0, initial=0.0)
        checks: list[tuple[str, Severity, BoolArray, str]] = [
            ("ohlc.not_finite", Severity.ERROR, np.isinf(prices).any(axis=0), "with infinite prices"),
            (
                "ohlc.non_positive",
                Severity.ERROR,
                finite & (prices <= 0).any(axis=0),
                "with zero or negative prices",
            ),
            (
                "ohlc.partial_null",
                Severity.WARNING,
                nan.any(axis=0) & ~null,
                "with some prices null and others not",
            ),
            ("ohlc.open_above_high", Severity.ERROR, finite & (o > h + tol), "with open above high"),
            ("ohlc.close_above_high", Severity.ERROR, finite & (c > h + tol), "with close above high"),
            ("ohlc.open_below_low", Severity.ERROR, finite & (o < lo - tol), "with open below low"),
            ("ohlc.close_below_low", Severity.ERROR, finite & (c < lo - tol), "with close below low"),
            ("ohlc.high_below_low", Severity.ERROR, finite & (h < lo - tol), "with high below low"),
        ]
    issues: list[QualityIssue] = []
    bad = np.zeros(n, dtype=bool)
    for code, severity, mask, what in checks:
        if mask.any():
            bad |= mask
            issues.append(_grouped(code, severity, bars, mask, what))
    if null.any():
        issues.append(_grouped("ohlc.null_bars", Severity.WARNING, bars, null, "without prices (Yahoo null)"))

    usable = finite & (prices > 0).all(axis=0) & ~bad
    moves = find_moves(bars, usable)
    if moves.spike.any():
        bad |= moves.spike
        issues.append(_spike_issue(bars, moves))
    issues.extend(rollover_issues(bars, moves, roll_windows))
    return CheckResult(
        issues=tuple(issues),
        bad=np.flatnonzero(bad).astype(np.intp),
        expected=n,
        present=int(n - null.sum()),
    )


@dataclass(frozen=True, slots=True)
class Moves:
    """Per-bar view of large moves: spikes (out and back) and level-shift starts."""

    spike: BoolArray
    jump: BoolArray
    before: FloatArray  # median close of the neighbours before each bar
    after: FloatArray  # median close from each bar on (the bar and the next ones)
    scale: FloatArray  # typical bar range around each bar
    excursion: FloatArray  # how far the bar's high or low leaves both levels


def find_moves(bars: Bars, usable: BoolArray | None = None) -> Moves:
    """Spikes and level shifts among the ``usable`` bars (default: all with finite positive prices)."""
    n = len(bars)
    if n == 0:
        none, nothing = np.zeros(0, dtype=bool), np.empty(0)
        return Moves(none, none, nothing, nothing, nothing, nothing)
    o, h, lo, c = (np.asarray(a, dtype=np.float64) for a in (bars.open, bars.high, bars.low, bars.close))
    if usable is None:
        with np.errstate(all="ignore"):
            usable = np.isfinite(o + h + lo + c) & (np.fmin(np.fmin(o, h), np.fmin(lo, c)) > 0)
    close = np.where(usable, c, np.nan)
    high, low = np.where(usable, h, np.nan), np.where(usable, lo, np.nan)
    prev = np.concatenate([[np.nan], close[:-1]])
    true_range = np.fmax(high - low, np.abs(close - prev))

    k = NEIGHBOURS
    closes = _windows(close, k)
    left, right, onward = closes[:, :k], closes[:, k + 1 :], closes[:, k : 2 * k]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN, on purpose
        # left, right and onward are all runs of k consecutive closes: one rolling median,
        # read at three offsets, gives the three (the costliest part for 40k minute bars).
        rolling = _row_median(
            sliding_window_view(np.concatenate([np.full(k, np.nan), close, np.full(k, np.nan)]), k)
        )
        before, after_neighbours, after = rolling[:n], rolling[k + 1 : k + 1 + n], rolling[k : k + n]
        level = np.fmax(before, after_neighbours)
        scale = np.fmax(_row_median(_neighbours(true_range, k)), SCALE_FLOOR_REL * level)
        volume = np.array(bars.volume, dtype=np.float64)  # a copy: nulls become NaN below
        volume[volume < 0] = np.nan
        neighbour_volume = _row_median(_neighbours(volume, k))

    judged = usable & (_count(left) >= MIN_SIDE) & (_count(right) >= MIN_SIDE)
    excursion = np.fmax(high - level, np.fmin(before, after_neighbours) - low)
    with np.errstate(all="ignore"):
        supported = (volume > 0) & (volume > VOLUME_SUPPORT * neighbour_volume)
        spike = judged & (excursion > SPIKE_K * scale) & ~supported
        step = close - prev
        shift = after - before
        jump = (
            usable
            & (_count(left) >= MIN_SIDE)
            & (_count(onward) >= MIN_SIDE)
            & (np.abs(step) > JUMP_K * scale)
            & (np.abs(shift) > 0.5 * np.abs(step))
            & (np.sign(step) == np.sign(shift))
        )
    return Moves(spike=spike, jump=jump, before=before, after=after, scale=scale, excursion=excursion)


def rollover_issues(bars: Bars, moves: Moves, windows: Sequence[tuple[int, int]]) -> list[QualityIssue]:
    """One INFO ``contract.rollover`` per level shift that starts inside a roll window."""
    if not windows or not moves.jump.any():
        return []
    ts = np.asarray(bars.ts, dtype=np.int64)
    bounds = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    inside = ((ts[:, None] >= bounds[:, 0]) & (ts[:, None] <= bounds[:, 1])).any(axis=1)
    out = []
    for i in np.flatnonzero(moves.jump & inside):
        before, after = float(moves.before[i]), float(moves.after[i])
        change = after - before
        out.append(
            QualityIssue(
                code="contract.rollover",
                severity=Severity.INFO,
                detail=(
                    f"level shift at {utc(int(ts[i]))} inside a roll window: {before:.6g} -> {after:.6g} "
                    f"({change:+.6g}, {100 * change / before:+.2f} %), the continuous series changed contract"
                ),
                start=int(ts[i]),
                end=int(ts[i]),
                count=1,
            )
        )
    return out


def _windows(values: FloatArray, k: int) -> FloatArray:
    """Row i holds values[i-k .. i+k] (NaN beyond the ends): k before, the bar, k after."""
    pad = np.full(k, np.nan)
    return sliding_window_view(np.concatenate([pad, values, pad]), 2 * k + 1)


def _neighbours(values: FloatArray, k: int) -> FloatArray:
    """Row i holds the k values on each side of i, without i itself."""
    rows = _windows(values, k)
    return np.concatenate([rows[:, :k], rows[:, k + 1 :]], axis=1)


def _row_median(rows: FloatArray) -> FloatArray:
    """nanmedian per row of a narrow (n, m) array, fast.

    np.median and np.nanmedian partition row by row, which costs ~1 ms per 1,000 rows: too
    slow for 40,000 minute bars. The rows without NaN (nearly all) are sorted instead by a
    compare-exchange network run column-wise over all rows at once (m(m-1)/2 vectorised
    min/max pairs); only the few rows with NaN (batch ends, null bars) take nanmedian.
    """
    out = np.empty(rows.shape[0])
    gappy = np.isnan(rows).any(axis=1)
    m = rows.shape[1]
    columns = list(np.ascontiguousarray(rows[~gappy].T))  # contiguous columns: faster min/max
    lowest_needed = m // 2 if m % 2 else m // 2 - 1
    # Bubble passes, each moving the largest of columns[0..last] into columns[last]; the
    # median needs only the upper half in place.
    for last in range(m - 1, lowest_needed - 1, -1):
        for j in range(last):
            low, high = np.minimum(columns[j], columns[j + 1]), np.maximum(columns[j], columns[j + 1])
            columns[j], columns[j + 1] = low, high
    middle = columns[m // 2] if m % 2 else (columns[m // 2 - 1] + columns[m // 2]) / 2
    out[~gappy] = middle
    if gappy.any():
        out[gappy] = _nan_row_median(rows[gappy])
    return out


def _nan_row_median(rows: FloatArray) -> FloatArray:
    """np.nanmedian(rows, axis=1) without its masked-array path for small inputs, which
    costs ~1 ms a call: a merge of a 10-bar tail has only such rows. np.sort puts NaN
    last, so each row's median sits at its count of numbers halved; all-NaN rows: NaN."""
    ordered = np.sort(rows, axis=1)
    count = (~np.isnan(rows)).sum(axis=1)
    at = np.arange(rows.shape[0])
    low = ordered[at, np.maximum(count - 1, 0) // 2]
    high = ordered[at, np.maximum(count, 1) // 2 - (count == 0)]
    return np.where(count > 0, (low + high) / 2, np.nan)


def _count(window: FloatArray) -> npt.NDArray[np.intp]:
    return (~np.isnan(window)).sum(axis=1)


def _spike_issue(bars: Bars, moves: Moves) -> QualityIssue:
    index = np.flatnonzero(moves.spike).astype(np.intp)
    start, end = span(bars.ts, index)
    shown = ", ".join(
        f"{utc(int(bars.ts[i]))} high={bars.high[i]:.6g} low={bars.low[i]:.6g} around {moves.before[i]:.6g} "
        f"({moves.excursion[i] / moves.scale[i]:.0f}x typical range)"
        for i in index[:SHOWN]
    )
    return QualityIssue(
        code="ohlc.spike",
        severity=Severity.WARNING,
        detail=f"{plural(index.size)} far outside their neighbours without volume support: {shown}",
        start=start,
        end=end,
        count=int(index.size),
    )


def _grouped(code: str, severity: Severity, bars: Bars, mask: BoolArray, what: str) -> QualityIssue:
    return grouped_issue(code, severity, bars.ts, mask, what, lambda i: _describe(bars, i))


def _describe(bars: Bars, i: int) -> str:
    prices = (bars.open[i], bars.high[i], bars.low[i], bars.close[i])
    if np.isnan(prices).all():
        return utc(int(bars.ts[i]))
    o, h, lo, c = prices
    return f"{utc(int(bars.ts[i]))} O={o:.6g} H={h:.6g} L={lo:.6g} C={c:.6g}"
