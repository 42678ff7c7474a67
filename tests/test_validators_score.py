"""The quality score: integrity counts each broken bar once, completeness sums the checks'
expectations, the weights, the cap for errors, and issue order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validators.report import CheckResult, QualityIssue, Severity
from validators.score import ScoreWeights, combine


def bad(*index: int) -> np.ndarray:
    return np.array(index, dtype=np.intp)


def issue(code: str, severity: Severity, start: int | None = None) -> QualityIssue:
    return QualityIssue(code, severity, "detail", start=start, end=start)


def test_no_checks_and_no_bars_score_one() -> None:
    for bars in (0, 10):
        report = combine([], bars=bars)
        assert (report.score, report.integrity, report.completeness, report.expected) == (1.0, 1.0, 1.0, None)


def test_a_bar_two_checks_find_broken_counts_once() -> None:
    results = [CheckResult(bad=bad(1, 2)), CheckResult(bad=bad(2, 3)), CheckResult.clean()]
    report = combine(results, bars=10)
    assert report.integrity == pytest.approx(1 - 3 / 10)


def test_completeness_sums_what_the_checks_expected() -> None:
    results = [CheckResult(expected=100, present=50), CheckResult(expected=50, present=45), CheckResult()]
    report = combine(results, bars=95)
    assert report.completeness == pytest.approx(95 / 150)
    assert report.expected == 150


def test_default_weights_are_sixty_forty() -> None:
    report = combine([CheckResult(bad=bad(*range(5)), expected=10, present=5)], bars=10)
    assert (report.integrity, report.completeness) == (0.5, 0.5)
    assert report.score == pytest.approx(0.5)
    report = combine([CheckResult(bad=bad(*range(5)))], bars=10)
    assert report.score == pytest.approx(0.6 * 0.5 + 0.4 * 1.0)
    report = combine([CheckResult(expected=10, present=5)], bars=5)
    assert report.score == pytest.approx(0.6 * 1.0 + 0.4 * 0.5)


def test_custom_weights_apply() -> None:
    weights = ScoreWeights(integrity=1.0, completeness=0.0)
    report = combine([CheckResult(expected=10, present=1)], bars=1, weights=weights)
    assert report.score == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"integrity": -0.1, "completeness": 1.1},
        {"integrity": 0.5, "completeness": 0.6},
        {"integrity": float("nan"), "completeness": 0.4},
        {"error_cap": 1.5},
        {"error_cap": -0.1},
    ],
)
def test_bad_weights_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ScoreWeights(**kwargs)


def test_any_error_caps_the_score() -> None:
    error = CheckResult(issues=(issue("ohlc.close_above_high", Severity.ERROR, 5),), bad=bad(5))
    report = combine([error], bars=10_000)
    assert report.integrity == pytest.approx(0.9999)
    assert report.score == 0.99
    no_bad_bar = combine([CheckResult(issues=(issue("x.err", Severity.ERROR),))], bars=10)
    assert no_bad_bar.score == 0.99
    low = combine([CheckResult(issues=error.issues, bad=bad(*range(5)))], bars=10)
    assert low.score == pytest.approx(0.6 * 0.5 + 0.4)  # below the cap already


def test_warnings_and_infos_do_not_cap() -> None:
    results = [CheckResult(issues=(issue("volume.missing", Severity.WARNING), issue("c.r", Severity.INFO)))]
    assert combine(results, bars=10).score == 1.0


def test_zero_bars_with_expected_bars_score_zero_completeness() -> None:
    report = combine([CheckResult(expected=390, present=0)], bars=0)
    assert (report.completeness, report.integrity) == (0.0, 1.0)
    assert report.score == pytest.approx(0.6)
    # Even a check that miscounts cannot make an empty batch complete.
    assert combine([CheckResult(expected=5, present=5)], bars=0).completeness == 0.0


def test_completeness_is_clamped_and_zero_expected_means_nothing_expected() -> None:
    assert combine([CheckResult(expected=10, present=12)], bars=12).completeness == 1.0
    report = combine([CheckResult(expected=0, present=0)], bars=0)
    assert (report.completeness, report.expected) == (1.0, 0)


def test_issues_come_errors_first_then_by_start() -> None:
    issues = (
        issue("i.late", Severity.INFO, 50),
        issue("w.late", Severity.WARNING, 30),
        issue("e.late", Severity.ERROR, 40),
        issue("w.whole", Severity.WARNING, None),
        issue("e.early", Severity.ERROR, 10),
        issue("w.early", Severity.WARNING, 20),
    )
    report = combine([CheckResult(issues=issues[:3]), CheckResult(issues=issues[3:])], bars=60)
    assert [i.code for i in report.issues] == ["e.early", "e.late", "w.whole", "w.early", "w.late", "i.late"]
    assert [i.code for i in report.errors] == ["e.early", "e.late"]


def test_inconsistent_results_are_refused() -> None:
    with pytest.raises(ValueError, match="indices"):
        combine([CheckResult(bad=bad(10))], bars=10)
    with pytest.raises(ValueError, match="present"):
        combine([CheckResult(expected=3)], bars=3)
    with pytest.raises(ValueError, match="bars"):
        combine([], bars=-1)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 50).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.tuples(
                    st.lists(st.integers(0, max(n - 1, 0)), max_size=n),
                    st.one_of(st.none(), st.tuples(st.integers(0, 100), st.integers(0, 120))),
                    st.booleans(),
                ),
                max_size=4,
            ),
        )
    ),
    st.floats(0, 1),
)
def test_scores_stay_in_range_and_errors_stay_under_the_cap(
    case: tuple[int, list[tuple[list[int], tuple[int, int] | None, bool]]], w: float
) -> None:
    n, specs = case
    results = []
    for index, counts, has_error in specs:
        expected, present = counts if counts else (None, None)
        issues = (issue("e", Severity.ERROR),) if has_error else ()
        results.append(
            CheckResult(issues=issues, bad=bad(*index) if n else bad(), expected=expected, present=present)
        )
    weights = ScoreWeights(integrity=w, completeness=1 - w)
    report = combine(results, bars=n, weights=weights)
    assert 0.0 <= report.score <= 1.0
    assert 0.0 <= report.integrity <= 1.0 and 0.0 <= report.completeness <= 1.0
    if any(has_error for *_, has_error in specs):
        assert report.score <= weights.error_cap
