"""The configuration reference, docs/configuration.md, generated from the schema.

Everything in the tables comes from :func:`proxy.config.describe_schema` and from what
:mod:`proxy.runtime` can change while running, so the page cannot drift from the code;
tests/test_docs_configuration.py fails when the committed page differs from this output.

Regenerate: ``python -m proxy.config_doc --write`` (or ``> docs/configuration.md``);
``--check`` exits 1 when the committed page is out of date.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxy.config import ENV_PREFIX, INTERVALS, Config, describe_schema
from proxy.runtime import RESTART_KEYS, RUNTIME_SECTIONS

# Where the page lives in a checkout; the module sits in proxy/, one level below the root.
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
REGENERATE = "python -m proxy.config_doc --write"

COLUMNS = ("key", "type", "default", "allowed", "runtime", "env var", "description")

_INTRO = f"""\
yfproxy reads its configuration at start from three layers, each overriding the one
before it key by key:

1. the built-in defaults (the **default** column below);
2. a TOML file, `yfproxy serve --config proxy.toml` (`make run` passes the repository's
   `proxy.toml`, which lists every key with its default and a comment); without
   `--config` only the defaults and the environment apply;
3. environment variables `{ENV_PREFIX}SECTION__KEY`, e.g.
   `{ENV_PREFIX}UPSTREAM__BASE_URL=http://127.0.0.1:9000`. A value is read as a TOML
   literal when it is one (`true`, `3`, `["ES=F"]`, `"x"`), else as text; lists also
   take `a,b,c`; one entry of a table goes a level deeper
   (`{ENV_PREFIX}CACHE__FRESH_S__1M=30`).

An unknown section or key, or a value outside what is allowed, stops the start with the
key's name and what it allows. `yfproxy check-config [PATH]` checks a file (default
`proxy.toml`) together with the environment, the same way, without starting anything:
it prints `OK` or the problems and exits 2.

Intervals, wherever they are keys or values (`60m` is the same series as `1h`; write `1h`):
{" ".join(f"`{name}`" for name in INTERVALS)}.

## Changing it while running

- `POST /admin/config` (with `Authorization: Bearer` and the `[admin] token`) takes a
  partial document, TOML or JSON (`Content-Type: application/json`), lays it over the
  configuration in force, validates the result whole and applies it whole, or refuses it
  whole (400 naming every problem; nothing changes). `GET /admin/config` shows the
  configuration in force, secrets starred, and its generation (also in `/status`).
- `SIGHUP` re-reads the `--config` file with the environment and applies it the same
  way; a refused reload keeps the configuration in force and logs `config.reload_refused`.
- Only keys marked **yes** in the **runtime** column change this way. A change to any
  other key is refused with "read only at start; restart yfproxy to change it".
- With `[server] workers` above 1 each worker process holds its own configuration: a
  POST changes only the process that answered it, and SIGHUP goes to each worker.

The HTTP side is in [api.md](api.md) and [openapi.yaml](openapi.yaml).
"""


def is_runtime_updatable(key: str) -> bool:
    """Whether POST /admin/config or SIGHUP can change ``key`` (``section.name``): the
    rule :func:`proxy.runtime.apply` enforces."""
    section = key.split(".", 1)[0]
    return section in RUNTIME_SECTIONS and key not in RESTART_KEYS


def render_configuration_md() -> str:
    """The whole page, ending in one newline."""
    rows = describe_schema()
    sections = list(dict.fromkeys(row["section"] for row in rows))
    parts = [
        f"<!-- Generated from proxy/config.py and proxy/runtime.py by `{REGENERATE}`; "
        "edit those, not this file. -->",
        "# Configuration reference",
        _INTRO.rstrip("\n"),
        "## Sections",
        " · ".join(f"[`[{name}]`](#{name})" for name in sections),
    ]
    for section in sections:
        parts.append(_section(section, [row for row in rows if row["section"] == section]))
    return "\n\n".join(parts) + "\n"


def _section(section: str, rows: list[dict[str, Any]]) -> str:
    model = Config.model_fields[section].annotation
    summary = (getattr(model, "__doc__", None) or "").strip()
    lines = [f"## [{section}]", "", f"{summary} {_runtime_summary(rows)}".strip(), ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def _runtime_summary(rows: list[dict[str, Any]]) -> str:
    fixed = [row["name"] for row in rows if not is_runtime_updatable(row["key"])]
    if not fixed:
        return "Every key can change at run time."
    if len(fixed) == len(rows):
        return "Read only at start: changing a key needs a restart."
    return f"Read only at start: {', '.join(f'`{name}`' for name in fixed)}; the rest can change at run time."


def _cells(row: dict[str, Any]) -> list[str]:
    table = str(row["type"]).startswith("table of")
    env = f"`{row['env']}`"
    if table:
        env += f", one entry: `{row['env']}__<KEY>`"
    return [
        f"`{row['name']}`",
        _escape(str(row["type"])),
        _code(_toml(row["default"])) if row["default"] is not None else "unset",
        _allowed(row),
        "yes" if is_runtime_updatable(row["key"]) else "no",
        env,
        _escape(row["description"] or ""),
    ]


def _allowed(row: dict[str, Any]) -> str:
    bounds = row["bounds"]
    if bounds is None:
        return "true, false" if row["type"] == "boolean" else "—"
    # The type column already says integer or number: keep only the limits.
    for noun in ("an integer ", "a number "):
        bounds = bounds.removeprefix(noun)
    return _escape(bounds)


def _toml(value: Any) -> str:
    """A default spelt as it would be written in proxy.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is JSON's string syntax
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(key)} = {_toml(item)}" for key, item in value.items()) + " }"
    return repr(value)


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key)


def _code(text: str) -> str:
    # A table cell ends at an unescaped pipe, even inside a code span (GitHub's tables).
    return "`" + text.replace("|", "\\|") + "`"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.config_doc",
        description="Print the configuration reference (docs/configuration.md) generated from the schema.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--write",
        nargs="?",
        const=DEFAULT_PATH,
        type=Path,
        metavar="PATH",
        help=f"write it to PATH (default: {DEFAULT_PATH.parent.name}/{DEFAULT_PATH.name} of this checkout)",
    )
    mode.add_argument(
        "--check",
        nargs="?",
        const=DEFAULT_PATH,
        type=Path,
        metavar="PATH",
        help="exit 1 when PATH (default: the checkout's page) differs from the generated text",
    )
    args = parser.parse_args(argv)
    text = render_configuration_md()
    if args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.exists() else None
        if current != text:
            print(f"{args.check} is out of date; regenerate with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    if args.write is not None:
        args.write.write_text(text, encoding="utf-8")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
