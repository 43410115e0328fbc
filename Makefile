# `make demo` and `make test` set everything up on a machine with Python 3.11 and nothing else.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/workbench demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check workbench connectors tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/queries.py
	$(BIN)/python bench/formulas.py
	$(BIN)/python bench/rules.py

bench-quick: $(VENV)/.installed-dev
	$(BIN)/python bench/pipeline.py --sizes 100000 --no-pandas-limit
	$(BIN)/python bench/queries.py --rows 1000000
	$(BIN)/python bench/formulas.py --quick
	$(BIN)/python bench/rules.py --quick

clean:
	rm -rf .workbench .pytest_cache .mypy_cache .ruff_cache
