"""The adaptive rule against hidden budgets, in simulated time (tests/ratelimit_model.py).

These are the issue's targets for the limiter's defaults, checked on the pure functions:
the same profiles as bench/ratelimit.py, which measures them against the real simulator.
"""

from __future__ import annotations

import pytest

from policies.ratelimit import LimiterSettings
from proxy.config import Config
from tests.ratelimit_model import HiddenBudget, run

# bench/ratelimit.py's profiles; Yahoo locks a client out after 3 429s in a row.
PROFILE_A = HiddenBudget(rps=1.5, burst=3, lockout_after=3, lockout_s=60.0)
PROFILE_B = HiddenBudget(rps=0.8, burst=2, retry_after_s=5.0, lockout_after=3, lockout_s=120.0)
LEGACY = LimiterSettings(initial_rps=0.4, min_rps=0.4, max_rps=0.4, burst=1.0)
FIXED_2_PER_5 = LimiterSettings(initial_rps=0.4, min_rps=0.4, max_rps=0.4, burst=2.0)


def test_the_models_defaults_are_the_configured_ones() -> None:
    assert Config().rate_limit.limiter_settings("chart") == LimiterSettings()


@pytest.mark.parametrize("budget", [PROFILE_A, PROFILE_B], ids=["A", "B"])
@pytest.mark.parametrize("series", [100, 500])
def test_defaults_meet_the_targets(budget: HiddenBudget, series: int) -> None:
    adaptive = run(LimiterSettings(), budget, series=series)
    assert adaptive.done == series
    assert adaptive.success_ratio >= 0.99
    assert adaptive.budget_share(budget) >= 0.80
    assert adaptive.locked_out == 0
    for fixed in (LEGACY, FIXED_2_PER_5):
        assert adaptive.time_s < run(fixed, budget, series=series).time_s


@pytest.mark.parametrize("rps", [0.3, 0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("burst", [1, 2, 5])
@pytest.mark.parametrize("retry_after_s", [None, 5.0, 30.0])
def test_no_budget_gets_a_429_storm_or_a_lock_out(
    rps: float, burst: int, retry_after_s: float | None
) -> None:
    budget = HiddenBudget(rps, burst, retry_after_s, lockout_after=3, lockout_s=300.0)
    result = run(LimiterSettings(), budget, series=300, cap_s=3000.0)
    assert result.done == 300
    assert result.locked_out == 0  # never two 429s in a row, so never locked out
    assert result.success_ratio >= 0.97
    # Never worse than the old fixed pacing where that pacing fits the budget.
    if rps >= 0.4:
        assert result.time_s <= run(LEGACY, budget, series=300, cap_s=3000.0).time_s * 1.05
