# userops — the commands that matter. `make help` lists them.
SHELL := /bin/bash
PY_VERSION ?= python3.11
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.DEFAULT_GOAL := help
.PHONY: help install run demo stop status test test-unit test-integration lint typecheck fmt bench ci clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(UV):
	@command -v $(PY_VERSION) >/dev/null || { echo "userops needs Python 3.11 ($(PY_VERSION) not found)"; exit 1; }
	$(PY_VERSION) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "uv==0.13.9"

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PY_VERSION) --quiet
	@touch $@

install: $(VENV)/.installed ## Install Python deps from the lockfile into .venv
	@$(PY) -m scripts.stack.fetch

run: install ## Start Kafka, PostgreSQL and every service, restarting any that dies (Ctrl-C stops them)
	$(PY) -m scripts.cli dev run

demo: install ## Start the stack, simulate weeks of a product's traffic, print what happened (DEMO_ARGS="--keep")
	$(PY) -m scripts.cli demo $(DEMO_ARGS)

stop: install ## Stop the local Kafka and PostgreSQL
	$(PY) -m scripts.cli dev down

status: install ## Say what runs
	$(PY) -m scripts.cli dev status

test: install ## Run every test (unit, integration on a private real Kafka + PostgreSQL, e2e)
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 --ignore=tests/compose $(PYTEST_ARGS)

.PHONY: test-compose
test-compose: install ## docker compose really started and checked (as root: installs a Docker engine; README)
	deploy/test/prepare.sh
	USEROPS_COMPOSE_TEST=1 $(PY) -m pytest -q -p no:cacheprovider -o timeout=1800 --durations=0 tests/compose $(PYTEST_ARGS)

test-unit: install ## Unit tests only (milliseconds, no I/O)
	$(PY) -m pytest -q tests/unit

test-integration: install ## Integration tests only (a private real Kafka + PostgreSQL)
	$(PY) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

lint: install typecheck ## ruff (lint and format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install ## mypy --strict on the code
	$(VENV)/bin/mypy services shared scripts

ci: ## What CI runs: promtool if missing, lint, every test
	.ci/run

fmt: install ## Format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install ## Run every benchmark and print one table of figures (not a test; BENCH_ARGS="--quick --only ingest")
	$(PY) -m bench $(BENCH_ARGS)

clean: ## Remove the local stack data and virtualenvs
	rm -rf .local $(VENV) $(TOOLS)
