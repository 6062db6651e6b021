# Set-up is two commands on a fresh machine: `make run` and `make test`. Each creates .venv
# and installs the pinned dependencies first if they are missing or out of date.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run lint test test-quick bench clean debian-test-deps

# Python writes the bytecode of what it imports, once, into .venv and the checkout, as it does
# by default: where PYTHONDONTWRITEBYTECODE is set (some machines, this one), every process
# would compile torch, Prefect and MLflow anew (make test took 17 min 48 s instead of 12 min
# 15 s). So pip compiles nothing at install: compiling all 25,000 installed modules took 60 s
# of a 135 s install, the 6,000 that Vigil imports take 14 s, at their first import.
unexport PYTHONDONTWRITEBYTECODE

# constraints.txt pins every package of the environment, so pip installs exactly that list with
# no resolver (which read every candidate's metadata from the indexes: some 20 s of CPU), then
# Vigil itself with the setuptools just installed; pip check then proves the set consistent,
# Vigil's own requirements included.
PIP = $(PY) -m pip install --disable-pip-version-check -q --no-compile --no-deps
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r constraints.txt
	$(PIP) --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vigil run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# What tests need from Debian: PostgreSQL (a tuning study and the alerts store on a server) and
# Chromium with its driver (the live page in a real browser). Installed where missing and this
# user may (root with apt-get); elsewhere those tests skip, saying why.
DEBIAN_PKGS = $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
              $(if $(wildcard /usr/bin/chromium),,chromium) $(if $(wildcard /usr/bin/chromedriver),,chromium-driver)
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
TEST_ENV = OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
test: lint debian-test-deps
	$(TEST_ENV) $(PY) -m pytest -q -m "" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The quick loop while developing: the tests not marked slow, in parallel.
test-quick: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: $(STAMP)
	$(PY) benchmarks/detectors.py

clean:
	rm -rf $(VENV) .pytest_cache
