# redkeep: `make up` runs a hardened Redis locally; `make test` runs the whole suite.
# Both set everything up first (system packages when missing, the virtualenv in .venv).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup system-deps test-servers up test lint format bench clean

setup: system-deps $(VENV)/.installed test-servers

system-deps:
	@scripts/install-system-deps

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "redkeep needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

# The Redis and Valkey builds the version matrix runs against, in .servers/ (docs/versions.md).
test-servers: $(VENV)/.installed
	@$(BIN)/python scripts/install-test-servers

up: system-deps $(VENV)/.installed
	$(BIN)/redkeep up

test: setup lint
	$(BIN)/pytest -n auto

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(VENV)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# Benchmarks against the named peers; rewrites docs/benchmarks.md. Not part of `make test`.
bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .servers .pytest_cache .ruff_cache src/*.egg-info
