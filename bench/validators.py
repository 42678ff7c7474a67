"""How long the validators take on 30 days of 1m bars of one future, and on 40,000 bars.

The bars are the simulator's ES=F minute series (CME Globex sessions, the daily halt,
Thanksgiving), rendered in process with no server. Measured in one run: the first call
(which builds the calendar's session table: a one-off cost per calendar and decade), then
the median and p95 of repeated calls of ``validators.engine.validate`` and of each check,
and the same after a merge with ``proxy.quality.QualityGate.annotate`` (what every stored
refresh pays). The issue's target: well under 50 ms per validation of the 40k bars.

    .venv/bin/python -m bench.validators        # make bench-validators
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from loadtests.yahoo_sim import chart
from proxy.ingest import parse_chart_body
from validators.calendars import calendar_for, extended_hours_expected, quiet_mask
from validators.engine import validate
from validators.ohlc import check_ohlc
from validators.timestamps import check_timestamps
from validators.timezones import check_timezone
from validators.volume import check_volume

REPORT = Path(__file__).resolve().parents[1] / "reports" / "bench-validators.json"
SYMBOL = "ES=F"
NOW = 1_796_083_200  # 2026-12-01 00:00 UTC: the 30 days before include Thanksgiving
DAYS = 30
WEEK = 7 * 86400
RUNS = 30
TARGET_MS = 50.0


def minute_bars(days: int = DAYS) -> Any:
    """``days`` of 1m bars, fetched as Yahoo allows: 7 days per request, joined."""
    parts = []
    end = NOW
    while end > NOW - days * 86400:
        start = max(NOW - days * 86400, end - WEEK)
        params = {"interval": "1m", "period1": str(start), "period2": str(end)}
        # Asked as of a day after each chunk: Yahoo (and the simulator) serve 1m bars of the
        # last 30 days only, and the 42-day run needs older ones. Prices depend on time
        # alone, so the chunks join as one series.
        answer = chart.answer(SYMBOL, params, min(NOW, end + 86400), 7)
        assert answer.status == 200, answer.body
        parts.append(parse_chart_body(orjson.dumps(answer.body)))
        end = start
    return parts


def timed(fn: Callable[[], object], runs: int = RUNS) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2),
        "min_ms": round(samples[0], 2),
    }


def main() -> int:
    # 30 days of a future's minute bars are ~28,500 (23 h x 5 days a week); 42 days give
    # the ~40,000 the issue names, as a second figure.
    reports = [measure(DAYS), measure(42)]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(reports, indent=2) + "\n")
    print(f"report: {REPORT}")
    return 0 if all(r["meets_target"] for r in reports) else 1


def measure(days: int) -> dict[str, Any]:
    import numpy as np

    from proxy.series import Bars

    parts = minute_bars(days)
    parts.reverse()
    bars = Bars(*(np.concatenate([getattr(p.bars, name) for p in parts]) for name in (
        "ts", "open", "high", "low", "close", "volume")))  # fmt: skip
    meta, trading_days = parts[-1].meta, parts[-1].days
    window = (NOW - days * 86400, NOW)
    calendar = calendar_for(SYMBOL, meta)
    assert calendar is not None

    def full() -> object:
        return validate(bars, meta, trading_days, symbol=SYMBOL, interval="1m", prepost=False, window=window)

    started = time.perf_counter()
    report = full()
    first_ms = (time.perf_counter() - started) * 1000
    quiet = quiet_mask(calendar, bars.ts)
    prepost = extended_hours_expected(meta, False)
    results: dict[str, Any] = {
        "bars": len(bars),
        "days": days,
        "symbol": SYMBOL,
        "calendar": calendar,
        "score": round(report.score, 4),  # type: ignore[attr-defined]
        "issues": sorted(report.codes()),  # type: ignore[attr-defined]
        "first_call_ms": round(first_ms, 1),
        "validate": timed(full),
        "checks": {
            "ohlc": timed(lambda: check_ohlc(bars)),
            "volume": timed(lambda: check_volume(bars, quiet=quiet, interval_s=60)),
            "timestamps": timed(
                lambda: check_timestamps(
                    bars, interval="1m", calendar=calendar, window=window, prepost=prepost
                )
            ),
            "timezone": timed(lambda: check_timezone(meta, trading_days, calendar)),
            "quiet_mask": timed(lambda: quiet_mask(calendar, bars.ts)),
        },
        "target_ms": TARGET_MS,
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m bench.validators",
    }
    median = results["validate"]["median_ms"]
    results["meets_target"] = median < TARGET_MS
    score, issues = results["score"], results["issues"]
    print(f"\n{SYMBOL} 1m, {days} days: {len(bars):,} bars; score {score}, issues {issues}")
    print(f"first call (builds the calendar's sessions): {first_ms:.0f} ms")
    print(f"validate: median {median} ms, p95 {results['validate']['p95_ms']} ms "
          f"({len(bars) / median * 1000:,.0f} bars/s); target < {TARGET_MS:g} ms: "
          f"{'met' if results['meets_target'] else 'MISSED'}")  # fmt: skip
    for name, figures in results["checks"].items():
        print(f"  {name:<11} median {figures['median_ms']:>7} ms   p95 {figures['p95_ms']:>7} ms")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
