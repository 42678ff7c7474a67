"""Sliding-window counts and latency percentiles, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from policies.stats import LatencyWindow, SlidingWindow


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_events_by_outcome_with_declared_outcomes_at_zero() -> None:
    window = SlidingWindow(60, clock=FakeClock())
    window.add("success")
    window.add("success")
    window.add("rate_limited")
    assert window.snapshot() == {"success": 2, "rate_limited": 1, "error": 0}


def test_events_leave_the_window_after_window_seconds() -> None:
    clock = FakeClock(1000.0)
    window = SlidingWindow(10, clock=clock)
    window.add("success")  # second 1000
    clock.now = 1005.5
    window.add("success", 3)
    window.add("error")
    clock.now = 1009.9  # second 1009: still holds 1000..1009
    assert window.snapshot()["success"] == 4
    clock.now = 1010.0  # second 1000 has left
    assert window.snapshot() == {"success": 3, "rate_limited": 0, "error": 1}
    clock.now = 1015.0  # second 1005 has left too
    assert window.snapshot() == {"success": 0, "rate_limited": 0, "error": 0}


def test_a_long_idle_gap_clears_everything_and_the_ring_is_reused() -> None:
    clock = FakeClock(0.0)
    window = SlidingWindow(5, clock=clock)
    for second in range(5):
        clock.now = second
        window.add("success")
    assert window.snapshot()["success"] == 5
    clock.now = 1_000_000.0
    assert window.snapshot()["success"] == 0
    window.add("error")
    clock.now = 1_000_004.0
    window.add("error")
    assert window.snapshot() == {"success": 0, "rate_limited": 0, "error": 2}


def test_a_clock_stepping_back_loses_nothing() -> None:
    clock = FakeClock(100.0)
    window = SlidingWindow(3, clock=clock)
    window.add("success")
    clock.now = 50.0
    window.add("success")
    assert window.snapshot()["success"] == 2


def test_unknown_outcomes_are_counted_too() -> None:
    window = SlidingWindow(clock=FakeClock(), outcomes=())
    window.add("timeout")
    assert window.snapshot() == {"timeout": 1}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_window_length_must_be_whole_seconds(bad: object) -> None:
    with pytest.raises(ValueError, match="window_s"):
        SlidingWindow(bad)  # type: ignore[arg-type]


def test_latency_percentiles_are_nearest_rank() -> None:
    latencies = LatencyWindow(1000)
    for ms in range(1, 101):  # 1..100
        latencies.add(ms / 1000)
    assert latencies.percentiles() == {"p50": 0.05, "p90": 0.09, "p99": 0.099}
    assert latencies.percentiles((100, 99.9)) == {"p100": 0.1, "p99.9": 0.1}
    assert len(latencies) == 100


def test_latency_window_keeps_only_the_most_recent_samples() -> None:
    latencies = LatencyWindow(3)
    for value in (9.0, 9.0, 9.0, 1.0, 2.0, 3.0):
        latencies.add(value)
    assert latencies.percentiles((50, 100)) == {"p50": 2.0, "p100": 3.0}


def test_latency_percentiles_of_nothing_are_empty() -> None:
    assert LatencyWindow().percentiles() == {}


def test_latency_window_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        LatencyWindow(0)
    with pytest.raises(ValueError, match="percentile"):
        LatencyWindow().percentiles((0,))
