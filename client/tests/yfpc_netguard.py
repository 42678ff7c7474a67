"""Keeps test traffic on this machine, in the test process and in the subprocesses.

Python sockets are guarded at ``connect``/``getaddrinfo`` (requests, urllib). curl_cffi
connects from C, out of reach of those, so its URLs are checked where they enter
libcurl (``Curl.setopt(CurlOpt.URL, ...)``). A violation is blocked *and* recorded,
because yfinance swallows some errors (a failed cookie fetch only logs).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable
from urllib.parse import urlsplit


class NetworkGuardError(OSError):
    """A test tried to reach an address that is not on this machine."""


violations: list[str] = []


def is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str) -> NetworkGuardError:
    violations.append(what)
    return NetworkGuardError(f"test traffic must stay on 127.0.0.1, tried {what}")


def _guard_sockets() -> Callable[[], None]:
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and not is_local(address[0]):
            raise _refuse(f"connect {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if isinstance(address, tuple) and not is_local(address[0]):
            raise _refuse(f"connect {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_local(host):
            raise _refuse(f"resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo

    def undo() -> None:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo

    return undo


def _guard_libcurl() -> Callable[[], None]:
    try:
        from curl_cffi.const import CurlOpt
        from curl_cffi.curl import Curl
    except ImportError:  # not installed: nothing can go through libcurl
        return lambda: None

    real_setopt = Curl.setopt

    def setopt(self: Curl, option: Any, value: Any) -> int:
        if option == CurlOpt.URL:
            url = value.decode() if isinstance(value, bytes) else str(value)
            if not is_local(urlsplit(url).hostname):
                raise _refuse(f"libcurl URL {url!r}")
        return real_setopt(self, option, value)

    Curl.setopt = setopt  # type: ignore[method-assign]

    def undo() -> None:
        Curl.setopt = real_setopt  # type: ignore[method-assign]

    return undo


def install(curl: bool = True) -> Callable[[], None]:
    """Guard now; returns the undo. ``curl=False`` leaves curl_cffi unimported."""
    undos = [_guard_sockets()]
    if curl:
        undos.append(_guard_libcurl())

    def undo() -> None:
        for step in reversed(undos):
            step()

    return undo
