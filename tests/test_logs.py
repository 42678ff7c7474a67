"""Log output: JSON lines with the component on every event, and a level per component."""

from __future__ import annotations

import json

import pytest
import structlog

from proxy.config import Config, ConfigError, merge_update
from proxy.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore() -> object:
    yield
    structlog.reset_defaults()


def test_json_lines_carry_the_component_and_per_component_levels_apply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json", {"yfproxy.refresher": "debug", "yfproxy.http": "warning"})
    structlog.get_logger("yfproxy.refresher").debug("refresher.cycle", due=3)
    structlog.get_logger("yfproxy.refresher.batch").debug("nested", symbol="ES=F")  # prefix match
    structlog.get_logger("yfproxy.http").info("request", path="/status")  # below warning: dropped
    structlog.get_logger("yfproxy.http").warning("slow", latency_ms=12.5)
    structlog.get_logger("yfproxy.fetcher").debug("dropped")  # global level info
    structlog.get_logger("yfproxy.fetcher").info("fetched", series="ES=F|1m|0")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["component"], e["event"], e["level"]) for e in lines] == [
        ("yfproxy.refresher", "refresher.cycle", "debug"),
        ("yfproxy.refresher.batch", "nested", "debug"),
        ("yfproxy.http", "slow", "warning"),
        ("yfproxy.fetcher", "fetched", "info"),
    ]
    assert lines[2]["latency_ms"] == 12.5 and "timestamp" in lines[0]


def test_console_lines_are_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "console")
    structlog.get_logger("yfproxy.quality").warning("quality.quarantined", series="ES=F|1m|0")
    line = capsys.readouterr().err
    assert "quality.quarantined" in line and "series='ES=F|1m|0'" in line and not line.startswith("{")


def test_component_levels_are_validated() -> None:
    config = merge_update(Config(), {"logging": {"components": {"yfproxy.fetcher": "DEBUG"}}})
    assert config.logging.components == {"yfproxy.fetcher": "debug"}
    with pytest.raises(ConfigError, match="start with 'yfproxy'"):
        merge_update(Config(), {"logging": {"components": {"redis": "debug"}}})
    with pytest.raises(ConfigError, match=r"logging\.components"):
        merge_update(Config(), {"logging": {"components": {"yfproxy.http": "loud"}}})
