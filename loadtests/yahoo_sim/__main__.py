"""``python -m loadtests.yahoo_sim``: serve the fake Yahoo until SIGINT/SIGTERM.

Prints one line ``YAHOO_SIM_READY http://HOST:PORT`` on stdout once it accepts requests
(with ``--port 0`` that line carries the port the OS chose); logs go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .app import create_app
from .config import SimConfig
from .faults import MALFORMED_KINDS, OUTAGE_MODES, FaultKnobs, update_knobs

READY_PREFIX = "YAHOO_SIM_READY "

# CLI flag (without --) → fault knob. Every knob is also settable at runtime on /__sim/faults.
KNOB_FLAGS: dict[str, tuple[type, str]] = {
    "rate-limit-rps": (float, "token-bucket refill rate; 429 'Edge: Too Many Requests' when empty"),
    "rate-limit-burst": (int, "token-bucket size (default: ceil(rps))"),
    "retry-after": (float, "seconds for a Retry-After header on 429s (none unless set)"),
    "error-ratio": (float, "share of requests answered 500/502/503"),
    "latency-ms": (float, "latency added to every answer"),
    "latency-jitter-ms": (float, "uniform +/- jitter on the added latency"),
    "hang-ratio": (float, "share of requests that hang for --hang-s, then lose their connection"),
    "hang-s": (float, "how long a hang lasts (default 30, at most 600)"),
    "outage-s": (float, "answer nothing usable for this many seconds from start"),
    "outage-until": (float, "answer nothing usable until this unix time"),
    "malformed-ratio": (float, "share of 200 answers that are malformed"),
}
_KNOB_NAMES = {"retry-after": "retry_after_s"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.yahoo_sim", description="A fake Yahoo Finance.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9000, help="port (0: any free port, printed on start)")
    p.add_argument("--seed", type=int, default=7, help="seed of prices and fault randomness")
    p.add_argument("--now", type=float, default=None, help="freeze the clock at this unix time")
    for flag, (kind, text) in KNOB_FLAGS.items():
        p.add_argument(f"--{flag}", type=kind, default=None, help=text)
    p.add_argument("--outage-mode", choices=OUTAGE_MODES, default=None, help="drop connections or answer 503")
    p.add_argument("--malformed-kind", choices=MALFORMED_KINDS, default=None, help="what a malformed body is")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument("--no-warm", action="store_true", help="build calendars on first use, not at start")
    return p


def config_from_args(args: argparse.Namespace, wall_now: float) -> SimConfig:
    changes: dict[str, Any] = {}
    for flag in [*KNOB_FLAGS, "outage-mode", "malformed-kind"]:
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            changes[_KNOB_NAMES.get(flag, flag.replace("-", "_"))] = value
    knobs = update_knobs(FaultKnobs(), changes, wall_now)
    return SimConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        now=args.now,
        faults=knobs,
        access_log=args.access_log,
        warm=not args.no_warm,
    )


async def serve(config: SimConfig) -> None:
    app = create_app(config)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("aiohttp.access") if config.access_log else None,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    import time

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args, time.time())
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
