# Lovelace: `make demo` runs the whole product on this machine; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv
LOCK := requirements/dev.lock
TORCH_VERSION := 2.13.0

# Tests use the real PostgreSQL and Redis of this machine unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/lovelace
# Test process N uses Redis database 13 + N (modulo 16): 13, 14 and 15, away from the default 0.
TEST_BROKER_URL ?= redis://127.0.0.1:6379/13

.PHONY: demo test install lock lint types services chromium bench clean

install: $(STAMP)

# Everything but torch comes from a lock file with hashes (requirements/lock.sh says why torch is
# apart), installed by uv without resolving: the same bytes on every machine, in seconds.
# torch goes first and alone, pinned by version: the CPU wheel lies on this machine's disk, and
# pip takes it from there (uv does not look there); asked for any other way, a multi-gigabyte CUDA
# build would come from PyPI. `pip check` then proves that the lock holds all torch needs.
$(STAMP): pyproject.toml $(LOCK) requirements/uv.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements/uv.lock
	$(UV) pip install --quiet --python $(PY) --no-deps --require-hashes -r $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

# Regenerates requirements/*.lock from pyproject.toml (needs PyPI); commit the result.
lock: $(STAMP)
	UV=$(UV) requirements/lock.sh

demo: $(STAMP)
	$(PY) manage.py demo $(if $(CORPUS),--corpus $(CORPUS))

# Test tools from Debian: Chromium for the browser tests; docker-compose to validate
# docker-compose.yml where a docker client is installed but not its compose plugin.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	@if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy

# The suite runs in TEST_PROCESSES processes (pytest-xdist), more than this 2-core machine's cores:
# much of it waits on worker, gunicorn and Chromium subprocesses. Each process has its own test
# database, Redis database (the broker's + 0, 1, 2…) and var folder (tests/settings.py). Tests
# marked xdist_group share one process (--dist loadgroup). PYTEST_ARGS come last and win:
# PYTEST_ARGS="-n 0" runs the suite in one process.
TEST_PROCESSES ?= 3

test: $(STAMP) chromium lint types
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadgroup $(PYTEST_ARGS)

# The loop bench takes 10-45 minutes per oracle: `$(PY) -m bench.loop --oracle garden` (see its docstring).
bench: $(STAMP)
	$(PY) -m bench.leaderboard
	$(PY) -m bench.generation
	$(PY) -m bench.rating_load

clean:
	rm -rf var test-artifacts .pytest_cache .mypy_cache .ruff_cache
