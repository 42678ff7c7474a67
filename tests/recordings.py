"""Access to the real Yahoo recordings in ../shared/yahoo-recordings (read-only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parents[2] / "shared" / "yahoo-recordings"


@dataclass(frozen=True)
class Recording:
    name: str
    symbol: str
    params: dict[str, str]
    recorded_at: int
    body: dict[str, Any]

    @property
    def result(self) -> dict[str, Any]:
        return dict(self.body["chart"]["result"][0])


def all_recordings() -> list[Recording]:
    out = []
    for path in sorted(RECORDINGS.glob("GET_v8_finance_chart_*.json")):
        exchange = json.loads(path.read_text())[0]
        out.append(
            Recording(
                name=path.stem.removeprefix("GET_v8_finance_chart_"),
                symbol=exchange["request"]["url"].rsplit("/", 1)[1],
                params=dict(exchange["request"]["params"]),
                recorded_at=int(exchange["recorded_at"]),
                body=exchange["response"]["json"],
            )
        )
    return out


def recording(name: str) -> Recording:
    return next(r for r in all_recordings() if r.name == name)
