# yfproxy: `make run` starts the proxy (with its own Redis when none answers),
# `make test` installs what it needs and runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= proxy.toml
SIM_PORT ?= 9000

.PHONY: install run demo sim test test-fast lint format bench bench-ratelimit bench-validators bench-refresher bench-cold bench-memory soak loadtest faults docs clean

$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==26.3
	$(PY) -m pip install -q -e '.[test]' ./client
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m proxy serve --config $(CONFIG)

# The Yahoo simulator alone, for pointing any client at a fake Yahoo.
sim: $(STAMP)
	$(PY) -m loadtests.yahoo_sim --port $(SIM_PORT)

# Offline demo: the simulator as upstream and the proxy in front of it.
demo: $(STAMP)
	$(PY) -m loadtests.yahoo_sim --port $(SIM_PORT) & sim=$$!; \
	trap 'kill $$sim' EXIT INT TERM; \
	YFPROXY__UPSTREAM__BASE_URL=http://127.0.0.1:$(SIM_PORT) YFPROXY__UPSTREAM__TRANSPORT=aiohttp \
	YFPROXY__RATE_LIMIT__INITIAL_RPS=2 $(PY) -m proxy serve --config $(CONFIG)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -p no:cacheprovider --cov --cov-report=term --cov-fail-under=90

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)
	$(PY) -m bench

# Pacing schemes against the simulator's hidden budget (about 9 min; BENCH_RL_QUICK=1 for
# a ~2 min smoke run, BENCH_RL_CAP_S / BENCH_RL_PROFILES / BENCH_RL_SCHEMES to change it).
bench-ratelimit: $(STAMP)
	$(PY) -m bench.ratelimit $(BENCH_RL_ARGS)

# The validators on 30 days (and 40,000 bars) of ES=F minute bars; target < 50 ms.
bench-validators: $(STAMP)
	$(PY) -m bench.validators

# Dashboard traffic against the refresher on a simulated clock (60 simulated minutes).
bench-refresher: $(STAMP)
	$(PY) -m bench.refresher_replay

# 200 clients at once on uncached series: one upstream fetch each, latency vs a lone cold fetch.
bench-cold: $(STAMP)
	$(PY) -m bench.cold_burst

# Redis bytes per stored bar (1m/5m/15m/1h/1d) and proxy RSS per stored series, under wrk.
bench-memory: $(STAMP)
	$(PY) -m bench.memory

# Bounded soak (SOAK_MINUTES=10): exits 1 when proxy RSS, Redis memory or errors keep growing.
soak: $(STAMP)
	$(PY) -m bench.soak

# Locust against a proxy + simulator it starts (LOAD_USERS=100, LOAD_RUN_TIME=60s); fails
# when the locustfile's thresholds are missed. Reports in reports/locust*.
loadtest: $(STAMP)
	$(PY) -m loadtests.run_load

# The fault suite at full length (Yahoo out for a minute, Redis and processes killed under
# traffic; several minutes), then the table of docs/reliability.md from the rows it recorded
# in reports/reliability/. The table is rewritten even when a scenario fails, then make fails.
faults: $(STAMP)
	$(PY) -m tests.faults.table --clear
	YFPROXY_FAULTS_FULL=1 $(PY) -m pytest -q -p no:cacheprovider tests/faults; status=$$?; \
	$(PY) -m tests.faults.table && exit $$status

# Regenerate docs/configuration.md from the config schema (a test fails when it drifts).
docs: $(STAMP)
	$(PY) -m proxy.config_doc --write

clean:
	rm -rf $(VENV) .yfproxy .coverage .coverage.* htmlcov reports
