"""The distribution: a plain (non-editable) pip install ships the .pth; stdlib only; py3.9."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from conftest import CLIENT, child_env, venv_python

import yfproxy_client

PACKAGE = CLIENT / "yfproxy_client"
SOURCES = sorted(PACKAGE.glob("*.py"))
# What pip needs from an index to build the wheel: the pinned build backend.


def build_wheel(tmp_path: Path) -> Path:
    """``pip wheel`` from a copy of client/ (so no build/ lands in the checkout), with build
    isolation, i.e. exactly the path a plain ``pip install ./client`` takes."""
    source = tmp_path / "src"
    shutil.copytree(
        CLIENT, source, ignore=shutil.ignore_patterns("tests", "build", "dist", "*.egg-info", "__pycache__")
    )
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("yfproxy_client-0.1.0-*.whl")
    return wheel


def test_wheel_ships_the_pth_at_its_root_and_pip_installs_it(tmp_path: Path, site_venv: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        pth = archive.read("yfproxy_client.pth").decode()
        metadata = archive.read("yfproxy_client-0.1.0.dist-info/METADATA").decode()
        record = archive.read("yfproxy_client-0.1.0.dist-info/RECORD").decode()
        root_is_purelib = (
            "Root-Is-Purelib: true" in archive.read("yfproxy_client-0.1.0.dist-info/WHEEL").decode()
        )
    shipped = {name for name in names if ".dist-info/" not in name}
    expected = {f"yfproxy_client/{path.name}" for path in PACKAGE.iterdir() if path.is_file()}
    assert shipped == expected | {"yfproxy_client.pth"}
    assert pth == (CLIENT / "yfproxy_client.pth").read_text()
    assert "yfproxy_client.pth," in record
    assert root_is_purelib  # so the root files land in site-packages itself
    assert "Name: yfproxy-client\n" in metadata
    assert "Requires-Python: >=3.9\n" in metadata
    assert "Requires-Dist" not in metadata

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    pip = [sys.executable, "-m", "pip", "--python", str(venv_python(venv))]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=120)
    (site,) = venv.glob("lib/python3*/site-packages")
    assert (site / "yfproxy_client.pth").read_text() == pth
    # The autoload tests' venv has the very same layout.
    (copied,) = site_venv.glob("lib/python3*/site-packages")
    assert {p.name for p in (site / "yfproxy_client").glob("*.py*")} == {
        p.name for p in (copied / "yfproxy_client").glob("*.py*")
    }

    probe = "import sys, yfproxy_client as c; print(c.installed_url(), 'requests' in sys.modules)"
    active = subprocess.run(
        [str(venv_python(venv)), "-c", probe],
        env=child_env(YFPROXY_URL="http://127.0.0.1:8080"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (active.stdout, active.stderr) == ("http://127.0.0.1:8080 False\n", "")

    subprocess.run([*pip, "uninstall", "-q", "-y", "yfproxy-client"], check=True, timeout=120)
    assert not (site / "yfproxy_client.pth").exists()


def test_version_matches_the_project_metadata() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["version"] == yfproxy_client.__version__
    assert project["dependencies"] == []
    assert project["requires-python"] == ">=3.9"


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.name)
def test_sources_are_python39_and_stdlib_only(path: Path) -> None:
    tree = ast.parse(path.read_text(), feature_version=(3, 9))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
    }
    foreign = {
        name for name in imported if name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}
    }
    assert foreign == set()
