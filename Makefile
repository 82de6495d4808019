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

.PHONY: run test test-embedded test-service smoke check lint format clean messages

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

# Claude Code's CLI for tests/relay/test_claude_code.py, from npm into
# .venv/node; without node that one test is skipped.
CLAUDE_CODE_VERSION := 2.1.197
$(VENV)/node/.installed: | $(BIN)/python
	@if command -v npm >/dev/null; then \
		npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error \
			@anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) && touch $@; \
	else echo "npm not found: the Claude Code CLI test will be skipped"; fi

test-embedded: $(VENV)/.dev $(VENV)/node/.installed
	DATABASE_URL= REDIS_URL= ONEPROXY_FAIL_ON_SKIP= ONEPROXY_DATA_DIR=$(CURDIR)/data/test-embedded \
		$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

test-service: $(VENV)/.dev $(VENV)/node/.installed
	ONEPROXY_DATA_DIR=$(CURDIR)/data/test-service \
		$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

# Deployment smoke test (tests/deploy/): `make run` in a fresh copy of the
# repository, whose venv is built from requirements.txt alone, in service mode
# (a new database on DATABASE_URL's PostgreSQL server, a Redis server of its
# own) and in embedded mode, checked from outside. Logs in data/artifacts/smoke/.
smoke: $(VENV)/.dev
	$(BIN)/pytest tests/deploy -p no:django -p no:cacheprovider --confcutdir=tests/deploy -rP -W "ignore:Unknown config option"

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint test

# Translations (zh-hans). `make messages` extracts every marked string into
# locale/zh_Hans/LC_MESSAGES/django.po (Django: admin, models, templates) and
# relay/locale/zh_Hans/LC_MESSAGES/relay.po (the relay's error messages,
# marked with N_), keeping the translations already there, then compiles the
# .mo files. Needs GNU gettext (apt-get install gettext). Translate the new
# entries, run it again, commit .po and .mo; tests/oneproxy/test_translations.py
# fails while any entry is untranslated or a .mo is stale.
MESSAGES_IGNORE := --ignore='.venv*' --ignore=tests --ignore=bench --ignore=relay --ignore=data --ignore=static --ignore=docker
RELAY_PO := relay/locale/zh_Hans/LC_MESSAGES/relay.po

messages: $(VENV)/.dev
	DATABASE_URL= REDIS_URL= $(BIN)/python manage.py makemessages -l zh_Hans --no-obsolete $(MESSAGES_IGNORE)
	xgettext --language=Python --keyword= --keyword=N_ --from-code=UTF-8 --sort-by-file \
		--package-name=oneproxy -o relay/locale/relay.pot $$(find relay -name '*.py' | sort)
	msgmerge --quiet --update --backup=none --no-fuzzy-matching $(RELAY_PO) relay/locale/relay.pot
	msgattrib --no-obsolete -o $(RELAY_PO) $(RELAY_PO)
	rm relay/locale/relay.pot
	DATABASE_URL= REDIS_URL= $(BIN)/python manage.py compilemessages --ignore='.venv*'

clean:
	rm -rf $(VENV) static data/test-embedded data/test-service

# --- benchmark (bench/, docs/BENCHMARKS.md) -----------------------------------
# `make bench` measures oneproxy against the direct upstream, the bare
# pass-through floor and LiteLLM Proxy, and writes docs/BENCHMARKS.md with
# plots (< 10 minutes). It installs nginx and wrk with apt-get when missing
# (root, Debian) and keeps its tools in .venv-bench, LiteLLM in .venv-litellm:
# none of them is a runtime dependency of oneproxy.
BENCH_VENV := .venv-bench
LITELLM_VENV := .venv-litellm
LITELLM_VERSION := 1.110.2

.PHONY: bench bench-peers

$(BENCH_VENV)/.installed: bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -r bench/requirements.txt
	touch $@

bench: $(VENV)/.runtime $(BENCH_VENV)/.installed
	@command -v nginx >/dev/null && command -v wrk >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx wrk || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx wrk; }
	@# LiteLLM is optional: if it cannot be installed the report says so and the rest runs.
	-@$(MAKE) --no-print-directory bench-peers
	$(BENCH_VENV)/bin/python -m bench.run

# LiteLLM's [proxy] extra does not resolve from the package index here, so
# litellm goes in without its dependencies, then the pinned set it runs with.
bench-peers: $(LITELLM_VENV)/.installed

$(LITELLM_VENV)/.installed: bench/litellm-requirements.txt
	rm -rf $(LITELLM_VENV)
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install -q --no-deps litellm==$(LITELLM_VERSION)
	$(LITELLM_VENV)/bin/pip install -q -r bench/litellm-requirements.txt
	touch $@

# --- reliability (reliability/, docs/RELIABILITY.md) ---------------------------
# `make reliability` runs the fault, abuse and soak scenarios against the
# gateway in both modes and writes docs/RELIABILITY.md from that one run
# (< 10 minutes). Service mode uses PostgreSQL at 127.0.0.1:5432 (a database
# of its own, created and dropped) and a redis-server of its own on a free
# port, never the shared one. It installs wrk with apt-get when missing.
.PHONY: reliability

reliability: $(VENV)/.dev
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
	$(BIN)/python -m reliability.run
