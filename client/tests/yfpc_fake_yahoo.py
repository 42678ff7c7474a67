"""A tiny stand-in for yfproxy on 127.0.0.1 that records every request it sees.

It answers as the proxy does for a yfinance client: the fc.yahoo.com cookie (chosen by
``X-Forwarded-Host``), a crumb, and chart bodies from the real Yahoo recordings.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

CRUMB = "abcdefghijk"
COOKIE = "A3=d=x; Path=/"
PREFIX = "/yf"  # a base-URL path prefix the server also accepts, e.g. http://host:port/yf
_JSON = "application/json;charset=utf-8"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case

    @property
    def forwarded_host(self) -> str | None:
        return self.headers.get("x-forwarded-host")


def _not_found(kind: str, description: str) -> bytes:
    return json.dumps(
        {kind: {"result": None, "error": {"code": "Not Found", "description": description}}}
    ).encode()


class FakeYahoo(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, charts: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.charts = charts
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="fake-yahoo", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)

    def route(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        path = seen.path[len(PREFIX) :] if seen.path.startswith(PREFIX + "/") else seen.path
        if seen.forwarded_host == "fc.yahoo.com":
            return 200, {"Set-Cookie": COOKIE, "Content-Type": "text/html"}, b""
        if path == "/v1/test/getcrumb":
            return 200, {"Content-Type": "text/plain;charset=utf-8"}, CRUMB.encode()
        if path.startswith("/v8/finance/chart/"):
            symbol = unquote(path.rsplit("/", 1)[1])
            body = self.charts.get(symbol)
            if body is not None:
                return 200, {"Content-Type": _JSON}, body
            return 404, {"Content-Type": _JSON}, _not_found("chart", "No data found, symbol may be delisted")
        return 404, {"Content-Type": _JSON}, _not_found("finance", "HTTP 404 Not Found")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeYahoo

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        seen = Seen(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True), headers)
        self.server.record(seen)
        status, extra, body = self.server.route(seen)
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean
