"""One quality score per batch of bars, from the results of all checks.

- integrity = 1 - (bars any check marks bad, each bar counted once) / bars; 1.0 for no bars.
- completeness = sum(present) / sum(expected) over the results that state an expectation,
  clamped to [0, 1]; 1.0 when no check expected anything, 0.0 when bars were expected and
  the batch has none.
- score = 0.6 * integrity + 0.4 * completeness (``ScoreWeights``, overridable), then capped
  at 0.99 when any issue is an ERROR: a batch with a wrong bar never reads as perfect, even
  when that bar is 1 of 10,000 (its integrity alone would round to 1.0).

Integrity weighs more because a wrong bar misleads a user while a missing one is visible.
WARNING and INFO issues cost nothing beyond the bad bars and missing bars they stand for.
Issues come out errors first, then warnings, then infos, each by start time (whole-batch
issues, start None, first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from validators.report import CheckResult, QualityIssue, QualityReport, Severity

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    integrity: float = 0.6
    completeness: float = 0.4
    error_cap: float = 0.99  # the highest score a batch with any ERROR issue can get

    def __post_init__(self) -> None:
        weights = (self.integrity, self.completeness)
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(f"score weights must be finite and >= 0, got {weights}")
        if not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
            raise ValueError(f"score weights must sum to 1, got {sum(weights)}")
        if not 0.0 <= self.error_cap <= 1.0:
            raise ValueError(f"error_cap must be within [0, 1], got {self.error_cap}")


def combine(
    results: Sequence[CheckResult], *, bars: int, weights: ScoreWeights = ScoreWeights()
) -> QualityReport:
    """The quality report of a batch of ``bars`` bars that the checks in ``results`` judged."""
    if bars < 0:
        raise ValueError(f"bars must be >= 0, got {bars}")
    integrity = _integrity(results, bars)
    completeness, expected = _completeness(results, bars)
    issues = tuple(sorted((i for r in results for i in r.issues), key=_issue_order))
    score = weights.integrity * integrity + weights.completeness * completeness
    if any(i.severity is Severity.ERROR for i in issues):
        score = min(score, weights.error_cap)
    return QualityReport(
        score=min(max(score, 0.0), 1.0),
        completeness=completeness,
        integrity=integrity,
        bars=bars,
        expected=expected,
        issues=issues,
    )


def _integrity(results: Sequence[CheckResult], bars: int) -> float:
    if bars == 0:
        return 1.0
    marked = [np.asarray(r.bad, dtype=np.intp) for r in results]
    bad = np.unique(np.concatenate(marked)) if marked else np.empty(0, dtype=np.intp)
    if bad.size and (bad[0] < 0 or bad[-1] >= bars):
        # A check indexing past the batch is a bug in that check; a silent clip would hide it.
        raise ValueError(f"bad bar indices must lie in [0, {bars}), got {bad[0]}..{bad[-1]}")
    return 1.0 - bad.size / bars


def _completeness(results: Sequence[CheckResult], bars: int) -> tuple[float, int | None]:
    stated = [r for r in results if r.expected is not None]
    if not stated:
        return 1.0, None
    if any(r.present is None for r in stated):
        raise ValueError("a check result that states expected bars must state present bars too")
    expected = sum(int(r.expected or 0) for r in stated)
    present = sum(int(r.present or 0) for r in stated)
    if expected == 0:
        return 1.0, 0
    if bars == 0:
        return 0.0, expected
    return min(max(present / expected, 0.0), 1.0), expected


def _issue_order(issue: QualityIssue) -> tuple[int, float, str]:
    start = -math.inf if issue.start is None else float(issue.start)
    return _SEVERITY_ORDER[issue.severity], start, issue.code
