"""Deterministic synthetic prices and bars.

A price is a closed-form function of (seed, series, instant): a per-symbol base level,
a drift, a sum of sinusoids with seeded phases and a hashed per-minute noise term. Every
point costs O(1), so the same bar comes out identical whatever window, interval-independent
request or process asks for it, and a 60-year window costs no more than its own points.
Bars sample that path: open at the bar start, close just before its end (or at ``now``
for the bar in progress), high/low widened by hashed amounts that grow with the elapsed
part of the bar."""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .instruments import Instrument

YEAR_S = 365.25 * 86400
DAY_S = 86400
PRICE_ANCHOR = 1790294400  # 2026-09-25: each base_price is the level around this date

# Cycle lengths chosen incommensurate so no two days, weeks or years repeat.
_PERIODS = np.array(
    [
        3.7 * YEAR_S,
        1.3 * YEAR_S,
        97 * DAY_S,
        23 * DAY_S,
        6.1 * DAY_S,
        1.7 * DAY_S,
        7.3 * 3600,
        2.1 * 3600,
        37 * 60,
    ]
)
# Brownian-like scaling: a cycle of length P moves the price about vol * sqrt(P / year).
_AMPLITUDES = 0.45 * np.sqrt(_PERIODS / YEAR_S)
_NOISE = math.sqrt(60 / YEAR_S)  # one minute of volatility

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SALT_PHASE, _SALT_NOISE, _SALT_HIGH, _SALT_LOW, _SALT_VOLUME = 1, 2, 3, 4, 5


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic is intended)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = x ^ (x >> np.uint64(31))
    return out


def uniform(key: int, salt: int, t: np.ndarray) -> np.ndarray:
    """Hash noise in [0, 1) from (series key, purpose, integer point)."""
    base = np.uint64((key ^ (salt * 0x632BE59BD9B4E019)) & 0xFFFFFFFFFFFFFFFF)
    mixed = _mix(np.asarray(t, dtype=np.int64).astype(np.uint64) ^ base)
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def series_key(seed: int, name: str) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class PricePath:
    key: int
    base: float
    drift: float
    vol: float
    phases: np.ndarray
    offset: float  # cycles' value at the anchor, removed so the path passes near base there

    def at(self, t: np.ndarray) -> np.ndarray:
        """Price at each instant (epoch seconds, any integer or float array)."""
        t = np.asarray(t, dtype=np.float64)
        cycles = np.sin(2 * np.pi * t[:, None] / _PERIODS[None, :] + self.phases[None, :]) @ _AMPLITUDES
        minute = np.floor(t / 60)
        frac = t / 60 - minute
        a = uniform(self.key, _SALT_NOISE, minute.astype(np.int64)) * 2 - 1
        b = uniform(self.key, _SALT_NOISE, minute.astype(np.int64) + 1) * 2 - 1
        noise = (a * (1 - frac) + b * frac) * _NOISE
        log_level = self.drift * (t - PRICE_ANCHOR) / YEAR_S + self.vol * (cycles - self.offset + noise)
        prices: np.ndarray = self.base * np.exp(log_level)
        return prices


@functools.lru_cache(maxsize=512)
def price_path(seed: int, name: str, base: float, drift: float, vol: float) -> PricePath:
    key = series_key(seed, name)
    phases = uniform(key, _SALT_PHASE, np.arange(len(_PERIODS))) * 2 * np.pi
    offset = float(np.sin(2 * np.pi * PRICE_ANCHOR / _PERIODS + phases) @ _AMPLITUDES)
    return PricePath(key, base, drift, vol, phases, offset)


@dataclass(frozen=True)
class Model:
    """Everything bar generation needs about one symbol under one seed."""

    instrument: Instrument
    path: PricePath
    key: int  # noise key for this symbol's bars (a dated contract differs from its root)

    def price(self, t: np.ndarray) -> np.ndarray:
        raw = self.path.at(t)
        expiry = self.instrument.expiry
        if expiry is None:
            return raw
        # A dated contract trades at the continuous path plus a basis that decays to expiry.
        expiry_s = (expiry.toordinal() - 719163) * DAY_S
        years_left = np.maximum(0.0, (expiry_s - np.asarray(t, dtype=np.float64)) / YEAR_S)
        return raw * np.exp(self.instrument.carry * years_left)


def model_for(seed: int, instrument: Instrument) -> Model:
    i = instrument
    path = price_path(seed, i.path_key, i.base_price, i.drift, i.vol)
    return Model(i, path, series_key(seed, i.symbol))


def quantise(values: np.ndarray, tick: float) -> np.ndarray:
    """Round to the tick (monotonic, so OHLC order survives), then to float32 and back
    to float64 the way Yahoo stores prices (229.87 becomes 229.8699951171875).

    Below 100 ticks (split-adjusted history in cents) a hundredth of the tick is used, as
    Yahoo shows 0.0377 rather than 0.04; the switch sits on a multiple of both steps, so
    rounding stays monotonic."""
    values = np.asarray(values, dtype=np.float64)
    step = np.where(values < 100 * tick, tick / 100, tick)
    stepped = np.round(np.round(values / step) * step, 10)
    return stepped.astype(np.float32).astype(np.float64)


def short_decimals(values: np.ndarray) -> np.ndarray:
    """Extended-hours prices come as short decimals (230.67), not float32-widened."""
    return np.round(values, 2)


@dataclass
class Bars:
    ts: np.ndarray  # int64 epoch seconds
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.ts)

    @staticmethod
    def empty() -> Bars:
        f, n = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
        return Bars(n, f, f.copy(), f.copy(), f.copy(), n.copy())

    def take(self, mask: np.ndarray) -> Bars:
        return Bars(self.ts[mask], self.open[mask], self.high[mask], self.low[mask], self.close[mask],
                    self.volume[mask])  # fmt: skip

    @staticmethod
    def concat(parts: list[Bars]) -> Bars:
        if not parts:
            return Bars.empty()
        return Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("ts", "open", "high", "low", "close", "volume")


def make_bars(
    model: Model,
    starts: np.ndarray,
    ends: np.ndarray,
    now: float,
    salt: int,
    activity: np.ndarray,
    full_span: np.ndarray,
    stamps: np.ndarray | None = None,
    extended: np.ndarray | None = None,
) -> Bars:
    """OHLCV for bars covering [start, end), cut at ``now`` for the bar in progress.

    ``salt`` separates bar families that share a start (a 1m and a 1h bar at 09:30);
    ``activity`` scales volume (0 for extended hours); ``full_span`` is the length of
    the period the instrument's ``daily_volume`` refers to for these bars (the session)."""
    i = model.instrument
    starts = np.asarray(starts, dtype=np.int64)
    upto = np.minimum(np.asarray(ends, dtype=np.int64), int(now))
    elapsed = np.maximum(upto - starts, 0)
    last = np.maximum(starts, upto - 1)
    o = model.price(starts)
    c = model.price(last)
    bar_key = starts * 64 + salt
    widen = i.vol * np.sqrt(np.maximum(elapsed, 60) / YEAR_S)
    h = np.maximum(o, c) * (1 + widen * uniform(model.key, _SALT_HIGH, bar_key))
    lo = np.minimum(o, c) * (1 - widen * uniform(model.key, _SALT_LOW, bar_key))
    if extended is None:
        extended = np.zeros(len(starts), dtype=bool)
    regular = ~extended
    po, ph, pl, pc = (np.where(regular, quantise(x, i.tick), short_decimals(x)) for x in (o, h, lo, c))
    z = sum(uniform(model.key, _SALT_VOLUME + k, bar_key) for k in range(3)) - 1.5  # ~N(0, 0.5)
    share = elapsed / np.maximum(full_span, 1)
    volume = np.round(i.daily_volume * activity * share * np.exp(0.7 * z)).astype(np.int64)
    ts = starts if stamps is None else np.asarray(stamps, dtype=np.int64)
    return Bars(ts, po, ph, pl, pc, np.where(regular, volume, 0))


def flat_bar(ts: int, price: float) -> Bars:
    """Yahoo's closing print: O=H=L=C, volume 0."""
    p = np.array([price])
    return Bars(np.array([ts], dtype=np.int64), p, p.copy(), p.copy(), p.copy(), np.zeros(1, dtype=np.int64))
