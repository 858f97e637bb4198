# Every target creates .venv and installs the pinned dependencies first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check format clean package bench

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet --requirement requirements.lock
	$(BIN)/pip install --quiet --no-deps --editable .
	touch $(STAMP)

# checkov pins many packages of its own, so it gets its own environment.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): tests/infra/checkov-requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip==25.3
	$(CHECKOV_VENV)/bin/pip install --quiet --requirement tests/infra/checkov-requirements.txt
	touch $(CHECKOV_STAMP)

run: $(STAMP)
	$(BIN)/python infra/local_stack.py

test: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff format --check shared functions infra tests
	$(BIN)/ruff check shared functions infra tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format shared functions infra tests
	$(BIN)/ruff check --fix shared functions infra tests

# Source bundles for Terraform: build/functions/<name>.zip.
package: $(STAMP)
	$(BIN)/python infra/package.py

# Benchmarks beside same-run baselines, written to docs/benchmarks.md (a few
# minutes on two cores). BENCH_SCALE=small is a smoke run of about a minute
# that writes build/benchmarks-small.md instead.
BENCH_SCALE ?= full

bench: $(STAMP)
	$(BIN)/python -m bench --scale $(BENCH_SCALE)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
