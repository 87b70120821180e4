# The two commands: `make run` and `make test`. Both create .venv and install pinned packages.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: run test lint services venv bench fuzz help simulate failover-time browser-test check-deploy chromium topology test-topology drill-topology nftables

help:
	@echo "make run    - install, migrate, create the demo, start control plane + nodes + supervisor"
	@echo "make test   - install and run the whole test suite against real PostgreSQL and Redis"
	@echo "make lint   - ruff"
	@echo "make bench  - print the engine, archive, heartbeat and cluster benchmark figures (and draw bench/latency.png)"
	@echo "make simulate SEEDS=1000000 - the deterministic protocol simulator over many seeds"
	@echo "make fuzz   - the API fuzzer (schemathesis), 100 cases per operation instead of make test's 6"
	@echo "make failover-time - 20 leader SIGKILLs on real processes: failover time p50/p99"
	@echo "make soak   - 30 minutes at 10,000 commands/s, snapshots and retention on, a node killed every minute (SOAK_MINUTES=30)"
	@echo "make bench-snapshots - snapshot pause (100k, 1M resting orders) and start-up time against log length"
	@echo "make browser-test - the dashboard and admin in headless Chromium (installs Debian's chromium if missing)"
	@echo "make check-deploy - Django's deployment checks with production-like variables"
	@echo "make topology - the demo cluster on a host (network namespace) each, until Ctrl-C (root)"
	@echo "make test-topology - the topology tests alone: the README demo and a drill with a partition and a Sentinel failover"
	@echo "make drill-topology - the long drill on the topology: 10 partitions, 5 leader kills, 2 Redis failovers"

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

# The same server as production (gunicorn + whitenoise, see README "Running in production"),
# with DEBUG on: a developer's machine, tracebacks welcome.
run: export DEBUG ?= true
run: $(VENV)/.runtime services
	$(PY) manage.py migrate --no-input -v0
	$(PY) manage.py collectstatic --no-input -v0
	$(PY) manage.py demo
	$(PY) manage.py redis_acl --apply
	$(PY) manage.py runlocal

# The project's bytecode, once: with PYTHONDONTWRITEBYTECODE set (as on the CI machine)
# each of the suite's few hundred processes (node workers, servers) would compile every
# module it imports again, about 0.3 s each.
test: $(VENV)/.dev services chromium nftables
	@$(PY) -m compileall -q -j 0 manage.py base wire archive nodes controlplane dev bench tests >/dev/null
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

# The API fuzzer with 100 cases per operation and actor (make test runs 6).
fuzz: $(VENV)/.dev services
	FUZZ_EXAMPLES=100 $(PY) -m pytest -q tests/controlplane/test_schemathesis.py

bench: $(VENV)/.dev services
	$(PY) bench/engine.py
	$(PY) bench/archive.py
	$(PY) bench/heartbeat.py
	$(PY) bench/cluster.py --plot bench/latency.png

SEEDS ?= 1000000
simulate: $(VENV)/.dev
	$(PY) -m tests.simulation --seeds $(SEEDS) --jobs 2

failover-time: $(VENV)/.dev services
	$(PY) -m pytest -m slow -s -q tests/nodes/test_failover_time.py

# Debian's chromium, driven by Playwright's Python package (which never downloads a browser
# here); without a browser the test skips and says why.
browser-test: $(VENV)/.dev services chromium nftables
	BROWSER_SCREENSHOTS=run/screenshots $(PY) -m pytest -q -rs -s tests/browser

# Debian's chromium for the browser test, installed when missing and apt can; never fails:
# without it the test skips and says why.
chromium:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		{ echo "installing Debian's chromium for the browser test"; \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || \
		echo "no chromium (apt-get install -y chromium): the browser test will skip"

check-deploy: $(VENV)/.runtime
	DEBUG=false SECRET_KEY=$$(head -c 48 /dev/urandom | base64) ALLOWED_HOSTS=cp.example.com HTTPS=true \
		$(PY) manage.py check --deploy --fail-level WARNING

# The real-process fault drill (manage.py drill --help): its own PostgreSQL, Redis, control
# plane and nodes in a temp dir; a short one (also in make test) and the long one.
.PHONY: drill drill-long
drill: $(VENV)/.dev
	$(PY) manage.py drill --commands 2500 --kills 3 --pauses 2 --redis-restarts 1 --pg-restarts 2 \
		--poison 4 --clock-steps 1 --cuts 2 --switchovers 1 --quorum-changes 1

drill-long: $(VENV)/.dev
	$(PY) manage.py drill --kills 20 --pauses 10 --redis-restarts 3 --pg-restarts 3 --poison 20 \
		--clock-steps 5 --commands 20000 --report drill-report.json

# Snapshots, retention, installs (README "Snapshots, retention, and nodes installed from a
# snapshot"): the soak is a long run, not part of make test.
.PHONY: soak bench-snapshots
SOAK_MINUTES ?= 30
soak: $(VENV)/.dev services
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES) --rate 10000 --kill-every 60 --down 3

bench-snapshots: $(VENV)/.dev services
	$(PY) bench/snapshot.py --inline
	$(PY) bench/startup.py --events 10000,1000000

# Many hosts on one machine (README "Many machines"): a network namespace per host, each
# node with its own PostgreSQL, Redis primary + replica + three Sentinels. Needs root;
# Debian's nftables is installed when missing (as chromium is above).
nftables:
	@command -v nft >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null 2>&1; }; }; } || \
		echo "no nft (apt-get install -y nftables): the topology tests will skip"

topology: $(VENV)/.runtime nftables
	$(PY) manage.py topology

# Also part of `make test` (about a minute); this runs them alone.
test-topology: $(VENV)/.dev services nftables
	$(PY) -m pytest -q -rs tests/topology

drill-topology: $(VENV)/.dev nftables
	$(PY) manage.py drill --topology netns --partitions 10 --leader-kills 5 --redis-failovers 2 \
		--commands 20000 --report drill-topology-report.json
