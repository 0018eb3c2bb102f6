# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/erpsync.toml

.PHONY: install run test lint typecheck unit clean

EXAMPLE := examples/tinyledger

# The example third-party connector is installed too: the suite discovers it by entry point.
$(STAMP): pyproject.toml $(EXAMPLE)/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e $(EXAMPLE)
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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
