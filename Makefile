# Every target creates .venv and installs the pinned dependencies first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check format clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet --requirement requirements.lock
	$(BIN)/pip install --quiet --no-deps --editable .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python infra/local_stack.py

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff format --check shared functions infra tests
	$(BIN)/ruff check shared functions infra tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format shared functions infra tests
	$(BIN)/ruff check --fix shared functions infra tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
