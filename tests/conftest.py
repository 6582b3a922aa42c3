"""Shared test fixtures: where the shared real data is, and the running test for the marker check.

What is outside the repository (the shared real data in ../shared/data, external programs) is
looked up through tests/support/external.py: absent, it skips locally and fails under
RCDS_REQUIRE_EXTERNAL=1 (CI sets it), where a green run must not hide a missing install.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import external
from tests.support.external import DATA_DIR, require_data


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Tell tests/support/external.py which test runs (its fixtures included), so that looking
    up a program from a test not marked `external` fails that test."""
    external.current_item = item
    try:
        return (yield)
    finally:
        external.current_item = None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data; tests reach into it as data_dir / "...", or use require_data."""
    return require_data(DATA_DIR)


@pytest.fixture(scope="session")
def sts019(data_dir: Path) -> Path:
    return require_data(data_dir / "ct-rtstruct" / "STS_019")


@pytest.fixture(scope="session", autouse=True)
def every_fhir_bundle_the_tests_write_validates(tmp_path_factory: pytest.TempPathFactory):
    """After the session, every *.fhir.json any test wrote under pytest's temporary directory
    (e2e, CLI, delivery, unit) goes through the independent validator in one run; an invalid one
    fails the session naming the file and the issue. Without the validator installed this
    checks nothing locally and fails in CI (missing_dependency's rule)."""
    yield
    from tests.support.fhir_validation import run_validator, validator_available

    bundles = sorted(tmp_path_factory.getbasetemp().rglob("*.fhir.json"))
    if not bundles or not validator_available():
        assert not (bundles and os.environ.get("RCDS_REQUIRE_EXTERNAL") == "1"), "the FHIR validator is not installed"
        return
    invalid = {file: issues for file, issues in run_validator(bundles).items() if issues}
    assert not invalid, f"{len(invalid)} of {len(bundles)} Bundles written by the tests are invalid: {invalid}"
