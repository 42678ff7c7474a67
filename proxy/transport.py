"""Upstream transports: one interface, a curl_cffi implementation for Yahoo and an
aiohttp one for plain HTTP (the simulator, tests).

Why curl_cffi for Yahoo: its 429s follow the TLS fingerprint as much as the rate, and
Chrome impersonation is what yfinance itself moved to (DESIGN.md). Transports only
move bytes and say how they failed; classifying answers is the client's job.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from policies.errors import Category, UpstreamError


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    read_s: float


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Transport(Protocol):
    async def get(
        self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts
    ) -> RawResponse: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    def __init__(self, *, limit: int = 16) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._limit = limit

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit), auto_decompress=True
            )
        return self._session

    async def get(
        self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts
    ) -> RawResponse:
        timeout = aiohttp.ClientTimeout(sock_connect=timeouts.connect_s, sock_read=timeouts.read_s)
        try:
            async with self._client().get(url, params=params, headers=headers, timeout=timeout) as resp:
                body = await resp.read()
                return RawResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)
        except aiohttp.ServerTimeoutError as exc:
            category = Category.CONNECT_TIMEOUT if "connect" in str(exc).lower() else Category.READ_TIMEOUT
            raise UpstreamError(category, str(exc) or "timeout") from exc
        except TimeoutError as exc:
            raise UpstreamError(Category.READ_TIMEOUT, "timeout") from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamError(Category.BAD_PAYLOAD, f"truncated body: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(Category.CONNECT_FAILURE, f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class CurlCffiTransport:
    def __init__(self, *, impersonate: str = "chrome", limit: int = 16) -> None:
        from curl_cffi.requests import AsyncSession

        self._session = AsyncSession(impersonate=impersonate, max_clients=limit)  # type: ignore[arg-type]

    async def get(
        self, url: str, *, params: dict[str, str], headers: dict[str, str], timeouts: Timeouts
    ) -> RawResponse:
        from curl_cffi.requests import exceptions as cx

        try:
            resp = await self._session.get(
                url, params=params, headers=headers, timeout=(timeouts.connect_s, timeouts.read_s)
            )
        except cx.ConnectTimeout as exc:
            raise UpstreamError(Category.CONNECT_TIMEOUT, str(exc)) from exc
        except cx.Timeout as exc:
            raise UpstreamError(Category.READ_TIMEOUT, str(exc)) from exc
        except (cx.IncompleteRead, cx.ChunkedEncodingError, cx.ContentDecodingError) as exc:
            raise UpstreamError(Category.BAD_PAYLOAD, f"truncated body: {exc}") from exc
        except (cx.RequestException, asyncio.InvalidStateError) as exc:
            raise UpstreamError(Category.CONNECT_FAILURE, f"{type(exc).__name__}: {exc}") from exc
        return RawResponse(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content)

    async def close(self) -> None:
        await self._session.close()


def make_transport(kind: str, *, impersonate: str, limit: int) -> Transport:
    if kind == "curl_cffi":
        return CurlCffiTransport(impersonate=impersonate, limit=limit)
    return AiohttpTransport(limit=limit)
