"""A fake Yahoo Finance for tests and load tests: Yahoo-shaped chart bodies from
deterministic synthetic prices on real trading calendars, the other endpoints yfinance
calls, fault knobs (rate limit, 5xx, latency, hangs, outages, malformed bodies),
request counters and a freezable clock.

Run it with ``python -m loadtests.yahoo_sim --port 9000``; from tests use
``loadtests.yahoo_sim.testing``."""

from .app import STATE, SimState, create_app
from .chart import ChartAnswer, answer
from .clock import SimClock
from .config import SimConfig
from .counters import OUTCOMES, ROUTE_KINDS, Counters
from .faults import FaultEngine, FaultKnobs, update_knobs
from .instruments import STATIC, Instrument, lookup, lookup_at
from .windows import INTERVALS, VALID_RANGES, ChartError

__all__ = [
    "INTERVALS",
    "OUTCOMES",
    "ROUTE_KINDS",
    "STATE",
    "STATIC",
    "VALID_RANGES",
    "ChartAnswer",
    "ChartError",
    "Counters",
    "FaultEngine",
    "FaultKnobs",
    "Instrument",
    "SimClock",
    "SimConfig",
    "SimState",
    "answer",
    "create_app",
    "lookup",
    "lookup_at",
    "update_knobs",
]
