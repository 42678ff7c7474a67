"""ChartService: answers chart queries from the cache only.

fresh hit → pre-rendered bytes from the hot layer; stale → served now, refresh
queued; partial coverage → what exists, backfill queued; miss → per ``on_miss``:
wait a bounded time on the one shared fetch, or 503 at once. The service never
calls upstream itself (DESIGN.md data flow); it only submits work to the fetcher.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import redis.exceptions

from policies.errors import Category, UpstreamError
from proxy.activity import ActivityRecorder
from proxy.errors import YahooError, bad_request, not_found, unavailable, unprocessable
from proxy.fetcher import FetchCoordinator, FetchKind, NegativeCache
from proxy.hot import HotEntry, HotLayer, RenderedBody
from proxy.intervals import DAY, lookup
from proxy.query import ChartQuery
from proxy.render import render_chart, select_events
from proxy.series import Series, SeriesKey
from proxy.store import SeriesStore
from proxy.window import WindowView, approx_required_start, resolve

CacheOutcome = Literal["hit", "stale", "stale-breaker", "partial", "miss", "collapsed"]


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    on_miss: Literal["wait", "reject"]
    miss_wait_s: float
    fresh_s: Callable[[str], int]
    initial_depth_days: Callable[[str], int]
    retry_after_s: int = 5
    # features.strict_cache_only: chart requests never start a fetch (the refresher does,
    # in the background, for what clients asked for); a miss is a 503 at once.
    strict: bool = False


@dataclass(slots=True)
class ChartAnswer:
    status: int
    body: bytes
    headers: dict[str, str]
    outcome: CacheOutcome


@dataclass(slots=True)
class _Hit:
    """A fresh hit's whole answer, reused for the same query within the same second: every
    part of it (window cut, Age, TTL, completeness) changes at most once a second."""

    query: ChartQuery  # held, so no other query can take its id while this is stored
    entry: HotEntry
    settings: ServiceSettings
    answer: ChartAnswer


_HITS_MAX = 4096


@dataclass(slots=True)
class _Cut:
    entry: HotEntry
    view: WindowView
    rendered: RenderedBody


class ChartService:
    def __init__(
        self,
        store: SeriesStore,
        hot: HotLayer,
        fetcher: FetchCoordinator,
        negative: NegativeCache,
        settings: ServiceSettings,
        *,
        clock: Callable[[], float] = time.time,
        upstream_down: Callable[[], bool] = lambda: False,
        activity: ActivityRecorder | None = None,
    ) -> None:
        self._upstream_down = upstream_down
        self._activity = activity
        self._store = store
        self._hot = hot
        self._fetcher = fetcher
        self._negative = negative
        self.settings = settings  # swapped whole by a runtime configuration update
        self._clock = clock
        self._loading: dict[SeriesKey, asyncio.Future[HotEntry | None]] = {}
        # Keyed by the query object's id and whether gzip was accepted: the router keeps one
        # ChartQuery per URL for a minute, so a dashboard's repeated URL finds its answer
        # with a dict lookup. The entry identity check drops it when the series changes.
        # Holds the answers of one wall-clock second only: an older one can never be reused,
        # and kept it would pin its series version and bodies after a refresh replaced them.
        self._hits: dict[tuple[int, bool], _Hit] = {}
        self._hits_second = 0

    def reused(self, query: ChartQuery, *, accept_gzip: bool) -> ChartAnswer | None:
        """The answer a plain fresh hit gave this query earlier in the same second, or None.

        Synchronous on purpose: the route tries it before awaiting ``answer``, so a
        dashboard's repeated URL costs no coroutine at all (ADR 0004)."""
        hit = self._hits.get((id(query), accept_gzip))
        if hit is None:
            return None
        now = self._clock()
        if (
            self._hits_second != int(now)  # every stored answer is of that second
            or hit.settings is not self.settings
            or hit.entry is not self._hot.get(query.series_key)
        ):
            return None
        if self._activity is not None:
            self._activity.note(query.series_key, now)
        return hit.answer

    async def answer(
        self,
        query: ChartQuery,
        *,
        accept_gzip: bool = False,
        if_none_match: str | None = None,
        reuse: bool = True,
    ) -> ChartAnswer:
        """``reuse=False``: the caller has just asked ``reused`` itself (the route does)."""
        if reuse and if_none_match is None:
            reused = self.reused(query, accept_gzip=accept_gzip)
            if reused is not None:
                return reused
        now = self._clock()
        key = query.series_key
        if self._activity is not None:
            self._activity.note(key, now)  # a dict update: no I/O on this path
        entry = await self._entry(query)
        miss: CacheOutcome | None = None
        if entry is None:
            if self._activity is not None:
                self._activity.bump(key, now)
            try:
                entry, miss = await self._wait_for_miss(query, now)
            except YahooError as exc:
                if exc.status == 404 and self._activity is not None:
                    self._activity.forget(key)  # nothing to keep fresh for an unknown symbol
                raise
            now = self._clock()
        cut = self._cut(entry, query, now)
        series = entry.series
        fresh = now - series.fetched_at <= self.settings.fresh_s(series.key.interval)
        end_covered = cut.view.end_by(now) <= series.coverage_end or fresh
        start_covered = series.coverage_start <= cut.view.required_start
        if not start_covered and not self.settings.strict:
            self._fetcher.submit(series.key, cut.view.required_start, FetchKind.BACKFILL)
        if not end_covered and not self.settings.strict:
            self._fetcher.submit(series.key, self._refresh_start(series), FetchKind.STALE)
            if self._activity is not None:
                self._activity.bump(series.key, now)  # and to the front of the refresher's queue
        outcome: CacheOutcome = "hit"
        if miss is not None:
            outcome = miss
        elif not start_covered:
            outcome = "partial"
        elif not end_covered:
            # With the breaker open, say why the data is stale: Yahoo is failing, not us.
            outcome = "stale-breaker" if self._upstream_down() else "stale"
        answer = self._respond(cut, outcome, now, fresh, accept_gzip, if_none_match)
        if outcome == "hit" and answer.status == 200:
            # Only plain hits are reused: the other outcomes queue work on every request.
            second = int(now)
            if second != self._hits_second or len(self._hits) >= _HITS_MAX:
                self._hits.clear()
                self._hits_second = second
            self._hits[(id(query), accept_gzip)] = _Hit(query, entry, self.settings, answer)
        return answer

    async def _entry(self, query: ChartQuery) -> HotEntry | None:
        key = query.series_key
        entry = self._hot.get(key)
        if entry is not None or self._fetcher.miss_in_progress(key):
            return entry
        # One Redis read per series however many requests arrive together.
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(query))
            self._loading[key] = loading
            loading.add_done_callback(lambda _f: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load(self, query: ChartQuery) -> HotEntry | None:
        try:
            series = await self._store.load(query.series_key)
        except redis.exceptions.RedisError as exc:
            retry_after = self.settings.retry_after_s
            raise unavailable(f"cache unavailable: {type(exc).__name__}", retry_after) from exc
        return self._hot.put(series) if series is not None else None

    async def _wait_for_miss(self, query: ChartQuery, now: float) -> tuple[HotEntry, CacheOutcome]:
        # The shared (Redis) negative cache is consulted by the fetch job, once per burst.
        if self._negative.known_locally(query.symbol):
            raise not_found()
        retry_after = self.settings.retry_after_s
        if self.settings.strict:
            raise unavailable(
                "Data not cached yet; it is fetched in the background, retry shortly", retry_after
            )
        depth = self.settings.initial_depth_days(query.interval.name)
        start = min(approx_required_start(query, now), int(now) - depth * DAY)
        future, joined = self._fetcher.submit(query.series_key, start, FetchKind.MISS)
        if self.settings.on_miss == "reject":
            raise unavailable("Data not cached yet; a fetch is queued, retry shortly", retry_after)
        try:
            series = await asyncio.wait_for(asyncio.shield(future), self.settings.miss_wait_s)
        except TimeoutError as exc:
            raise unavailable("Data not cached yet; still fetching, retry shortly", retry_after) from exc
        except UpstreamError as exc:
            raise _client_error(exc, retry_after) from exc
        except asyncio.CancelledError:
            if future.cancelled():  # the service is shutting down
                raise unavailable("shutting down", retry_after) from None
            raise
        entry = self._hot.get(query.series_key) or self._hot.put(series)
        return entry, "collapsed" if joined else "miss"

    def _cut(self, entry: HotEntry, query: ChartQuery, now: float) -> _Cut:
        view = resolve(entry.index, query, now)
        events = select_events(entry.series, view, query)
        signature = (
            view.i0, view.i1, view.d0, view.d1, query.range_echo, query.interval.name,
            tuple((kind, tuple(items)) for kind, items in events.items()),
        )  # fmt: skip
        rendered = self._hot.body(entry, signature)
        if rendered is None:
            series = entry.series
            # The validators' score of the stored series; before they have run on it (a
            # series stored by an older version) the share of bars with sane OHLC.
            quality = series.quality if series.quality is not None else _integrity(series, view)
            rendered = RenderedBody.of(render_chart(series, view, query, events), quality=_ratio(quality))
            self._hot.keep_body(entry, signature, rendered)
        return _Cut(entry, view, rendered)

    def _refresh_start(self, series: Series) -> int:
        # Yahoo revises the latest bars: fetch again from a few bars before our coverage end.
        interval = lookup(series.key.interval)
        bar_s = interval.seconds if interval is not None else DAY
        return series.coverage_end - max(3 * bar_s, 900)

    def _respond(
        self,
        cut: _Cut,
        outcome: CacheOutcome,
        now: float,
        fresh: bool,
        accept_gzip: bool,
        if_none_match: str | None,
    ) -> ChartAnswer:
        series = cut.entry.series
        fresh_s = self.settings.fresh_s(series.key.interval)
        age = max(0, int(now - series.fetched_at))
        ttl = max(0, fresh_s - age) if fresh else 0
        # Coverage of the asked window times the share of expected bars the series has.
        completeness = _completeness(series, cut.view, now, fresh) * (
            1.0 if series.completeness is None else series.completeness
        )
        headers = cut.rendered.headers.copy()  # the per-body part is built once
        headers["Cache-Status"] = _cache_status(outcome, ttl)
        headers["Age"] = str(age)
        headers["Last-Modified"] = cut.entry.index.last_modified
        headers["Cache-Control"] = f"public, max-age={ttl}"
        headers["X-Data-Completeness"] = "1" if completeness >= 1.0 else _ratio(completeness)
        if if_none_match is not None and _etag_matches(if_none_match, cut.rendered.etag):
            return ChartAnswer(304, b"", headers, outcome)
        body = cut.rendered.body
        if accept_gzip:
            gz = cut.rendered.gzipped
            if gz is not None:
                body = gz
                headers["Content-Encoding"] = "gzip"
        return ChartAnswer(200, body, headers, outcome)


_CACHE_STATUS = {
    "stale": "yfproxy; hit; fwd=stale",
    "stale-breaker": "yfproxy; hit; fwd=stale; detail=breaker-open",
    "partial": "yfproxy; hit; fwd=partial",
    "miss": "yfproxy; fwd=miss; stored",
    "collapsed": "yfproxy; fwd=miss; collapsed",
}


def _cache_status(outcome: CacheOutcome, ttl: int) -> str:
    return f"yfproxy; hit; ttl={ttl}" if outcome == "hit" else _CACHE_STATUS[outcome]


def _completeness(series: Series, view: WindowView, now: float, fresh: bool) -> float:
    """Share of the asked time window that stored coverage vouches for."""
    start, end = view.required_start, view.end_by(now)
    if end <= start:
        return 1.0
    covered_to = int(now) if fresh else series.coverage_end
    covered = min(end, covered_to) - max(start, series.coverage_start)
    return max(0.0, min(1.0, covered / (end - start)))


def _integrity(series: Series, view: WindowView) -> float:
    """Interim quality until the validators land: share of bars with sane OHLC."""
    if view.empty:
        return 1.0
    b = series.bars
    sl = slice(view.i0, view.i1)
    o, h, low, c = b.open[sl], b.high[sl], b.low[sl], b.close[sl]
    with np.errstate(invalid="ignore"):
        ok = (low > 0) & (low <= np.minimum(o, c)) & (h >= np.maximum(o, c))
    return float(np.count_nonzero(ok)) / float(ok.size)


def _ratio(value: float) -> str:
    """0..1 with four decimals; anything short of 1 never reads as 1 (3 missing bars of 10,000)."""
    if math.isnan(value) or value <= 0:
        return "0"
    if value >= 1.0:
        return "1"
    return f"{min(value, 0.9999):.4f}".rstrip("0").rstrip(".")


def _etag_matches(header: str, etag: str) -> bool:
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or etag in candidates


def _client_error(exc: UpstreamError, retry_after: int) -> YahooError:
    if exc.category is Category.NOT_FOUND:
        return not_found()
    if exc.category is Category.INVALID_REQUEST:
        description = exc.yahoo_description or "Invalid input"
        if "not available" in description or "must be within" in description:
            return unprocessable(description)
        return bad_request(description)
    return unavailable(_UNAVAILABLE.get(exc.category, "Upstream unavailable; retry shortly"), retry_after)


_UNAVAILABLE: dict[Category, str] = {
    Category.RATE_LIMITED: "Upstream rate limit reached; data not cached yet, retry shortly",
    Category.BREAKER_OPEN: "Upstream failing; data not cached yet, retry shortly",
}
