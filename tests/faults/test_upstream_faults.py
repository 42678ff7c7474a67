"""Yahoo failing under client traffic: unreachable, slow, hanging, rate limiting, answering
5xx, HTML or truncated bodies.

Each test starts a stack of its own (the simulator as Yahoo, a private redis-server, a
proxy process with the background refresher on), stores a few series, then turns a fault
on in the simulator while client threads ask for those series and for one never asked
for before. What is checked is what a user sees and what Yahoo sees:

- every answer for a stored series is a 200 (stale while the fault lasts), none is lost;
- the never-stored series gets Yahoo's error shape, 503 + Retry-After, within the
  bounded miss wait: never a 500, never a hang;
- upstream requests during the fault stay under what the breaker (or, for 429s, the
  rate limiter's pause) allows, however many clients ask;
- stored bars are the same afterwards (fixed past windows compared bar for bar);
- once the fault is lifted, every stored series is answered fresh again within a bound,
  with no manual step.

Every phase records its row for docs/reliability.md (tests.faults.harness.record_row)
before its checks fail or pass, so the table shows what was measured either way.
``make faults`` (YFPROXY_FAULTS_FULL=1) runs the faults at full length with the default
settings of the breaker, the timeouts and the 429 pause; the normal test run shortens them.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.faults.conftest import Stack, StartStack
from tests.faults.harness import Answer, Row, Traffic, fetch, full_run, record_row, tally

TEST_FILE = "tests/faults/test_upstream_faults.py"
FULL = full_run()

# The policies the bounds below are computed from. The full run keeps the defaults of
# proxy.toml for the breaker, the timeouts and the pause after a 429; the normal run
# shortens them (and the faults) so that the whole file stays within about two minutes.
FAIL_MAX = 5  # [breaker] fail_max
BREAKER_RESET_S = 30.0 if FULL else 3.0  # [breaker] reset_timeout_s
TIMEOUT_S = 3.0 if FULL else 1.0  # [timeouts] connect_s and read_s: the ladder's first rung
LADDER_STEPS = 3  # [timeouts] ladder_steps
TOP_RUNG_S = TIMEOUT_S * 2 ** (LADDER_STEPS - 1)
MAX_CONCURRENCY = 3  # [upstream] max_concurrency
RETRY_BUDGET_MIN = 3  # [retry] budget_min_retries
LIMITER_LOCKOUT_S = 5.0 if FULL else 3.0  # [rate_limit] lockout_s: pause after a 429 (no Retry-After)
MISS_WAIT_S = 5.0  # [cache] miss_wait_s
FRESH_S = 2  # [cache] fresh_s of the stored intervals: stale soon, refreshed on every ask

OUTAGE_S = 60.0 if FULL else 8.0
# Not a multiple of the breaker's reset timeout: the fault ends mid-cycle, as it would.
FAULT_S = 45.0 if FULL else 5.0
RECOVERY_BOUND_S = BREAKER_RESET_S + TOP_RUNG_S + LIMITER_LOCKOUT_S + 10.0
COLD_BOUND_S = MISS_WAIT_S + 3.0  # the slowest acceptable answer for a never-stored series
CLIENTS = 4
PER_TEST_TIMEOUT_S = 900 if FULL else 150
pytestmark = pytest.mark.timeout(PER_TEST_TIMEOUT_S)

STORED = (("ES=F", "5m", "5d"), ("ES=F", "1d", "3mo"), ("NQ=F", "5m", "5d"), ("NQ=F", "1d", "3mo"))
DAY = 86400
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def proxy_env() -> dict[str, str]:
    return {
        "YFPROXY__BACKGROUND__ENABLED": "true",
        # As short as allowed: the schedule's per-interval floors still apply, and every
        # stale hit also moves its series to the front of the refresher's queue.
        "YFPROXY__BACKGROUND__PRIORITY_EVERY_S": "1",
        "YFPROXY__BACKGROUND__FULL_EVERY_S": "1",
        "YFPROXY__INSTRUMENTS__ACTIVE": '["ES=F", "NQ=F"]',
        "YFPROXY__INSTRUMENTS__INTERVALS": '["5m", "1d"]',
        "YFPROXY__CACHE__FRESH_S__5M": str(FRESH_S),
        "YFPROXY__CACHE__FRESH_S__1D": str(FRESH_S),
        "YFPROXY__CACHE__MISS_WAIT_S": str(MISS_WAIT_S),
        "YFPROXY__BREAKER__FAIL_MAX": str(FAIL_MAX),
        "YFPROXY__BREAKER__RESET_TIMEOUT_S": str(BREAKER_RESET_S),
        "YFPROXY__TIMEOUTS__CONNECT_S": str(TIMEOUT_S),
        "YFPROXY__TIMEOUTS__READ_S": str(TIMEOUT_S),
        "YFPROXY__TIMEOUTS__LADDER_STEPS": str(LADDER_STEPS),
        "YFPROXY__UPSTREAM__MAX_CONCURRENCY": str(MAX_CONCURRENCY),
        "YFPROXY__RETRY__BUDGET_MIN_RETRIES": str(RETRY_BUDGET_MIN),
        "YFPROXY__RATE_LIMIT__LOCKOUT_S": str(LIMITER_LOCKOUT_S),
    }


def settings_note() -> str:
    return (
        f"breaker reset {BREAKER_RESET_S:g} s, timeouts {TIMEOUT_S:g}–{TOP_RUNG_S:g} s, "
        f"429 pause {LIMITER_LOCKOUT_S:g} s, miss wait {MISS_WAIT_S:g} s, fresh_s {FRESH_S} s"
    )


def breaker_bound(duration_s: float) -> int:
    """Upstream requests a failing Yahoo may see in ``duration_s``: the failures that open
    the breaker, the retries the budget allows, the requests in flight when it opens, and
    at most one pool of probes each time it half-opens."""
    reopens = math.ceil(duration_s / BREAKER_RESET_S)
    return FAIL_MAX + RETRY_BUDGET_MIN + MAX_CONCURRENCY * (2 + reopens)


def limiter_bound(duration_s: float) -> int:
    """Upstream requests a Yahoo answering 429 may see: the limiter pauses every upstream
    request for ``lockout_s`` after a 429, so at most one pool of requests per pause."""
    pauses = math.ceil(duration_s / LIMITER_LOCKOUT_S)
    return RETRY_BUDGET_MIN + MAX_CONCURRENCY * (2 + pauses)


@dataclass(frozen=True)
class Phase:
    scenario: str  # the row's stable id
    title: str
    fault: str  # the table's description of the fault
    knobs: dict[str, Any]  # simulator fault knobs that start it
    lift: dict[str, Any]  # ... and that end it
    duration_s: float
    cold_symbol: str  # a series nobody asked for before this phase
    upstream_bound: int
    # Chart requests sent straight to the simulator once the fault is on, before the
    # clients start: a 429 storm starts with Yahoo's budget spent and its lock-out running.
    prime: int = 0


# -- HTTP helpers ---------------------------------------------------------------------------


def chart_url(base: str, symbol: str, interval: str, range_: str) -> str:
    return f"{base}/v8/finance/chart/{symbol}?interval={interval}&range={range_}"


def get_json(url: str, timeout: float = 20.0) -> tuple[int, dict[str, str], Any]:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        return exc.code, dict(exc.headers), parsed


@dataclass(frozen=True)
class Probe:
    """An answer for the never-stored series, with what a client needs to read it."""

    status: int
    retry_after: str | None
    error_code: str | None
    took_s: float


def probe(url: str) -> Probe:
    started = time.monotonic()
    try:
        status, headers, body = get_json(url, timeout=COLD_BOUND_S + 10)
    except OSError:
        return Probe(0, None, None, time.monotonic() - started)
    code = None
    if isinstance(body, dict) and isinstance(body.get("chart"), dict):
        error = body["chart"].get("error")
        code = error.get("code") if isinstance(error, dict) else None
    return Probe(status, headers.get("Retry-After"), code, time.monotonic() - started)


Bars = tuple[tuple[int, ...], tuple[tuple[float | None, ...], ...]]


def bars_of(body: Any) -> Bars:
    result = body["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    columns = tuple(tuple(quote[name]) for name in ("open", "high", "low", "close", "volume"))
    return tuple(result.get("timestamp") or ()), columns


def past_windows(base: str) -> list[str]:
    """Fixed windows of stored bars well in the past: the same bars before and after."""
    anchor = int(time.time()) // DAY * DAY
    out = []
    for symbol, interval, _ in STORED:
        lo, hi = (
            (anchor - 10 * DAY, anchor - 3 * DAY)
            if interval == "5m"
            else (anchor - 60 * DAY, anchor - 7 * DAY)
        )
        out.append(f"{base}/v8/finance/chart/{symbol}?interval={interval}&period1={lo}&period2={hi}")
    return out


def snapshot(urls: list[str]) -> dict[str, Bars]:
    out = {}
    for url in urls:
        status, _, body = get_json(url)
        assert status == 200, f"{url}: {status} {body}"
        out[url] = bars_of(body)
    return out


def is_fresh(answer: Answer) -> bool:
    return answer.status == 200 and "; ttl=" in answer.cache_status and "fwd=" not in answer.cache_status


def until_fresh(urls: list[str], since: float, bound_s: float) -> dict[str, float]:
    """Seconds from ``since`` to each URL's first fresh answer (those that had one in time)."""
    found: dict[str, float] = {}
    deadline = since + bound_s
    while len(found) < len(urls) and time.monotonic() < deadline:
        for url in urls:
            if url not in found:
                answer = fetch(url)
                if is_fresh(answer):
                    found[url] = answer.at + answer.took_s - since
        time.sleep(0.1)
    return found


def until_status(url: str, status: int, since: float, bound_s: float) -> float | None:
    deadline = since + bound_s
    while time.monotonic() < deadline:
        answer = fetch(url)
        if answer.status == status:
            return answer.at + answer.took_s - since
        time.sleep(0.2)
    return None


def refresher_failures(base: str) -> int:
    status, _, body = get_json(f"{base}/status")
    assert status == 200
    return int(body["refresher"]["outcomes"].get("failed", 0))


# -- one fault, start to end ----------------------------------------------------------------


@dataclass
class Baseline:
    stored: list[str]
    windows: dict[str, Bars]
    latest: dict[str, Bars] = field(default_factory=dict)


def store_series(stack: Stack) -> Baseline:
    """Ask for every stored series until it answers fresh, and keep its bars."""
    base = stack.proxy.url
    stored = [chart_url(base, *spec) for spec in STORED]
    started = time.monotonic()
    fresh = until_fresh(stored, started, 60.0)
    assert len(fresh) == len(stored), f"never stored and fresh: {sorted(set(stored) - set(fresh))}"
    windows = snapshot(past_windows(base))
    for url, (stamps, _) in windows.items():
        assert len(stamps) > 3, f"{url}: too few bars to compare ({len(stamps)})"
    return Baseline(stored, windows, snapshot(stored))


def same_bars(before: Bars, after: Bars) -> bool:
    return before == after


def common_bars_agree(before: Bars, after: Bars) -> bool:
    """Bars present in both answers (a range answer's window may slide) are identical."""
    b_index = {t: i for i, t in enumerate(before[0])}
    for j, stamp in enumerate(after[0]):
        i = b_index.get(stamp)
        if i is not None and any(
            col_b[i] != col_a[j] for col_b, col_a in zip(before[1], after[1], strict=True)
        ):
            return False
    return True


def run_phase(stack: Stack, baseline: Baseline, phase: Phase, test_name: str) -> list[str]:
    """Turn the fault on under traffic, lift it, watch the recovery; record the row and
    return what went wrong (empty: nothing)."""
    base, sim = stack.proxy.url, stack.sim
    stored = baseline.stored
    cold = chart_url(base, phase.cold_symbol, "5m", "5d")
    problems: list[str] = []
    before = until_fresh(stored, time.monotonic(), RECOVERY_BOUND_S)
    assert len(before) == len(stored), f"{phase.scenario}: not all stored series fresh before the fault"
    failed_refreshes = refresher_failures(base)

    sim.reset()  # counters, knobs and the simulator's random draws from zero
    sim.set_faults(**phase.knobs)
    for _ in range(phase.prime):
        fetch(f"{sim.base_url}/v8/finance/chart/ES=F?interval=1d&range=1d")
    primed_counters = sim.counters()
    primed = int(primed_counters["arrived_by_kind"]["chart"])
    assert not phase.prime or primed_counters["locked_out"], f"{phase.scenario}: not locked out by priming"
    on = time.monotonic()
    max_s = phase.duration_s + RECOVERY_BOUND_S + 60
    traffic = Traffic(stored, clients=CLIENTS, max_s=max_s)
    cold_traffic = Traffic([cold], clients=1, max_s=max_s, pause_s=0.05)
    probes: list[Probe] = []
    traffic.start()
    cold_traffic.start()
    try:
        # The never-stored series, read closely: status, Retry-After, error shape, time.
        end = on + phase.duration_s
        while True:
            probes.append(probe(cold))
            if time.monotonic() + probes[-1].took_s + 0.5 >= end:
                break
            time.sleep(0.5)
        time.sleep(max(0.0, end - time.monotonic()))
        during = sim.counters()
        failed_refreshes = refresher_failures(base) - failed_refreshes
        sim.set_faults(**phase.lift)
        lifted = time.monotonic()
        recovered = until_fresh(stored, lifted, RECOVERY_BOUND_S)
        cold_back = until_status(cold, 200, lifted, RECOVERY_BOUND_S)
    finally:
        answers = traffic.stop()
        cold_answers = cold_traffic.stop()

    on_stored = tally(answers)
    on_cold = tally(cold_answers, until=lifted)
    upstream = int(during["arrived_by_kind"]["chart"]) - primed
    primed_outcomes = primed_counters["by_kind_outcome"]["chart"]
    outcomes = {k: n - primed_outcomes[k] for k, n in during["by_kind_outcome"]["chart"].items()}
    outcomes = {k: n for k, n in outcomes.items() if n}
    windows = snapshot(list(baseline.windows))
    latest = snapshot(stored)
    intact = all(same_bars(baseline.windows[u], windows[u]) for u in windows) and all(
        common_bars_agree(baseline.latest[u], latest[u]) for u in stored
    )
    recovery_s = max(recovered.values()) if len(recovered) == len(stored) else None

    not_ok = on_stored.total - on_stored.statuses.get(200, 0)
    cold_503 = on_cold.statuses.get(503, 0)
    cold_text = f"never-stored series: {cold_503:,} × 503 + Retry-After"
    if on_cold.statuses.get(200):
        cold_text += f", {on_cold.statuses[200]:,} × 200"
    other = {s: n for s, n in on_cold.statuses.items() if s not in (200, 503)}
    if other:
        cold_text += ", " + ", ".join(f"{n:,} × {s or 'no answer'}" for s, n in other.items())
    cold_text += f" (slowest {on_cold.max_took_s:.1f} s)"
    cold_back_text = "not within the bound after" if cold_back is None else f"{cold_back:.1f} s after"
    record_row(
        Row(
            scenario=phase.scenario,
            title=phase.title,
            fault=phase.fault,
            client_errors=f"{not_ok:,} of {on_stored.total:,}; {cold_text}",
            stale_answers=f"{on_stored.stale:,} of {on_stored.total:,}",
            upstream_requests=f"{upstream:,} in {phase.duration_s:g} s (bound {phase.upstream_bound})",
            recovery_s=None if recovery_s is None else round(recovery_s, 1),
            data_intact=intact,
            notes=(
                ("" if recovery_s is not None else f"NOT fresh again within {RECOVERY_BOUND_S:g} s; ")
                + f"outcomes the simulator had counted by the lift: {outcomes or 'none yet'}; "
                f"{failed_refreshes} failed background refreshes during the fault; the never-stored series "
                f"was served {cold_back_text} the lift; {settings_note()}"
            ),
            test=f"{TEST_FILE}::{test_name}",
        )
    )

    name = phase.scenario
    if not_ok or on_stored.unanswered:
        problems.append(f"{name}: stored series answered {on_stored.statuses}, not only 200s")
    if on_stored.max_took_s > 5.0:
        problems.append(f"{name}: a stored series took {on_stored.max_took_s:.1f} s")
    if not set(on_cold.statuses) <= {200, 503}:
        problems.append(f"{name}: never-stored series answered {on_cold.statuses} (only 200 or 503 allowed)")
    if on_cold.max_took_s > COLD_BOUND_S:
        problems.append(f"{name}: never-stored series took {on_cold.max_took_s:.1f} s > {COLD_BOUND_S:g} s")
    for p in probes:
        if p.status == 503 and not (p.retry_after and int(p.retry_after) > 0):
            problems.append(f"{name}: a 503 without Retry-After: {p}")
        if p.status == 503 and p.error_code != "Service Unavailable":
            problems.append(f"{name}: a 503 not in Yahoo's error shape: {p}")
        if p.status not in (200, 503):
            problems.append(f"{name}: never-stored series probe answered {p}")
    if upstream > phase.upstream_bound:
        problems.append(
            f"{name}: Yahoo saw {upstream} chart requests in {phase.duration_s:g} s, more than the "
            f"{phase.upstream_bound} the policies allow ({outcomes}; "
            f"{on_stored.total + on_cold.total} client requests)"
        )
    if recovery_s is None:
        problems.append(
            f"{name}: not fresh again within {RECOVERY_BOUND_S:g} s of the lift: "
            f"{sorted(set(stored) - set(recovered))}"
        )
    if cold_back is None:
        problems.append(
            f"{name}: the never-stored series was not served within {RECOVERY_BOUND_S:g} s of the lift"
        )
    if not intact:
        problems.append(f"{name}: stored bars changed across the fault")
    return problems


# -- the scenarios --------------------------------------------------------------------------


def test_upstream_outage(start_stack: StartStack) -> None:
    """Yahoo unreachable for a minute (full run): first dropping every connection, then
    answering every request with its edge's 503 page."""
    stack = start_stack(**proxy_env())
    baseline = store_series(stack)
    phases = [
        Phase(
            scenario="upstream-outage-drop",
            title="Yahoo unreachable (connections dropped)",
            fault=f"every connection closed unanswered for {OUTAGE_S:g} s",
            knobs={"outage_s": OUTAGE_S + 60, "outage_mode": "drop"},
            lift={"outage_s": 0},
            duration_s=OUTAGE_S,
            cold_symbol="YM=F",
            upstream_bound=breaker_bound(OUTAGE_S),
        ),
        Phase(
            scenario="upstream-outage-503",
            title="Yahoo down (503 on everything)",
            fault=f"every request answered 503 for {OUTAGE_S:g} s",
            knobs={"outage_s": OUTAGE_S + 60, "outage_mode": "503"},
            lift={"outage_s": 0},
            duration_s=OUTAGE_S,
            cold_symbol="RTY=F",
            upstream_bound=breaker_bound(OUTAGE_S),
        ),
    ]
    problems = [p for phase in phases for p in run_phase(stack, baseline, phase, "test_upstream_outage")]
    assert not problems, "\n".join(problems)


def test_upstream_slow_and_hanging(start_stack: StartStack) -> None:
    """Yahoo answering slower than the proxy's longest timeout, then not answering at all."""
    stack = start_stack(**proxy_env())
    baseline = store_series(stack)
    slow_ms = (TOP_RUNG_S + 2) * 1000
    phases = [
        Phase(
            scenario="upstream-slow",
            title="Yahoo slower than every timeout",
            fault=f"every answer delayed {slow_ms / 1000:g} s (the top timeout rung is {TOP_RUNG_S:g} s) "
            f"for {FAULT_S:g} s",
            knobs={"latency_ms": slow_ms},
            lift={"latency_ms": 0},
            duration_s=FAULT_S,
            cold_symbol="CL=F",
            upstream_bound=breaker_bound(FAULT_S),
        ),
        Phase(
            scenario="upstream-hang",
            title="Yahoo hanging",
            fault=f"every request held open without an answer (30 s, then dropped) for {FAULT_S:g} s",
            knobs={"hang_ratio": 1.0, "hang_s": 30},
            lift={"hang_ratio": 0.0},
            duration_s=FAULT_S,
            cold_symbol="GC=F",
            upstream_bound=breaker_bound(FAULT_S),
        ),
    ]
    problems = [
        p for phase in phases for p in run_phase(stack, baseline, phase, "test_upstream_slow_and_hanging")
    ]
    assert not problems, "\n".join(problems)


def test_upstream_429_storm(start_stack: StartStack) -> None:
    """Yahoo rate limiting hard: its budget already spent and its lock-out running, every
    request answered 429 (without Retry-After, as Yahoo's edge) until the fault is lifted."""
    stack = start_stack(**proxy_env())
    baseline = store_series(stack)
    phase = Phase(
        scenario="upstream-429-storm",
        title="Yahoo rate limiting (429 storm)",
        fault=f"budget spent and locked out: every request answered 429 for {FAULT_S:g} s",
        knobs={"rate_limit_rps": 0.05, "rate_limit_burst": 1, "lockout_after": 2, "lockout_s": 600},
        lift={"rate_limit_rps": None, "lockout_after": 0},
        duration_s=FAULT_S,
        cold_symbol="SI=F",
        upstream_bound=limiter_bound(FAULT_S),
        prime=3,  # one admitted, two refused: locked out
    )
    problems = run_phase(stack, baseline, phase, "test_upstream_429_storm")
    assert not problems, "\n".join(problems)


def test_upstream_bad_answers(start_stack: StartStack) -> None:
    """Yahoo answering, but badly: 5xx, an HTML page with a 200, a JSON body cut in half."""
    stack = start_stack(**proxy_env())
    baseline = store_series(stack)
    phases = [
        Phase(
            scenario="upstream-5xx",
            title="Yahoo answering 5xx",
            fault=f"every request answered 500, 502, 503 or 504 for {FAULT_S:g} s",
            knobs={"error_ratio": 1.0, "error_statuses": [500, 502, 503, 504]},
            lift={"error_ratio": 0.0},
            duration_s=FAULT_S,
            cold_symbol="ZN=F",
            upstream_bound=breaker_bound(FAULT_S),
        ),
        Phase(
            scenario="upstream-html",
            title="Yahoo answering HTML",
            fault=f"every chart answered 200 with a maintenance HTML page for {FAULT_S:g} s",
            knobs={"malformed_ratio": 1.0, "malformed_kind": "html"},
            lift={"malformed_ratio": 0.0},
            duration_s=FAULT_S,
            cold_symbol="6E=F",
            upstream_bound=breaker_bound(FAULT_S),
        ),
        Phase(
            scenario="upstream-truncated",
            title="Yahoo answering truncated JSON",
            fault=f"every chart answered 200 with its JSON body cut in half for {FAULT_S:g} s",
            knobs={"malformed_ratio": 1.0, "malformed_kind": "truncated"},
            lift={"malformed_ratio": 0.0},
            duration_s=FAULT_S,
            cold_symbol="HG=F",
            upstream_bound=breaker_bound(FAULT_S),
        ),
    ]
    problems = [p for phase in phases for p in run_phase(stack, baseline, phase, "test_upstream_bad_answers")]
    assert not problems, "\n".join(problems)
