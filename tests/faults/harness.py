"""What every fault scenario shares: bounded client traffic against a proxy while the
fault is on, a tally of what the clients saw, and the row each scenario records for
docs/reliability.md.

Traffic goes to 127.0.0.1 only; it runs in threads with the stdlib (no event loop to
share with the test), stops at its deadline or request cap, whichever comes first.

A scenario writes its row with ``record_row``: one JSON file per scenario in
``reports/reliability/`` (``YFPROXY_RELIABILITY_DIR`` moves it; shortened runs write to its
``short/`` folder). ``python -m
tests.faults.table`` turns those files into the table of docs/reliability.md."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def full_run() -> bool:
    """``make faults`` sets YFPROXY_FAULTS_FULL=1: faults last as long as the issue asks
    (a one-minute outage); in ``make test`` they are shortened so the suite stays quick."""
    return os.environ.get("YFPROXY_FAULTS_FULL") == "1"


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic seconds
    url: str
    status: int  # 0: no answer (connection error or client timeout)
    cache_status: str
    took_s: float


def fetch(url: str, timeout: float = 15.0) -> Answer:
    started = time.monotonic()
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            resp.read()
            return Answer(started, url, resp.status, resp.headers.get("Cache-Status", ""),
                          time.monotonic() - started)  # fmt: skip
    except urllib.error.HTTPError as exc:
        exc.read()
        return Answer(started, url, exc.code, exc.headers.get("Cache-Status", ""), time.monotonic() - started)
    except OSError:
        return Answer(started, url, 0, "", time.monotonic() - started)


@dataclass
class Traffic:
    """Clients looping over ``urls`` until ``stop()``, ``max_s`` or ``max_requests``."""

    urls: list[str]
    clients: int = 4
    max_s: float = 120.0
    max_requests: int = 50_000
    pause_s: float = 0.01
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        deadline = time.monotonic() + self.max_s
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, args=(n, deadline), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, n: int, deadline: float) -> None:
        i = n
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.answers) >= self.max_requests:
                    return
            answer = fetch(self.urls[i % len(self.urls)])
            i += 1
            with self._lock:
                self.answers.append(answer)
            self._stop.wait(self.pause_s)

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        with self._lock:
            return list(self.answers)

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Tally:
    total: int
    statuses: dict[int, int]
    stale: int  # answers served stale (Cache-Status fwd=stale)
    server_errors: int  # 5xx other than the designed 503 + Retry-After refusals
    unanswered: int  # connection errors and client timeouts
    max_took_s: float

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status == 0 or status >= 500)


def tally(answers: list[Answer], *, since: float | None = None, until: float | None = None) -> Tally:
    picked = [a for a in answers if (since is None or a.at >= since) and (until is None or a.at < until)]
    statuses = Counter(a.status for a in picked)
    return Tally(
        total=len(picked),
        statuses=dict(sorted(statuses.items())),
        stale=sum(1 for a in picked if "fwd=stale" in a.cache_status),
        server_errors=sum(1 for a in picked if a.status >= 500 and a.status != 503),
        unanswered=statuses.get(0, 0),
        max_took_s=max((a.took_s for a in picked), default=0.0),
    )


@dataclass(frozen=True)
class Row:
    """One line of the fault table. ``scenario`` is the stable id (the doc's rows are
    checked against the ids the suite records)."""

    scenario: str
    title: str
    fault: str  # what was done, with its duration
    client_errors: str  # what clients saw that was not a 200, e.g. "0 of 1,204"
    stale_answers: str
    upstream_requests: str  # what the simulator saw
    recovery_s: float | None  # fault lifted → first fresh answer; None: nothing to recover
    data_intact: bool
    notes: str = ""
    test: str = ""  # the test that produced the row
    full_run: bool = False


def reliability_dir() -> Path:
    return Path(os.environ.get("YFPROXY_RELIABILITY_DIR", ROOT / "reports" / "reliability"))


def record_row(row: Row) -> Path:
    # Rows of a shortened run (make test) go to a folder of their own, so running the suite
    # never overwrites what `make faults` measured for docs/reliability.md.
    directory = reliability_dir() if full_run() else reliability_dir() / "short"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{row.scenario}.json"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = asdict(row) | {"full_run": full_run(), "recorded_at": stamp}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
