"""The validators' common vocabulary: an issue found in a batch of bars, and the report
that collects issues into a quality score.

Every check module returns a ``CheckResult``: the issues it found and the indices of the
bars it judges broken (so integrity is counted once per bar, however many checks
object to the same bar). ``score.combine`` turns the results of all checks into one
``QualityReport``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.intp]
_NO_BARS: IndexArray = np.empty(0, dtype=np.intp)


class Severity(StrEnum):
    INFO = "info"  # worth knowing, not a defect (a rollover, a quiet overnight run)
    WARNING = "warning"  # suspicious, the bars are still served as they are
    ERROR = "error"  # the bars are wrong (close above high, negative volume, off-grid)


@dataclass(frozen=True, slots=True)
class QualityIssue:
    code: str  # dotted and stable, e.g. "ohlc.close_above_high"; operators grep and alert on it
    severity: Severity
    detail: str  # one human sentence, with the numbers that matter
    start: int | None = None  # unix seconds of the first affected bar (None: the whole batch)
    end: int | None = None  # unix seconds of the last affected bar
    count: int = 1  # affected bars (or gaps, or events)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "detail": self.detail,
            "start": self.start,
            "end": self.end,
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    issues: tuple[QualityIssue, ...] = ()
    bad: IndexArray = field(default_factory=lambda: _NO_BARS)  # bars this check finds broken
    # Bars the check expected in the batch's window (completeness); None: no opinion.
    expected: int | None = None
    present: int | None = None  # of those, how many are there

    @classmethod
    def clean(cls) -> CheckResult:
        return cls()


@dataclass(frozen=True, slots=True)
class QualityReport:
    score: float  # 0..1, see score.combine for the weights
    completeness: float  # bars present / bars expected (1.0 when nothing was expected)
    integrity: float  # share of bars no check found broken (1.0 for an empty batch)
    bars: int
    expected: int | None
    issues: tuple[QualityIssue, ...] = ()

    @property
    def errors(self) -> tuple[QualityIssue, ...]:
        return tuple(i for i in self.issues if i.severity is Severity.ERROR)

    def codes(self) -> set[str]:
        return {i.code for i in self.issues}

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "completeness": round(self.completeness, 4),
            "integrity": round(self.integrity, 4),
            "bars": self.bars,
            "expected": self.expected,
            "issues": [i.to_json() for i in self.issues],
        }


def span(ts: npt.NDArray[np.int64], index: IndexArray) -> tuple[int | None, int | None]:
    """First and last timestamp of the bars at ``index`` (None, None when there are none)."""
    if index.size == 0:
        return None, None
    picked = ts[index]
    return int(picked.min()), int(picked.max())


SHOWN = 3  # bars named in an issue's detail


def utc(ts: int) -> str:
    """A bar time for issue details: short, UTC, sortable."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%MZ")


def plural(count: int, noun: str = "bar") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def grouped_issue(
    code: str,
    severity: Severity,
    ts: npt.NDArray[np.int64],
    mask: npt.NDArray[np.bool_],
    what: str,
    describe: Callable[[int], str],
    sep: str = "; ",
) -> QualityIssue:
    """One issue for every bar in ``mask``: its span, its count, the first few described."""
    index: IndexArray = np.flatnonzero(mask).astype(np.intp)
    start, end = span(ts, index)
    shown = sep.join(describe(int(i)) for i in index[:SHOWN])
    more = f" (+{index.size - SHOWN} more)" if index.size > SHOWN else ""
    return QualityIssue(
        code, severity, f"{plural(index.size)} {what}: {shown}{more}", start, end, int(index.size)
    )
