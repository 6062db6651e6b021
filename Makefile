# Set-up is two commands on a fresh machine: `make run` and `make test`. Each creates .venv
# and installs the pinned dependencies first if they are missing or out of date.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run demo-prometheus lint test test-durations test-quick bench bench-cluster clean debian-test-deps \
        container container-test container-up container-down

# Python writes the bytecode of what it imports, once, into .venv and the checkout, as it does
# by default: where PYTHONDONTWRITEBYTECODE is set (some machines, this one), every process
# would compile torch, Prefect and MLflow anew (make test took 17 min 48 s instead of 12 min
# 15 s). So pip compiles nothing at install: compiling all 25,000 installed modules took 60 s
# of a 135 s install, the 6,000 that Vigil imports take 14 s, at their first import.
unexport PYTHONDONTWRITEBYTECODE

# constraints.txt pins every package of the environment, so it is installed as exactly that list
# with no resolver, then Vigil itself with the setuptools just installed; pip check then proves
# the set consistent, Vigil's own requirements included. uv (pinned here, installed by pip)
# installs the list from the places pip is configured to use (its find-links and indexes, every
# one trusted alike, as pip does), unpacking wheels in parallel: a fresh install took 27 s with
# uv's cache empty where pip took 1 min 16 s, on 2 cores. Where uv cannot be had or fails, pip
# installs the same list.
UV_VERSION = 0.13.9
PIP = $(PY) -m pip install --disable-pip-version-check -q --no-compile --no-deps
# pip's configured sources as uv's options: `pip config list` prints e.g. global.find-links='/opt/wheels'
PIP_SOURCES = $(PY) -m pip config list 2>/dev/null \
  | sed -nE "s/^[^.]*\.(index-url|extra-index-url|find-links)='(.*)'$$/\1 \2/p" \
  | while read -r key values; do for v in $$values; do printf -- '--%s %s ' "$$key" "$$v"; done; done
UV_INSTALL = $(VENV)/bin/uv pip install --python $(PY) --quiet --no-deps --index-strategy unsafe-best-match
# DVC 3.67.1's `dvc repro --dry` stops on a fresh clone ("failed to reproduce 'logs': No such file
# or directory: data/raw/dcache_billing"): before a dry run it asks its run cache, which hashes
# every dep of the stage, and a dep that an earlier stage would make does not exist yet
# (treeverse/dvc#9818, open). The fix, one condition (a missing dep: no run-cache entry, so the
# stage is shown as one that runs), is applied to this environment's DVC; make fails where the
# line is not found (DVC's code changed: look again).
DVC_RUN_CACHE = $(VENV)/lib/python3*/site-packages/dvc/stage/cache.py
DVC_UNFIXED = if not (dep.protocol == "local" and dep.def_path and dep.get_hash()):
DVC_FIXED = if not (dep.protocol == "local" and dep.def_path and dep.exists and dep.get_hash()):
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	($(PIP) uv==$(UV_VERSION) && $(UV_INSTALL) $$($(PIP_SOURCES)) -r constraints.txt) || $(PIP) -r constraints.txt
	$(PIP) --no-build-isolation -e .
	$(PY) -m pip check
	sed -i 's/$(DVC_UNFIXED)/$(DVC_FIXED)/' $(DVC_RUN_CACHE) && grep -qF '$(DVC_FIXED)' $(DVC_RUN_CACHE)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vigil run

# this machine's node_exporter -> a Prometheus of the demo's own -> Vigil -> the live page, about
# 10 minutes (README: Prometheus in); `vigil prometheus demo --help` for its settings
demo-prometheus: $(STAMP) debian-test-deps
	$(VENV)/bin/vigil prometheus demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# What tests need from Debian: PostgreSQL (a tuning study and the alerts store on a server),
# Chromium with its driver (the live page in a real browser), Alertmanager (incidents routed
# through it), Prometheus with its promtool (metrics scored through PromQL) and node_exporter
# (`make demo-prometheus`), podman with runc and debootstrap (Vigil's image, `make container`).
# Installed where missing and this user may (root with apt-get);
# elsewhere those tests skip, saying why.
DEBIAN_PKGS = $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
              $(if $(wildcard /usr/bin/chromium),,chromium) $(if $(wildcard /usr/bin/chromedriver),,chromium-driver) \
              $(if $(wildcard /usr/bin/prometheus-alertmanager),,prometheus-alertmanager) \
              $(if $(wildcard /usr/bin/prometheus),,prometheus) \
              $(if $(wildcard /usr/bin/prometheus-node-exporter),,prometheus-node-exporter) \
              $(if $(wildcard /usr/bin/podman),,podman) $(if $(wildcard /usr/sbin/runc),,runc) \
              $(if $(wildcard /usr/sbin/debootstrap),,debootstrap)
debian-test-deps:
	@if [ -n "$(strip $(DEBIAN_PKGS))" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PKGS) >/dev/null) \
	      || echo "make: could not install $(strip $(DEBIAN_PKGS)); their tests will skip"; \
	  else echo "make: $(strip $(DEBIAN_PKGS)) absent and not installable here; their tests will skip"; fi; \
	fi

# Every test (the slow ones too: what CI runs), test files spread over TEST_WORKERS processes
# (most tests wait on the servers and commands they start, so there are more than cores), in
# the order tests/conftest.py gives them (the files with the most slow tests first, the quick
# ones filling in at the end), not xdist's (the files with the most tests first).
TEST_WORKERS ?= 3
# One math thread per test process: the workers and the commands they start share 2 cores, and
# an idle torch (OpenMP) or OpenBLAS thread spins while another process holds its core
# (measured: a tuning test beside two busy processes took 75 s of CPU with 2 threads, 11 s with 1)
# The environments the tests make with pip (the TSB-AD peers' one, as a first benchmark does)
# skip compiling every installed module to bytecode, as make install does; Python compiles what
# is imported when it is imported (measured: pip's two installs there took 72 s of CPU, 32 s so).
TEST_ENV = OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PIP_COMPILE=0
# The tests' scratch (workspaces, SQLite stores, Prefect homes, the temporary files of the
# commands they start): a folder of its own, on a memory filesystem where one has room (each
# SQLite commit is synced to disk, and the kernel's CPU for that counts on 2 cores: test_pipeline
# and test_isolation took 163 s of CPU there instead of 172 s), else in the usual temporary
# folder. Readable by all, as PostgreSQL runs as its own user and reads its folder there; removed
# after a passing run, kept after a failing one to look at.
TEST_TMP_ROOT = $(shell d=/dev/shm; [ -d $$d ] && [ -w $$d ] \
  && [ "$$(df -Pk $$d | awk 'NR==2 {print $$4}')" -gt 4000000 ] && echo $$d || echo $${TMPDIR:-/tmp})
test: lint debian-test-deps
	scratch=$$(mktemp -d $(TEST_TMP_ROOT)/vigil-tests-XXXXXX) && chmod a+rx $$scratch && echo "tests' scratch: $$scratch" \
	  && TMPDIR=$$scratch $(TEST_ENV) $(PY) -m pytest -q -m "" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	  && rm -rf $$scratch

# Re-measure tests/durations.json (each test file's seconds; make test starts the longest
# first): a whole make test, which writes them when it passes.
test-durations:
	VIGIL_TEST_DURATIONS=$(CURDIR)/tests/durations.json $(MAKE) test

# The quick loop while developing: the tests not marked slow, in parallel.
test-quick: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Vigil's image from Debian's packages alone (debootstrap, podman import, podman build: 3 min
# 25 s here from nothing), its test (`vigil run` inside it, then its pod's pages), and the pod
# of the live page, `vigil serve` and MLflow's UI on one named volume, the checkout (README: A container).
PODMAN = CONTAINERS_CONF=$(CURDIR)/container/containers.conf podman
container: debian-test-deps
	sh container/build.sh

container-test: $(STAMP) container
	VIGIL_CONTAINER_TEST=1 $(TEST_ENV) $(PY) -m pytest -q -m "" tests/test_container.py

IN_IMAGE = $(PODMAN) run --rm --network host -v vigil-checkout:/srv/vigil localhost/vigil:latest
container-up: container
	$(PODMAN) volume exists vigil-checkout || ($(IN_IMAGE) vigil run --new-data-version && $(IN_IMAGE) vigil score)
	$(PODMAN) kube play --replace container/vigil-pod.yaml

container-down:
	$(PODMAN) kube down container/vigil-pod.yaml

bench: $(STAMP)
	$(PY) benchmarks/detectors.py

# The Dask scale-out measured: the benchmark in one process and on 1 and 2 workers, the full
# benchmark extrapolated to 8-128 workers, fleet scoring of 1,000 series (10 minutes here)
bench-cluster: $(STAMP)
	$(PY) benchmarks/cluster.py

clean:
	rm -rf $(VENV) .pytest_cache
