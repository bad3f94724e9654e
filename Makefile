# One entry point for people and CI. `make test` works on a fresh machine:
# it creates .venv, installs the project with its dev tools, then runs lint,
# types, the tests (which find or start their broker and database) and the
# benchmarks in smoke size.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: test lint types unit bench bench-smoke install clean demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,train]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

bench: $(STAMP)
	$(BIN)/python -m bench

test: lint types unit bench-smoke

# The whole pipeline on a simulated fleet. Needs only Python (and the mosquitto
# binary, or a configured broker); PostgreSQL comes from pgserver unless configured.
demo:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[demo]'
	$(BIN)/cbm demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
