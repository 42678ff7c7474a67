"""Pure URL logic: validating the proxy's base URL and moving Yahoo URLs onto it."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import SplitResult, urlsplit

YAHOO_DOMAIN = "yahoo.com"
_WEB_SCHEMES = ("http", "https")


class Target(NamedTuple):
    """Where Yahoo traffic goes: the proxy's scheme, netloc and optional path prefix."""

    scheme: str
    netloc: str
    prefix: str  # "" or "/something", never with a trailing slash

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}"


def is_yahoo_host(host: str) -> bool:
    """``yahoo.com`` itself or any subdomain, but not look-alikes such as ``notyahoo.com``."""
    name = host.lower().rstrip(".")
    return name == YAHOO_DOMAIN or name.endswith("." + YAHOO_DOMAIN)


def parse_target(base_url: object) -> Target:
    """Validate a yfproxy base URL such as ``http://127.0.0.1:8080`` (ValueError if unusable)."""
    if not isinstance(base_url, str):
        raise TypeError(f"yfproxy base URL must be a str, got {type(base_url).__name__}")
    try:
        parts = urlsplit(base_url.strip())
        _ = parts.port  # urlsplit is lazy about ports: this raises on "host:abc" or "host:99999"
    except ValueError as exc:
        raise ValueError(f"invalid yfproxy base URL {base_url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _WEB_SCHEMES:
        raise ValueError(f"yfproxy base URL must start with http:// or https://, got {base_url!r}")
    if not parts.hostname:
        raise ValueError(f"yfproxy base URL has no host: {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"yfproxy base URL must not carry a query or fragment: {base_url!r}")
    if is_yahoo_host(parts.hostname):
        # Surely a mix-up with the upstream address; it would just send traffic back to Yahoo.
        raise ValueError(f"yfproxy base URL must point at the proxy, not at Yahoo: {base_url!r}")
    return Target(scheme, parts.netloc, parts.path.rstrip("/"))


def _as_text(url: object) -> str | None:
    # requests accepts bytes URLs (decoded as UTF-8) and anything str() turns into a URL.
    if isinstance(url, str):
        return url
    if isinstance(url, bytes):
        try:
            return url.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None if url is None else str(url)


def rewrite(url: object, target: Target) -> tuple[str, str] | None:
    """``(proxy URL, original host)`` for an http(s) Yahoo URL, else None (leave it alone).

    Path and query string are kept byte for byte; the fragment is dropped (never sent).
    The original host (with its port, if one was explicit) is what the proxy reads from
    ``X-Forwarded-Host`` to answer e.g. the fc.yahoo.com cookie handshake itself.
    """
    text = _as_text(url)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None  # malformed: let the HTTP library report it as it always would
    if parts.scheme.lower() not in _WEB_SCHEMES or not host or not is_yahoo_host(host):
        return None
    host = host.rstrip(".")
    forwarded = host if port is None else f"{host}:{port}"
    moved = SplitResult(target.scheme, target.netloc, target.prefix + (parts.path or "/"), parts.query, "")
    return moved.geturl(), forwarded
