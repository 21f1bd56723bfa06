# kivi-otrs developer tasks. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: setup demo test test-real-schema lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"

setup: $(PY) ## virtualenv with kivi-otrs and the test tools
	@bash scripts/ensure-postgres.sh

demo: setup ## whole main job on a throwaway PostgreSQL and the local OTRS stand-in
	$(PY) -m kivi_otrs.demo.run

test: setup ## the test suite (a real PostgreSQL; Docker if it answers, else a throwaway cluster)
	$(PY) -m pytest -q

test-real-schema: setup ## the suite again on kivitendo's real 4.1.0 schema dump
	KIVI_OTRS_KIVITENDO_SCHEMA=$(abspath ../shared/facts/kivitendo-4.1.0-schema.sql) $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check kivi_otrs tests bench
	$(VENV)/bin/mypy

bench: setup ## benchmarks; each prints ratios against a baseline measured in the same run
	$(PY) bench/bench_customer_backend.py
	$(PY) bench/bench_otrs.py
	$(PY) bench/bench_positions.py
	$(PY) bench/bench_endpoint.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
