"""The series encoding: lossless, compact, and loud about corruption."""

from __future__ import annotations

import math

import numpy as np
import pytest

from proxy.codec import CodecError, decode_bars, decode_days, encode_bars, encode_days
from proxy.series import VOLUME_NULL, Bars, TradingDays


def _bars(n: int, *, adj: bool, widen: bool = True) -> Bars:
    rng = np.random.default_rng(1)
    ts = 1_790_000_000 + 60 * np.arange(n, dtype=np.int64)
    base = 100 + np.cumsum(rng.normal(0, 0.1, n))
    if widen:  # Yahoo's prices are float32 values widened to double
        base = base.astype(np.float32).astype(np.float64)
    vol = rng.integers(0, 5000, n).astype(np.int64)
    return Bars(ts, base, base + 0.5, base - 0.5, base, vol, base.copy() if adj else None)


def _assert_same(a: Bars, b: Bars) -> None:
    np.testing.assert_array_equal(a.ts, b.ts)
    for name in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.volume, b.volume)
    assert (a.adjclose is None) == (b.adjclose is None)
    if a.adjclose is not None:
        np.testing.assert_array_equal(a.adjclose, b.adjclose)


@pytest.mark.parametrize("adj", [True, False])
def test_bars_round_trip_exactly(adj: bool) -> None:
    bars = _bars(500, adj=adj)
    _assert_same(bars, decode_bars(encode_bars(bars)))


def test_nulls_and_short_decimals_survive() -> None:
    bars = _bars(10, adj=False, widen=False)  # 230.67-style decimals are not float32-exact
    bars.close[3] = math.nan
    bars.volume[4] = VOLUME_NULL
    back = decode_bars(encode_bars(bars))
    _assert_same(bars, back)
    assert math.isnan(back.close[3])


def test_empty_series_round_trips() -> None:
    _assert_same(Bars.empty(), decode_bars(encode_bars(Bars.empty())))
    assert len(decode_days(encode_days(TradingDays.empty()))) == 0


def test_encoding_is_compact_for_minute_bars() -> None:
    bars = _bars(7 * 23 * 60, adj=False)
    per_bar = len(encode_bars(bars)) / len(bars)
    # Raw columns are 48 bytes a bar; float32 and delta timestamps must do far better.
    assert per_bar < 30


def test_days_round_trip() -> None:
    z = np.array([1, 2], dtype=np.int64)
    days = TradingDays(z, z + 10, z * 0, z * 0, z + 10, z + 20, z - 14400, ["EDT", "EST"])
    back = decode_days(encode_days(days))
    assert back.timezone == ["EDT", "EST"]
    np.testing.assert_array_equal(back.post_end, days.post_end)


@pytest.mark.parametrize("blob", [b"", b"garbage", encode_days(TradingDays.empty())])
def test_corrupt_bars_raise_codec_error(blob: bytes) -> None:
    with pytest.raises(CodecError):
        decode_bars(blob)


def test_corrupt_days_raise_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_days(encode_bars(Bars.empty()))
