# fnagent: the single entry point. `make test` on a fresh Debian host sets everything up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH ?=

.PHONY: install docker postgres nginx cluster images test test-tools bench-tools unit bench lint serve demo clean screenshots

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint]'
	touch $@

install: $(VENV)/.installed  ## the virtualenv with fnagent and its test and lint tools

docker:  ## make a Docker engine available (installs and starts dockerd when needed)
	bash scripts/ensure-docker.sh

# The store tests start their own PostgreSQL (tests/postgres.py); this installs Debian's
# postgresql package when its programs are missing.
postgres:  ## PostgreSQL's server programs for the tests (installs them when needed)
	bash scripts/ensure-postgres.sh

# The cluster tests and `make cluster` run their own nginx in the foreground (a temporary
# prefix, a config rendered from deploy/nginx.conf); this installs Debian's nginx package when
# it is missing, without starting its service.
nginx:  ## nginx for the cluster tests and `make cluster` (installs it when needed)
	bash scripts/ensure-nginx.sh

include images/images.mk

images: docker

test: install docker images test-tools postgres nginx  ## the whole suite on a real dockerd
	$(PY) -m pytest $(PYTEST_ARGS)

unit: install postgres  ## the tests that need no Docker (they start their own PostgreSQL)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# BENCH=keepalive (or keepalive-plan) alone is a simulation: no Docker, no images.
BENCH_NEEDS := $(if $(filter-out keepalive keepalive-plan,$(BENCH)),docker images bench-tools,$(if $(BENCH),,docker images bench-tools))
# BENCH=cluster (and all of them) also runs PostgreSQL and nginx.
BENCH_NEEDS += $(if $(filter cluster,$(BENCH)),postgres nginx,$(if $(BENCH),,postgres nginx))

bench: install $(BENCH_NEEDS)  ## benchmarks: prints a table, writes bench-results/*.json
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m tests.bench $(BENCH)

lint: install
	$(VENV)/bin/ruff check fnagent drivers tests images scripts
	$(VENV)/bin/ruff format --check fnagent drivers tests scripts
	$(VENV)/bin/mypy  # strict, over fnagent, drivers and tests ([tool.mypy] in pyproject.toml)

clean:
	rm -rf $(VENV) images/build bench-results

# The system tests start a local registry (Debian's docker-registry, htpasswd auth) on 127.0.0.1;
# the page's browser tests drive Debian's chromium through Playwright (pip, in the test extras;
# never `playwright install`, which downloads browsers).
test-tools:
	@command -v docker-registry >/dev/null && command -v htpasswd >/dev/null || { \
	  echo "installing docker-registry and apache2-utils (htpasswd) for the registry tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils >/dev/null; }
	@command -v chromium >/dev/null || { echo "installing chromium for the browser tests of /ui"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The README's screenshots of the page at /ui (docs/ui-*.png), taken by its browser tests.
screenshots: install docker images test-tools
	FNAGENT_UI_SCREENSHOTS=docs $(PY) -m pytest tests/system/test_ui.py -q

# The main job: `fnagent serve` with the embedded store and the sample hello function deployed
# (prints the curl line that calls it; Ctrl-C stops it cleanly).
serve: install docker images
	bash scripts/serve-demo.sh

# Several agents behind nginx on one machine: PostgreSQL, three agents sharing it, nginx on
# FN_PORT (8080) with deploy/nginx.conf, the sample fn deployed; Ctrl-C stops everything and
# leaves nothing behind (scripts/cluster.py).
cluster: install docker images postgres nginx
	$(PY) scripts/cluster.py

# One cold and one http-stream function, run once with `fnagent run`.
demo: install docker images
	echo -n 'fnagent' | $(VENV)/bin/fnagent run fnagent/fn-shell
	echo -n '{"name": "fnagent"}' | $(VENV)/bin/fnagent run --format http-stream fnagent/fn-hello; echo

# The serve benchmark's load generator runs in its own process: wrk. The records benchmark
# counts recording's instructions with valgrind's callgrind.
bench-tools:
	@command -v wrk >/dev/null || { echo "installing wrk for the serve benchmark"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	@command -v valgrind >/dev/null || { echo "installing valgrind for the records benchmark"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
