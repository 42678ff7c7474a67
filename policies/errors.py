"""The single failure taxonomy of upstream calls.

One category per failure a user or operator must tell apart. Each category carries two
messages: an operator message (what it means, what to check) for logs, /status and the
runbook, and a client message (short, safe to show: no hosts, keys or internals) for
error bodies the proxy writes itself. Retry rules live in ``policies.retry``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Category(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"
    INVALID_REQUEST = "invalid_request"
    UPSTREAM_5XX = "upstream_5xx"
    BAD_PAYLOAD = "bad_payload"
    CONNECT_FAILURE = "connect_failure"
    CONNECT_TIMEOUT = "connect_timeout"
    READ_TIMEOUT = "read_timeout"
    BREAKER_OPEN = "breaker_open"
    BUDGET_EXHAUSTED = "budget_exhausted"

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE

    @property
    def operator_message(self) -> str:
        """What this failure means and what to check first (logs, /status, runbook)."""
        return _OPERATOR_MESSAGES[self]

    @property
    def client_message(self) -> str:
        """A short explanation safe to show to any client: no hosts, keys or internals."""
        return _CLIENT_MESSAGES[self]


_RETRYABLE = frozenset(
    {Category.UPSTREAM_5XX, Category.CONNECT_FAILURE, Category.CONNECT_TIMEOUT, Category.READ_TIMEOUT}
)


_OPERATOR_MESSAGES: dict[Category, str] = {
    Category.RATE_LIMITED: (
        "Yahoo throttled us (429 or 'Too Many Requests', or a crumb refusal). The adaptive limiter "
        "cuts its rate and honours Retry-After; check rate_limit.current_rps and the 429 window in "
        "/status, whether other clients share this egress IP, and that the curl_cffi transport is used."
    ),
    Category.NOT_FOUND: (
        "Yahoo has no data for this symbol (404 'Not Found'). Usually a typo, a delisted ticker or an "
        "expired futures contract; it is negatively cached, not retried. Check the symbol on Yahoo."
    ),
    Category.INVALID_REQUEST: (
        "Yahoo refused the request as invalid (400/422): interval not supported or the window is "
        "outside the interval's limit (1m: 7 days within 30; intraday: 60 days; 1h: 730 days). "
        "Check the query that led here and the refresher's window planning."
    ),
    Category.UPSTREAM_5XX: (
        "Yahoo answered with a server error (5xx). Retried with backoff under the retry budget; "
        "persistent 5xx opens the breaker. Check the upstream status and failure rate in /status."
    ),
    Category.BAD_PAYLOAD: (
        "The answer was not a usable chart: HTML (consent or block page), truncated or non-chart JSON. "
        "Nothing was stored. Check the excerpt; persistent HTML suggests a block or a missing crumb."
    ),
    Category.CONNECT_FAILURE: (
        "Could not connect to the upstream (refused, reset, DNS or TLS failure). Check DNS, egress, "
        "proxies/firewalls and [upstream] base_url."
    ),
    Category.CONNECT_TIMEOUT: (
        "Connecting to the upstream timed out. The timeout ladder climbs; check network reachability "
        "and timeouts.level in /status."
    ),
    Category.READ_TIMEOUT: (
        "The upstream accepted the connection but did not answer in time. The timeout ladder climbs; "
        "check upstream latency percentiles and timeouts.level in /status."
    ),
    Category.BREAKER_OPEN: (
        "The circuit breaker is open after repeated upstream failures; no request was sent. It probes "
        "again after [breaker] reset timeout; check breaker.state, its transitions and the failures "
        "that opened it."
    ),
    Category.BUDGET_EXHAUSTED: (
        "A local budget (retry budget or request deadline) ran out before an answer; no further request "
        "was sent. Check the failure rate that consumed it and the [retry]/[timeouts] settings."
    ),
}

_CLIENT_MESSAGES: dict[Category, str] = {
    Category.RATE_LIMITED: "Too many requests to the data source; try again later.",
    Category.NOT_FOUND: "No data found, symbol may be delisted",
    Category.INVALID_REQUEST: "Invalid request.",
    Category.UPSTREAM_5XX: "The data source is having problems; try again later.",
    Category.BAD_PAYLOAD: "The data source returned an unusable answer; try again later.",
    Category.CONNECT_FAILURE: "The data source is unreachable; try again later.",
    Category.CONNECT_TIMEOUT: "The data source is unreachable; try again later.",
    Category.READ_TIMEOUT: "The data source did not answer in time; try again later.",
    Category.BREAKER_OPEN: "The data source is temporarily unavailable; try again later.",
    Category.BUDGET_EXHAUSTED: "The data source is temporarily unavailable; try again later.",
}


@dataclass(slots=True)
class FailureContext:
    symbol: str = ""
    interval: str = ""
    attempt: int = 0
    latency_ms: float = 0.0
    status: int | None = None
    excerpt: str = ""  # first bytes of the body, for operators; never shown to clients


@dataclass(slots=True)
class UpstreamError(Exception):
    category: Category
    detail: str
    context: FailureContext = field(default_factory=FailureContext)
    retry_after: float | None = None  # seconds, from Yahoo's Retry-After when it sent one
    # Yahoo's own error description for invalid requests (400/422), echoed to clients.
    yahoo_description: str | None = None

    @property
    def client_message(self) -> str:
        # Yahoo's own description of an invalid request is public and the client needs it to
        # fix the query; every other category gets the generic, internals-free message.
        if self.category is Category.INVALID_REQUEST and self.yahoo_description:
            return self.yahoo_description
        return self.category.client_message

    def to_log(self) -> dict[str, object]:
        """Flat fields for a structured log line (structlog ``log.warning("...", **err.to_log())``)."""
        ctx = self.context
        return {
            "category": self.category.value,
            "detail": self.detail,
            "symbol": ctx.symbol,
            "interval": ctx.interval,
            "attempt": ctx.attempt,
            "latency_ms": round(ctx.latency_ms, 1),
            "status": ctx.status,
            "excerpt": ctx.excerpt,
            "retry_after": self.retry_after,
        }

    def __str__(self) -> str:
        ctx = self.context
        where = f" {ctx.symbol} {ctx.interval}".rstrip()
        status = f" status={ctx.status}" if ctx.status is not None else ""
        return f"{self.category.value}:{where}{status} {self.detail}"
