"""The quality gate between an upstream answer and the store.

Every fetched batch is scored by the validators. A batch is refused (kept in quarantine,
never merged) when a series is already stored and either

- the batch scores below ``[validation] min_quality``, or
- over the span it would replace, it is worse than the bars already stored there
  (fewer bars, or broken ones): Yahoo sometimes answers with holes or impossible bars
  for days it had right before, and a refresh must not trade good data for bad.

A series with nothing stored yet takes a low-scoring batch anyway, flagged by its score
in ``X-Data-Quality`` and /status: some data, marked as doubtful, serves a user better
than none. After a merge the whole stored series is scored again; that score, its
completeness and its open issues travel with the series (Redis ``info``) to the
headers and /status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import redis.asyncio as aioredis
import structlog

from proxy.ingest import ChartPayload
from proxy.series import VOLUME_NULL, Bars, Series, SeriesKey
from validators.engine import validate
from validators.report import QualityReport

log = structlog.get_logger("yfproxy.quality")

# A batch must not score this much below the stored bars it replaces; smaller differences
# are the noise of a revised live bar.
WORSE_BY = 0.02
# A single stored bar in the span is the live bar Yahoo revises: nothing to compare.
MIN_OVERLAP_BARS = 2
QUARANTINE_KEEP = 20  # batches kept per series
QUARANTINE_TTL_S = 7 * 86400
ISSUES_KEPT = 10  # issues stored with a series for /status
# Latest scores kept in memory for /metrics, which exposes one gauge per series: the cap
# bounds that label's cardinality (and this dict); the least recently scored go first.
SCORES_KEPT = 1_000


@dataclass(frozen=True, slots=True)
class Verdict:
    admitted: bool
    report: QualityReport  # of the batch (after repair)
    # "below_min_quality" | "worse_than_stored" when refused; "kept_stored_bars" when
    # admitted with some of its bars replaced by the better stored ones.
    reason: str = ""
    stored_score: float | None = None  # the stored bars' score over the batch's span
    kept: int = 0  # bars of the batch replaced by the stored bar at the same time


class QualityGate:
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        *,
        min_quality: float,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.min_quality = min_quality
        self.enabled = enabled
        self._clock = clock
        self._index = f"{prefix}:quarantine-index"
        self._scores = f"{prefix}:quality"  # tag -> the series' latest score, for /status
        # What this process scored last, per series tag (a sync read for /metrics).
        self.latest: dict[str, float] = {}
        self.quarantined_by_reason: dict[str, int] = {}  # batches kept in quarantine, by reason

    # -- pure parts

    def assess(self, key: SeriesKey, payload: ChartPayload, window: tuple[int, int]) -> QualityReport:
        return validate(
            payload.bars, payload.meta, payload.days,
            symbol=key.symbol, interval=key.interval, prepost=key.prepost,
            window=from_first_bar(window, payload.bars),
        )  # fmt: skip

    def judge(
        self, key: SeriesKey, current: Series | None, payload: ChartPayload, window: tuple[int, int]
    ) -> tuple[ChartPayload | None, Verdict]:
        """The answer to merge (None: refused) and why."""
        if not self.enabled or current is None or len(current.bars) == 0:
            return payload, Verdict(True, self.assess(key, payload, window))
        bars, kept = keep_better_stored(current.bars, payload.bars)
        if kept:
            payload = replace(payload, bars=bars)
        report = self.assess(key, payload, window)
        if report.score < self.min_quality:
            return None, Verdict(False, report, "below_min_quality", kept=kept)
        stored = _overlap(current.bars, payload.bars)
        stored_score = None
        if stored is not None:
            stored_score = validate(
                stored, current.meta, current.days,
                symbol=key.symbol, interval=key.interval, prepost=key.prepost,
                window=from_first_bar(window, payload.bars),
            ).score  # fmt: skip
            if report.score < stored_score - WORSE_BY:
                return None, Verdict(False, report, "worse_than_stored", stored_score, kept)
        return payload, Verdict(True, report, "kept_stored_bars" if kept else "", stored_score, kept)

    def annotate(self, series: Series) -> None:
        """Score the whole series as it will be stored (after a merge)."""
        window = from_first_bar((series.coverage_start, series.coverage_end), series.bars)
        report = validate(
            series.bars, series.meta, series.days,
            symbol=series.key.symbol, interval=series.key.interval, prepost=series.key.prepost,
            window=window,
        )  # fmt: skip
        series.quality = round(report.score, 4)
        series.completeness = round(report.completeness, 4)
        series.quality_issues = tuple(i.to_json() for i in report.issues[:ISSUES_KEPT])
        if report.score < self.min_quality:
            log.warning(
                "quality.below_threshold",
                series=str(series.key),
                score=series.quality,
                min_quality=self.min_quality,
                issues=sorted(report.codes()),
            )

    # -- shared state in Redis

    async def record(self, series: Series) -> None:
        """Publish a stored series' score for /status (every replica reads the same hash)."""
        if series.quality is None:
            return
        self._remember(series.key.tag, series.quality)
        summary = {
            "score": series.quality,
            "completeness": series.completeness,
            "issues": list(series.quality_issues),
            "at": round(self._clock(), 3),
        }
        await self._redis.hset(self._scores, series.key.tag, orjson.dumps(summary))

    def _remember(self, tag: str, score: float) -> None:
        self.latest.pop(tag, None)  # re-inserted last: dict order is recency
        if len(self.latest) >= SCORES_KEPT:
            del self.latest[next(iter(self.latest))]
        self.latest[tag] = score

    async def summary(self, limit: int = 200) -> dict[str, Any]:
        """/status's ``quality`` section: the worst series first, and the quarantine."""
        raw = await self._redis.hgetall(self._scores)
        rows = []
        for tag, value in raw.items():
            row = {"series": tag.decode() if isinstance(tag, bytes) else str(tag), **orjson.loads(value)}
            row["below_threshold"] = row["score"] < self.min_quality
            rows.append(row)
        rows.sort(key=lambda r: (r["score"], r["series"]))
        return {
            "gate": "on" if self.enabled else "off",
            "min_quality": self.min_quality,
            "series_scored": len(rows),
            "below_threshold": sum(r["below_threshold"] for r in rows),
            "series": rows[:limit],
            "quarantined": await self.quarantined(),
        }

    async def forget(self, key: SeriesKey) -> None:
        self.latest.pop(key.tag, None)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(self._scores, key.tag)
            pipe.delete(self.quarantine_key(key))
            pipe.zrem(self._index, key.tag)
            await pipe.execute()

    def quarantine_key(self, key: SeriesKey) -> str:
        return f"{self._prefix}:{{{key.tag}}}:quarantine"

    async def quarantine(self, key: SeriesKey, verdict: Verdict, window: tuple[int, int], bars: Bars) -> None:
        entry = {
            "series": key.tag,
            "at": round(self._clock(), 3),
            "reason": verdict.reason,
            "window": list(window),
            "bars": len(bars),
            "first": int(bars.ts[0]) if len(bars) else None,
            "last": int(bars.ts[-1]) if len(bars) else None,
            "stored_score": verdict.stored_score,
            "kept": verdict.kept,
            "report": {
                **verdict.report.to_json(),
                "issues": verdict.report.to_json()["issues"][:ISSUES_KEPT],
            },
        }
        reason = verdict.reason
        self.quarantined_by_reason[reason] = self.quarantined_by_reason.get(reason, 0) + 1
        name = self.quarantine_key(key)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(name, orjson.dumps(entry))
            pipe.ltrim(name, 0, QUARANTINE_KEEP - 1)
            pipe.expire(name, QUARANTINE_TTL_S)
            pipe.zadd(self._index, {key.tag: entry["at"]})
            await pipe.execute()
        log.warning(
            "quality.quarantined",
            series=str(key),
            reason=verdict.reason,
            score=round(verdict.report.score, 4),
            stored_score=verdict.stored_score,
            min_quality=self.min_quality,
            issues=sorted(verdict.report.codes()),
        )

    async def quarantined(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest quarantined batch of each series, newest series first."""
        now = self._clock()
        await self._redis.zremrangebyscore(self._index, 0, now - QUARANTINE_TTL_S)
        tags = await self._redis.zrevrange(self._index, 0, limit - 1, withscores=True)
        out = []
        for tag, _at in tags:
            text = tag.decode() if isinstance(tag, bytes) else str(tag)
            raw = await self._redis.lrange(f"{self._prefix}:{{{text}}}:quarantine", 0, QUARANTINE_KEEP - 1)
            if raw:
                entries = [orjson.loads(r) for r in raw]
                out.append({"series": text, "count": len(entries), "latest": entries[0]})
        return out

    async def entries(self, key: SeriesKey) -> list[dict[str, Any]]:
        raw = await self._redis.lrange(self.quarantine_key(key), 0, QUARANTINE_KEEP - 1)
        return [orjson.loads(r) for r in raw]


def from_first_bar(window: tuple[int, int], bars: Bars) -> tuple[int, int] | None:
    """The window to judge completeness in: from the first bar upstream had.

    Yahoo answers a window with bars from where it has them (a later listing, its own
    lookback limits); the merge never deletes what lies before a batch, so time before
    its first bar is not missing data. Missing data at the end is (time.missing_last_session).
    """
    if window[1] <= 0:
        return None
    if len(bars) == 0:
        return window
    return max(window[0], int(bars.ts[0])), window[1]


def keep_better_stored(stored: Bars, batch: Bars) -> tuple[Bars, int]:
    """The batch with each bar that is worse than the stored bar at the same time replaced
    by the stored one, and how many were. Worse: null or impossible prices, or no volume
    where the stored bar has one. Yahoo sometimes answers a known day with nulls."""
    if len(stored) == 0 or len(batch) == 0:
        return batch, 0
    _, at_batch, at_stored = np.intersect1d(batch.ts, stored.ts, assume_unique=True, return_indices=True)
    if at_batch.size == 0:
        return batch, 0
    worse = _sane(stored, at_stored) & ~_sane(batch, at_batch)
    worse |= (batch.volume[at_batch] == VOLUME_NULL) & (stored.volume[at_stored] != VOLUME_NULL)
    if not worse.any():
        return batch, 0
    into, source = at_batch[worse], at_stored[worse]
    repaired = batch.take(np.arange(len(batch)))  # fancy indexing: copies, the answer stays as sent
    for name in ("open", "high", "low", "close", "volume"):
        getattr(repaired, name)[into] = getattr(stored, name)[source]
    if repaired.adjclose is not None and stored.adjclose is not None:
        repaired.adjclose[into] = stored.adjclose[source]
    return repaired, int(worse.sum())


def _sane(bars: Bars, at: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    o, h, low, c = bars.open[at], bars.high[at], bars.low[at], bars.close[at]
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c) & (low > 0)
            & (low <= np.minimum(o, c)) & (h >= np.maximum(o, c))
        )  # fmt: skip


def _overlap(stored: Bars, batch: Bars) -> Bars | None:
    """The stored bars inside the batch's span: what merging the batch would replace."""
    if len(batch) == 0 or len(stored) == 0:
        return None
    lo, hi = int(batch.ts[0]), int(batch.ts[-1])
    inside = np.flatnonzero((stored.ts >= lo) & (stored.ts <= hi))
    if inside.size < MIN_OVERLAP_BARS:
        return None
    return stored.take(inside)


def _trimmed(report: QualityReport) -> dict[str, Any]:
    body = report.to_json()
    body["issues"] = body["issues"][:ISSUES_KEPT]
    return body
