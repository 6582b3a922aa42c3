"""Shared test fixtures: where the shared real data is, and external programs.

Real data lives in ../shared/data (never copied into the repo). External programs (dcmtk,
dicom3tools) are skipped with a message when absent, unless RCDS_REQUIRE_EXTERNAL=1 (CI sets
it), where a missing program is a failure: a green CI must not hide a missing install.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.processes import system_tool

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def missing_dependency(message: str) -> None:
    """Skip locally; fail in CI (RCDS_REQUIRE_EXTERNAL=1), where everything must be present."""
    if os.environ.get("RCDS_REQUIRE_EXTERNAL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The system's program (tests.support.processes.system_tool), or skip / fail saying so."""
    path = system_tool(name)
    if path is None:
        missing_dependency(f"{name} is not installed (Debian: dcmtk / dicom3tools)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        missing_dependency(f"shared test data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def sts019(data_dir: Path) -> Path:
    return data_dir / "ct-rtstruct" / "STS_019"


@pytest.fixture(scope="session", autouse=True)
def every_fhir_bundle_the_tests_write_validates(tmp_path_factory: pytest.TempPathFactory):
    """After the session, every *.fhir.json any test wrote under pytest's temporary directory
    (e2e, CLI, delivery, unit) goes through the independent validator in one run; an invalid one
    fails the session naming the file and the issue. Without the validator installed this
    checks nothing locally and fails in CI (missing_dependency's rule)."""
    yield
    from tests.support.fhir_validation import validator_available, validation_issues

    bundles = sorted(tmp_path_factory.getbasetemp().rglob("*.fhir.json"))
    if not bundles or not validator_available():
        assert not (bundles and os.environ.get("RCDS_REQUIRE_EXTERNAL") == "1"), "the FHIR validator is not installed"
        return
    invalid = {file: issues for file, issues in validation_issues(bundles).items() if issues}
    assert not invalid, f"{len(invalid)} of {len(bundles)} Bundles written by the tests are invalid: {invalid}"
