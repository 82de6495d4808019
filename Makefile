# oneproxy — `make run` serves the gateway, `make test` runs the tests.
# Both create .venv themselves; the only prerequisite is Python 3.11+.

PORT ?= 3000
DATABASE_URL ?=
REDIS_URL ?=
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PORT DATABASE_URL REDIS_URL

# Tests run in parallel across the machine's cores.
PYTEST_WORKERS ?= auto

.PHONY: run test test-embedded test-service check lint format clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "oneproxy needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(VENV)/.runtime $@

run: $(VENV)/.runtime
	$(BIN)/python manage.py serve

# The embedded suite always runs; the service suite when both URLs are set.
test: test-embedded
	@if [ -n "$(DATABASE_URL)" ] && [ -n "$(REDIS_URL)" ]; then \
		$(MAKE) --no-print-directory test-service; \
	else \
		echo "service-mode suite not run: set DATABASE_URL (PostgreSQL) and REDIS_URL to run it"; \
	fi

test-embedded: $(VENV)/.dev
	DATABASE_URL= REDIS_URL= ONEPROXY_FAIL_ON_SKIP= ONEPROXY_DATA_DIR=$(CURDIR)/data/test-embedded \
		$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

test-service: $(VENV)/.dev
	ONEPROXY_DATA_DIR=$(CURDIR)/data/test-service \
		$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint test

clean:
	rm -rf $(VENV) data/test-embedded data/test-service
