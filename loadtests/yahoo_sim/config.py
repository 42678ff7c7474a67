"""What a simulator instance starts with: where it listens, its seed, its clock and its
initial fault knobs. Shared by the CLI, the app factory and the test helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .faults import FaultKnobs


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 9000
    seed: int = 7
    now: float | None = None  # frozen clock; None follows the real time
    faults: FaultKnobs = field(default_factory=FaultKnobs)
    access_log: bool = False
    warm: bool = True  # build every calendar table before serving
