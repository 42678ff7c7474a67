"""Yahoo's chart intervals and the window limits Yahoo enforces for each.

Measured facts (DESIGN.md): 1m is 7 days per request within the last 30 days;
2m-90m within the last 60 days; 60m/1h (and 4h) within the last 730 days; daily and
longer have no limit. ``60m`` is the same data as ``1h`` and answers as ``1h``.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400

# Yahoo's own order, as quoted in its 400 message.
VALID_INTERVALS: tuple[str, ...] = (
    "1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h", "4h",
    "1d", "5d", "1wk", "1mo", "3mo",
)  # fmt: skip

VALID_RANGES: tuple[str, ...] = ("1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max")


@dataclass(frozen=True, slots=True)
class Interval:
    name: str  # canonical name, used in series keys and dataGranularity
    seconds: int  # nominal bar length (months and quarters approximate)
    intraday: bool
    lookback_days: int | None  # how far back Yahoo serves this interval at all
    per_request_days: int | None  # widest window Yahoo answers in one request

    @property
    def has_adjclose(self) -> bool:
        return not self.intraday


_TABLE: dict[str, Interval] = {
    "1m": Interval("1m", 60, True, 30, 7),
    "2m": Interval("2m", 120, True, 60, None),
    "5m": Interval("5m", 300, True, 60, None),
    "15m": Interval("15m", 900, True, 60, None),
    "30m": Interval("30m", 1800, True, 60, None),
    "90m": Interval("90m", 5400, True, 60, None),
    "1h": Interval("1h", 3600, True, 730, None),
    "4h": Interval("4h", 14_400, True, 730, None),
    "1d": Interval("1d", DAY, False, None, None),
    "5d": Interval("5d", 5 * DAY, False, None, None),
    "1wk": Interval("1wk", 7 * DAY, False, None, None),
    "1mo": Interval("1mo", 30 * DAY, False, None, None),
    "3mo": Interval("3mo", 91 * DAY, False, None, None),
}
_ALIASES = {"60m": "1h"}


def lookup(name: str) -> Interval | None:
    """The interval for a name as a client sends it, or None when Yahoo rejects it."""
    return _TABLE.get(_ALIASES.get(name, name))


def canonical(name: str) -> str:
    return _ALIASES.get(name, name)
