# Set-up is two commands on a fresh machine: `make run` and `make test`. Each creates .venv
# and installs the pinned dependencies first if they are missing or out of date.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run lint test test-all bench clean

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

test: lint
	$(PY) -m pytest -q

test-all: lint
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(PY) benchmarks/detectors.py

clean:
	rm -rf $(VENV) .pytest_cache
