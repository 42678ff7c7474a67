"""docs/reliability.md cannot drift from the fault suite: its table lists exactly the
scenarios that tests/faults records (the ``scenario="..."`` ids written in its test files),
and the generator that writes the table (tests.faults.table) does what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.faults import table

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "reliability.md"
FAULTS = REPO / "tests" / "faults"
_SCENARIO_LITERAL = re.compile(r"""\bscenario\s*=\s*["']([^"'{}]+)["']""")
_ID_IN_CELL = re.compile(r"\(`([^`]+)`\)")


def recorded_in_source() -> dict[str, str]:
    """Scenario id -> the test file that records it."""
    found: dict[str, str] = {}
    for path in sorted(FAULTS.glob("*.py")):
        for scenario in _SCENARIO_LITERAL.findall(path.read_text(encoding="utf-8")):
            found.setdefault(scenario, path.relative_to(REPO).as_posix())
    return found


def split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip() for c in cells[1:-1]]


def table_rows(doc: str) -> list[list[str]]:
    start, end = doc.index(table.START), doc.index(table.END)
    lines = [line for line in doc[start:end].splitlines() if line.startswith("|")]
    return [split_row(line) for line in lines[2:]]  # past the header and its rule


def in_the_doc() -> list[str]:
    ids = []
    for cells in table_rows(DOC.read_text(encoding="utf-8")):
        found = _ID_IN_CELL.search(cells[0])
        assert found, f"no (`scenario-id`) in the first cell of {cells}"
        ids.append(found.group(1))
    return ids


def test_the_suite_records_scenarios() -> None:
    # The check below means something only if the ids are found at all.
    recorded = recorded_in_source()
    assert "upstream-outage-drop" in recorded
    assert recorded["upstream-outage-drop"] == "tests/faults/test_upstream_faults.py"


def test_every_row_of_the_table_is_a_scenario_of_the_suite() -> None:
    recorded = recorded_in_source()
    unknown = [scenario for scenario in in_the_doc() if scenario not in recorded]
    assert not unknown, (
        f"docs/reliability.md lists scenarios no test in tests/faults records: {unknown}; "
        "run `make faults` to regenerate the table"
    )


def test_every_scenario_of_the_suite_is_in_the_table() -> None:
    listed = set(in_the_doc())
    missing = sorted(
        f"{scenario} ({path})" for scenario, path in recorded_in_source().items() if scenario not in listed
    )
    assert not missing, (
        f"docs/reliability.md lacks the rows of {missing}; run `make faults` to measure them and "
        "regenerate the table"
    )


def test_the_table_is_well_formed() -> None:
    rows = table_rows(DOC.read_text(encoding="utf-8"))
    assert rows, "the table has no rows"
    assert all(len(cells) == len(table.COLUMNS) for cells in rows), [len(c) for c in rows]
    ids = in_the_doc()
    assert len(ids) == len(set(ids)), "a scenario is listed twice"


# -- the generator ----------------------------------------------------------------------


def row(scenario: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scenario": scenario,
        "title": "Yahoo down",
        "fault": "every request | dropped",
        "client_errors": "0 of 1,204",
        "stale_answers": "1,100 of 1,204",
        "upstream_requests": "14 in 60 s",
        "recovery_s": 31.27,
        "data_intact": True,
        "notes": "breaker\nreset 30 s",
        "test": "tests/faults/test_upstream_faults.py::test_upstream_outage",
        "full_run": True,
        "recorded_at": "2026-11-29T10:00:00Z",
    }
    return base | changes


def test_the_generator_renders_rows_in_the_suites_order(tmp_path: Path) -> None:
    for item in (
        row("upstream-truncated"),
        row("upstream-outage-drop", full_run=False, data_intact=False, recovery_s=None),
    ):
        (tmp_path / f"{item['scenario']}.json").write_text(json.dumps(item))
    rows = table.load_rows(tmp_path)
    assert [r["scenario"] for r in rows] == ["upstream-outage-drop", "upstream-truncated"]
    text = table.render(rows)
    body = [split_row(line) for line in text.splitlines() if line.startswith("|")][2:]
    assert body[0][0] == "Yahoo down (`upstream-outage-drop`) †"
    assert body[0][1] == "every request \\| dropped"  # a pipe does not split the cell
    assert body[0][5:7] == ["—", "**no**"]
    assert body[1][5:7] == ["31.3 s", "yes"]
    assert "† Recorded by a short run" in text
    assert "- `upstream-truncated`: breaker reset 30 s" in text


def test_the_generator_rewrites_only_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nintro\n\n{table.START}\nold\n{table.END}\n\nafter\n")
    rows = tmp_path / "rows"
    rows.mkdir()
    (rows / "a.json").write_text(json.dumps(row("upstream-5xx")))
    assert table.main(["--doc", str(doc), "--rows", str(rows), "--check"]) == 1
    assert table.main(["--doc", str(doc), "--rows", str(rows)]) == 0
    text = doc.read_text()
    assert text.startswith("# Title\n\nintro\n\n" + table.START + "\n| Scenario |")
    assert text.endswith(table.END + "\n\nafter\n") and "old" not in text
    assert table.main(["--doc", str(doc), "--rows", str(rows), "--check"]) == 0
    assert table.main(["--rows", str(rows), "--clear"]) == 0
    assert not list(rows.iterdir())
    assert table.main(["--doc", str(doc), "--rows", str(rows), "--check"]) == 1  # the rows are gone


def test_the_generator_refuses_a_doc_without_markers_and_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(table.TableError):
        table.rewrite("no markers here", "x")
    with pytest.raises(table.TableError):
        table.rewrite(f"{table.END}\n{table.START}", "x")
    (tmp_path / "bad.json").write_text('{"scenario": "x"}')
    with pytest.raises(table.TableError, match="missing"):
        table.load_rows(tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text("no markers")
    assert table.main(["--doc", str(doc), "--rows", str(tmp_path)]) == 2
