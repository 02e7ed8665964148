# One bootstrap for a fresh machine: `make install` (idempotent; does nothing when nothing changed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck compile gas-report ci

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# `npm ci`: exactly the committed lockfile, which it never rewrites (a fresh clone stays clean).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The whole coalition on its embedded defaults (a spawned anvil, SQLite, a seeded demo), resumable.
run: install
	$(BIN)/loyalty up

# The test suite (both chain backends; PostgreSQL-backed tests when a URL is configured).
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy chain indexer api

# Recompile contracts/ into chain/artifacts (committed package data).
compile: install
	$(BIN)/loyalty compile

gas-report: install
	$(BIN)/python scripts/gas_report.py

ci:
	bash .ci/run
