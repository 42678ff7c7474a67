"""Volume checks on one batch of bars: nulls, impossible counts, and zero volume where
trading should show.

- ``VOLUME_NULL`` on a bar that has prices: WARNING ``volume.missing`` (not bad; a bar
  without any price is the ohlc check's null bar and is not reported twice).
- A negative count other than ``VOLUME_NULL``: ERROR ``volume.negative``, bad. A float
  column with a fraction or an infinity: ERROR ``volume.not_integer``, bad (Bars keep int64,
  so this only guards callers that built floats).
- Every known volume zero (indices, some FX): one INFO ``volume.none`` and nothing else,
  there is no volume to judge.
- Otherwise zero-volume bars are judged by where they are. These are normal and never
  reported: bars inside ``quiet`` (overnight futures sessions, pre/post hours, given by the
  calendars module); Yahoo's session *closing stamp* on intraday series, a zero-volume bar
  with open = high = low = close right after a traded bar and followed by a time gap or by
  nothing (the 16:00 bar of hourly equity series); the last bar of a batch (the one still
  forming, untraded in its first seconds); and
  runs of one or two zeros that touch a quiet bar (session edges are not exact to the bar).
  What remains is active-hours zeros, judged as runs of consecutive bars:
  one or two bars (``ISOLATED_MAX``) between trades are Yahoo's random zero-volume defect:
  WARNING ``volume.zero``, bad; a run of at least ``ZERO_RUN_MIN_S`` of time (and at least
  three bars) is a halt or a stalled feed: WARNING ``volume.zero_run``, not bad (the
  prices may be right); runs in between (a few untraded minutes of a thin 1m series) are
  ordinary lulls and not reported.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from proxy.series import VOLUME_NULL, Bars
from validators.report import (
    CheckResult,
    IndexArray,
    QualityIssue,
    Severity,
    grouped_issue,
    plural,
    span,
    utc,
)

ISOLATED_MAX = 2
ZERO_RUN_MIN_S = 15 * 60
DAY_S = 86_400

BoolArray = npt.NDArray[np.bool_]


def check_volume(bars: Bars, *, quiet: BoolArray | None = None, interval_s: int) -> CheckResult:
    """Judge the volumes of ``bars`` (``interval_s``: the series' bar length in seconds)."""
    n = len(bars)
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    if quiet is not None and np.shape(quiet) != (n,):
        raise ValueError(f"quiet mask has shape {np.shape(quiet)}, bars have {n}")
    if n == 0:
        return CheckResult()
    volume, not_integer = _as_counts(bars.volume)
    prices = np.stack([bars.open, bars.high, bars.low, bars.close]).astype(np.float64)
    priced = ~np.isnan(prices).all(axis=0)

    issues: list[QualityIssue] = []
    bad = not_integer | ((volume < 0) & (volume != VOLUME_NULL))
    if not_integer.any():
        issues.append(
            _grouped("volume.not_integer", Severity.ERROR, bars, not_integer, "with a non-integer volume")
        )
    negative = bad & ~not_integer
    if negative.any():
        issues.append(_grouped("volume.negative", Severity.ERROR, bars, negative, "with a negative volume"))
    missing = priced & (volume == VOLUME_NULL) & ~not_integer
    if missing.any():
        issues.append(
            _grouped("volume.missing", Severity.WARNING, bars, missing, "with prices but null volume")
        )

    known = volume >= 0
    if known.any() and not volume[known].any():
        start, end = span(bars.ts, np.flatnonzero(known).astype(np.intp))
        issues.append(
            QualityIssue(
                code="volume.none",
                severity=Severity.INFO,
                detail=f"no volume at all ({plural(int(known.sum()))} with volume 0): not judged",
                start=start,
                end=end,
                count=int(known.sum()),
            )
        )
    else:
        quiet_mask = np.zeros(n, dtype=bool) if quiet is None else np.asarray(quiet, dtype=bool)
        active = (volume == 0) & ~quiet_mask & ~_closing_stamps(bars, volume, prices, interval_s)
        # The last bar of an answer is the one still forming: in its first seconds Yahoo
        # (and the simulator) shows it untraded, and a refresh is always cut at now.
        active[-1:] = False
        isolated, long_runs, run_count = _zero_runs(active, quiet_mask, interval_s)
        if isolated.any():
            bad |= isolated
            issues.append(
                _grouped("volume.zero", Severity.WARNING, bars, isolated, "with zero volume between trades")
            )
        if long_runs.any():
            issues.append(_run_issue(bars, long_runs, run_count))
    return CheckResult(issues=tuple(issues), bad=np.flatnonzero(bad).astype(np.intp))


def _as_counts(raw: npt.NDArray[np.generic]) -> tuple[npt.NDArray[np.int64], BoolArray]:
    """Volumes as int64 (NaN -> VOLUME_NULL) and the mask of values that are no count at all."""
    values = np.asarray(raw)
    if values.dtype.kind != "f":
        return values.astype(np.int64), np.zeros(values.shape, dtype=bool)
    nan = np.isnan(values)
    with np.errstate(invalid="ignore"):
        # Past 2**53 a float holds no exact count (and would not fit int64 much later).
        not_integer = ~nan & (~(np.abs(values) <= 2**53) | (values != np.floor(values)))
    # Not-integers become VOLUME_NULL here but are kept out of volume.missing by the caller.
    counts = np.where(nan | not_integer, VOLUME_NULL, values).astype(np.int64)
    return counts, not_integer


def _closing_stamps(
    bars: Bars, volume: npt.NDArray[np.int64], prices: npt.NDArray[np.float64], interval_s: int
) -> BoolArray:
    """Yahoo's intraday closing bars: flat, untraded, right after a trade, before a gap or the end."""
    n = len(bars)
    if interval_s >= DAY_S:
        return np.zeros(n, dtype=bool)
    flat = np.isfinite(prices).all(axis=0) & (prices.max(axis=0) == prices.min(axis=0))
    after_trade = np.concatenate([[False], volume[:-1] > 0])
    ts = np.asarray(bars.ts, dtype=np.int64)
    before_gap = np.concatenate([np.diff(ts) > interval_s, [True]])
    return (volume == 0) & flat & after_trade & before_gap


def _zero_runs(active: BoolArray, quiet: BoolArray, interval_s: int) -> tuple[BoolArray, BoolArray, int]:
    """Bars of isolated zero runs, bars of long zero runs, and how many long runs there are."""
    n = active.size
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # stops exclusive
    lengths = stops - starts
    touches_quiet = (starts > 0) & quiet[np.maximum(starts - 1, 0)]
    touches_quiet |= (stops < n) & quiet[np.minimum(stops, n - 1)]
    min_run = max(ISOLATED_MAX + 1, math.ceil(ZERO_RUN_MIN_S / interval_s))
    isolated_run = (lengths <= ISOLATED_MAX) & ~touches_quiet
    long_run = lengths >= min_run
    isolated, long_bars = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    isolated[active] = np.repeat(isolated_run, lengths)  # active bars, in run order
    long_bars[active] = np.repeat(long_run, lengths)
    return isolated, long_bars, int(long_run.sum())


def _run_issue(bars: Bars, mask: BoolArray, runs: int) -> QualityIssue:
    index: IndexArray = np.flatnonzero(mask).astype(np.intp)
    start, end = span(bars.ts, index)
    return QualityIssue(
        code="volume.zero_run",
        severity=Severity.WARNING,
        detail=(
            f"{plural(runs, 'run')} of zero volume outside quiet hours, {plural(index.size)} "
            f"from {utc(int(bars.ts[index[0]]))} to {utc(int(bars.ts[index[-1]]))}: a halt or a stalled feed"
        ),
        start=start,
        end=end,
        count=int(index.size),
    )


def _grouped(code: str, severity: Severity, bars: Bars, mask: BoolArray, what: str) -> QualityIssue:
    def describe(i: int) -> str:
        return f"{utc(int(bars.ts[i]))} volume={bars.volume[i]}"

    return grouped_issue(code, severity, bars.ts, mask, what, describe, sep=", ")
