# radiomics-cds: `make demo` runs the service on the bundled sample, `make test` runs the tests,
# `make lint` runs the static checks (ruff, mypy; configured in pyproject.toml).
# Each sets up a virtual environment (.venv) from pyproject.toml first; `make test` also
# installs the Debian tools the tests drive (dcmtk, dicom3tools) when run as root.

# The interpreter .venv is built with: python3 when it is a version pyproject.toml supports (3.11 to
# 3.13), otherwise the newest supported python3.X on PATH or in pyenv (scripts/find-python says how
# it chooses, and which versions to install when it finds none). `make PYTHON=/path/to/python` picks
# one; to move an existing .venv to another Python, `make clean` first. Evaluated once, on first
# use: `make clean` never looks for an interpreter.
PYTHON ?= $(eval PYTHON := $(shell scripts/find-python))$(PYTHON)
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system-deps fhir-validator deploy-tools mirp test-deps demo lint test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(if $(PYTHON),,$(error no supported Python found (see the message above)))
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

system-deps:
	scripts/install-system-deps

# The independent FHIR validator of the tests (Medplum + the official R4 definitions + the mCODE
# IG's profiles, pinned by tests/support/fhir_validator/package-lock.json), with the machine's
# node and npm.
FHIR_VALIDATOR := tests/support/fhir_validator
fhir-validator: $(FHIR_VALIDATOR)/node_modules/.package-lock.json

$(FHIR_VALIDATOR)/node_modules/.package-lock.json: $(FHIR_VALIDATOR)/package-lock.json
	npm ci --prefix $(FHIR_VALIDATOR) --no-audit --no-fund --loglevel=error

# checkov (the chart's policy check) in its own virtualenv: its dependencies conflict with ours.
deploy-tools:
	scripts/install-deploy-tools

# MIRP, the IBSI reference engine our features are compared with, in its own virtualenv (ITK), on
# the same interpreter as .venv (MIRP installs from wheels on every version we support).
mirp:
	PYTHON="$(PYTHON)" scripts/install-mirp

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Everything the tests need besides .venv's packages (CI installs it first, then runs the unit tests
# on a second Python beside `make test`).
test-deps: setup system-deps fhir-validator deploy-tools mirp

# The suite in TEST_WORKERS processes (pytest-xdist), whole test files to each: most of its time
# waits on its peers (Orthanc, storescu, serve), so two processes on two cores take about half
# the serial time. TEST_WORKERS=0 runs it in this process, in file order.
TEST_WORKERS ?= 2
test: test-deps
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) .venv-tools .venv-mirp .venv-py3* var $(FHIR_VALIDATOR)/node_modules
