"""docs/configuration.md is generated from the schema: the committed page is the fresh
rendering, it lists every key, and its runtime column says what proxy/runtime.py does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.config import Config, describe_schema
from proxy.config_doc import COLUMNS, REGENERATE, main, render_configuration_md
from proxy.runtime import RESTART_KEYS, RUNTIME_SECTIONS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def tables(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """section -> key -> column -> cell, read from the page's ``## [section]`` tables."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    section = None
    for line in text.splitlines():
        heading = re.fullmatch(r"## \[([a-z_]+)\]", line)
        if heading:
            section = heading.group(1)
            out[section] = {}
        elif section and line.startswith("| `"):
            cells = [cell.strip() for cell in _CELL_SPLIT.split(line.strip())[1:-1]]
            assert len(cells) == len(COLUMNS), line
            row = dict(zip(COLUMNS, cells, strict=True))
            out[section][row["key"].strip("`")] = row
    return out


def test_the_committed_page_is_the_generated_one() -> None:
    committed = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    assert committed == render_configuration_md(), (
        f"docs/configuration.md is out of date with proxy/config.py or proxy/runtime.py; "
        f"regenerate it with: {REGENERATE}"
    )


def test_every_schema_key_has_a_row_in_its_section() -> None:
    page = tables(render_configuration_md())
    for row in describe_schema():
        cells = page.get(row["section"], {}).get(row["name"])
        assert cells is not None, f"{row['key']} has no row"
        assert f"`{row['env']}`" in cells["env var"]
        assert cells["type"] == row["type"]
    assert list(page) == list(Config.model_fields), "a section missing, extra or out of order"
    assert sum(len(keys) for keys in page.values()) == len(describe_schema())


def test_the_runtime_column_is_what_proxy_runtime_applies() -> None:
    for section, keys in tables(render_configuration_md()).items():
        for name, cells in keys.items():
            updatable = section in RUNTIME_SECTIONS and f"{section}.{name}" not in RESTART_KEYS
            assert cells["runtime"] == ("yes" if updatable else "no"), f"{section}.{name}"


def test_runtime_py_names_only_real_sections_and_keys() -> None:
    # A typo in RESTART_KEYS would silently make a start-only key look runtime-updatable.
    keys = {row["key"] for row in describe_schema()}
    assert set(RUNTIME_SECTIONS) <= set(Config.model_fields)
    assert set(RESTART_KEYS) <= keys
    assert all(key.split(".", 1)[0] in RUNTIME_SECTIONS for key in RESTART_KEYS)


def test_the_command_prints_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = render_configuration_md()
    assert main([]) == 0
    assert capsys.readouterr().out == text
    target = tmp_path / "configuration.md"
    assert main(["--write", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == text
    assert main(["--check", str(target)]) == 0
    target.write_text(text.replace("| yes |", "| no |", 1), encoding="utf-8")
    assert main(["--check", str(target)]) == 1
    assert REGENERATE in capsys.readouterr().err
