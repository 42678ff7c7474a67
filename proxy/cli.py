"""The ``yfproxy`` command line (also ``python -m proxy``)."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from proxy import __version__

EXIT_BAD_CONFIG = 2
GIL_SWITCH_INTERVAL_S = 0.001
DEFAULT_URL = "http://127.0.0.1:8080"
# What `warm` asks for per interval: about what a dashboard shows.
WARM_RANGES = {"1m": "5d", "2m": "1mo", "5m": "1mo", "15m": "1mo", "30m": "1mo", "90m": "1mo", "1h": "1y"}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 0
    return int(args.run(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yfproxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"yfproxy {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="path to proxy.toml (default: built-in defaults)")
    serve.set_defaults(run=_serve)
    check = sub.add_parser("check-config", help="validate a configuration file; exit 2 when bad")
    check.add_argument("path", nargs="?", default="proxy.toml")
    check.set_defaults(run=_check_config)
    status = sub.add_parser("status", help="print a running proxy's /status as a table")
    status.add_argument("--url", default=os.environ.get("YFPROXY_URL", DEFAULT_URL))
    status.set_defaults(run=_status)
    warm = sub.add_parser("warm", help="preload series into a running proxy")
    warm.add_argument("symbols", nargs="+")
    warm.add_argument("--intervals", nargs="+", default=["1m", "5m", "15m", "1h", "1d"])
    warm.add_argument("--url", default=os.environ.get("YFPROXY_URL", DEFAULT_URL))
    warm.set_defaults(run=_warm)
    return parser


def _load(path: str | None) -> Any:
    from proxy.config import ConfigError, load_config

    try:
        return load_config(path, os.environ)
    except ConfigError as exc:
        print(f"yfproxy: bad configuration ({path or 'defaults'}):\n{exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIG) from None


def _check_config(args: argparse.Namespace) -> int:
    loaded = _load(args.path)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.path}: OK")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from proxy.logs import configure_logging

    _never_proxy_ourselves()

    loaded = _load(args.config)
    config = loaded.config
    configure_logging(config.logging.level, config.logging.format, config.logging.components)
    import structlog

    log = structlog.get_logger("yfproxy")
    for warning in loaded.warnings:
        log.warning("config_migrated", detail=warning)
    if config.server.workers == 1:
        _run_worker(config, reuse_port=False, source=loaded.source)
        return 0
    return _serve_many(config, source=loaded.source)


def _never_proxy_ourselves() -> None:
    """yfproxy-client may be installed next to the service and activated by YFPROXY_URL:
    the proxy's own upstream requests must never be sent back to a proxy."""
    os.environ.pop("YFPROXY_URL", None)
    try:
        import yfproxy_client
    except ImportError:
        return
    yfproxy_client.uninstall()


def _run_worker(
    config: Any, *, reuse_port: bool, source: Any = None, overrides: dict[str, Any] | None = None
) -> None:
    from aiohttp import web

    from proxy.app import create_app
    from proxy.logs import configure_logging

    _never_proxy_ourselves()
    # Merges run in a thread of their own (proxy.store); when one holds the GIL, the event
    # loop gets it back within this interval instead of Python's default 5 ms, which would
    # add up to the p99 of every request in flight during a merge.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    configure_logging(config.logging.level, config.logging.format, config.logging.components)
    web.run_app(
        create_app(config, config_source=source, reload_overrides=overrides),  # SIGHUP re-reads source
        host=config.server.host,
        port=config.server.port,
        reuse_port=reuse_port,
        access_log=None if not config.server.access_log else web.access_logger,
        print=None,
        # Longer request lines than aiohttp's 8 KB reach our handler, which refuses an
        # over-long query string in Yahoo's error shape instead of aiohttp's plain 400.
        max_line_size=65536,
        max_field_size=16384,
        loop=new_event_loop(config.server.event_loop),
    )


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The loop a server process runs on. uvloop's C transports answer the same requests
    with less CPU than asyncio's Python ones (docs/performance.md); asyncio stays for
    platforms without a uvloop build (Windows) and for ruling uvloop out."""
    if resolve_event_loop(kind) == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def resolve_event_loop(kind: str) -> str:
    """``[server] event_loop`` as it will run: "auto" is uvloop where it is installed."""
    if kind == "asyncio":
        return kind
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if kind == "uvloop":
            raise SystemExit("server.event_loop = uvloop, but uvloop is not installed") from None
        return "asyncio"
    return "uvloop"


def _serve_many(config: Any, *, source: Any = None) -> int:
    """N processes share the port (SO_REUSEPORT); Redis is made ready once, here."""
    from pathlib import Path

    from proxy.embedded_redis import ensure_redis

    async def ready() -> tuple[str, Any]:
        return await ensure_redis(
            config.redis.url, embedded=config.redis.embedded, data_dir=Path(config.redis.embedded_dir)
        )

    loop = asyncio.new_event_loop()
    url, embedded = loop.run_until_complete(ready())
    redis_cfg = config.redis.model_copy(update={"url": url, "embedded": False})
    shared = config.model_copy(update={"redis": redis_cfg})
    context = multiprocessing.get_context("spawn")
    # A worker re-reading the file on SIGHUP must see the Redis this parent chose, or the
    # reload would look like a change of a start-only key and be refused.
    overrides = {"redis": {"url": url, "embedded": False}}
    workers = [
        context.Process(
            target=_run_worker,
            args=(shared,),
            kwargs={"reuse_port": True, "source": source, "overrides": overrides},
        )
        for _ in range(config.server.workers)
    ]

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # one way out: the finally below stops workers and Redis

    signal.signal(signal.SIGHUP, forward)  # each worker reloads its own configuration
    signal.signal(signal.SIGTERM, stop)
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        pass
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(10)
        if embedded is not None:
            loop.run_until_complete(embedded.stop())
        loop.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    import json
    import urllib.request

    from proxy.status_table import render_status_table

    request = urllib.request.Request(f"{args.url.rstrip('/')}/status", headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            doc = json.load(resp)
    except OSError as exc:
        print(f"yfproxy status: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(render_status_table(doc, source=args.url), end="")
    return 0


def _warm(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.parse
    import urllib.request

    from rich.progress import Progress

    outcomes: dict[str, int] = {}
    jobs = [(s, i) for s in args.symbols for i in args.intervals]
    with Progress() as progress:
        task = progress.add_task("warming", total=len(jobs))
        for symbol, interval in jobs:
            query = urllib.parse.urlencode({"interval": interval, "range": WARM_RANGES.get(interval, "5y")})
            url = f"{args.url.rstrip('/')}/v8/finance/chart/{urllib.parse.quote(symbol, safe='')}?{query}"
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    outcome = resp.headers.get("Cache-Status", str(resp.status))
            except urllib.error.HTTPError as exc:
                outcome = f"HTTP {exc.code}"
            except OSError as exc:
                outcome = f"error: {exc}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            progress.advance(task)
    for outcome, count in sorted(outcomes.items()):
        print(f"{count:5d}  {outcome}")
    return 0 if all(not k.startswith(("HTTP", "error")) for k in outcomes) else 1
