"""Fixtures for yfproxy-client: a recording fake proxy, a network guard, clean state.

The package under test is imported from this checkout (client/ goes first on
sys.path); the helpers next to this file are importable by the subprocesses too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
CLIENT = TESTS.parent
RECORDINGS = TESTS.parents[2] / "shared" / "yahoo-recordings"
MSFT_DAILY = RECORDINGS / "GET_v8_finance_chart_MSFT_89b82124b6.json"


def _use_this_checkout() -> None:
    """Test client/ itself, even when an installed copy is already loaded (a developer's
    shell with YFPROXY_URL set autoloads it at start-up): undo that copy and forget it."""
    for path in (str(TESTS), str(CLIENT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    loaded = sys.modules.get("yfproxy_client")
    if loaded is None or Path(loaded.__file__ or "").resolve().is_relative_to(CLIENT):
        return
    loaded.uninstall()
    for name in [name for name in sys.modules if name.split(".")[0] == "yfproxy_client"]:
        del sys.modules[name]


_use_this_checkout()

import yfpc_netguard  # noqa: E402
from yfpc_fake_yahoo import FakeYahoo  # noqa: E402

import yfproxy_client  # noqa: E402


def load_exchange(path: Path) -> dict[str, Any]:
    exchange: dict[str, Any] = json.loads(path.read_text())[0]
    return exchange


@pytest.fixture(scope="session")
def msft_exchange() -> dict[str, Any]:
    return load_exchange(MSFT_DAILY)


@pytest.fixture(scope="session")
def _server(msft_exchange: dict[str, Any]) -> Iterator[FakeYahoo]:
    server = FakeYahoo({"MSFT": json.dumps(msft_exchange["response"]["json"]).encode()})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fake_yahoo(_server: FakeYahoo) -> FakeYahoo:
    """The recording fake proxy, with an empty log for this test."""
    _server.reset()
    return _server


@pytest.fixture(autouse=True)
def network_guard() -> Iterator[list[str]]:
    """Blocks and records any attempt to leave 127.0.0.1; a test that expects one clears the list."""
    yfpc_netguard.violations.clear()
    undo = yfpc_netguard.install()
    try:
        yield yfpc_netguard.violations
    finally:
        undo()
    assert yfpc_netguard.violations == [], "test traffic left 127.0.0.1"


@pytest.fixture(autouse=True)
def clean_install(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test starts or ends redirected, whatever the developer's environment says."""
    monkeypatch.delenv("YFPROXY_URL", raising=False)
    yfproxy_client.uninstall()
    yield
    yfproxy_client.uninstall()


@pytest.fixture(scope="session")
def site_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the client exactly as its wheel lays it out in site-packages
    (package + ``yfproxy_client.pth`` at the root; test_yfpc_dist proves the wheel does
    that), and seeing this environment's packages (yfinance...) through a path ``.pth``.

    Its python runs the ``.pth`` at start-up, as after ``pip install yfproxy-client``.
    """
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=60)
    purelib = Path(
        subprocess.run(
            [str(venv_python(root)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    )
    shutil.copytree(CLIENT / "yfproxy_client", purelib / "yfproxy_client")
    shutil.copy(CLIENT / "yfproxy_client.pth", purelib / "yfproxy_client.pth")
    # A plain path line: appends this environment's site-packages without running its .pth files.
    (purelib / "_yfpc_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: ours without any YFPROXY_/YF_ variables, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YFPROXY", "YF_", "PYTHON"))}
    env["PYTHONPATH"] = str(TESTS)
    env.update(extra)
    return env
