"""The configuration layer: defaults, proxy.toml, environment overrides, error messages,
the legacy migration, the admin token's secrecy and the schema description."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from proxy.config import (
    INTERVALS,
    Config,
    ConfigError,
    LoadedConfig,
    describe_schema,
    load_config,
)

REPO = Path(__file__).resolve().parent.parent
PROXY_TOML = REPO / "proxy.toml"
SECRET = "s3cr3t-admin-token-value"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return path


def problems_of(path: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def schema_keys() -> set[tuple[str, str]]:
    return {
        (section, name)
        for section, info in Config.model_fields.items()
        for name in info.annotation.model_fields  # type: ignore[union-attr]
    }


# --- defaults -------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    config = Config()
    assert (config.server.host, config.server.port, config.server.workers) == ("127.0.0.1", 8080, 1)
    assert config.server.access_log is False and config.server.max_query_chars == 4096
    assert config.upstream.base_url == "https://query2.finance.yahoo.com"
    assert (config.upstream.transport, config.upstream.impersonate) == ("curl_cffi", "chrome")
    assert config.upstream.max_concurrency == 3
    assert "/v7/finance/quote" in config.upstream.passthrough_allow
    assert config.redis.url == "redis://127.0.0.1:6379/0" and config.redis.embedded is True
    assert (config.redis.embedded_dir, config.redis.key_prefix) == (".yfproxy/redis", "yfp")
    assert config.cache.on_miss == "wait" and config.cache.miss_wait_s == 10.0
    assert config.cache.fresh_s["1m"] == 90 and config.cache.fresh_s["3mo"] == 86400
    assert config.cache.initial_depth_days == {
        "1m": 7, "2m": 59, "5m": 59, "15m": 59, "30m": 59, "90m": 59, "1h": 729, "4h": 729,
        "1d": 3650, "5d": 3650, "1wk": 7300, "1mo": 7300, "3mo": 7300,
    }  # fmt: skip
    assert set(config.cache.fresh_s) == set(INTERVALS) and "60m" not in INTERVALS
    assert config.instruments.active == ("ES=F", "NQ=F") and config.instruments.dormant == ()
    assert config.instruments.intervals == ("1m", "5m", "15m", "1h", "1d")
    assert config.background.full_every_s == 300 and config.background.warm_on_start is False
    assert (config.rate_limit.min_rps, config.rate_limit.initial_rps, config.rate_limit.max_rps) == (
        0.05,
        0.5,
        2.0,
    )
    assert (config.breaker.fail_max, config.breaker.reset_timeout_s) == (5, 30)
    assert (config.timeouts.connect_s, config.timeouts.read_s, config.timeouts.total_s) == (3, 3, 30)
    assert (config.retry.max_attempts, config.retry.backoff_base_s, config.retry.backoff_max_s) == (3, 0.5, 8)
    assert config.validation.min_quality == 0.5
    assert config.admin.token.get_secret_value() == ""
    assert config.features.passthrough and not config.features.strict_cache_only
    assert (config.logging.level, config.logging.format) == ("info", "auto")
    assert config.legacy.fixed_delay_seconds is None


def test_no_path_means_defaults_only() -> None:
    loaded = load_config()
    assert isinstance(loaded, LoadedConfig)
    assert loaded.config == Config() and loaded.warnings == [] and loaded.source is None


def test_every_model_forbids_unknown_keys_and_is_frozen() -> None:
    models: list[type[BaseModel]] = [Config]
    models += [info.annotation for info in Config.model_fields.values()]  # type: ignore[misc]
    for model in models:
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("frozen") is True, model
    with pytest.raises(ValidationError):
        Config().server.port = 1  # type: ignore[misc]


def test_config_survives_pickling_for_worker_processes() -> None:
    config = Config(admin={"token": SECRET})  # type: ignore[arg-type]
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config and copy.admin.token.get_secret_value() == SECRET


# --- proxy.toml -----------------------------------------------------------------------


def test_proxy_toml_loads_to_exactly_the_defaults() -> None:
    loaded = load_config(PROXY_TOML)
    assert loaded.config == Config()
    assert loaded.warnings == [] and loaded.source == PROXY_TOML


def test_proxy_toml_lists_every_key_with_a_comment_above_it() -> None:
    found: dict[tuple[str, str], int] = {}
    lines = PROXY_TOML.read_text().splitlines()
    section = ""
    for number, line in enumerate(lines):
        header = re.fullmatch(r"\[([a-z_]+)(?:\.([a-z_]+))?\]", line.strip())
        if header:
            section = header.group(1)
            if header.group(2):
                found[(section, header.group(2))] = number
            continue
        key = re.match(r"^(?:# )?([a-z_]+) = ", line)
        if key and section:
            found.setdefault((section, key.group(1)), number)
    missing = schema_keys() - set(found)
    assert not missing, f"keys missing from proxy.toml: {sorted(missing)}"
    for (section, name), number in found.items():
        if (section, name) in schema_keys():
            assert lines[number - 1].startswith("#"), f"{section}.{name} has no comment above it"


# --- file loading ---------------------------------------------------------------------


def test_file_values_override_defaults_and_partial_tables_merge(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
port = 9001
[instruments]
active = ["AAPL"]
intervals = ["1d"]
[cache.fresh_s]
1m = 30
[cache.initial_depth_days]
1h = 100
""",
    )
    config = load_config(path).config
    assert config.server.port == 9001 and config.server.host == "127.0.0.1"
    assert config.instruments.active == ("AAPL",) and config.instruments.intervals == ("1d",)
    assert config.cache.fresh_s["1m"] == 30 and config.cache.fresh_s["5m"] == 300
    assert config.cache.initial_depth_days["1h"] == 100 and config.cache.initial_depth_days["1m"] == 7


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "absent.toml")
    assert "absent.toml" in problem and "not found" in problem


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "[server]\nport = = 1\n"))
    assert "proxy.toml: not valid TOML" in problem and "line 2" in problem


# --- environment overrides ------------------------------------------------------------


ENV_CASES = [
    ("YFPROXY__SERVER__PORT", "9000", "server.port", 9000),
    ("YFPROXY__SERVER__ACCESS_LOG", "true", "server.access_log", True),
    ("YFPROXY__SERVER__ACCESS_LOG", "True", "server.access_log", True),
    ("YFPROXY__CACHE__MISS_WAIT_S", "2.5", "cache.miss_wait_s", 2.5),
    ("YFPROXY__SERVER__HOST", "0.0.0.0", "server.host", "0.0.0.0"),
    ("YFPROXY__SERVER__HOST", '"::1"', "server.host", "::1"),
    ("YFPROXY__UPSTREAM__BASE_URL", "http://127.0.0.1:9000", "upstream.base_url", "http://127.0.0.1:9000"),
    ("YFPROXY__UPSTREAM__TRANSPORT", "aiohttp", "upstream.transport", "aiohttp"),
    ("YFPROXY__INSTRUMENTS__ACTIVE", '["ES=F", "AAPL"]', "instruments.active", ("ES=F", "AAPL")),
    ("YFPROXY__INSTRUMENTS__ACTIVE", "ES=F, ^GSPC", "instruments.active", ("ES=F", "^GSPC")),
    ("YFPROXY__INSTRUMENTS__DORMANT", "", "instruments.dormant", ()),
    ("YFPROXY__CACHE__FRESH_S__1M", "30", "cache.fresh_s.1m", 30),
    ("YFPROXY__CACHE__FRESH_S__1M", "30", "cache.fresh_s.1d", 3600),
    ("YFPROXY__CACHE__FRESH_S", "{1m = 5, 1d = 7}", "cache.fresh_s.1m", 5),
    ("YFPROXY__CACHE__FRESH_S", "{1m = 5, 1d = 7}", "cache.fresh_s.5m", 300),
    ("YFPROXY__server__Port", "9002", "server.port", 9002),
    ("YFPROXY__ADMIN__TOKEN", "12345", "admin.token", "12345"),
    ("YFPROXY__LOGGING__LEVEL", "DEBUG", "logging.level", "debug"),
    ("yfproxy__server__port", "1", "server.port", 8080),  # not our prefix: ignored
]


def read(config: Config, path: str) -> object:
    value: object = config
    for part in path.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.mark.parametrize(("name", "value", "path", "expected"), ENV_CASES)
def test_environment_overrides(name: str, value: str, path: str, expected: object) -> None:
    config = load_config(None, {name: value, "HOME": "/root"}).config
    assert read(config, path) == expected


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9001\nworkers = 2\n[cache.fresh_s]\n1m = 10\n5m = 20\n")
    env = {"YFPROXY__SERVER__PORT": "9003", "YFPROXY__CACHE__FRESH_S__1M": "11"}
    config = load_config(path, env).config
    assert (config.server.port, config.server.workers) == (9003, 2)
    assert (config.cache.fresh_s["1m"], config.cache.fresh_s["5m"]) == (11, 20)


def test_without_env_mapping_no_override_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YFPROXY__SERVER__PORT", "9005")
    assert load_config().config.server.port == 8080
    assert load_config(None, {"YFPROXY__SERVER__PORT": "9005"}).config.server.port == 9005


# --- unknown keys ---------------------------------------------------------------------

SERVER_KEYS = "allowed keys in [server]: host, port, workers, access_log, event_loop, max_query_chars"


def test_unknown_key_in_file_names_key_and_allowed_keys(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "[server]\nprot = 1\n"))
    assert problem == f"server.prot: unknown key; {SERVER_KEYS}"


def test_unknown_section_and_non_table_section_in_file(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "port = 8080\n[srv]\nport = 1\n"))
    assert problems[0].startswith("port: unknown section; allowed sections: server, upstream, redis")
    assert problems[1].startswith("srv: unknown section; allowed sections:")
    (problem,) = problems_of(write(tmp_path, 'server = "x"\n'))
    assert problem == f"server: must be a table ([server]); {SERVER_KEYS}"


def test_unknown_key_in_environment_names_variable_key_and_allowed_keys() -> None:
    (problem,) = problems_of(None, {"YFPROXY__SERVER__PROT": "1"})
    assert problem == f"YFPROXY__SERVER__PROT (environment): unknown key server.prot; {SERVER_KEYS}"
    (problem,) = problems_of(None, {"YFPROXY__SRV__PORT": "1"})
    assert problem.startswith(
        "YFPROXY__SRV__PORT (environment): unknown section 'srv'; allowed sections: server"
    )


def test_malformed_environment_names() -> None:
    (problem,) = problems_of(None, {"YFPROXY__SERVER": "1"})
    assert "expected YFPROXY__SECTION__KEY" in problem
    (problem,) = problems_of(None, {"YFPROXY__SERVER__PORT__X": "1"})
    assert problem.endswith("server.port has no sub-keys; use YFPROXY__SERVER__PORT")


def test_unknown_interval_keys_are_refused(tmp_path: Path) -> None:
    (problem,) = problems_of(None, {"YFPROXY__CACHE__FRESH_S__4M": "1"})
    assert problem == f"cache.fresh_s: unknown interval '4m'; allowed: {ALL_INTERVALS}"
    (problem,) = problems_of(write(tmp_path, "[cache.initial_depth_days]\n60m = 10\n"))
    assert problem == "cache.initial_depth_days: 60m is the same series as 1h; use 1h"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nprot = 1\nport = 0\n[upstream]\ntransport = "httpx"\n')
    problems = problems_of(path, {"YFPROXY__BREAKER__FAIL_MAX": "0"})
    assert len(problems) == 4
    assert problems[0].startswith("server.prot: unknown key")


# --- bad values -----------------------------------------------------------------------


ALL_INTERVALS = "1m, 2m, 5m, 15m, 30m, 90m, 1h, 4h, 1d, 5d, 1wk, 1mo, 3mo"
SYMBOL_RULE = "distinct symbols of 1-32 characters A-Z a-z 0-9 ^ = . - _ &"
BAD_VALUES = [
    ("[server]\nport = 0", "server.port: must be an integer >= 1 and <= 65535 (got 0)"),
    ("[server]\nworkers = true", "server.workers: must be an integer (got true)"),
    ("[server]\nhost = 127", "server.host: must be a string (got 127)"),
    (
        '[upstream]\ntransport = "httpx"',
        "upstream.transport: must be one of 'curl_cffi', 'aiohttp' (got 'httpx')",
    ),
    (
        '[upstream]\nbase_url = "ftp://x"',
        "upstream.base_url: must be an http:// or https:// URL with a host (got 'ftp://x')",
    ),
    (
        '[upstream]\nbase_url = "https://h/?a=1"',
        "upstream.base_url: must not carry a query or fragment (got 'https://h/?a=1')",
    ),
    ('[upstream]\npassthrough_allow = "/v7/"', "upstream.passthrough_allow: must be a list (got '/v7/')"),
    (
        "[upstream]\nmax_concurrency = 17",
        "upstream.max_concurrency: must be an integer >= 1 and <= 16 (got 17)",
    ),
    (
        '[redis]\nurl = "http://h:6379"',
        "redis.url: must start with redis://, rediss:// or unix:// (got 'http://h:6379')",
    ),
    (
        '[redis]\nkey_prefix = "Bad-Prefix"',
        "redis.key_prefix: must be 1-16 characters of a-z, 0-9 and _ (got 'Bad-Prefix')",
    ),
    ('[cache]\non_miss = "block"', "cache.on_miss: must be one of 'wait', 'reject' (got 'block')"),
    ("[cache]\nmiss_wait_s = 121", "cache.miss_wait_s: must be a number >= 0 and <= 120 (got 121)"),
    ("[cache.fresh_s]\n1m = 0", "cache.fresh_s.1m: must be >= 1 (got 0)"),
    (
        "[cache.initial_depth_days]\n1m = 31",
        "cache.initial_depth_days: 1m = 31 goes beyond Yahoo's 30 days for 1m",
    ),
    (
        '[instruments]\nintervals = ["1m", "4m"]',
        f"instruments.intervals: unknown interval '4m'; allowed: {ALL_INTERVALS} (got ['1m', '4m'])",
    ),
    (
        '[instruments]\nactive = ["ES F"]',
        f"instruments.active: 'ES F' is not a Yahoo symbol; allowed: {SYMBOL_RULE} (got ['ES F'])",
    ),
    ('[instruments]\ndormant = ["ES=F"]', "instruments: ES=F listed as both active and dormant"),
    (
        "[background]\nmax_concurrent_instruments = 0",
        "background.max_concurrent_instruments: must be an integer >= 1 and <= 16 (got 0)",
    ),
    ("[background]\nfull_every_s = 0", "background.full_every_s: must be a number > 0 and <= 86400 (got 0)"),
    (
        "[rate_limit]\ninitial_rps = 3.0",
        "rate_limit: rates must satisfy min_rps <= initial_rps <= max_rps (got 0.05, 3, 2)",
    ),
    ("[rate_limit]\nmin_rps = 0", "rate_limit.min_rps: must be a number > 0 and <= 1000 (got 0)"),
    ("[breaker]\nfail_max = 101", "breaker.fail_max: must be an integer >= 1 and <= 100 (got 101)"),
    ("[timeouts]\ntotal_s = 5.0", "timeouts: total_s (5) must be at least connect_s + read_s (6)"),
    ("[retry]\nmax_attempts = 2.5", "retry.max_attempts: must be an integer (got 2.5)"),
    ("[retry]\nbackoff_max_s = 0.1", "retry: backoff_max_s (0.1) must be at least backoff_base_s (0.5)"),
    ("[validation]\nmin_quality = 1.5", "validation.min_quality: must be a number >= 0 and <= 1 (got 1.5)"),
    ("[admin]\ntoken = 42", "admin.token: must be a string"),
    ('[features]\npassthrough = "maybe"', "features.passthrough: must be true or false (got 'maybe')"),
    ('[logging]\nformat = "xml"', "logging.format: must be one of 'auto', 'json', 'console' (got 'xml')"),
    (
        "[legacy]\nfixed_delay_seconds = 0",
        "legacy.fixed_delay_seconds: must be a number > 0 and <= 3600 (got 0)",
    ),
]


@pytest.mark.parametrize(("toml", "expected"), BAD_VALUES)
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path: Path, toml: str, expected: str) -> None:
    assert problems_of(write(tmp_path, toml + "\n")) == [expected]


def test_bad_value_from_environment_names_the_variable() -> None:
    (problem,) = problems_of(None, {"YFPROXY__UPSTREAM__TRANSPORT": "httpx"})
    assert problem.startswith("upstream.transport: must be one of 'curl_cffi', 'aiohttp' (got 'httpx')")
    assert problem.endswith(" [from YFPROXY__UPSTREAM__TRANSPORT]")


def test_every_section_has_a_bad_value_case() -> None:
    covered = {re.match(r"\[([a-z_]+)", toml).group(1) for toml, _ in BAD_VALUES}  # type: ignore[union-attr]
    assert covered == set(Config.model_fields)


# --- legacy migration -----------------------------------------------------------------


def test_legacy_fixed_delay_becomes_initial_rate_with_a_warning(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "[legacy]\nfixed_delay_seconds = 2.5\n"))
    assert loaded.config.rate_limit.initial_rps == pytest.approx(0.4)
    (warning,) = loaded.warnings
    assert "legacy.fixed_delay_seconds = 2.5" in warning and "rate_limit.initial_rps = 0.4" in warning


def test_legacy_delay_is_clamped_into_the_limiter_range(tmp_path: Path) -> None:
    path = write(tmp_path, "[legacy]\nfixed_delay_seconds = 100\n[rate_limit]\ninitial_rps = 1.0\n")
    loaded = load_config(path)
    assert loaded.config.rate_limit.initial_rps == 0.05
    (warning,) = loaded.warnings
    assert (
        "clamped into [0.05, 2]" in warning
        and "replaced the configured rate_limit.initial_rps = 1.0" in warning
    )
    fast = load_config(None, {"YFPROXY__LEGACY__FIXED_DELAY_SECONDS": "0.1"})
    assert fast.config.rate_limit.initial_rps == 2.0


def test_legacy_migration_also_applies_to_direct_construction() -> None:
    config = Config(legacy={"fixed_delay_seconds": 4})  # type: ignore[arg-type]
    assert config.rate_limit.initial_rps == 0.25


# --- the admin token stays secret -----------------------------------------------------


def test_admin_token_never_shows(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, f'[admin]\ntoken = "{SECRET}"\n'))
    config = loaded.config
    assert config.admin.token.get_secret_value() == SECRET
    shown = [str(config), repr(config), str(config.model_dump()), config.model_dump_json()]
    shown += [str(config.model_dump(mode="json")), repr(loaded), str(config.admin), repr(config.admin.token)]
    for text in shown:
        assert SECRET not in text
    assert isinstance(config.model_dump()["admin"]["token"], SecretStr)


def test_admin_token_never_shows_in_errors(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, f'[admin]\ntoken = ["{SECRET}"]\n'))
    assert problems and SECRET not in "\n".join(problems)


# --- schema description ---------------------------------------------------------------


def test_describe_schema_covers_every_key_with_its_facts() -> None:
    rows = describe_schema()
    assert {(row["section"], row["name"]) for row in rows} == schema_keys()
    assert len(rows) == len(schema_keys())
    defaults = Config().model_dump(mode="json")
    for row in rows:
        assert set(row) >= {"section", "name", "type", "default", "bounds", "description"}
        assert row["description"] and row["description"][0].isupper(), row["name"]
        expected = defaults[row["section"]][row["name"]]
        assert row["default"] == ("" if row["name"] == "token" else expected), row["name"]
        assert row["env"] == f"YFPROXY__{row['section'].upper()}__{row['name'].upper()}"
    by_key = {row["key"]: row for row in rows}
    assert by_key["server.port"]["type"] == "integer"
    assert by_key["server.port"]["bounds"] == "an integer >= 1 and <= 65535"
    assert by_key["upstream.transport"]["bounds"] == "one of 'curl_cffi', 'aiohttp'"
    assert by_key["admin.token"]["type"] == "secret string"
    assert by_key["legacy.fixed_delay_seconds"]["type"] == "number (optional)"
    assert by_key["cache.fresh_s"]["type"] == "table of interval -> integer"
