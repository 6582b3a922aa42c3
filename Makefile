# radiomics-cds: `make demo` runs the service on the bundled sample, `make test` runs the tests,
# `make lint` runs the static checks (ruff, mypy; configured in pyproject.toml).
# Each sets up a virtual environment (.venv) from pyproject.toml first; `make test` also
# installs the Debian tools the tests drive (dcmtk, dicom3tools) when run as root.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system-deps fhir-validator deploy-tools mirp demo lint test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
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

# MIRP, the IBSI reference engine our features are compared with, in its own virtualenv (ITK).
mirp:
	scripts/install-mirp

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup system-deps fhir-validator deploy-tools mirp
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) .venv-tools .venv-mirp var $(FHIR_VALIDATOR)/node_modules
