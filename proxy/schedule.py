"""When the background refresher next refreshes a series, and which windows it asks for.

Pure functions of the time, the series' tier and interval, and its trading calendar: no
I/O, so the refresher, /status and the tests share one set of rules.

- Period: the tier's period (priority, active, dormant), never shorter than the
  interval's floor (:data:`DEFAULT_FLOORS`): refreshing faster than the bars change
  spends Yahoo's request budget on nothing.
- Calendar: while the market is open, every period; when it is closed, nothing until the
  next session opens, except one last refresh ``close_grace_s`` after the close so that
  the session's final bars are stored (bars of a closed session are final).
- Windows: a refresh asks only for the tail since the last stored bar, with an overlap
  because Yahoo revises the live bar and sometimes the one before; gaps become backfill
  windows that fit Yahoo's limits (split by :func:`proxy.fetcher.fetch_chunks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from proxy.fetcher import LIMIT_MARGIN_S, fetch_chunks
from proxy.intervals import DAY, Interval, lookup
from validators.calendars import sessions

if TYPE_CHECKING:
    from proxy.config import BackgroundConfig

Tier = Literal["priority", "active", "dormant"]

# Shortest refresh period per interval, in seconds. Intraday: half a bar (the live bar is
# seen at least twice while it forms), at least 60 s (a request costs ~2 s of Yahoo's
# budget; faster than a minute is never worth it) and at most 15 min (the live bar of 1h
# or 4h data carries the current price, which should not be older than that). Daily: 30 min
# during the session, so that a series clients look at stays inside its fresh_s (1 h);
# longer bars: 1 h (the final bar is fetched after the close anyway).
DEFAULT_FLOORS: Mapping[str, float] = MappingProxyType({
    "1m": 60, "2m": 60, "5m": 150, "15m": 450, "30m": 900, "90m": 900, "1h": 900, "4h": 900,
    "1d": 1800, "5d": 3600, "1wk": 3600, "1mo": 3600, "3mo": 3600,
})  # fmt: skip

# A priority series is refreshed when this share of its fresh_s has passed.
FRESH_SHARE = 0.75
# How far around now sessions are looked up: longer than any exchange's closure in the
# calendars we know (New Year in Tokyo, Christmas and a weekend).
_HORIZON_S = 15 * DAY
# Overlap of a tail refresh: Yahoo revises the live bar and sometimes the one before.
_OVERLAP_BARS = 3
_OVERLAP_MIN_S = 900


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    priority_every_s: float = 120.0
    full_every_s: float = 300.0
    dormant_every_s: float = 900.0
    # Yahoo settles the last bars (and adds its closing print) shortly after the close.
    close_grace_s: float = 120.0
    # The first refresh of a session waits for its first bar to exist.
    open_delay_s: float = 5.0
    floors: Mapping[str, float] = field(default_factory=lambda: DEFAULT_FLOORS)
    fresh_s: Mapping[str, float] = field(default_factory=dict)  # [cache] fresh_s per interval

    @classmethod
    def from_config(
        cls, background: BackgroundConfig, fresh_s: Mapping[str, float] | None = None
    ) -> ScheduleSettings:
        """The tier periods of ``[background]`` and ``[cache] fresh_s``; the rest keeps its
        defaults (change them with ``dataclasses.replace``)."""
        return cls(
            priority_every_s=background.priority_every_s,
            full_every_s=background.full_every_s,
            dormant_every_s=background.dormant_every_s,
            fresh_s=MappingProxyType(dict(fresh_s or {})),
        )


def _interval(name: str) -> Interval:
    info = lookup(name)
    if info is None:
        raise ValueError(f"unknown interval {name!r}")
    return info


def refresh_period(tier: str, interval: str, settings: ScheduleSettings) -> float:
    """Seconds between two refreshes of an open market's series."""
    periods = {
        "priority": settings.priority_every_s,
        "active": settings.full_every_s,
        "dormant": settings.dormant_every_s,
    }
    if tier not in periods:
        raise ValueError(f"unknown tier {tier!r}; known: {', '.join(periods)}")
    info = _interval(interval)
    floor = settings.floors.get(info.name, DEFAULT_FLOORS[info.name])
    period = periods[tier]
    fresh = settings.fresh_s.get(info.name)
    if tier == "priority" and fresh is not None:
        # Clients are looking: refresh before the stored series stops counting as fresh
        # (fresh_s), with a margin for the fetch itself, so their hits stay fresh hits.
        period = min(period, FRESH_SHARE * fresh)
    return max(period, floor)


@dataclass(frozen=True, slots=True)
class _Around:
    current_close: int | None  # close of the session open at ``now``
    last_close: int | None  # latest close at or before ``now``
    next_open: int | None  # earliest open after ``now``


def _around(calendar: str, now: float, prepost: bool) -> _Around:
    t = int(now)
    opens, closes = sessions(calendar, t - _HORIZON_S, t + _HORIZON_S, prepost=prepost)
    running = (opens <= now) & (closes > now)
    ended = closes[closes <= now]
    ahead = opens[opens > now]
    return _Around(
        int(closes[running].max()) if running.any() else None,
        int(ended.max()) if ended.size else None,
        int(ahead.min()) if ahead.size else None,
    )


def market_open(calendar: str | None, now: float, *, prepost: bool = False) -> bool | None:
    """Whether a session (extended hours included when ``prepost``) runs at ``now``;
    None when the calendar is unknown."""
    if calendar is None:
        return None
    return _around(calendar, now, prepost).current_close is not None


def next_due(
    now: float,
    *,
    tier: str,
    interval: str,
    calendar: str | None,
    last_bar: int | None,
    settings: ScheduleSettings,
    prepost: bool = False,
    coverage_end: int | None = None,
) -> float:
    """When the series should next be refreshed, assuming a refresh at ``now`` (if any)
    succeeded; after a failure the caller backs off on its own.

    Open market: ``now + period``, but no later than ``close + close_grace_s`` so the final
    bars come in right after the close. Closed market: the next session's open plus
    ``open_delay_s``, unless the last session's final bars are not stored yet; then
    ``close + close_grace_s`` (or now, when that has passed). Unknown calendar: the period.

    Final bars are stored when a refresh reached past ``close + close_grace_s``: pass the
    series' ``coverage_end`` to tell. Without it only ``last_bar >= close`` shows it (Yahoo's
    closing print of stock intraday bars); futures, extended-hours and daily series have no
    bar there, so they would stay due until the next open: the refresher passes it.
    """
    period = refresh_period(tier, interval, settings)
    if last_bar is None and coverage_end is None:
        return now  # nothing stored yet
    if calendar is None:
        return now + period
    info = _interval(interval)
    # Daily and longer bars cover the regular session only, whatever includePrePost says.
    at = _around(calendar, now, prepost and info.intraday)
    if at.current_close is not None:
        return min(now + period, at.current_close + settings.close_grace_s)
    if at.last_close is not None and not _final_stored(at.last_close, last_bar, coverage_end, settings):
        due = max(now, at.last_close + settings.close_grace_s)
        return due if at.next_open is None else min(due, at.next_open + settings.open_delay_s)
    if at.next_open is None:
        return now + period  # beyond the calendar's data: fall back to the plain period
    return at.next_open + settings.open_delay_s


def _final_stored(
    close: int, last_bar: int | None, coverage_end: int | None, settings: ScheduleSettings
) -> bool:
    if coverage_end is not None:
        return coverage_end >= close + settings.close_grace_s
    return last_bar is not None and last_bar >= close


def _reachable_from(info: Interval, now: int) -> int | None:
    """The oldest time Yahoo still serves for ``info`` (with fetch_chunks' safety margin)."""
    if info.lookback_days is None:
        return None
    return now - info.lookback_days * DAY + LIMIT_MARGIN_S


def tail_window(series_coverage_end: int, last_bar: int | None, interval: str, now: int) -> tuple[int, int]:
    """The incremental refresh window ``[start, end)``: from a few bars before the last
    stored bar (the coverage end when there is none) to ``now + 1`` (period2 is exclusive),
    never older than Yahoo serves for the interval."""
    info = _interval(interval)
    anchor = last_bar if last_bar is not None else series_coverage_end
    start = anchor - max(_OVERLAP_BARS * info.seconds, _OVERLAP_MIN_S)
    reachable = _reachable_from(info, now)
    if reachable is not None:
        start = max(start, reachable)
    return min(start, now), now + 1


def backfill_windows(gaps: Sequence[tuple[int, int]], interval: str, now: int) -> list[tuple[int, int]]:
    """Requests that fill ``gaps`` (``[start, end)`` pairs): merged where they overlap or
    touch, cut to what Yahoo still serves, split to Yahoo's per-request width; newest
    first, so the most useful data arrives first when the budget runs out."""
    info = _interval(interval)
    reachable = _reachable_from(info, now)
    merged: list[list[int]] = []
    for lo, hi in sorted(gaps):
        if reachable is not None:
            lo = max(lo, reachable)
        hi = min(hi, now + 1)
        if hi <= lo:
            continue  # empty, in the future, or older than Yahoo keeps
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    windows: list[tuple[int, int]] = []
    for lo, hi in reversed(merged):
        chunks = fetch_chunks(info, lo, hi, now)
        # fetch_chunks trims up to an hour off the oldest end of a first fetch (cheaper than
        # a second request); a backfill wants the whole gap, so that part gets its own.
        if chunks[-1][0] > lo:
            chunks.append((lo, chunks[-1][0]))
        windows.extend(chunks)
    return windows
