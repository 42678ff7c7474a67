"""install()/uninstall() on the real HTTP libraries, against the recording fake proxy."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import requests
from conftest import CLIENT, TESTS, child_env
from curl_cffi import requests as curl_requests
from yfpc_fake_yahoo import CRUMB, FakeYahoo, Seen

import yfproxy_client
from yfproxy_client import _patch

CHART = "https://query2.finance.yahoo.com/v8/finance/chart/MSFT?interval=1d"
CRUMB_URL = "https://query1.finance.yahoo.com/v1/test/getcrumb"
SESSION_CLASSES = (requests.Session, curl_requests.Session, curl_requests.AsyncSession)


class CaptureAdapter(requests.adapters.BaseAdapter):
    """A requests transport that records the final request instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        response = requests.Response()
        response.status_code = 204
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def captured(session: requests.Session, url: str, **kwargs: Any) -> requests.PreparedRequest:
    adapter = CaptureAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.get(url, **kwargs)
    return adapter.sent[-1]


def own_methods() -> list[Any]:
    return [cls.__dict__["request"] for cls in SESSION_CLASSES]


def only(seen: list[Seen]) -> Seen:
    assert len(seen) == 1, seen
    return seen[0]


def assert_chart_seen(seen: Seen) -> None:
    assert seen.path == "/v8/finance/chart/MSFT"
    assert seen.query == {"interval": ["1d"], "range": ["5d"]}
    assert seen.forwarded_host == "query2.finance.yahoo.com"
    assert seen.headers["accept"] == "application/json"


def test_requests_session_goes_to_the_proxy(fake_yahoo: FakeYahoo, msft_exchange: dict[str, Any]) -> None:
    yfproxy_client.install(fake_yahoo.url)
    response = requests.get(CHART, params={"range": "5d"}, headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 200
    assert response.json() == msft_exchange["response"]["json"]
    assert_chart_seen(only(fake_yahoo.requests()))


def test_curl_cffi_session_goes_to_the_proxy(fake_yahoo: FakeYahoo, msft_exchange: dict[str, Any]) -> None:
    yfproxy_client.install(fake_yahoo.url)
    with curl_requests.Session(impersonate="chrome") as session:
        response = session.get(
            CHART, params={"range": "5d"}, headers={"Accept": "application/json"}, timeout=10
        )
    assert response.status_code == 200
    assert response.json() == msft_exchange["response"]["json"]
    assert_chart_seen(only(fake_yahoo.requests()))


def test_curl_cffi_async_session_goes_to_the_proxy(fake_yahoo: FakeYahoo) -> None:
    yfproxy_client.install(fake_yahoo.url)
    assert inspect.iscoroutinefunction(curl_requests.AsyncSession.request)

    async def fetch() -> tuple[int, str]:
        async with curl_requests.AsyncSession() as session:
            response = await session.get(CRUMB_URL, timeout=10)
            return response.status_code, response.text

    assert asyncio.run(fetch()) == (200, CRUMB)
    seen = only(fake_yahoo.requests())
    assert (seen.path, seen.forwarded_host) == ("/v1/test/getcrumb", "query1.finance.yahoo.com")


@pytest.mark.parametrize("cls", [requests.Session, curl_requests.Session])
def test_positional_headers_are_found(fake_yahoo: FakeYahoo, cls: Any) -> None:
    # requests: (method, url, params, data, headers); curl_cffi has json/content before headers.
    names = list(inspect.signature(cls.request).parameters)[1:]
    args: list[Any] = ["GET", CHART, {"range": "5d"}]
    args += [None] * (names.index("headers") - len(args)) + [{"Accept": "application/json"}]
    yfproxy_client.install(fake_yahoo.url)
    with cls() as session:
        assert session.request(*args, timeout=10).status_code == 200
    assert_chart_seen(only(fake_yahoo.requests()))


def test_the_handshake_hosts_are_rewritten_and_keep_the_cookie(fake_yahoo: FakeYahoo) -> None:
    yfproxy_client.install(fake_yahoo.url)
    with curl_requests.Session(impersonate="chrome") as session:
        session.get("https://fc.yahoo.com", allow_redirects=True, timeout=10)
        assert session.get(CRUMB_URL, timeout=10).text == CRUMB
        session.post("https://consent.yahoo.com/v2/collectConsent?sessionId=1", data={"a": "1"}, timeout=10)
    hosts = [(seen.method, seen.forwarded_host, seen.path) for seen in fake_yahoo.requests()]
    assert hosts == [
        ("GET", "fc.yahoo.com", "/"),
        ("GET", "query1.finance.yahoo.com", "/v1/test/getcrumb"),
        ("POST", "consent.yahoo.com", "/v2/collectConsent"),
    ]
    assert fake_yahoo.requests()[1].headers.get("cookie") == "A3=d=x"


@pytest.mark.parametrize("library", ["requests", "curl_cffi"])
def test_other_urls_are_untouched(fake_yahoo: FakeYahoo, library: str) -> None:
    yfproxy_client.install(f"{fake_yahoo.url}/yf")
    direct = f"{fake_yahoo.url}/v8/finance/chart/MSFT?interval=1d&range=5d"
    session = requests.Session() if library == "requests" else curl_requests.Session()
    with session:
        response = session.get(direct, headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 200
    seen = only(fake_yahoo.requests())
    assert seen.forwarded_host is None
    assert (seen.path, seen.query) == ("/v8/finance/chart/MSFT", {"interval": ["1d"], "range": ["5d"]})


def test_a_base_path_prefix_is_kept(fake_yahoo: FakeYahoo) -> None:
    yfproxy_client.install(f"{fake_yahoo.url}/yf/")
    assert yfproxy_client.installed_url() == f"{fake_yahoo.url}/yf"
    assert requests.get(CRUMB_URL, timeout=10).text == CRUMB
    assert only(fake_yahoo.requests()).path == "/yf/v1/test/getcrumb"


def test_uninstall_restores_the_original_methods() -> None:
    before = own_methods()
    yfproxy_client.install("http://127.0.0.1:9")
    assert all(now is not was for now, was in zip(own_methods(), before))
    assert captured(requests.Session(), CHART).url.startswith("http://127.0.0.1:9/v8/")
    yfproxy_client.uninstall()
    assert own_methods() == before
    assert yfproxy_client.installed_url() is None
    prepared = captured(requests.Session(), CHART)
    assert prepared.url == CHART
    assert "X-Forwarded-Host" not in prepared.headers
    yfproxy_client.uninstall()  # harmless when nothing is installed
    assert own_methods() == before


def test_install_is_idempotent_and_switches_target(fake_yahoo: FakeYahoo) -> None:
    originals = own_methods()
    yfproxy_client.install("http://127.0.0.1:9")
    wrapped = own_methods()
    yfproxy_client.install("http://127.0.0.1:9/")
    assert own_methods() == wrapped
    assert [method.__wrapped__ for method in wrapped] == originals
    assert captured(requests.Session(), CHART).headers["X-Forwarded-Host"] == "query2.finance.yahoo.com"

    yfproxy_client.install(fake_yahoo.url)
    assert own_methods() == wrapped
    assert yfproxy_client.installed_url() == fake_yahoo.url
    assert requests.get(CRUMB_URL, timeout=10).text == CRUMB
    assert only(fake_yahoo.requests()).forwarded_host == "query1.finance.yahoo.com"


def test_a_bad_url_changes_nothing() -> None:
    yfproxy_client.install("http://127.0.0.1:9")
    wrapped = own_methods()
    with pytest.raises(ValueError, match="http:// or https://"):
        yfproxy_client.install("127.0.0.1:8080")
    assert yfproxy_client.installed_url() == "http://127.0.0.1:9"
    assert own_methods() == wrapped
    yfproxy_client.uninstall()
    with pytest.raises(ValueError, match="no host"):
        yfproxy_client.install("https://")
    assert yfproxy_client.installed_url() is None


def test_a_wrapper_installed_over_ours_survives_uninstall() -> None:
    yfproxy_client.install("http://127.0.0.1:9")
    ours = requests.Session.__dict__["request"]
    calls: list[str] = []

    def theirs(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(url)
        return ours(self, method, url, *args, **kwargs)

    requests.Session.request = theirs  # type: ignore[method-assign]
    try:
        yfproxy_client.uninstall()
        assert requests.Session.__dict__["request"] is theirs
        assert captured(requests.Session(), CHART).url == CHART  # ours, still inside, passes through
        yfproxy_client.install("http://127.0.0.1:9")
        assert captured(requests.Session(), CHART).url.startswith("http://127.0.0.1:9/")
        assert calls[-1].startswith("http://127.0.0.1:9/")  # rewritten once, on the outside
    finally:
        yfproxy_client.uninstall()
        requests.Session.request = ours.__wrapped__  # type: ignore[method-assign]


def test_an_inherited_method_is_restored_by_deletion() -> None:
    class Inheriting(requests.Session):
        pass

    yfproxy_client.install("http://127.0.0.1:9")
    _patch._patch_class(Inheriting)
    assert "request" in Inheriting.__dict__
    yfproxy_client.uninstall()
    assert "request" not in Inheriting.__dict__
    assert Inheriting.request is requests.Session.request


def test_user_subclasses_are_covered() -> None:
    class MySession(requests.Session):
        pass

    yfproxy_client.install("http://127.0.0.1:9")
    assert captured(MySession(), CHART).url == "http://127.0.0.1:9/v8/finance/chart/MSFT?interval=1d"


def test_libraries_imported_after_install_are_patched_on_import(fake_yahoo: FakeYahoo) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import yfpc_netguard
        yfpc_netguard.install(curl=False)
        import yfproxy_client
        yfproxy_client.install(sys.argv[1])
        before = sorted(m for m in ("requests", "curl_cffi") if m in sys.modules)
        import requests
        from curl_cffi import requests as curl_requests
        yfpc_netguard.install(curl=True)
        texts = [
            requests.get("https://query1.finance.yahoo.com/v1/test/getcrumb", timeout=10).text,
            curl_requests.get("https://query2.finance.yahoo.com/v1/test/getcrumb", timeout=10).text,
        ]
        loaders = [type(m.__loader__).__name__ for m in (requests, curl_requests)]
        loaders += [type(m.__spec__.loader).__name__ for m in (requests, curl_requests)]
        print(json.dumps({"before": before, "texts": texts, "loaders": loaders,
                          "violations": yfpc_netguard.violations}))
        """
    )
    env = child_env(PYTHONPATH=f"{TESTS}:{CLIENT}")
    out = subprocess.run(
        [sys.executable, "-c", script, fake_yahoo.url], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report == {
        "before": [],
        "texts": [CRUMB, CRUMB],
        "loaders": ["SourceFileLoader"] * 4,  # the hook handed the real loader back
        "violations": [],
    }
    assert [seen.forwarded_host for seen in fake_yahoo.requests()] == [
        "query1.finance.yahoo.com",
        "query2.finance.yahoo.com",
    ]
