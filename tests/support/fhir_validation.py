"""Independent FHIR validation for the tests: Medplum's validator run by node against the
official FHIR R4 StructureDefinitions and, for a resource declaring one in meta.profile, the mCODE
IG's profile (tests/support/fhir_validator, installed by `make fhir-validator`). It shares no code with fhir.resources, which builds our resources, so a
mistake in our models or in fhir.resources' own R4B models cannot validate itself."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.support.external import missing_dependency, require_external

VALIDATOR = Path(__file__).resolve().parent / "fhir_validator"


def validator_available() -> bool:
    modules = VALIDATOR / "node_modules"
    return shutil.which("node") is not None and all(
        (modules / package).is_dir() for package in ("@medplum/core", "hl7.fhir.us.mcode"))


def validation_issues(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Every issue the validator finds, per file (a Bundle's entries included)."""
    require_external("the FHIR validator (node)")
    if not validator_available():
        missing_dependency("the FHIR validator is not installed: node >= 20.19 and `make fhir-validator`")
    return run_validator(paths)


def run_validator(paths: Iterable[Path]) -> dict[str, list[str]]:
    """validation_issues without the lookup policy, for the session's own check in
    tests/conftest.py (which runs after the tests, outside any test's markers)."""
    files = [str(p) for p in paths]
    node = shutil.which("node")
    if not files:
        return {}
    answer = subprocess.run([node, str(VALIDATOR / "validate.cjs"), *files], capture_output=True, text=True,
                            timeout=300)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def assert_valid_fhir(*paths: Path) -> None:
    """Fail naming each file and its issues (warnings included: we produce none)."""
    invalid = {file: issues for file, issues in validation_issues(paths).items() if issues}
    assert not invalid, json.dumps(invalid, indent=1)
