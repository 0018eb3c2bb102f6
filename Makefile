# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/erpsync.toml

.PHONY: install run test lint typecheck unit clean bench bench-smoke bench-profile

EXAMPLE := examples/tinyledger

# The example third-party connector is installed too: the suite discovers it by entry point.
# The bench extra too: `make test` runs every benchmark script in smoke mode. The tryton extra
# too: the tryton connector's tests start a real Tryton server.
$(STAMP): pyproject.toml $(EXAMPLE)/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,tryton]' -e $(EXAMPLE)
	@touch $(STAMP)

install: $(STAMP)

## Set everything up (virtualenv, install, migrations, demo data) and run the service.
run: install
	$(BIN)/erpsync migrate --config $(CONFIG)
	$(BIN)/erpsync demo seed --config $(CONFIG)
	$(BIN)/erpsync serve --config $(CONFIG)

## Set up and run the whole suite: lint, types, tests against local RabbitMQ and PostgreSQL.
test: install lint typecheck
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

## Benchmarks (docs/benchmarks.md): every scenario, figures appended to benchmarks/results/.
bench: install
	@command -v wrk >/dev/null || { echo "bench: wrk is missing: apt-get install -y wrk"; exit 1; }
	$(BIN)/python -m benchmarks.run

## The same scripts with tiny sizes (seconds); `make test` runs them through tests/bench.
bench-smoke: install
	$(BIN)/python -m benchmarks.run --smoke --results benchmarks/results/smoke.jsonl

## Front door and engine overhead under py-spy; raw stacks in benchmarks/results/profiles/.
bench-profile: install
	$(BIN)/python -m benchmarks.run --only engine_overhead front_door \
		--profile benchmarks/results/profiles

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
