"""Yahoo-shaped failures: the one place that knows how Yahoo's chart errors look.

Every 4xx/5xx that yfproxy answers on a Yahoo path goes through :class:`YahooError`
so clients that parse Yahoo's errors (yfinance does) see exactly what Yahoo sends.
"""

from __future__ import annotations

import orjson

NOT_FOUND_DESCRIPTION = "No data found, symbol may be delisted"


class YahooError(Exception):
    """An answer in Yahoo's chart error shape.

    ``retry_after`` is set on the 429/503 answers yfproxy makes itself, so a client
    knows when to come back instead of hammering a cold cache.
    """

    def __init__(
        self,
        status: int,
        code: str,
        description: str,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {description}")
        self.status = status
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> bytes:
        return chart_error_body(self.code, self.description)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json;charset=utf-8"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def chart_error_body(code: str, description: str) -> bytes:
    return orjson.dumps({"chart": {"result": None, "error": {"code": code, "description": description}}})


def not_found() -> YahooError:
    return YahooError(404, "Not Found", NOT_FOUND_DESCRIPTION)


def bad_request(description: str) -> YahooError:
    return YahooError(400, "Bad Request", description)


def unprocessable(description: str) -> YahooError:
    return YahooError(422, "Unprocessable Entity", description)


def unavailable(description: str, retry_after: int) -> YahooError:
    return YahooError(503, "Service Unavailable", description, retry_after=retry_after)
