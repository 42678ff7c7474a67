"""Zero-code activation: the .pth line and yfproxy_client._autoload, at interpreter start.

Each test starts a fresh python of ``site_venv``, whose site-packages holds the client
as its wheel installs it, so the real ``yfproxy_client.pth`` runs at start-up.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import CLIENT, child_env, venv_python
from yfpc_fake_yahoo import CRUMB, FakeYahoo

from yfproxy_client import _autoload

PROBE = textwrap.dedent(
    """
    import json, sys
    state = {
        "client_imported": "yfproxy_client" in sys.modules,
        "http_imported": sorted(m for m in ("requests", "curl_cffi") if m in sys.modules),
    }
    client = sys.modules.get("yfproxy_client")
    state["installed_url"] = client.installed_url() if client else None
    state["hook_first"] = type(sys.meta_path[0]).__name__ == "_PostImportFinder"
    print(json.dumps(state))
    """
)


def probe(site_venv: Path, script: str = PROBE, **env: str) -> tuple[dict[str, Any], str]:
    out = subprocess.run(
        [str(venv_python(site_venv)), "-c", script],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr


def test_without_the_variable_nothing_is_imported(site_venv: Path) -> None:
    state, stderr = probe(site_venv)
    assert state == {
        "client_imported": False,
        "http_imported": [],
        "installed_url": None,
        "hook_first": False,
    }
    assert stderr == ""


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_variable_is_the_same_as_none(site_venv: Path, value: str) -> None:
    state, stderr = probe(site_venv, YFPROXY_URL=value)
    assert state["client_imported"] is False
    assert stderr == ""


def test_with_the_variable_it_is_active_without_importing_http_libraries(site_venv: Path) -> None:
    state, stderr = probe(site_venv, YFPROXY_URL="http://127.0.0.1:8080/")
    assert state == {
        "client_imported": True,
        "http_imported": [],
        "installed_url": "http://127.0.0.1:8080",
        "hook_first": True,
    }
    assert stderr == ""


@pytest.mark.parametrize("value", ["ftp://127.0.0.1", "127.0.0.1:8080", "http://127.0.0.1:99999"])
def test_a_bad_value_warns_once_and_does_nothing(site_venv: Path, value: str) -> None:
    state, stderr = probe(site_venv, YFPROXY_URL=value)
    assert state["installed_url"] is None
    assert state["hook_first"] is False
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("yfproxy-client: YFPROXY_URL ignored: ")


def test_the_autoloaded_hook_patches_requests_on_import(site_venv: Path, fake_yahoo: FakeYahoo) -> None:
    script = textwrap.dedent(
        """
        import yfpc_netguard
        yfpc_netguard.install(curl=False)
        import requests
        print(requests.get("https://query1.finance.yahoo.com/v1/test/getcrumb", timeout=10).text)
        """
    )
    out = subprocess.run(
        [str(venv_python(site_venv)), "-c", script],
        env=child_env(YFPROXY_URL=fake_yahoo.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout.strip()) == (0, CRUMB), out.stderr
    assert [seen.forwarded_host for seen in fake_yahoo.requests()] == ["query1.finance.yahoo.com"]


def test_activate_never_raises(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(base_url: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("yfproxy_client._patch.install", explode)
    assert _autoload.activate({"YFPROXY_URL": "http://127.0.0.1:9"}) is False
    assert capsys.readouterr().err == "yfproxy-client: YFPROXY_URL ignored: boom\n"
    assert _autoload.activate({}) is False


def test_the_pth_line_names_the_same_variable_and_module() -> None:
    lines = [
        line for line in (CLIENT / "yfproxy_client.pth").read_text().splitlines() if not line.startswith("#")
    ]
    assert len(lines) == 1
    assert lines[0].startswith("import ")  # site.py executes only lines that start with "import"
    assert f'"{_autoload.ENV_VAR}"' in lines[0]
    assert '__import__("yfproxy_client._autoload")' in lines[0]
