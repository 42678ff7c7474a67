"""Time-zone facts in the chart meta: the exchange zone is real, the UTC offsets and
abbreviations Yahoo prints agree with it, and the trading periods agree with the calendar.

yfinance localises every bar with ``exchangeTimezoneName`` and keys intraday rows by the
``tradingPeriods`` days, so a wrong zone or offset shifts a whole series: those are ERRORs.
Periods that disagree with the calendar by more than ``PERIOD_TOLERANCE_S`` are WARNINGs
(Yahoo's own periods are the ones yfinance uses; the calendar may be the one that is off).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from proxy.series import TradingDays

from .calendars import IntArray, Schedule, schedule, spec
from .report import CheckResult, QualityIssue, Severity

PERIOD_TOLERANCE_S = 5 * 60
_PARTS = ("pre", "regular", "post")


@dataclass(frozen=True, slots=True)
class _Stated:
    """One instant at which Yahoo states an offset and an abbreviation."""

    where: str
    at: int
    offset: int | None
    abbreviation: str | None


def check_timezone(meta: Mapping[str, Any], days: TradingDays | None, calendar: str | None) -> CheckResult:
    name = meta.get("exchangeTimezoneName")
    zone = _zone(name)
    if zone is None:
        issue = QualityIssue(
            "tz.unknown_zone", Severity.ERROR, f"exchangeTimezoneName {name!r} is not an IANA zone"
        )
        return CheckResult((issue,))
    stated = _stated(meta, days)
    issues = [*_offsets(zone, stated), *_abbreviations(zone, stated)]
    if calendar is not None:
        zones = spec(calendar).zones
        if zone.key not in zones:
            issues.append(
                QualityIssue(
                    "tz.calendar_zone",
                    Severity.WARNING,
                    f"calendar {calendar} keeps time in {' or '.join(sorted(zones))}, Yahoo says {zone.key}",
                )
            )
        issues.extend(_periods(meta, days, calendar))
    return CheckResult(tuple(issues))


def _zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a directory
        return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _stated(meta: Mapping[str, Any], days: TradingDays | None) -> list[_Stated]:
    out = []
    at = _int(meta.get("regularMarketTime"))
    if at is not None:
        out.append(_Stated("meta", at, _int(meta.get("gmtoffset")), _str(meta.get("timezone"))))
    for part, period in _current_periods(meta):
        start = _int(period.get("start"))
        if start is not None:
            offset, name = _int(period.get("gmtoffset")), _str(period.get("timezone"))
            out.append(_Stated(f"currentTradingPeriod.{part}", start, offset, name))
    if days is not None:
        for start, offset, name in zip(days.regular_start, days.gmtoffset, days.timezone, strict=True):
            out.append(_Stated("tradingPeriods", int(start), int(offset), name or None))
    return out


def _current_periods(meta: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    current = meta.get("currentTradingPeriod")
    if not isinstance(current, Mapping):
        return []
    return [(part, p) for part in _PARTS if isinstance(p := current.get(part), Mapping)]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _local(zone: ZoneInfo, at: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, zone)


def _offsets(zone: ZoneInfo, stated: list[_Stated]) -> list[QualityIssue]:
    wrong = []
    for s in stated:
        offset = _local(zone, s.at).utcoffset()
        if s.offset is not None and offset is not None and s.offset != int(offset.total_seconds()):
            wrong.append(s)
    if not wrong:
        return []
    first = wrong[0]
    real = _local(zone, first.at).utcoffset()
    assert real is not None
    return [
        _grouped(
            "tz.offset_mismatch",
            Severity.ERROR,
            wrong,
            f"gmtoffset {first.offset} in {first.where} but {zone.key} is "
            f"{int(real.total_seconds())} s from UTC then",
        )
    ]


def _abbreviations(zone: ZoneInfo, stated: list[_Stated]) -> list[QualityIssue]:
    wrong = []
    for s in stated:
        real = _local(zone, s.at).tzname() or ""
        # Zones without a letter abbreviation print "+03": Yahoo may well name them otherwise.
        if s.abbreviation is not None and real.isalpha() and s.abbreviation != real:
            wrong.append(s)
    if not wrong:
        return []
    first = wrong[0]
    return [
        _grouped(
            "tz.abbreviation_mismatch",
            Severity.WARNING,
            wrong,
            f"timezone {first.abbreviation!r} in {first.where} but {zone.key} is "
            f"{_local(zone, first.at).tzname()!r} then",
        )
    ]


def _grouped(code: str, severity: Severity, wrong: list[_Stated], detail: str) -> QualityIssue:
    times = [s.at for s in wrong]
    more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
    return QualityIssue(code, severity, detail + more, min(times), max(times), len(wrong))


def _periods(meta: Mapping[str, Any], days: TradingDays | None, calendar: str) -> list[QualityIssue]:
    """Regular periods against the calendar's sessions; pre/post against its extended
    hours where it has them (zero-length pre/post periods say "none" and are skipped)."""
    rows: list[tuple[str, int, int]] = []  # (part, start, end)
    if days is not None:
        for i in range(len(days)):
            rows.append(("regular", int(days.regular_start[i]), int(days.regular_end[i])))
            rows.append(("pre", int(days.pre_start[i]), int(days.pre_end[i])))
            rows.append(("post", int(days.post_start[i]), int(days.post_end[i])))
    for part, period in _current_periods(meta):
        start, end = _int(period.get("start")), _int(period.get("end"))
        if start is not None and end is not None:
            rows.append((part, start, end))
    rows = [r for r in rows if r[2] > r[1]]
    if not rows:
        return []
    s = spec(calendar)
    lo, hi = min(r[1] for r in rows), max(r[2] for r in rows)
    table = schedule(calendar, lo - 2 * 86_400, hi + 2 * 86_400)
    wrong = []
    for part, start, end in rows:
        if part == "regular":
            ok = _regular_ok(table, start, end, overnight=not s.daily_at_open)
        elif s.has_extended_hours:
            ok = _near(table.pre, start) if part == "pre" else _near(table.post, end)
        else:
            ok = True  # the calendar has no extended hours to compare with
        if not ok:
            wrong.append((part, start, end))
    if not wrong:
        return []
    part, start, end = wrong[0]
    more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
    return [
        QualityIssue(
            "tz.periods_mismatch",
            Severity.WARNING,
            f"{part} period {_utc(start)} .. {_utc(end)} does not match calendar {calendar}{more}",
            min(w[1] for w in wrong),
            max(w[2] for w in wrong),
            len(wrong),
        )
    ]


def _utc(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _near(edges: IntArray, t: int) -> bool:
    return bool(edges.size) and bool(np.min(np.abs(edges - t)) <= PERIOD_TOLERANCE_S)


def _inside(table: Schedule, t: int) -> bool:
    i = int(np.searchsorted(table.open, t, side="right")) - 1
    return i >= 0 and t <= int(table.close[i])


def _regular_ok(table: Schedule, start: int, end: int, *, overnight: bool) -> bool:
    """Stocks: the period is a session, open and close within the tolerance. Sessions that
    cross midnight (futures, FX, crypto) Yahoo cuts per calendar day, so each end is either
    a session's edge or a point inside a session."""
    if not overnight:
        i = int(np.argmin(np.abs(table.open - start))) if len(table) else -1
        return i >= 0 and _near(table.open[i : i + 1], start) and _near(table.close[i : i + 1], end)
    start_ok = _near(table.open, start) or _inside(table, start)
    end_ok = _near(table.close, end) or _inside(table, end)
    return start_ok and end_ok
