# The two commands a newcomer needs: `make run` and `make test` (README, Quick start). Both set up
# everything: virtualenv from the lock files, missing system packages (apt-get, as root), and
# private PostgreSQL/RabbitMQ under .run/ when nothing answers on the configured local ports.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/erpsync.toml
EXAMPLE := examples/tinyledger
# The services the tests use (the same defaults as tests/support.py).
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
TEST_AMQP_URL     ?= amqp://guest:guest@127.0.0.1:5672/

# Exact versions with hashes of everything installed: runtime only for `make run`, plus test and
# benchmark tooling and a Tryton server (the tryton connector's tests) for `make test`.
# `make lock` regenerates them from pyproject.toml's ranges.
RUN_LOCK   := requirements/run.txt
TEST_LOCK  := requirements/test.txt
RUN_STAMP  := $(VENV)/.run-stamp
TEST_STAMP := $(VENV)/.test-stamp
PIP        := $(BIN)/python -m pip install --quiet
SERVICES   := $(BIN)/python -m engine.devservices

.PHONY: install run test unit lint typecheck test-setup services-stop services-status \
	lock clean bench bench-smoke bench-profile

# The project and the example third-party connector (the suite discovers it by entry point) are
# built with the locked hatchling, no build isolation, so nothing unpinned is fetched.
$(RUN_STAMP): $(RUN_LOCK) pyproject.toml $(EXAMPLE)/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r $(RUN_LOCK)
	$(PIP) --no-deps --no-build-isolation -e . -e $(EXAMPLE)
	@touch $@

$(TEST_STAMP): $(TEST_LOCK) $(RUN_STAMP)
	$(PIP) --require-hashes -r $(TEST_LOCK)
	@touch $@

install: $(TEST_STAMP)

## Set everything up (virtualenv, services, migrations, demo data) and run the service.
run: $(RUN_STAMP)
	$(SERVICES) up --config $(CONFIG)
	$(BIN)/erpsync migrate --config $(CONFIG)
	$(BIN)/erpsync demo seed --config $(CONFIG)
	$(BIN)/erpsync serve --config $(CONFIG)

## Set up and run the whole suite: lint, types, tests against real RabbitMQ and PostgreSQL.
test: test-setup lint typecheck
	$(BIN)/pytest

## What the suite needs besides Python packages: Chromium, wrk, amqp-tools, the servers, services.
test-setup: $(TEST_STAMP)
	$(SERVICES) packages test
	$(SERVICES) up --database-url '$(TEST_DATABASE_URL)' --broker-url '$(TEST_AMQP_URL)'

## The tests that need no services (seconds).
unit: $(TEST_STAMP)
	$(BIN)/pytest tests/unit -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

## Stop the private PostgreSQL/RabbitMQ under .run/ (their data stays; `rm -rf .run` wipes it).
services-stop: $(RUN_STAMP)
	$(SERVICES) down

services-status: $(RUN_STAMP)
	$(SERVICES) status

# pip-tools in its own virtualenv, resolving against PyPI only (not this machine's pip settings),
# so the hashes are those a clean machine downloads. Existing pins are kept while pyproject.toml
# allows them; `make lock LOCK_ARGS=--upgrade` moves everything to the newest allowed.
LOCK_VENV := .venv-lock
LOCK_ENV  := env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null
LOCK_RUN  := $(LOCK_ENV) $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras \
	--allow-unsafe --all-build-deps --index-url https://pypi.org/simple $(LOCK_ARGS)
lock:
	@test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_ENV) $(LOCK_VENV)/bin/pip install --quiet pip-tools==7.7.0; }
	$(LOCK_RUN) --output-file $(RUN_LOCK) pyproject.toml
	$(LOCK_RUN) --extra test --extra bench --extra tryton --constraint $(RUN_LOCK) --output-file $(TEST_LOCK) \
		pyproject.toml

## Benchmarks (docs/benchmarks.md): every scenario, figures appended to benchmarks/results/.
bench: test-setup
	$(BIN)/python -m benchmarks.run

## The same scripts with tiny sizes (seconds); `make test` runs them through tests/bench.
bench-smoke: test-setup
	$(BIN)/python -m benchmarks.run --smoke --results benchmarks/results/smoke.jsonl

## Front door and engine overhead under py-spy; raw stacks in benchmarks/results/profiles/.
bench-profile: test-setup
	$(BIN)/python -m benchmarks.run --only engine_overhead front_door \
		--profile benchmarks/results/profiles

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .mypy_cache .ruff_cache
