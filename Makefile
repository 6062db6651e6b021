# Set-up is two commands on a fresh machine: `make run` and `make test`. Each creates .venv
# and installs the pinned dependencies first if they are missing or out of date.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run lint test test-all bench clean debian-test-deps

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[dev]"
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vigil run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# What tests need from Debian: PostgreSQL (a tuning study shared through a server). Installed
# where missing and this user may (root with apt-get); elsewhere those tests skip, saying why.
debian-test-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	      || echo "make: could not install postgresql; its tests will skip"; \
	  else echo "make: postgresql is absent and cannot be installed here; its tests will skip"; fi; \
	fi

test: lint debian-test-deps
	$(PY) -m pytest -q

test-all: lint debian-test-deps
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(PY) benchmarks/detectors.py

clean:
	rm -rf $(VENV) .pytest_cache
