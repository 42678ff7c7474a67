"""The pure parts: base-URL validation, URL rewriting, header merging."""

from __future__ import annotations

from typing import Any

import pytest
from curl_cffi.requests import Headers
from requests.structures import CaseInsensitiveDict

from yfproxy_client._headers import with_forwarded_host
from yfproxy_client._url import Target, is_yahoo_host, parse_target, rewrite

BASE = Target("http", "127.0.0.1:8080", "")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("  HTTPS://proxy.internal  ", "https://proxy.internal"),
        ("http://gw.local/yf/", "http://gw.local/yf"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("http://user:secret@proxy:8080", "http://user:secret@proxy:8080"),
    ],
)
def test_parse_target_normalises(given: str, expected: str) -> None:
    assert parse_target(given).url == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("ftp://127.0.0.1", "http:// or https://"),
        ("127.0.0.1:8080", "http:// or https://"),
        ("", "http:// or https://"),
        ("http://", "no host"),
        ("http://:8080/x", "no host"),
        ("http://127.0.0.1:99999", "invalid yfproxy base URL"),
        ("http://127.0.0.1:port", "invalid yfproxy base URL"),
        ("http://127.0.0.1:8080/?a=1", "query or fragment"),
        ("http://127.0.0.1:8080/#top", "query or fragment"),
        ("https://query2.finance.yahoo.com", "not at Yahoo"),
    ],
)
def test_parse_target_rejects_with_a_clear_message(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_target(given)


def test_parse_target_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        parse_target(b"http://127.0.0.1")


@pytest.mark.parametrize(
    ("host", "yahoo"),
    [
        ("yahoo.com", True),
        ("query2.finance.yahoo.com", True),
        ("FC.Yahoo.COM", True),
        ("guce.yahoo.com.", True),
        ("notyahoo.com", False),
        ("yahoo.com.evil.example", False),
        ("yahoo.co.jp", False),
        ("127.0.0.1", False),
    ],
)
def test_is_yahoo_host(host: str, yahoo: bool) -> None:
    assert is_yahoo_host(host) is yahoo


@pytest.mark.parametrize(
    ("url", "target", "expected"),
    [
        (
            "https://query2.finance.yahoo.com/v8/finance/chart/MSFT?interval=1d&range=5d",
            BASE,
            ("http://127.0.0.1:8080/v8/finance/chart/MSFT?interval=1d&range=5d", "query2.finance.yahoo.com"),
        ),
        ("https://fc.yahoo.com", BASE, ("http://127.0.0.1:8080/", "fc.yahoo.com")),
        ("https://fc.yahoo.com/#frag", BASE, ("http://127.0.0.1:8080/", "fc.yahoo.com")),
        (
            "http://Query1.Finance.Yahoo.com:8443/v1/test/getcrumb",
            Target("https", "gw:9", "/yf"),
            ("https://gw:9/yf/v1/test/getcrumb", "query1.finance.yahoo.com:8443"),
        ),
        (
            "https://consent.yahoo.com/v2/collectConsent?sessionId=a%2Fb&x=",
            BASE,
            ("http://127.0.0.1:8080/v2/collectConsent?sessionId=a%2Fb&x=", "consent.yahoo.com"),
        ),
        (b"https://yahoo.com/x", BASE, ("http://127.0.0.1:8080/x", "yahoo.com")),
    ],
)
def test_rewrite_moves_yahoo_urls(url: object, target: Target, expected: tuple[str, str]) -> None:
    assert rewrite(url, target) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/v8/finance/chart/MSFT",
        "https://yahoo.com.evil.example/",
        "http://127.0.0.1:8080/v8/finance/chart/MSFT",
        "wss://streamer.finance.yahoo.com/",
        "query2.finance.yahoo.com/v8/finance/chart/MSFT",
        "http://[::1",
        b"\xff\xfe",
        None,
    ],
)
def test_rewrite_leaves_everything_else(url: object) -> None:
    assert rewrite(url, BASE) is None


def test_headers_none_or_empty_become_a_dict() -> None:
    assert with_forwarded_host(None, "fc.yahoo.com") == {"X-Forwarded-Host": "fc.yahoo.com"}
    assert with_forwarded_host({}, "fc.yahoo.com") == {"X-Forwarded-Host": "fc.yahoo.com"}


def test_headers_mapping_is_copied_and_an_older_value_replaced() -> None:
    given = {"Accept": "*/*", "x-forwarded-host": "old"}
    out = with_forwarded_host(given, "fc.yahoo.com")
    assert out == {"Accept": "*/*", "X-Forwarded-Host": "fc.yahoo.com"}
    assert given == {"Accept": "*/*", "x-forwarded-host": "old"}


@pytest.mark.parametrize("factory", [CaseInsensitiveDict, Headers])
def test_headers_library_types_keep_their_type(factory: Any) -> None:
    given = factory({"Accept": "*/*", "X-FORWARDED-HOST": "old"})
    out = with_forwarded_host(given, "fc.yahoo.com")
    assert type(out) is factory
    assert out["x-forwarded-host"] == "fc.yahoo.com"
    assert out["accept"] == "*/*"
    assert len(out) == 2
    assert given["X-Forwarded-Host"] == "old"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([("Accept", "*/*"), ("X-Forwarded-Host", "old")], [("Accept", "*/*"), ("X-Forwarded-Host", "h")]),
        (("Accept: */*",), ["Accept: */*", "X-Forwarded-Host: h"]),
        ([b"Accept: */*"], [b"Accept: */*", b"X-Forwarded-Host: h"]),
    ],
)
def test_headers_sequences(given: Any, expected: list[Any]) -> None:
    assert with_forwarded_host(given, "h") == expected


def test_headers_unknown_shape_is_left_alone() -> None:
    marker = object()
    assert with_forwarded_host(marker, "h") is marker
