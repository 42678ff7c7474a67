"""structlog set-up: JSON lines in production, readable lines on a terminal, and a level
per component.

Every module logs through ``structlog.get_logger("yfproxy.<component>")``; the name is
kept on the logger and added to each event as ``component``, so operators can grep and
set levels by it (``[logging] components = {"yfproxy.fetcher" = "debug"}``: the longest
matching prefix wins, the global ``level`` applies to the rest).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

_LEVELS = logging.getLevelNamesMapping()


class _NamedLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name it was asked for, for the processors."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedLoggerFactory:
    def __call__(self, *args: Any) -> _NamedLogger:
        return _NamedLogger(sys.stderr, str(args[0]) if args else "yfproxy")


def level_filter(default: int, components: Mapping[str, int]) -> structlog.types.Processor:
    """Drop events below their component's level; add the component to every event."""
    prefixes = sorted(components, key=len, reverse=True)

    def processor(logger: Any, method: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        name = getattr(logger, "name", "yfproxy")
        threshold = next((components[p] for p in prefixes if name == p or name.startswith(p + ".")), default)
        if _LEVELS.get(method.upper(), logging.INFO) < threshold:
            raise structlog.DropEvent
        event.setdefault("component", name)
        return event

    return processor


def configure_logging(
    level: str = "info", fmt: str = "auto", components: Mapping[str, str] | None = None
) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric = _LEVELS.get(level.upper(), logging.INFO)
    per_component = {name: _LEVELS.get(lvl.upper(), numeric) for name, lvl in (components or {}).items()}
    structlog.configure(
        processors=[
            level_filter(numeric, per_component),
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        # The cheapest filter first: nothing below the lowest configured level is built.
        wrapper_class=structlog.make_filtering_bound_logger(min([numeric, *per_component.values()])),
        logger_factory=_NamedLoggerFactory(),
        cache_logger_on_first_use=False,  # a runtime update changes levels of existing loggers
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
