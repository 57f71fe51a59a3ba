# Jobsite: `make run` starts everything on this machine, `make test` runs the checks.
#
#   make run   [PORT=8000]                    web (gunicorn), worker, beat and Flower via honcho
#   make dev   [PORT=8000]                    the same with Django's auto-reloading development server
#   make test  [DB=sqlite|postgres] [PYTEST_ARGS="-k foo"]
#   make bench [DB=sqlite]                    every benchmark, small sizes; writes BENCHMARKS.md
#   make bench-monitor [DB=sqlite|postgres]   monitoring pages at 1,000 vs 1,000,000 runs
#   make bench-schedules [DB=sqlite|postgres] 1,000 and 10,000 every-minute schedules vs stock beat
#   make lint | make format | make clean

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
# Rebuilt whenever a requirements file changes; otherwise `make venv` is a no-op.
STAMP := $(VENV)/.requirements-installed
REQUIREMENTS := $(wildcard requirements/*.txt)
# Interpreter: PYTHON=... if given, else the first of these that is 3.11 or newer.
PYTHON_CANDIDATES := $(or $(PYTHON),python3 python3.13 python3.12 python3.11)

# PORT, DB and PYTEST_ARGS reach the scripts as make exports command-line variables.

.PHONY: help venv run dev test bench bench-monitor bench-schedules lint format clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Options: make run PORT=8001 (also dev) | make test DB=sqlite|postgres PYTEST_ARGS=\"-k name -x\" | make venv PYTHON=python3.12"

venv: $(STAMP) ## Create .venv and install requirements/dev.txt

$(STAMP): $(REQUIREMENTS)
	@if [ ! -x $(VENV)/bin/python ]; then \
	  py=""; \
	  for c in $(PYTHON_CANDIDATES); do \
	    if "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then py=$$c; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "error: Python 3.11 or newer is needed (tried: $(PYTHON_CANDIDATES)); set PYTHON=/path/to/python3.11" >&2; exit 1; fi; \
	  echo "Creating $(VENV) with $$py ($$("$$py" -c 'import sys; print(sys.version.split()[0])'))"; \
	  "$$py" -m venv $(VENV); \
	fi
	$(VENV)/bin/python -m pip install --quiet -r requirements/dev.txt
	@touch $@

run: venv ## Start Redis (if needed), migrate, then web (gunicorn) + worker + beat + Flower
	@scripts/run.sh

dev: venv ## Like run, but web is Django's development server, which reloads on code changes
	@scripts/run.sh dev

test: venv ## ruff, migrations and schema checks, pytest on SQLite then PostgreSQL
	@scripts/test.sh

bench: venv ## Every benchmark in bench/ at small sizes, SQLite and PostgreSQL; writes BENCHMARKS.md
	@scripts/bench-all.sh

bench-schedules: venv ## 1,000 and 10,000 every-minute schedules for 3 minutes, Jobsite beside stock beat
	@scripts/bench.sh bench/schedules.py $(or $(BENCH_ARGS),--schedules 1000 10000 --minutes 3)

bench-monitor: venv ## Time the monitoring pages at 1,000 and 1,000,000 runs, on SQLite and PostgreSQL
	@scripts/bench.sh bench/monitor_scale.py $(BENCH_ARGS)

lint: venv ## ruff check (must pass) and ruff format --check (advisory)
	$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check . || echo "note: formatting differs (advisory only; 'make format' rewrites it)"

format: venv ## ruff format and ruff check --fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: ## Remove .venv, .run (Redis data, test cluster), SQLite files, staticfiles/ and caches
	rm -rf $(VENV) .run staticfiles .pytest_cache .ruff_cache .hypothesis
	rm -f *.sqlite3 *.sqlite3-wal *.sqlite3-shm *.sqlite3-journal
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
