# radiomics-cds: `make demo` runs the service on the bundled sample, `make test` runs the tests.
# Both set up a virtual environment (.venv) from pyproject.toml first; `make test` also
# installs the Debian tools the tests drive (dcmtk, dicom3tools) when run as root.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system-deps demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

system-deps:
	scripts/install-system-deps

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo

test: setup system-deps
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) var
