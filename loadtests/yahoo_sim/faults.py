"""Fault knobs and the per-request decision they lead to: outage, token-bucket rate
limit, hang, 5xx, added latency, malformed bodies.

All randomness comes from one RNG seeded with the simulator's seed, and every request
draws the same number of values whatever knobs are on, so a run is reproducible."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

MalformedKind = Literal["html", "truncated", "ohlc", "nulls"]
OutageMode = Literal["drop", "503"]
Action = Literal["pass", "outage", "rate_limited", "hang", "server_error"]
MALFORMED_KINDS: tuple[str, ...] = ("html", "truncated", "ohlc", "nulls")
OUTAGE_MODES: tuple[str, ...] = ("drop", "503")
ERROR_STATUSES = (500, 502, 503, 504)
MAX_HANG_S = 600.0  # a hang is always bounded


@dataclass(frozen=True)
class FaultKnobs:
    rate_limit_rps: float | None = None  # token bucket refill; None: no limit
    rate_limit_burst: int | None = None  # bucket size; None: max(1, ceil(rps))
    retry_after_s: float | None = None  # Retry-After on 429s only when set
    # Yahoo's punishment for a client that keeps knocking: this many 429s in a row (no
    # answered request between them) refuse every request for lockout_s. 0 = never.
    lockout_after: int = 0
    lockout_s: float = 60.0
    error_ratio: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    hang_ratio: float = 0.0
    hang_s: float = 30.0
    outage_until: float | None = None  # wall-clock epoch seconds
    outage_mode: OutageMode = "drop"
    malformed_ratio: float = 0.0
    malformed_kind: MalformedKind = "truncated"
    # Bars stamped in [gap_start, gap_end) (unix seconds) are missing from chart answers,
    # as when Yahoo loses an hour of a trading day. Both null: no gap.
    gap_start: int | None = None
    gap_end: int | None = None

    def as_json(self, wall_now: float) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["error_statuses"] = list(self.error_statuses)
        out["outage_active"] = self.outage_until is not None and wall_now < self.outage_until
        return out


_FIELDS = {f.name for f in dataclasses.fields(FaultKnobs)}
_RATIOS = ("error_ratio", "hang_ratio", "malformed_ratio")
_NON_NEGATIVE = ("latency_ms", "latency_jitter_ms")


def update_knobs(knobs: FaultKnobs, changes: Mapping[str, Any], wall_now: float) -> FaultKnobs:
    """A partial update. ``outage_s`` (seconds from now) is accepted as a shorthand for
    ``outage_until``; 0 or null ends an outage. Raises ValueError naming the bad key."""
    values = dict(changes)
    if "outage_s" in values:
        seconds = values.pop("outage_s")
        values["outage_until"] = None if not seconds else wall_now + _number("outage_s", seconds)
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown fault knob(s) {unknown}; known: {sorted(_FIELDS | {'outage_s'})}")
    clean = {key: _validate(key, value) for key, value in values.items()}
    return dataclasses.replace(knobs, **clean)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _validate(key: str, value: Any) -> Any:
    if key in _RATIOS:
        ratio = _number(key, value)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{key} must be between 0 and 1, got {value!r}")
        return ratio
    if key in _NON_NEGATIVE:
        amount = _number(key, value)
        if amount < 0:
            raise ValueError(f"{key} must be >= 0, got {value!r}")
        return amount
    if key == "rate_limit_rps" or key == "retry_after_s" or key == "outage_until":
        if value is None:
            return None
        amount = _number(key, value)
        if key != "outage_until" and amount <= 0:
            raise ValueError(f"{key} must be > 0 (or null to turn it off), got {value!r}")
        return amount
    if key == "rate_limit_burst":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"rate_limit_burst must be an integer >= 1, got {value!r}")
        return value
    if key in ("gap_start", "gap_end"):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a unix time in seconds (integer) or null, got {value!r}")
        return value
    if key == "lockout_after":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"lockout_after must be an integer >= 0, got {value!r}")
        return value
    if key == "lockout_s":
        amount = _number(key, value)
        if not 0 < amount <= MAX_HANG_S:
            raise ValueError(f"lockout_s must be in (0, {MAX_HANG_S:g}], got {value!r}")
        return amount
    if key == "hang_s":
        amount = _number(key, value)
        if not 0 < amount <= MAX_HANG_S:
            raise ValueError(f"hang_s must be in (0, {MAX_HANG_S:g}], got {value!r}")
        return amount
    if key == "error_statuses":
        if not isinstance(value, list | tuple) or not value or any(v not in ERROR_STATUSES for v in value):
            raise ValueError(f"error_statuses must be a non-empty list from {list(ERROR_STATUSES)}")
        return tuple(int(v) for v in value)
    if key == "outage_mode" and value not in OUTAGE_MODES:
        raise ValueError(f"outage_mode must be one of {list(OUTAGE_MODES)}, got {value!r}")
    if key == "malformed_kind" and value not in MALFORMED_KINDS:
        raise ValueError(f"malformed_kind must be one of {list(MALFORMED_KINDS)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Decision:
    action: Action
    status: int = 200
    latency_s: float = 0.0
    malformed: MalformedKind | None = None


class FaultEngine:
    def __init__(self, seed: int, knobs: FaultKnobs | None = None) -> None:
        self.seed = seed
        self.knobs = knobs or FaultKnobs()
        self.rng = random.Random(seed)
        self._tokens = 0.0
        self._last: float | None = None
        self._refused_in_a_row = 0
        self.locked_until: float | None = None  # monotonic; set while a lock-out runs
        self.lockouts = 0

    def set_knobs(self, knobs: FaultKnobs) -> None:
        rate_changed = (knobs.rate_limit_rps, knobs.rate_limit_burst) != (
            self.knobs.rate_limit_rps,
            self.knobs.rate_limit_burst,
        )
        self.knobs = knobs
        if rate_changed:
            self._last = None  # a new limit starts with a full bucket
            self._refused_in_a_row, self.locked_until = 0, None

    def reset(self) -> None:
        """All knobs off, RNG back to its seed, bucket full."""
        self.knobs = FaultKnobs()
        self.rng = random.Random(self.seed)
        self._last = None
        self._refused_in_a_row, self.locked_until, self.lockouts = 0, None, 0

    def decide(self, wall_now: float, mono_now: float) -> Decision:
        k = self.knobs
        r_hang, r_error, r_status, r_malformed, r_jitter = (self.rng.random() for _ in range(5))
        if k.outage_until is not None and wall_now < k.outage_until:
            return Decision("outage", 503)
        if not self._admit(mono_now):
            return Decision("rate_limited", 429)
        if r_hang < k.hang_ratio:
            return Decision("hang", latency_s=k.hang_s)
        latency = max(0.0, (k.latency_ms + (2 * r_jitter - 1) * k.latency_jitter_ms) / 1000)
        if r_error < k.error_ratio:
            status = k.error_statuses[min(int(r_status * len(k.error_statuses)), len(k.error_statuses) - 1)]
            return Decision("server_error", status, latency)
        malformed = k.malformed_kind if r_malformed < k.malformed_ratio else None
        return Decision("pass", 200, latency, malformed)

    def _admit(self, mono_now: float) -> bool:
        """The bucket's answer, and Yahoo's lock-out after too many 429s in a row."""
        if self.locked_until is not None:
            if mono_now < self.locked_until:
                return False  # refusals while locked out do not extend the lock-out
            self.locked_until, self._refused_in_a_row = None, 0
        if self._take_token(mono_now):
            self._refused_in_a_row = 0
            return True
        self._refused_in_a_row += 1
        after = self.knobs.lockout_after
        if after and self._refused_in_a_row >= after:
            self.locked_until = mono_now + self.knobs.lockout_s
            self.lockouts += 1
        return False

    def _take_token(self, mono_now: float) -> bool:
        rps = self.knobs.rate_limit_rps
        if rps is None:
            return True
        burst = float(self.knobs.rate_limit_burst or max(1, math.ceil(rps)))
        if self._last is None:
            self._tokens = burst
        else:
            self._tokens = min(burst, self._tokens + (mono_now - self._last) * rps)
        self._last = mono_now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


# Bodies a real edge sends when things go wrong.
RATE_LIMITED_BODY = "Edge: Too Many Requests"
_EDGE_PAGE = (
    "<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1></center>"
    "<hr><center>ATS</center></body></html>"
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
MAINTENANCE_PAGE = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Yahoo</title></head><body>'
    "<h1>Will be right back...</h1><p>Thank you for your patience.</p>"
    "<p>Our engineers are working quickly to resolve the issue.</p></body></html>"
)


def server_error_body(status: int, json_root: str) -> tuple[str, bytes]:
    """(content type, body): Yahoo's JSON error for a 500, the edge's HTML page otherwise."""
    reason = _REASONS.get(status, "Server Error")
    if status == 500:
        body = {json_root: {"result": None, "error": {"code": reason, "description": reason}}}
        return "application/json;charset=utf-8", orjson.dumps(body)
    return "text/html", _EDGE_PAGE.format(status=status, reason=reason).encode()


def cut_gap(body: bytes, start: int, end: int) -> bytes | None:
    """The chart body without the bars stamped in ``[start, end)``; None when none were there."""
    try:
        parsed = orjson.loads(body)
        result = parsed["chart"]["result"][0]
        stamps = result["timestamp"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    keep = [i for i, t in enumerate(stamps) if not start <= t < end]
    if len(keep) == len(stamps):
        return None
    result["timestamp"] = [stamps[i] for i in keep]
    indicators = result.get("indicators", {})
    for block in (*indicators.get("quote", []), *indicators.get("adjclose", [])):
        for name, values in block.items():
            if isinstance(values, list) and len(values) == len(stamps):
                block[name] = [values[i] for i in keep]
    return orjson.dumps(parsed)


def malform(kind: MalformedKind, body: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    """(content type, new body), or None when the kind does not apply to this body
    (ohlc and nulls need chart bars)."""
    if kind == "html":
        return "text/html;charset=utf-8", MAINTENANCE_PAGE.encode()
    if kind == "truncated":
        return "application/json;charset=utf-8", body[: max(1, len(body) // 2)]
    try:
        parsed = orjson.loads(body)
        quote = parsed["chart"]["result"][0]["indicators"]["quote"][0]
        n = len(quote["close"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    if n == 0:
        return None
    picks = rng.sample(range(n), max(1, n // 10))
    for i in picks:
        if kind == "ohlc":
            _break_ohlc(quote, i)
        else:
            for field in rng.sample(["open", "high", "low", "close", "volume"], rng.randint(1, 5)):
                quote[field][i] = None
    return "application/json;charset=utf-8", orjson.dumps(parsed)


def _break_ohlc(quote: dict[str, list[Any]], i: int) -> None:
    """Close above the high and low above the open: impossible bars a validator must catch."""
    high, open_ = quote["high"][i], quote["open"][i]
    if high is None or open_ is None:
        return
    quote["close"][i] = round(high * 1.02 + 0.01, 6)
    quote["low"][i] = round(open_ * 1.02 + 0.01, 6)
