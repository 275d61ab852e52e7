# One command to run the app, one to test it. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# Spinning OpenMP threads burn the CPU that training needs when the machine is shared.
export OMP_WAIT_POLICY ?= PASSIVE
# Tests use their own Redis so a running dev worker never takes their tasks.
TEST_ENV := TRIAGE_ENV=test TRIAGE_REDIS_PORT=6392

.PHONY: help venv browser run services migrate demo worker stop-worker web test test-fast bench stop lint clean

help:
	@echo "make run    - install, start Postgres+pgvector and Redis, migrate, load demo data, start a worker and the web server"
	@echo "make test   - the whole test suite (installs what it needs, Chromium included)"
	@echo "make bench  - benchmarks (bench/), results in bench/results/"
	@echo "make stop   - stop the embedded Postgres and Redis and background workers"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

# Debian's Chromium for the Playwright browser tests (Playwright's own browser download cannot work offline).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

services: venv
	$(PY) manage.py check --deploy --fail-level ERROR >/dev/null 2>&1 || true
	$(PY) -c "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','config.settings'); import django; django.setup(); from django.conf import settings; print('Postgres:', settings.DATABASES['default']['HOST'] or 'local socket', '| Redis:', settings.REDIS_URL)"

migrate: venv
	$(PY) manage.py migrate --no-input

demo: migrate
	$(PY) manage.py load_demo

# The worker host (config/workers.py): an inference worker whose one pool process holds the models, a
# training worker and beat, each known by its pid file under .data/ (never by name: other checkouts'
# workers on this machine are left alone). Logs: .data/logs/worker-<name>.log.
worker: venv stop-worker
	$(PY) -m config.workers start

# TERM lets running tasks finish (warm shutdown); after 30 s a process is killed.
stop-worker:
	@$(PY) -m config.workers stop

web: venv
	@echo ""
	@echo "  Triage is at http://$(HOST):$(PORT)/  (health: http://$(HOST):$(PORT)/healthz)"
	@echo "  Log in as admin / triage-admin (admin) or agent / triage-agent (agent)."
	@echo ""
	@# DEBUG is off unless asked for; the development server asks (DJANGO_DEBUG=0 make web to see production pages).
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(PY) manage.py runserver $(HOST):$(PORT)

run: demo worker web

# The layer contracts first (pyproject.toml): a broken one fails the run before any test starts.
test: venv browser
	$(VENV)/bin/lint-imports
	$(TEST_ENV) $(PY) -m pytest

test-fast: venv
	$(VENV)/bin/lint-imports
	$(TEST_ENV) $(PY) -m pytest -m "not browser and not slow"

bench: venv
	mkdir -p bench/results
	$(TEST_ENV) $(PY) bench/run_all.py

stop: stop-worker
	$(PY) -c "from config.embedded import stop_all; stop_all()"

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

clean: stop
	rm -rf .data artifacts
