"""Operator and client messages per category, and structured log fields of UpstreamError."""

from __future__ import annotations

import re

import pytest

from policies.errors import Category, FailureContext, UpstreamError

# Words that would leak internals or infrastructure into a client-facing body.
_INTERNALS = re.compile(r"redis|breaker|budget|limiter|curl|aiohttp|yahoo\.com|127\.0|traceback|\[", re.I)


@pytest.mark.parametrize("category", list(Category))
def test_every_category_has_an_operator_message_saying_what_to_check(category: Category) -> None:
    message = category.operator_message
    assert len(message) > 40
    assert "check" in message.lower()


@pytest.mark.parametrize("category", list(Category))
def test_every_client_message_is_short_and_free_of_internals(category: Category) -> None:
    message = category.client_message
    assert 0 < len(message) <= 80
    assert not _INTERNALS.search(message), message


def test_not_found_client_message_matches_yahoos_description() -> None:
    assert Category.NOT_FOUND.client_message == "No data found, symbol may be delisted"


def test_invalid_request_echoes_yahoos_description_to_clients() -> None:
    description = "Invalid input - interval=4m is not supported."
    err = UpstreamError(Category.INVALID_REQUEST, description, yahoo_description=description)
    assert err.client_message == description
    assert UpstreamError(Category.INVALID_REQUEST, "x").client_message == "Invalid request."


def test_other_categories_never_echo_details_to_clients() -> None:
    err = UpstreamError(Category.UPSTREAM_5XX, "status 502 from 10.0.0.7", yahoo_description="secret")
    assert err.client_message == Category.UPSTREAM_5XX.client_message


def test_to_log_carries_the_failure_context() -> None:
    ctx = FailureContext(symbol="ES=F", interval="1m", attempt=2, latency_ms=123.456, status=503,
                         excerpt="<html>")  # fmt: skip
    err = UpstreamError(Category.UPSTREAM_5XX, "status 503", ctx, retry_after=4.0)
    assert err.to_log() == {
        "category": "upstream_5xx",
        "detail": "status 503",
        "symbol": "ES=F",
        "interval": "1m",
        "attempt": 2,
        "latency_ms": 123.5,
        "status": 503,
        "excerpt": "<html>",
        "retry_after": 4.0,
    }


def test_existing_behaviour_is_kept() -> None:
    err = UpstreamError(Category.READ_TIMEOUT, "read timed out", FailureContext(symbol="AAPL", interval="1d"))
    assert str(err) == "read_timeout: AAPL 1d read timed out"
    assert Category.READ_TIMEOUT.retryable
    assert not Category.RATE_LIMITED.retryable
