"""``yfproxy status`` in a terminal: the /status page's figures as a rich summary and table.

It shares the page's model (proxy.status_page): the same cards, the same series join and
the same freshness rule, so the terminal and the browser never disagree about what is
overdue. Without a terminal (a pipe, a file, cron mail) the output is plain text: no ANSI
codes and ASCII borders; every colour is also spelled out (fresh/due/overdue, OK/WARN/BAD),
so nothing is lost without it.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from proxy.status_page import COLUMNS, Card, SeriesView, series_views, summary_cards, text

_LEVEL_STYLE = {"ok": "green", "warn": "yellow", "bad": "bold red", "none": "dim"}
_LEVEL_WORD = {"ok": "OK", "warn": "WARN", "bad": "BAD", "none": "-"}
_FRESH_STYLE = {"fresh": "green", "due": "yellow", "overdue": "bold red", "none": "dim"}
_PLAIN_WIDTH = 160


def render_status_table(
    doc: Mapping[str, Any],
    *,
    source: str | None = None,
    color: bool | None = None,
    width: int | None = None,
) -> str:
    """The summary panel and the series table as text. ``color=None`` follows stdout:
    colours on a terminal (rich's own detection, so FORCE_COLOR and NO_COLOR work), plain
    text otherwise."""
    if color is None:
        color = Console(file=sys.stdout).is_terminal
    if width is None:
        width = shutil.get_terminal_size((_PLAIN_WIDTH, 24)).columns
    out = io.StringIO()
    console = Console(
        file=out,
        force_terminal=color,
        color_system="auto" if color else None,
        width=width,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )
    views = series_views(doc)
    title = f"yfproxy {_clean(text(doc.get('version')))}" + (f" at {_clean(source)}" if source else "")
    frame = box.ROUNDED if color else box.ASCII
    console.print(Panel(_summary(summary_cards(doc, views)), title=title, box=frame, expand=False))
    console.print(_series_table(views, box.SIMPLE_HEAD if color else box.ASCII))
    return out.getvalue()


def _summary(cards: list[Card]) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column()
    for card in cards:
        style = _LEVEL_STYLE[card.level]
        grid.add_row(
            Text(_LEVEL_WORD[card.level], style=style),
            Text(card.title, style="bold"),
            Text(_clean(card.value), style=style),
            Text("; ".join(_clean(line) for line in card.lines)),
        )
    return grid


def _series_table(views: list[SeriesView], frame: box.Box) -> Table:
    overdue = sum(v.freshness.level == "overdue" for v in views)
    due = sum(v.freshness.level == "due" for v in views)
    below = sum(v.below_threshold for v in views)
    table = Table(
        title=f"Series: {len(views)} shown, {overdue} overdue, {due} due, {below} below min quality",
        box=frame,
    )
    for name in COLUMNS:
        numeric = name in ("Req/min", "Score", "Complete")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=name == "Series")
    for v in views:
        table.add_row(
            Text(_clean(v.tag) + (" (cfg)" if v.configured else "")),
            Text(_clean(v.tier)),
            Text(_clean(v.freshness.label), style=_FRESH_STYLE[v.freshness.level]),
            Text(_clean(v.outcome), style=_LEVEL_STYLE[v.outcome_level] if v.outcome_level != "ok" else ""),
            Text(v.rate),
            Text(
                v.score + (" <min" if v.below_threshold else ""),
                style="bold red" if v.below_threshold else "",
            ),
            Text(v.completeness),
            Text(_clean(v.issues)),
        )
    if not views:
        table.add_row("no series tracked or scored yet", *[""] * (len(COLUMNS) - 1))
    return table


def _clean(value: str) -> str:
    """Control characters shown as escapes: a series name comes from a client, and an ESC
    in it must not drive the operator's terminal (rich strips only a few control codes)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
