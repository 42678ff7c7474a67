"""The in-memory shape of one stored series: (symbol, interval, prepost).

Bars are columnar numpy arrays so a window is cut with ``searchsorted`` and
rendered without touching Python objects per bar. Prices keep NaN for Yahoo's
``null``; volume keeps ``VOLUME_NULL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

VOLUME_NULL = -1
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
QUOTE_KEYS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class SeriesKey(NamedTuple):
    """A series' identity. A named tuple rather than a dataclass: it keys every dict on the
    hit path (hot layer, activity), and a tuple hashes and compares in C (ADR 0004)."""

    symbol: str  # normalised (upper case), already validated by ChartQuery
    interval: str  # canonical interval name
    prepost: bool

    @property
    def tag(self) -> str:
        """The Redis Cluster hash tag body: every key of one series shares it."""
        return f"{self.symbol}|{self.interval}|{int(self.prepost)}"

    def __str__(self) -> str:
        return self.tag


@dataclass(slots=True)
class Bars:
    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: IntArray
    adjclose: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def empty(cls, with_adjclose: bool = False) -> Bars:
        f = np.empty(0, dtype=np.float64)
        return cls(
            np.empty(0, dtype=np.int64), f, f.copy(), f.copy(), f.copy(),
            np.empty(0, dtype=np.int64), f.copy() if with_adjclose else None,
        )  # fmt: skip

    def take(self, index: npt.NDArray[np.intp] | slice) -> Bars:
        return Bars(
            self.ts[index], self.open[index], self.high[index], self.low[index],
            self.close[index], self.volume[index],
            None if self.adjclose is None else self.adjclose[index],
        )  # fmt: skip


@dataclass(slots=True)
class TradingDays:
    """Per-day trading periods as Yahoo lists them in ``meta.tradingPeriods``.

    One row per session day; ``pre_*``/``post_*`` are 0 where Yahoo gave none.
    ``timezone`` is the abbreviation Yahoo prints (EDT, EST, JST ...).
    """

    regular_start: IntArray
    regular_end: IntArray
    pre_start: IntArray
    pre_end: IntArray
    post_start: IntArray
    post_end: IntArray
    gmtoffset: IntArray
    timezone: list[str]

    def __len__(self) -> int:
        return int(self.regular_start.shape[0])

    @classmethod
    def empty(cls) -> TradingDays:
        z = np.empty(0, dtype=np.int64)
        return cls(z, z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), [])

    def take(self, index: npt.NDArray[np.intp] | slice) -> TradingDays:
        tz = self.timezone[index] if isinstance(index, slice) else [self.timezone[i] for i in index]
        return TradingDays(
            self.regular_start[index], self.regular_end[index], self.pre_start[index],
            self.pre_end[index], self.post_start[index], self.post_end[index],
            self.gmtoffset[index], tz,
        )  # fmt: skip


@dataclass(slots=True)
class Series:
    key: SeriesKey
    bars: Bars
    # Upstream meta of the latest fetch, minus the request-dependent keys the renderer
    # recomputes (range, dataGranularity, tradingPeriods, chartPreviousClose).
    meta: dict[str, Any]
    days: TradingDays
    # {"dividends": {"<ts>": {...}}, "splits": {...}, "capitalGains": {...}} as Yahoo sends
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # Close before the first stored bar (Yahoo's chartPreviousClose for a window that
    # starts at the first stored bar); NaN when unknown.
    prev_close: float = float("nan")
    # Window of time upstream was asked for and answered: bars inside it are complete.
    coverage_start: int = 0
    coverage_end: int = 0
    fetched_at: float = 0.0  # unix time of the last successful upstream answer
    version: int = 0  # bumps on every stored change; part of ETag and hot-layer keys
    quality: float | None = None  # validators' score of the stored series; None until they run
    completeness: float | None = None  # validators' bars present / bars expected
    quality_issues: tuple[dict[str, Any], ...] = ()  # the most important open issues, as JSON
    # Key order of Yahoo's quote object as upstream last sent it, echoed when rendering.
    quote_order: tuple[str, ...] = QUOTE_KEYS
