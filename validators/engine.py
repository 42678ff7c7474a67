"""One call that runs every check over a batch of bars and scores it.

The checks need to know what the bars are: the trading calendar (from the symbol and
Yahoo's meta), whether pre/post bars are expected, and, for continuous futures, when
the contract rolls. This module works that out once and hands each check its part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.intervals import lookup
from proxy.series import Bars, TradingDays
from validators.calendars import calendar_for, extended_hours_expected, quiet_mask
from validators.contracts import Continuous, parse_contract, roll_windows
from validators.ohlc import check_ohlc
from validators.report import CheckResult, QualityReport
from validators.score import ScoreWeights, combine
from validators.timestamps import check_timestamps
from validators.timezones import check_timezone
from validators.volume import check_volume


def validate(
    bars: Bars,
    meta: Mapping[str, Any],
    days: TradingDays | None,
    *,
    symbol: str,
    interval: str,
    prepost: bool,
    window: tuple[int, int] | None,
    weights: ScoreWeights | None = None,
) -> QualityReport:
    """The quality report of ``bars`` answered for ``window`` (half-open unix seconds)."""
    spec = lookup(interval)
    if spec is None:
        raise ValueError(f"unknown interval {interval!r}")
    calendar = calendar_for(symbol, meta)
    rolls: list[tuple[int, int]] = []
    contract = parse_contract(symbol)
    if isinstance(contract, Continuous) and len(bars):
        rolls = roll_windows(contract.root, int(bars.ts[0]), int(bars.ts[-1]))
    quiet = quiet_mask(calendar, bars.ts) if calendar is not None else None
    results: list[CheckResult] = [
        check_ohlc(bars, roll_windows=rolls),
        check_volume(bars, quiet=quiet, interval_s=spec.seconds),
        check_timestamps(
            bars,
            interval=spec.name,
            calendar=calendar,
            window=window,
            prepost=extended_hours_expected(meta, prepost),
        ),
        check_timezone(meta, days, calendar),
    ]
    return combine(results, bars=len(bars), weights=weights or ScoreWeights())
