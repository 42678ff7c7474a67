"""/status for people: one self-contained HTML page, and the content negotiation that picks it.

The page is rendered twice from the same /status document, on purpose. The server
renders it here, so curl, a text browser or a tab with JavaScript off sees the whole
first state; the inline script re-renders the live part from fresh /status JSON every few
seconds, starting from the document embedded in the page. Both renderers produce the same
markup byte for byte (tests/test_status_page.py runs the script in node and compares),
so they cannot drift apart unnoticed. The figures themselves (cards, the series join, the
freshness rule) are also what the terminal table shows (proxy.status_table).

Freshness of a tracked series compares the time since its last refresh attempt (``age_s``)
with its scheduled period, ``age_s + due_in_s`` (the gap the refresher planned from that
attempt to the next; at least 1 s). How late it is, in periods, is ``-due_in_s / period``,
the unit of the refresher's own lag figure:

- green ``fresh``: not due yet and the last attempt succeeded;
- amber ``due``: due now, or the last attempt failed and a retry is scheduled
  ("retrying"), or never refreshed yet;
- red ``overdue``: more than 3 periods late, or 3 or more failures in a row (a failure
  reschedules with a backoff, so lateness alone would show a failing series green).

Everything from the document is escaped: series names come from clients.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

OVERDUE_PERIODS = 3.0
FAILING_IN_A_ROW = 3
REFRESH_EVERY_S = 5
DASH = "\u2014"

# Sort order of the series table: problems first, then the rest by name.
_RANK = {"overdue": 0, "due": 1, "fresh": 3, "none": 4}
_BELOW_QUALITY_RANK = 2
_DECIMAL = Context(prec=60)


@dataclass(frozen=True, slots=True)
class Freshness:
    level: str  # fresh | due | overdue | none (not tracked, or no schedule)
    label: str
    title: str


@dataclass(frozen=True, slots=True)
class SeriesView:
    """One line of the series table: a refresher row joined with its quality row."""

    tag: str
    tier: str
    configured: bool
    freshness: Freshness
    outcome: str
    outcome_level: str
    rate: str
    score: str
    below_threshold: bool
    completeness: str
    issues: str
    issue_details: str

    @property
    def rank(self) -> int:
        if self.freshness.level in ("fresh", "none") and self.below_threshold:
            return _BELOW_QUALITY_RANK
        return _RANK[self.freshness.level]


@dataclass(frozen=True, slots=True)
class Card:
    """One summary figure: a title, its headline value, detail lines, ok/warn/bad/none."""

    key: str
    title: str
    value: str
    level: str
    lines: tuple[str, ...]


# --- formatting: each helper has a twin in _SCRIPT with the same output ---------------


def is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fixed(value: float, digits: int) -> str:
    """JavaScript's ``toFixed``: exact decimal value, half away from zero (not Python's
    half-even), so both renderers print the same digits."""
    if value == 0:
        value = 0.0  # toFixed drops the sign of -0
    quantum = Decimal(1).scaleb(-digits)
    return str(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP, context=_DECIMAL))


def num(value: object) -> str:
    if not is_num(value):
        return DASH
    x = float(value)  # type: ignore[arg-type]
    size = abs(x)
    return fixed(x, 2 if size < 10 else 1 if size < 1000 else 0)


def count(value: object) -> str:
    if is_num(value):
        return str(int(value)) if float(value).is_integer() else num(value)  # type: ignore[arg-type]
    return text(value)


def text(value: object) -> str:
    """Any JSON value as the script's ``text`` prints it."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_num(value):
        return count(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def dur(seconds: object) -> str:
    if not is_num(seconds):
        return DASH
    s = float(seconds)  # type: ignore[arg-type]
    sign, size = ("-" if s < 0 else ""), abs(s)
    if size < 90:
        return f"{sign}{fixed(size, 0)}s"
    if size < 5400:
        return f"{sign}{fixed(size / 60, 1)}m"
    if size < 172800:
        return f"{sign}{fixed(size / 3600, 1)}h"
    return f"{sign}{fixed(size / 86400, 1)}d"


def percent(ratio: object) -> str:
    return f"{fixed(float(ratio) * 100, 1)}%" if is_num(ratio) else DASH  # type: ignore[arg-type]


def _get(obj: object, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _mapping(obj: object) -> Mapping[str, Any]:
    return obj if isinstance(obj, Mapping) else {}


def _rows(obj: object) -> list[Mapping[str, Any]]:
    return [row for row in obj if isinstance(row, Mapping)] if isinstance(obj, list) else []


def _counts(obj: object, sep: str = " \u00b7 ") -> str:
    """``{"ok": 2, "failed": 1}`` as ``failed 1 · ok 2``; keys sorted, as in the script."""
    items = _mapping(obj)
    return sep.join(f"{key} {count(items[key])}" for key in sorted(items)) or "none"


# --- the model: freshness, the series join, the summary cards ---------------------------


def freshness(row: Mapping[str, Any] | None) -> Freshness:
    if row is None:
        return Freshness("none", "not tracked", "scored, but the refresher does not track it")
    age, due_in = row.get("age_s"), row.get("due_in_s")
    if not is_num(due_in):
        return Freshness("none", DASH, "no schedule")
    due_in_s = float(due_in)
    when = f"next refresh in {dur(due_in_s)}" if due_in_s > 0 else f"due for {dur(-due_in_s)}"
    if not is_num(age):
        return Freshness("due", "never refreshed", when)
    period = max(float(age) + due_in_s, 1.0)
    late = -due_in_s / period
    fails = float(row["fails_in_a_row"]) if is_num(row.get("fails_in_a_row")) else 0.0
    span = f"{dur(age)}/{dur(period)}"
    title = f"{when}; {fixed(max(late, 0.0), 1)} periods late"
    if fails >= FAILING_IN_A_ROW:
        return Freshness("overdue", f"failing {span}", title)
    if late > OVERDUE_PERIODS:
        return Freshness("overdue", f"overdue {span}", title)
    if fails > 0 or row.get("last_outcome") == "failed":
        return Freshness("due", f"retrying {span}", title)
    if due_in_s <= 0:
        return Freshness("due", f"due {span}", title)
    return Freshness("fresh", f"fresh {span}", title)


def series_views(doc: Mapping[str, Any]) -> list[SeriesView]:
    """Every tracked series, plus scored series the refresher does not track (background
    off, or untracked after idling), worst first."""
    tracked = _by_tag(_get(_get(doc, "refresher"), "series"))
    quality = _mapping(_get(doc, "quality"))
    scored = _by_tag(quality.get("series"))
    held = _by_tag(quality.get("quarantined"))
    tags = list(tracked) + [tag for tag in scored if tag not in tracked]
    views = [_view(tag, tracked.get(tag), scored.get(tag), held.get(tag)) for tag in tags]
    return sorted(views, key=lambda v: (v.rank, v.tag))


def _by_tag(rows: object) -> dict[str, Mapping[str, Any]]:
    return {text(row.get("series")): row for row in _rows(rows)}


def _view(
    tag: str,
    row: Mapping[str, Any] | None,
    score: Mapping[str, Any] | None,
    held: Mapping[str, Any] | None,
) -> SeriesView:
    row_ = row or {}
    outcome = row_.get("last_outcome")
    shown = text(outcome)
    if row_.get("last_category") is not None:
        shown += f" ({text(row_.get('last_category'))})"
    if is_num(row_.get("fails_in_a_row")) and row_["fails_in_a_row"] > 0:
        shown += f", {count(row_['fails_in_a_row'])} in a row"
    codes, details = _issues(_rows(_get(score, "issues")), held)
    return SeriesView(
        tag=tag,
        tier=text(row_.get("tier")),
        configured=row_.get("configured") is True,
        freshness=freshness(row),
        outcome=shown,
        outcome_level="ok" if outcome in ("ok", "unchanged") else "none" if outcome is None else "warn",
        rate=num(row_.get("request_rate_per_min")),
        score=num(_get(score, "score")),
        below_threshold=_get(score, "below_threshold") is True,
        completeness=percent(_get(score, "completeness")),
        issues=codes,
        issue_details=details,
    )


def _issues(issues: Iterable[Mapping[str, Any]], held: Mapping[str, Any] | None) -> tuple[str, str]:
    """Open issue codes with their counts, first seen first; details for the tooltip."""
    seen: dict[str, int] = {}
    details: list[str] = []
    if held is not None:
        seen["quarantined"] = 1
        details.append(f"quarantined: {text(_get(_get(held, 'latest'), 'reason'))}")
    for issue in issues:
        code = text(issue.get("code"))
        seen[code] = seen.get(code, 0) + 1
        details.append(f"{code}: {text(issue.get('detail'))}")
    codes = ", ".join(code if n == 1 else f"{code} \u00d7{n}" for code, n in seen.items())
    return codes, "\n".join(details)


def summary_cards(doc: Mapping[str, Any], views: list[SeriesView]) -> list[Card]:
    return [
        _breaker_card(_mapping(doc.get("breaker"))),
        _limiter_card(_mapping(doc.get("rate_limit"))),
        _timeouts_card(_mapping(doc.get("timeouts"))),
        _upstream_card(_mapping(doc.get("upstream"))),
        _cache_card(_mapping(doc.get("cache")), _mapping(doc.get("redis"))),
        _refresher_card(_mapping(doc.get("refresher")), views),
        _quality_card(_mapping(doc.get("quality"))),
    ]


def _breaker_card(b: Mapping[str, Any]) -> Card:
    state = b.get("state")
    level = {"closed": "ok", "half_open": "warn", "open": "bad"}.get(str(state), "none")
    lines = [f"failures {count(b.get('fail_counter'))}/{count(b.get('fail_max'))}"]
    if b.get("reopens_at") is not None:
        lines.append(f"probes again at {text(b.get('reopens_at'))}")
    return Card("breaker", "Circuit breaker", text(state), level, tuple(lines))


def _limiter_card(rl: Mapping[str, Any]) -> Card:
    if not rl:
        return Card("rate_limit", "Rate limiter", "off", "none", ())
    window = _mapping(rl.get("window"))
    limited = window.get("rate_limited")
    lines = [
        f"window: {count(window.get('success'))} ok \u00b7 {count(limited)} \u00d7 429 \u00b7 "
        f"{count(window.get('error'))} errors"
    ]
    blocked = False
    endpoints = _mapping(rl.get("endpoints"))
    for name in sorted(endpoints):
        ep = _mapping(endpoints[name])
        line = (
            f"{name}: {text(ep.get('phase'))}, {num(ep.get('current_rps'))}/s, "
            f"ceiling {num(ep.get('ceiling_rps'))}"
        )
        if is_num(ep.get("blocked_for_s")) and ep["blocked_for_s"] > 0:
            blocked = True
            line += f", blocked {dur(ep['blocked_for_s'])}"
        if ep.get("fallback") is True:
            line += ", local fallback"
        lines.append(line)
    level = "bad" if blocked else "warn" if is_num(limited) and limited > 0 else "ok"
    return Card("rate_limit", "Rate limiter", f"{num(rl.get('current_rps'))} req/s", level, tuple(lines))


def _timeouts_card(t: Mapping[str, Any]) -> Card:
    # DESIGN.md names ``timeouts.level``; the ladder reports one rung per request type.
    rungs = {"": t} if "level" in t else {name: _mapping(t[name]) for name in sorted(t)}
    levels = [r.get("level") for r in rungs.values() if is_num(r.get("level"))]
    top = max(levels) if levels else None
    lines = tuple(
        f"{name or 'all'}: level {count(r.get('level'))} of {count(r.get('levels'))}, "
        f"connect {count(r.get('connect_s'))}s, read {count(r.get('read_s'))}s"
        for name, r in rungs.items()
    )
    level = "none" if top is None else "ok" if top == 0 else "warn"
    return Card("timeouts", "Timeouts", f"level {count(top)}", level, lines)


def _upstream_card(u: Mapping[str, Any]) -> Card:
    network = u.get("network")
    latency = _mapping(u.get("latency_ms"))
    recent = _mapping(u.get("last_60s"))
    lines = (
        f"requests {count(u.get('requests'))}; last 60 s: {count(recent.get('success'))} ok \u00b7 "
        f"{count(recent.get('error'))} errors",
        f"failures: {_counts(u.get('failures'))}",
        f"latency p50 {num(latency.get('p50'))} \u00b7 p90 {num(latency.get('p90'))} \u00b7 "
        f"p99 {num(latency.get('p99'))} ms",
    )
    level = {"ok": "ok", "degraded": "warn", "down": "bad"}.get(str(network), "none")
    return Card("upstream", "Network to Yahoo", text(network), level, lines)


def _cache_card(c: Mapping[str, Any], redis: Mapping[str, Any]) -> Card:
    lines = [f"hot series {count(c.get('hot_series'))} \u00b7 bodies {count(c.get('hot_bodies'))}"]
    if redis.get("used_memory_human") is not None:
        lines.append(f"redis memory {text(redis.get('used_memory_human'))}")
    subscribed = c.get("invalidation_subscribed")
    if subscribed is not None:
        lines.append("invalidation subscribed" if subscribed is True else "invalidation NOT subscribed")
    ratio = c.get("hot_hit_ratio")
    level = "warn" if subscribed is False else "ok" if is_num(ratio) else "none"
    return Card("cache", "Hot cache hit ratio", percent(ratio), level, tuple(lines))


def _refresher_card(r: Mapping[str, Any], views: list[SeriesView]) -> Card:
    queue = _mapping(r.get("queue"))
    # Summed in key order, as the script sums: float sums depend on the order.
    depth = sum(queue[k] for k in sorted(queue) if is_num(queue[k])) if queue else r.get("queue_depth")
    lines = [
        f"{'running' if r.get('running') is True else 'stopped'} \u00b7 "
        f"in flight {count(r.get('in_flight'))}",
        f"queue: {_counts(queue)}",
        f"tracked {count(r.get('tracked'))} \u00b7 due now {count(r.get('due_now'))} \u00b7 "
        f"max lag {dur(r.get('max_lag_s'))}",
        f"outcomes: {_counts(r.get('outcomes'))}",
    ]
    if r.get("last_error") is not None:
        lines.append(f"last error: {text(r.get('last_error'))}")
    overdue = any(v.freshness.level == "overdue" for v in views)
    level = "bad" if overdue else "ok" if r.get("running") is True else "warn"
    return Card("refresher", "Refresher queue", count(depth), level, tuple(lines))


def _quality_card(q: Mapping[str, Any]) -> Card:
    held = len(_rows(q.get("quarantined")))
    below = q.get("below_threshold")
    lines = (
        f"min quality {num(q.get('min_quality'))}",
        f"scored {count(q.get('series_scored'))} \u00b7 below min {count(below)} \u00b7 quarantined {held}",
    )
    level = "warn" if held or (is_num(below) and below > 0) else "ok" if q else "none"
    return Card("quality", "Quality gate", text(q.get("gate")), level, lines)


# --- HTML -----------------------------------------------------------------------------

COLUMNS = (
    "Series",
    "Tier",
    "Freshness (age/period)",
    "Last refresh",
    "Req/min",
    "Score",
    "Complete",
    "Open issues",
)


def esc(value: str) -> str:
    return html.escape(value, quote=True)


def render_live(doc: Mapping[str, Any]) -> str:
    """The part of the page the script replaces on every refresh (``#live``)."""
    views = series_views(doc)
    cards = "".join(_card_html(card) for card in summary_cards(doc, views))
    n = {level: sum(v.freshness.level == level for v in views) for level in ("overdue", "due")}
    below = sum(v.below_threshold for v in views)
    heading = f"Series: {len(views)} shown, {n['overdue']} overdue, {n['due']} due, {below} below min quality"
    head = "".join(f"<th>{esc(name)}</th>" for name in COLUMNS)
    body = "".join(_row_html(v) for v in views) or (
        f'<tr><td colspan="{len(COLUMNS)}" class="empty">no series tracked or scored yet</td></tr>'
    )
    return (
        f'<section class="cards">{cards}</section>'
        f'<section class="series"><h2>{esc(heading)}</h2>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
    )


def _card_html(card: Card) -> str:
    lines = "".join(f"<li>{esc(line)}</li>" for line in card.lines)
    return (
        f'<div class="card l-{card.level}" id="card-{card.key}"><h2>{esc(card.title)}</h2>'
        f'<p class="value">{esc(card.value)}</p><ul>{lines}</ul></div>'
    )


def _row_html(v: SeriesView) -> str:
    f = v.freshness
    cfg = ' <span class="cfg" title="listed in [instruments]">cfg</span>' if v.configured else ""
    q = " l-bad" if v.below_threshold else ""
    return (
        f'<tr class="f-{f.level}" data-series="{esc(v.tag)}">'
        f'<td class="series">{esc(v.tag)}{cfg}</td><td>{esc(v.tier)}</td>'
        f'<td class="fresh" title="{esc(f.title)}">{esc(f.label)}</td>'
        f'<td class="l-{v.outcome_level}">{esc(v.outcome)}</td><td class="num">{esc(v.rate)}</td>'
        f'<td class="num{q}">{esc(v.score)}</td><td class="num">{esc(v.completeness)}</td>'
        f'<td class="issues" title="{esc(v.issue_details)}">{esc(v.issues)}</td></tr>'
    )


def embed_json(doc: Mapping[str, Any]) -> str:
    """The document for a ``<script type="application/json">``: ASCII only, and no ``<``,
    ``>`` or ``&`` left, so no ``</script>`` or ``<!--`` in a series name can end the block."""
    raw = json.dumps(_finite(doc), ensure_ascii=True, separators=(",", ":"), default=str)
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> Any:
    # NaN and Infinity are not JSON: JSON.parse would refuse the whole embedded document.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_CSS = """
:root{color-scheme:light dark;--ok:#1a7f37;--warn:#b7791f;--bad:#cf222e;--none:#8c959f;
--okbg:#dafbe1;--warnbg:#fff1c2;--badbg:#ffd8d3;--line:#d0d7de}
@media (prefers-color-scheme:dark){:root{--okbg:#12361d;--warnbg:#3d2e07;--badbg:#4a1414;--line:#3d444d}}
body{font:14px/1.4 system-ui,sans-serif;margin:1rem 1.5rem}
header{display:flex;gap:1rem;align-items:baseline;flex-wrap:wrap}
h1{font-size:1.3rem;margin:0}h2{font-size:.95rem;margin:.2rem 0}
#updated{color:var(--none)}#updated.bad{color:var(--bad);font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:.6rem;margin:.8rem 0}
.card{border:1px solid var(--line);border-left:6px solid var(--none);border-radius:6px;padding:.4rem .7rem}
.card.l-ok{border-left-color:var(--ok)}.card.l-warn{border-left-color:var(--warn)}
.card.l-bad{border-left-color:var(--bad)}
.card .value{font-size:1.35rem;font-weight:600;margin:.1rem 0}
.card ul{margin:0;padding-left:1rem;font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border-bottom:1px solid var(--line);padding:.25rem .45rem;text-align:left;vertical-align:top}
th{position:sticky;top:0;background:Canvas}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.series{font-family:ui-monospace,monospace;white-space:nowrap}
.cfg{font-size:.7rem;color:var(--none);border:1px solid var(--line);border-radius:3px;padding:0 .2rem}
tr.f-fresh td.fresh{background:var(--okbg);color:var(--ok)}
tr.f-due td.fresh{background:var(--warnbg);color:var(--warn)}
tr.f-overdue td.fresh{background:var(--badbg);color:var(--bad);font-weight:600}
tr.f-none td.fresh{color:var(--none)}
td.l-warn{color:var(--warn)}td.l-bad{color:var(--bad);font-weight:600}
td.issues{font-family:ui-monospace,monospace;font-size:.8rem}
.empty{color:var(--none);text-align:center}
"""

# The live renderer. Every helper mirrors its Python twin above; keep them in step (the
# node test compares their output on the same documents).
_SCRIPT = """
(function () {
  "use strict";
  var ENDPOINT = "/status", EVERY_MS = __EVERY_MS__, MAX_MS = 60000;
  var DASH = "\\u2014", DOT = " \\u00b7 ", TIMES = " \\u00d7";
  var ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"};
  var RANK = {overdue: 0, due: 1, fresh: 3, none: 4};
  var COLUMNS = __COLUMNS__;

  function get(o, k) { return o !== null && typeof o === "object" && !Array.isArray(o) ? o[k] : undefined; }
  function mapping(o) { return o !== null && typeof o === "object" && !Array.isArray(o) ? o : {}; }
  function rows(o) {
    if (!Array.isArray(o)) return [];
    return o.filter(function (r) { return r !== null && typeof r === "object" && !Array.isArray(r); });
  }
  function none(v) { return v === null || v === undefined; }
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function esc(v) { return String(v).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
  function fixed(x, d) { return (x === 0 ? 0 : x).toFixed(d); }
  function num(v) {
    if (!isNum(v)) return DASH;
    var a = Math.abs(v);
    return fixed(v, a < 10 ? 2 : a < 1000 ? 1 : 0);
  }
  function text(v) {
    if (none(v)) return DASH;
    if (typeof v === "number") return isNum(v) ? count(v) : DASH;
    if (typeof v === "string") return v;
    if (typeof v === "boolean") return String(v);
    return JSON.stringify(v);
  }
  function pick(table, key) { return Object.prototype.hasOwnProperty.call(table, key) ? table[key] : "none"; }
  function count(v) { return isNum(v) ? (Number.isInteger(v) ? String(v) : num(v)) : text(v); }
  function dur(v) {
    if (!isNum(v)) return DASH;
    var sign = v < 0 ? "-" : "", a = Math.abs(v);
    if (a < 90) return sign + fixed(a, 0) + "s";
    if (a < 5400) return sign + fixed(a / 60, 1) + "m";
    if (a < 172800) return sign + fixed(a / 3600, 1) + "h";
    return sign + fixed(a / 86400, 1) + "d";
  }
  function percent(v) { return isNum(v) ? fixed(v * 100, 1) + "%" : DASH; }
  function keys(o) { return Object.keys(o).sort(function (a, b) { return a < b ? -1 : a > b ? 1 : 0; }); }
  function counts(o) {
    o = mapping(o);
    return keys(o).map(function (k) { return k + " " + count(o[k]); }).join(DOT) || "none";
  }
  function fr(level, label, title) { return {level: level, label: label, title: title}; }

  function freshness(row) {
    if (none(row)) return fr("none", "not tracked", "scored, but the refresher does not track it");
    var age = row.age_s, dueIn = row.due_in_s;
    if (!isNum(dueIn)) return fr("none", DASH, "no schedule");
    var when = dueIn > 0 ? "next refresh in " + dur(dueIn) : "due for " + dur(-dueIn);
    if (!isNum(age)) return fr("due", "never refreshed", when);
    var period = Math.max(age + dueIn, 1.0), late = -dueIn / period;
    var fails = isNum(row.fails_in_a_row) ? row.fails_in_a_row : 0;
    var span = dur(age) + "/" + dur(period);
    var title = when + "; " + fixed(Math.max(late, 0.0), 1) + " periods late";
    if (fails >= __FAILING__) return fr("overdue", "failing " + span, title);
    if (late > __OVERDUE__) return fr("overdue", "overdue " + span, title);
    if (fails > 0 || row.last_outcome === "failed") return fr("due", "retrying " + span, title);
    if (dueIn <= 0) return fr("due", "due " + span, title);
    return fr("fresh", "fresh " + span, title);
  }

  function byTag(list) {
    var m = new Map();  // a Map, not an object: a series may be called "__proto__"
    rows(list).forEach(function (r) { m.set(text(r.series), r); });
    return m;
  }

  function issues(list, held) {
    var seen = new Map(), details = [];
    if (held !== undefined) {
      seen.set("quarantined", 1);
      details.push("quarantined: " + text(get(get(held, "latest"), "reason")));
    }
    rows(list).forEach(function (i) {
      var code = text(i.code);
      seen.set(code, (seen.get(code) || 0) + 1);
      details.push(code + ": " + text(i.detail));
    });
    var codes = [];
    seen.forEach(function (n, code) { codes.push(n === 1 ? code : code + TIMES + n); });
    return [codes.join(", "), details.join("\\n")];
  }

  function view(tag, row, score, held) {
    var r = row || {}, outcome = r.last_outcome, shown = text(outcome);
    if (!none(r.last_category)) shown += " (" + text(r.last_category) + ")";
    if (isNum(r.fails_in_a_row) && r.fails_in_a_row > 0) {
      shown += ", " + count(r.fails_in_a_row) + " in a row";
    }
    var iss = issues(get(score, "issues"), held), f = freshness(row);
    var below = get(score, "below_threshold") === true;
    return {
      tag: tag, tier: text(r.tier), configured: r.configured === true, freshness: f,
      outcome: shown,
      outcomeLevel: outcome === "ok" || outcome === "unchanged" ? "ok" : none(outcome) ? "none" : "warn",
      rate: num(r.request_rate_per_min), score: num(get(score, "score")), below: below,
      completeness: percent(get(score, "completeness")), issues: iss[0], details: iss[1],
      rank: (f.level === "fresh" || f.level === "none") && below ? 2 : RANK[f.level]
    };
  }

  function seriesViews(doc) {
    var quality = mapping(get(doc, "quality"));
    var tracked = byTag(get(get(doc, "refresher"), "series")), scored = byTag(quality.series);
    var held = byTag(quality.quarantined), tags = Array.from(tracked.keys());
    scored.forEach(function (_r, tag) { if (!tracked.has(tag)) tags.push(tag); });
    return tags.map(function (tag) { return view(tag, tracked.get(tag), scored.get(tag), held.get(tag)); })
      .sort(function (a, b) { return a.rank - b.rank || (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0); });
  }

  function card(key, title, value, level, lines) {
    return {key: key, title: title, value: value, level: level, lines: lines};
  }

  function breakerCard(b) {
    var level = pick({closed: "ok", half_open: "warn", open: "bad"}, String(b.state));
    var lines = ["failures " + count(b.fail_counter) + "/" + count(b.fail_max)];
    if (!none(b.reopens_at)) lines.push("probes again at " + text(b.reopens_at));
    return card("breaker", "Circuit breaker", text(b.state), level, lines);
  }

  function limiterCard(rl) {
    if (keys(rl).length === 0) return card("rate_limit", "Rate limiter", "off", "none", []);
    var w = mapping(rl.window), limited = w.rate_limited, blocked = false;
    var lines = ["window: " + count(w.success) + " ok" + DOT + count(limited) + TIMES + " 429" + DOT +
      count(w.error) + " errors"];
    var eps = mapping(rl.endpoints);
    keys(eps).forEach(function (name) {
      var ep = mapping(eps[name]);
      var line = name + ": " + text(ep.phase) + ", " + num(ep.current_rps) + "/s, " +
        "ceiling " + num(ep.ceiling_rps);
      if (isNum(ep.blocked_for_s) && ep.blocked_for_s > 0) {
        blocked = true;
        line += ", blocked " + dur(ep.blocked_for_s);
      }
      if (ep.fallback === true) line += ", local fallback";
      lines.push(line);
    });
    var level = blocked ? "bad" : isNum(limited) && limited > 0 ? "warn" : "ok";
    return card("rate_limit", "Rate limiter", num(rl.current_rps) + " req/s", level, lines);
  }

  function timeoutsCard(t) {
    var rungs = [];
    if ("level" in t) rungs.push(["", t]);
    else keys(t).forEach(function (name) { rungs.push([name, mapping(t[name])]); });
    var top = null;
    var lines = rungs.map(function (nr) {
      var r = nr[1];
      if (isNum(r.level) && (top === null || r.level > top)) top = r.level;
      return (nr[0] || "all") + ": level " + count(r.level) + " of " + count(r.levels) + ", connect " +
        count(r.connect_s) + "s, read " + count(r.read_s) + "s";
    });
    var level = top === null ? "none" : top === 0 ? "ok" : "warn";
    return card("timeouts", "Timeouts", "level " + count(top), level, lines);
  }

  function upstreamCard(u) {
    var lat = mapping(u.latency_ms), recent = mapping(u.last_60s);
    var lines = [
      "requests " + count(u.requests) + "; last 60 s: " + count(recent.success) + " ok" + DOT +
        count(recent.error) + " errors",
      "failures: " + counts(u.failures),
      "latency p50 " + num(lat.p50) + DOT + "p90 " + num(lat.p90) + DOT + "p99 " + num(lat.p99) + " ms"
    ];
    var level = pick({ok: "ok", degraded: "warn", down: "bad"}, String(u.network));
    return card("upstream", "Network to Yahoo", text(u.network), level, lines);
  }

  function cacheCard(c, redis) {
    var lines = ["hot series " + count(c.hot_series) + DOT + "bodies " + count(c.hot_bodies)];
    if (!none(redis.used_memory_human)) lines.push("redis memory " + text(redis.used_memory_human));
    var sub = c.invalidation_subscribed;
    if (!none(sub)) lines.push(sub === true ? "invalidation subscribed" : "invalidation NOT subscribed");
    var level = sub === false ? "warn" : isNum(c.hot_hit_ratio) ? "ok" : "none";
    return card("cache", "Hot cache hit ratio", percent(c.hot_hit_ratio), level, lines);
  }

  function refresherCard(r, views) {
    var q = mapping(r.queue), depth = r.queue_depth;
    if (keys(q).length > 0) {
      depth = 0;
      keys(q).forEach(function (k) { if (isNum(q[k])) depth += q[k]; });
    }
    var lines = [
      (r.running === true ? "running" : "stopped") + DOT + "in flight " + count(r.in_flight),
      "queue: " + counts(q),
      "tracked " + count(r.tracked) + DOT + "due now " + count(r.due_now) + DOT +
        "max lag " + dur(r.max_lag_s),
      "outcomes: " + counts(r.outcomes)
    ];
    if (!none(r.last_error)) lines.push("last error: " + text(r.last_error));
    var overdue = views.some(function (v) { return v.freshness.level === "overdue"; });
    var level = overdue ? "bad" : r.running === true ? "ok" : "warn";
    return card("refresher", "Refresher queue", count(depth), level, lines);
  }

  function qualityCard(q) {
    var held = rows(q.quarantined).length, below = q.below_threshold;
    var lines = [
      "min quality " + num(q.min_quality),
      "scored " + count(q.series_scored) + DOT + "below min " + count(below) + DOT + "quarantined " + held
    ];
    var level = held || (isNum(below) && below > 0) ? "warn" : keys(q).length > 0 ? "ok" : "none";
    return card("quality", "Quality gate", text(q.gate), level, lines);
  }

  function cardHtml(c) {
    return '<div class="card l-' + c.level + '" id="card-' + c.key + '"><h2>' + esc(c.title) + "</h2>" +
      '<p class="value">' + esc(c.value) + "</p><ul>" +
      c.lines.map(function (l) { return "<li>" + esc(l) + "</li>"; }).join("") + "</ul></div>";
  }

  function rowHtml(v) {
    var f = v.freshness;
    var cfg = v.configured ? ' <span class="cfg" title="listed in [instruments]">cfg</span>' : "";
    return '<tr class="f-' + f.level + '" data-series="' + esc(v.tag) + '">' +
      '<td class="series">' + esc(v.tag) + cfg + "</td><td>" + esc(v.tier) + "</td>" +
      '<td class="fresh" title="' + esc(f.title) + '">' + esc(f.label) + "</td>" +
      '<td class="l-' + v.outcomeLevel + '">' + esc(v.outcome) + "</td>" +
      '<td class="num">' + esc(v.rate) + "</td>" +
      '<td class="num' + (v.below ? " l-bad" : "") + '">' + esc(v.score) + '</td><td class="num">' +
      esc(v.completeness) + "</td>" +
      '<td class="issues" title="' + esc(v.details) + '">' + esc(v.issues) + "</td></tr>";
  }

  function render(doc) {
    doc = mapping(doc);
    var views = seriesViews(doc);
    var cards = [
      breakerCard(mapping(doc.breaker)), limiterCard(mapping(doc.rate_limit)),
      timeoutsCard(mapping(doc.timeouts)), upstreamCard(mapping(doc.upstream)),
      cacheCard(mapping(doc.cache), mapping(doc.redis)),
      refresherCard(mapping(doc.refresher), views), qualityCard(mapping(doc.quality))
    ];
    var n = {overdue: 0, due: 0}, below = 0;
    views.forEach(function (v) {
      if (v.freshness.level in n) n[v.freshness.level] += 1;
      if (v.below) below += 1;
    });
    var heading = "Series: " + views.length + " shown, " + n.overdue + " overdue, " + n.due + " due, " +
      below + " below min quality";
    var head = COLUMNS.map(function (c) { return "<th>" + esc(c) + "</th>"; }).join("");
    var body = views.map(rowHtml).join("") ||
      '<tr><td colspan="' + COLUMNS.length + '" class="empty">no series tracked or scored yet</td></tr>';
    return '<section class="cards">' + cards.map(cardHtml).join("") + "</section>" +
      '<section class="series"><h2>' + esc(heading) + "</h2><table><thead><tr>" + head +
      "</tr></thead><tbody>" + body + "</tbody></table></section>";
  }

  function start(document) {
    var live = document.getElementById("live"), note = document.getElementById("updated");
    var version = document.getElementById("version"), delay = EVERY_MS, timer = null;
    function show(doc) {
      live.innerHTML = render(doc);
      version.textContent = text(get(doc, "version"));
    }
    function schedule(ms) { clearTimeout(timer); timer = setTimeout(tick, ms); }
    function tick() {
      if (document.hidden) return;  // resumed by visibilitychange: no polling from a background tab
      fetch(ENDPOINT, {headers: {Accept: "application/json"}, cache: "no-store", credentials: "same-origin"})
        .then(function (resp) {
          if (!resp.ok) throw new Error("HTTP " + resp.status);
          return resp.json();
        })
        .then(function (doc) {
          show(doc);
          note.className = "";
          note.textContent = "live, updated " + new Date().toLocaleTimeString();
          delay = EVERY_MS;
        })
        .catch(function (err) {
          // Keep the last good state on screen and say that it is old; back off.
          note.className = "bad";
          note.textContent = "update failed (" + err.message + ") at " + new Date().toLocaleTimeString() +
            "; showing older data, retrying";
          delay = Math.min(delay * 2, MAX_MS);
        })
        .then(function () { schedule(delay); });
    }
    show(JSON.parse(document.getElementById("status-data").textContent));
    note.textContent = "live, refreshing every " + EVERY_MS / 1000 + " s";
    document.addEventListener("visibilitychange", function () { if (!document.hidden) schedule(0); });
    schedule(EVERY_MS);
  }

  globalThis.yfproxyStatus = {
    render: render, freshness: freshness, start: start,
    format: {fixed: fixed, num: num, count: count, text: text, dur: dur, percent: percent}
  };
  if (typeof document !== "undefined") start(document);
})();
"""
_SCRIPT = (
    _SCRIPT.replace("__EVERY_MS__", str(REFRESH_EVERY_S * 1000))
    .replace("__COLUMNS__", json.dumps(COLUMNS))
    .replace("__FAILING__", str(FAILING_IN_A_ROW))
    .replace("__OVERDUE__", repr(OVERDUE_PERIODS))
)


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# Only this exact script and style may run: should escaping ever fail, an injected script
# still would not execute. connect-src 'self' is the /status poll; data: is the empty icon
# that keeps browsers from asking the proxy for /favicon.ico.
CSP = (
    f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_CSS)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


def render_status_html(doc: Mapping[str, Any]) -> bytes:
    """The /status page for a browser: self-contained, no external assets."""
    version = esc(text(doc.get("version")))
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        '<link rel="icon" href="data:,">'
        f"<title>yfproxy status</title><style>{_CSS}</style></head><body>"
        f'<header><h1>yfproxy <span id="version">{version}</span></h1>'
        '<span id="updated">snapshot at page load</span>'
        "<noscript>(JavaScript is off: reload the page to update)</noscript></header>"
        f'<main id="live">{render_live(doc)}</main>'
        f'<script type="application/json" id="status-data">{embed_json(doc)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
    return page.encode("utf-8")


# --- content negotiation --------------------------------------------------------------


def wants_html(accept_header: str | None) -> bool:
    """True when the client prefers text/html to application/json by q-value (RFC 9110
    12.5.1: the most specific matching range gives each type its q). A tie, ``*/*`` alone
    and no header at all mean JSON: scripts and monitors keep the machine answer."""
    if not accept_header:
        return False
    ranges = [r for r in (_media_range(part) for part in accept_header.split(",")) if r is not None]
    q_html = _quality(ranges, "text", "html")
    return q_html > 0 and q_html > _quality(ranges, "application", "json")


def _media_range(part: str) -> tuple[str, str, float] | None:
    media, *params = (p.strip() for p in part.split(";"))
    kind, _, sub = media.lower().partition("/")
    if not kind or not sub:
        return None
    q = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return None  # a malformed q says nothing reliable about this range
            if not math.isfinite(q):
                return None
            break  # parameters after q are accept-extensions
    return kind, sub, q


def _quality(ranges: list[tuple[str, str, float]], kind: str, sub: str) -> float:
    best: tuple[int, float] = (-1, 0.0)
    for r_kind, r_sub, q in ranges:
        if (r_kind, r_sub) == (kind, sub):
            specificity = 2
        elif r_kind == kind and r_sub == "*":
            specificity = 1
        elif (r_kind, r_sub) == ("*", "*"):
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, q)
    return best[1]
