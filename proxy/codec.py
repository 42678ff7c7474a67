"""Compact binary encoding of a series' bars and trading days for Redis.

Why not JSON: a 1m series of 7 days is ~7,000 bars, and decoding it per miss of the
hot layer must cost well under a millisecond. Columns are raw little-endian numpy
arrays, timestamps delta-encoded, prices kept as float32 when that is lossless
(Yahoo's prices are float32 widened to double, so it nearly always is), the whole
blob zlib-compressed. See docs/adr/0002-series-encoding.md.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import numpy.typing as npt

from proxy.series import Bars, TradingDays

_BARS_MAGIC = b"YB1"
_DAYS_MAGIC = b"YD1"
_HEADER = struct.Struct("<3sIB")  # magic, row count, flags
_FLAG_ADJCLOSE = 1
_F32 = 1
_F64 = 2
_COMPRESSION_LEVEL = 6


class CodecError(ValueError):
    """Stored bytes that cannot be decoded (corrupt or from an unknown format)."""


def _float_column(values: npt.NDArray[np.float64]) -> bytes:
    # NaN survives the float32 round trip, and NaN != NaN, so compare with equal_nan.
    narrow = values.astype("<f4")
    if np.array_equal(narrow.astype(np.float64), values, equal_nan=True):
        return bytes([_F32]) + narrow.tobytes()
    return bytes([_F64]) + values.astype("<f8").tobytes()


def _read_float_column(buf: memoryview, pos: int, n: int) -> tuple[npt.NDArray[np.float64], int]:
    kind = buf[pos]
    pos += 1
    if kind == _F32:
        end = pos + 4 * n
        return np.frombuffer(buf[pos:end], dtype="<f4").astype(np.float64), end
    if kind == _F64:
        end = pos + 8 * n
        return np.frombuffer(buf[pos:end], dtype="<f8").astype(np.float64), end
    raise CodecError(f"unknown float column kind {kind}")


def _deltas(ts: npt.NDArray[np.int64]) -> bytes:
    if ts.size == 0:
        return b""
    return np.diff(ts, prepend=np.int64(0)).astype("<i8").tobytes()


def _undeltas(buf: memoryview, pos: int, n: int) -> tuple[npt.NDArray[np.int64], int]:
    end = pos + 8 * n
    return np.cumsum(np.frombuffer(buf[pos:end], dtype="<i8")).astype(np.int64), end


def encode_bars(bars: Bars) -> bytes:
    n = len(bars)
    flags = _FLAG_ADJCLOSE if bars.adjclose is not None else 0
    parts = [_HEADER.pack(_BARS_MAGIC, n, flags), _deltas(bars.ts)]
    for column in (bars.open, bars.high, bars.low, bars.close):
        parts.append(_float_column(column))
    parts.append(bars.volume.astype("<i8").tobytes())
    if bars.adjclose is not None:
        parts.append(_float_column(bars.adjclose))
    return zlib.compress(b"".join(parts), _COMPRESSION_LEVEL)


def decode_bars(blob: bytes) -> Bars:
    try:
        buf = memoryview(zlib.decompress(blob))
        magic, n, flags = _HEADER.unpack_from(buf, 0)
        if magic != _BARS_MAGIC:
            raise CodecError("not a bars blob")
        ts, pos = _undeltas(buf, _HEADER.size, n)
        prices = []
        for _ in range(4):
            column, pos = _read_float_column(buf, pos, n)
            prices.append(column)
        end = pos + 8 * n
        volume = np.frombuffer(buf[pos:end], dtype="<i8").astype(np.int64)
        adjclose = None
        if flags & _FLAG_ADJCLOSE:
            adjclose, end = _read_float_column(buf, end, n)
    except (zlib.error, struct.error, ValueError) as exc:
        raise CodecError(f"corrupt bars blob: {exc}") from exc
    return Bars(ts, prices[0], prices[1], prices[2], prices[3], volume, adjclose)


def encode_days(days: TradingDays) -> bytes:
    n = len(days)
    columns = (
        days.regular_start, days.regular_end, days.pre_start, days.pre_end,
        days.post_start, days.post_end, days.gmtoffset,
    )  # fmt: skip
    body = b"".join(np.asarray(c, dtype="<i8").tobytes() for c in columns)
    zones = "\n".join(days.timezone).encode()
    return zlib.compress(_HEADER.pack(_DAYS_MAGIC, n, 0) + body + zones, _COMPRESSION_LEVEL)


def decode_days(blob: bytes) -> TradingDays:
    try:
        buf = memoryview(zlib.decompress(blob))
        magic, n, _flags = _HEADER.unpack_from(buf, 0)
        if magic != _DAYS_MAGIC:
            raise CodecError("not a days blob")
        pos = _HEADER.size
        columns = []
        for _ in range(7):
            columns.append(np.frombuffer(buf[pos : pos + 8 * n], dtype="<i8").astype(np.int64))
            pos += 8 * n
        zones = bytes(buf[pos:]).decode().split("\n") if n else []
    except (zlib.error, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"corrupt days blob: {exc}") from exc
    if len(zones) != n:
        raise CodecError("days blob has a wrong number of time zones")
    return TradingDays(*columns, timezone=zones)
