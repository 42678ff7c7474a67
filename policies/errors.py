"""The single failure taxonomy of upstream calls.

One category per failure a user or operator must tell apart. The core issue needs
only the categories and the error type; per-category retry rules and operator
messages grow here with the policies.
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


_RETRYABLE = frozenset(
    {Category.UPSTREAM_5XX, Category.CONNECT_FAILURE, Category.CONNECT_TIMEOUT, Category.READ_TIMEOUT}
)


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

    def __str__(self) -> str:
        ctx = self.context
        where = f" {ctx.symbol} {ctx.interval}".rstrip()
        status = f" status={ctx.status}" if ctx.status is not None else ""
        return f"{self.category.value}:{where}{status} {self.detail}"
