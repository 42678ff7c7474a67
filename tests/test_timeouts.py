"""The timeout ladder: climbing on timeouts, decaying after successes, deadlines, snapshot."""

from __future__ import annotations

import pytest

from policies.timeouts import TimeoutLadder, default_levels


def test_default_ladder_doubles_from_the_base() -> None:
    assert default_levels() == ((2.0, 3.0), (4.0, 6.0), (8.0, 12.0))
    assert TimeoutLadder().current("chart") == (2.0, 3.0, 0)


def test_timeouts_climb_one_level_and_stop_at_the_top() -> None:
    ladder = TimeoutLadder()
    assert ladder.on_timeout("chart") == 1
    assert ladder.current("chart") == (4.0, 6.0, 1)
    assert ladder.on_timeout("chart") == 2
    assert ladder.on_timeout("chart") == 2
    assert ladder.current("chart") == (8.0, 12.0, 2)


def test_successes_decay_one_level_after_n_in_a_row() -> None:
    ladder = TimeoutLadder(decay_after=3)
    ladder.on_timeout("chart")
    ladder.on_timeout("chart")
    assert [ladder.on_success("chart") for _ in range(3)] == [2, 2, 1]
    assert [ladder.on_success("chart") for _ in range(3)] == [1, 1, 0]
    assert ladder.on_success("chart") == 0  # bottom is a floor


def test_a_timeout_resets_the_success_streak() -> None:
    ladder = TimeoutLadder(decay_after=2)
    ladder.on_timeout("chart")
    ladder.on_success("chart")
    ladder.on_timeout("chart")  # level 2, streak cleared
    assert ladder.on_success("chart") == 2
    assert ladder.on_success("chart") == 1


def test_request_types_climb_independently() -> None:
    ladder = TimeoutLadder(per_kind={"passthrough": [(1, 2), (2, 4)]})
    ladder.on_timeout("chart")
    assert ladder.current("passthrough") == (1.0, 2.0, 0)
    ladder.on_timeout("passthrough")
    ladder.on_timeout("passthrough")
    assert ladder.current("passthrough") == (2.0, 4.0, 1)
    assert ladder.current("chart") == (4.0, 6.0, 1)


def test_configured_levels_replace_the_default() -> None:
    ladder = TimeoutLadder([(1, 5), (1, 10)])
    assert ladder.current("chart") == (1.0, 5.0, 0)


def test_deadline_sums_the_levels_retries_would_climb_through_plus_backoff() -> None:
    ladder = TimeoutLadder()
    # attempts at levels 0, 1, 2: (2+3) + (4+6) + (8+12) = 35, plus 1.5 s of backoff
    assert ladder.deadline("chart", 3, backoff_s=1.5) == 36.5
    ladder.on_timeout("chart")
    ladder.on_timeout("chart")
    # already at the top: the top level repeats
    assert ladder.deadline("chart", 2) == 40.0


def test_deadline_is_capped_by_total_s() -> None:
    assert TimeoutLadder(total_cap_s=20.0).deadline("chart", 3, backoff_s=5.0) == 20.0
    assert TimeoutLadder(total_cap_s=20.0).deadline("chart", 1) == 5.0


def test_snapshot_reports_level_per_kind() -> None:
    ladder = TimeoutLadder(per_kind={"passthrough": [(1, 2)]})
    ladder.on_timeout("chart")
    ladder.on_success("chart")
    assert ladder.snapshot() == {
        "chart": {"level": 1, "levels": 3, "connect_s": 4.0, "read_s": 6.0, "successes_in_row": 1},
        "passthrough": {"level": 0, "levels": 1, "connect_s": 1.0, "read_s": 2.0, "successes_in_row": 0},
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": []}, "at least one level"),
        ({"levels": [(0, 3)]}, "positive seconds"),
        ({"levels": [(2, 6), (4, 3)]}, "must not decrease"),
        ({"decay_after": 0}, "decay_after"),
        ({"total_cap_s": 0}, "total_s"),
        ({"per_kind": {"chart": [(-1, 1)]}}, "'chart'"),
    ],
)
def test_bad_ladders_fail_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimeoutLadder(**kwargs)  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="steps"):
        default_levels(steps=0)
    with pytest.raises(ValueError, match="attempts"):
        TimeoutLadder().deadline("chart", 0)
