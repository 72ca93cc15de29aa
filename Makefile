# The two commands of the README:
#   make run    install what is needed, then start ptracker (dashboard + collector) on SQLite
#   make test   install what the tests need, then run the whole suite (SQLite, then PostgreSQL)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_ARGS ?=

.PHONY: run test lint bench bench-footprint clean browser wheel

run: $(VENV)/.installed node_modules/.installed
	$(BIN)/ptracker run $(RUN_ARGS)

test: $(VENV)/.installed-dev node_modules/.installed browser
	$(BIN)/python tests/run.py $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/bench_sampler.py

# The whole `ptracker run` tree against atop and glances (installs those when missing); ~12 min.
bench-footprint: $(VENV)/.installed-dev
	$(BIN)/python bench/bench_footprint.py $(BENCH_ARGS)

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ptracker needs Python 3.11 or newer; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[hub]"
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.installed

# A wheel in dist/ for machines without this repository: it carries the pages and the
# chart libraries (setup.py copies those from node_modules). See README, "Installing".
wheel: node_modules/.installed | $(VENV)/bin/python
	rm -rf build
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .

# Chart.js and its plugins, from the npm registry (package-lock.json pins them).
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "ptracker needs Node.js and npm for its chart libraries (Debian: apt-get install npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Browser tests drive Debian's Chromium through Playwright (no browser download).
# Installed when missing and we may; otherwise the browser tests skip and say why.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "no /usr/bin/chromium and not root: browser tests will be skipped"; fi; \
	fi

clean:
	rm -rf $(VENV) build dist *.egg-info
