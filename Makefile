# The two commands of the README:
#   make run    install what is needed, then start ptracker (dashboard + collector) on SQLite
#   make test   install what the tests need, then run the whole suite (SQLite, then PostgreSQL)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_ARGS ?=

.PHONY: run test lint bench clean

run: $(VENV)/.installed
	$(BIN)/ptracker run $(RUN_ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/python tests/run.py $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/bench_sampler.py

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ptracker needs Python 3.11 or newer; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) build *.egg-info
