"""The fault table of docs/reliability.md, from the rows the fault suite recorded.

``python -m tests.faults.table`` reads every ``*.json`` row in
``tests.faults.harness.reliability_dir()`` (``reports/reliability/``, written by
``record_row``) and rewrites what lies between the two marker comments of the doc;
the rest of the doc is left as it is. ``--check`` changes nothing and exits 1 when the doc
is not what the rows say; ``--clear`` deletes the recorded rows (``make faults`` starts
with it, so that the table holds one run's rows only). Rows are ordered as their
scenarios appear in the test files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.faults.harness import ROOT, reliability_dir

DOC = ROOT / "docs" / "reliability.md"
FAULTS_DIR = ROOT / "tests" / "faults"
START = "<!-- reliability-table:start -->"
END = "<!-- reliability-table:end -->"
COLUMNS = (
    "Scenario",
    "Fault",
    "Client-visible errors",
    "Stale answers",
    "Upstream requests",
    "Recovery time",
    "Data intact",
    "Test",
)
_FIELDS = ("scenario", "title", "fault", "client_errors", "stale_answers", "upstream_requests", "data_intact")


class TableError(Exception):
    """A row file or the doc cannot be used; the message says which and why."""


def load_rows(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(directory.glob("*.json")):
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TableError(f"{path}: not JSON ({exc})") from exc
        missing = [name for name in _FIELDS if name not in row] if isinstance(row, dict) else list(_FIELDS)
        if missing:
            raise TableError(f"{path}: not a reliability row (missing {', '.join(missing)})")
        rows.append(row)
    return sorted(rows, key=_order)


def _order(row: dict[str, Any]) -> tuple[str, int, str]:
    """The test file, then where the scenario's id is written in it (the suite's order)."""
    test = str(row.get("test") or "")
    path = test.split("::", 1)[0]
    offset = sys.maxsize
    source = ROOT / path
    if path and source.is_file():
        found = re.search(rf"""scenario\s*=\s*["']{re.escape(row["scenario"])}["']""", source.read_text())
        offset = found.start() if found else offset
    return path or "~", offset, str(row["scenario"])


def _cell(value: object) -> str:
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _recovery(value: object) -> str:
    if value is None:
        return "—"
    seconds = float(value)  # type: ignore[arg-type]
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown that goes between the markers."""
    if not rows:
        return "_No rows recorded yet: run `make faults`._"
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    short = False
    for row in rows:
        mark = ""
        if not row.get("full_run", False):
            mark, short = " †", True
        cells = [
            f"{row['title']} (`{row['scenario']}`){mark}",
            row["fault"],
            row["client_errors"],
            row["stale_answers"],
            row["upstream_requests"],
            _recovery(row.get("recovery_s")),
            "yes" if row["data_intact"] else "**no**",
            f"`{row['test']}`" if row.get("test") else "—",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    if short:
        lines += ["† Recorded by a short run (the normal test suite), not by `make faults`.", ""]
    notes = [row for row in rows if row.get("notes")]
    if notes:
        lines.append("Notes:")
        lines.append("")
        lines += [f"- `{row['scenario']}`: {' '.join(str(row['notes']).split())}" for row in notes]
        lines.append("")
    stamps = sorted(str(row["recorded_at"]) for row in rows if row.get("recorded_at"))
    if stamps:
        lines.append(f"Recorded {stamps[0]} – {stamps[-1]} ({len(rows)} rows).")
    return "\n".join(lines).rstrip("\n")


def rewrite(doc: str, table: str) -> str:
    """``doc`` with the text between the markers replaced by ``table``."""
    start, end = doc.find(START), doc.find(END)
    if start < 0 or end < 0 or end < start or doc.count(START) != 1 or doc.count(END) != 1:
        raise TableError(f"the doc needs exactly one {START} followed by one {END}")
    return doc[: start + len(START)] + "\n" + table + "\n" + doc[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.table", description=__doc__.split("\n")[0])
    parser.add_argument("--doc", type=Path, default=DOC, help="the Markdown file to rewrite")
    parser.add_argument(
        "--rows", type=Path, default=None, help="folder of row files (default: reports/reliability)"
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when the doc is out of date"
    )
    parser.add_argument("--clear", action="store_true", help="delete the recorded rows, change no doc")
    args = parser.parse_args(argv)
    directory = args.rows or reliability_dir()
    if args.clear:
        removed = [path for path in directory.glob("*.json") if path.is_file()]
        for path in removed:
            path.unlink()
        print(f"{directory}: {len(removed)} rows deleted")
        return 0
    try:
        rows = load_rows(directory)
        text = args.doc.read_text(encoding="utf-8")
        updated = rewrite(text, render(rows))
    except (TableError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if updated != text:
            print(
                f"{args.doc} is out of date with {directory}: run python -m tests.faults.table",
                file=sys.stderr,
            )
            return 1
        return 0
    if updated != text:
        args.doc.write_text(updated, encoding="utf-8")
    print(f"{args.doc}: {len(rows)} rows from {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
