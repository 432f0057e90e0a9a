# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean-demo

$(STAMP): requirements/base.txt requirements/engine.txt requirements/training.txt requirements/production.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

## Run the whole lifecycle on the embedded default and leave the admin running.
demo: $(STAMP)
	$(PY) manage.py run_demo

## Run the whole test suite against PostgreSQL, Redis and an SSH server.
test: $(STAMP)
	$(PY) -m tests.stack -- $(PY) -m pytest

## Every benchmark, one table beside its peers (test-artifacts/bench.json). About 15 minutes.
BENCH_VENV := var/bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): requirements/engine.txt requirements/bench.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements/bench.txt
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py --bench-python $(BENCH_VENV)/bin/python --project-python $(PY)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	# No import circle inside models_registry, imports inside functions counted (grimp; no database).
	$(PY) -m pytest -q -p no:cacheprovider tests/registry/test_import_rules.py

## Start over: forget the demo's database, data store and artifacts.
clean-demo:
	rm -rf var/
