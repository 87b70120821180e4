# The two commands: `make run` and `make test`. Both create .venv and install pinned packages.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: run test lint services venv bench help simulate failover-time

help:
	@echo "make run    - install, migrate, create the demo, start control plane + nodes + supervisor"
	@echo "make test   - install and run the whole test suite against real PostgreSQL and Redis"
	@echo "make lint   - ruff"
	@echo "make bench  - print the engine, archive and cluster benchmark figures"
	@echo "make simulate SEEDS=1000000 - the deterministic protocol simulator over many seeds"
	@echo "make failover-time - 20 leader SIGKILLs on real processes: failover time p50/p99"

$(VENV)/.runtime: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.dev

services: $(VENV)/.runtime
	@$(PY) -m controlplane.bootstrap

run: $(VENV)/.runtime services
	$(PY) manage.py migrate --no-input -v0
	$(PY) manage.py demo
	$(PY) manage.py runlocal

test: $(VENV)/.dev services
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

bench: $(VENV)/.dev services
	$(PY) bench/engine.py
	$(PY) bench/archive.py

SEEDS ?= 1000000
simulate: $(VENV)/.dev
	$(PY) -m tests.simulation --seeds $(SEEDS) --jobs 2

failover-time: $(VENV)/.dev services
	$(PY) -m pytest -m slow -s -q tests/nodes/test_failover_time.py
