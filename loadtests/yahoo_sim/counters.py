"""Request counters by route kind and outcome, plus chart requests per symbol and per
(symbol, interval), so tests can assert exactly how many upstream requests were made.

Outcomes are counted when a request is answered; ``arrived_by_kind`` counts requests when
they arrive, so a slow answer still in progress (or one its client gave up on) shows
up in a snapshot taken while the fault is on."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Literal

RouteKind = Literal["chart", "crumb", "handshake", "quote_summary", "quote", "timeseries", "other"]
Outcome = Literal[
    "ok",
    "not_found",
    "bad_request",
    "unprocessable",
    "rate_limited",
    "server_error",
    "hang",
    "outage",
    "malformed",
]
ROUTE_KINDS: tuple[RouteKind, ...] = (
    "chart",
    "crumb",
    "handshake",
    "quote_summary",
    "quote",
    "timeseries",
    "other",
)
OUTCOMES: tuple[Outcome, ...] = (
    "ok",
    "not_found",
    "bad_request",
    "unprocessable",
    "rate_limited",
    "server_error",
    "hang",
    "outage",
    "malformed",
)


def outcome_for_status(status: int) -> Outcome:
    if status == 404:
        return "not_found"
    if status == 422:
        return "unprocessable"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "bad_request"
    return "ok"


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._by_kind_outcome: dict[RouteKind, Counter[Outcome]] = defaultdict(Counter)
        self._arrived: Counter[RouteKind] = Counter()
        self._chart_symbol: Counter[str] = Counter()
        self._chart_symbol_interval: dict[str, Counter[str]] = defaultdict(Counter)

    def arrive(self, kind: RouteKind) -> None:
        self._arrived[kind] += 1

    def record(
        self, kind: RouteKind, outcome: Outcome, symbol: str | None = None, interval: str | None = None
    ) -> None:
        self._by_kind_outcome[kind][outcome] += 1
        if kind == "chart" and symbol is not None:
            self._chart_symbol[symbol] += 1
            self._chart_symbol_interval[symbol][interval or "1d"] += 1

    def as_json(self) -> dict[str, Any]:
        """Every kind and outcome is present (zeros included) so assertions need no .get()."""
        matrix = {k: {o: self._by_kind_outcome[k][o] for o in OUTCOMES} for k in ROUTE_KINDS}
        by_kind = {k: sum(matrix[k].values()) for k in ROUTE_KINDS}
        by_outcome = {o: sum(matrix[k][o] for k in ROUTE_KINDS) for o in OUTCOMES}
        return {
            "total": sum(by_kind.values()),
            "by_kind": by_kind,
            "by_outcome": by_outcome,
            "by_kind_outcome": matrix,
            "arrived_by_kind": {k: self._arrived[k] for k in ROUTE_KINDS},
            "chart_by_symbol": dict(sorted(self._chart_symbol.items())),
            "chart_by_symbol_interval": {
                s: dict(sorted(c.items())) for s, c in sorted(self._chart_symbol_interval.items())
            },
        }
