"""The `external` marker cannot drift from what a test does: a test that looks up a program
(require_tool, require_package, require_external) without the marker fails, with the marker it
runs, and an unknown marker is an error (--strict-markers). Checked by running pytest on three
tiny test files under this repository's tests/conftest.py, so the real hook is what is tested.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CASES = '''
import pytest
from tests.support.external import require_package, require_tool

def test_unmarked_lookup():
    require_tool("sh")

def test_unmarked_package():
    require_package("json", "stdlib")

@pytest.mark.external
def test_marked_lookup():
    assert require_tool("sh")

def test_no_lookup():
    pass
'''


def _pytest(source: str, *options: str) -> subprocess.CompletedProcess:
    """pytest on a test file holding `source`, written under tests/ (so the root conftest and
    pyproject's settings apply) for the run only."""
    probe = REPO / "tests" / "unit" / f"probe_markers_{os.getpid()}.py"
    probe.write_text(source)
    try:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, str(probe)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()


def test_a_program_looked_up_by_an_unmarked_test_fails_it():
    run = _pytest(CASES, "-rA")
    outcomes = {line.split(" ", 1)[1].split("::")[1].split(" ")[0]: line.split(" ", 1)[0]
                for line in run.stdout.splitlines() if line.startswith(("PASSED", "FAILED", "SKIPPED", "ERROR"))}
    assert outcomes == {"test_unmarked_lookup": "FAILED", "test_unmarked_package": "FAILED",
                        "test_marked_lookup": "PASSED", "test_no_lookup": "PASSED"}, run.stdout
    assert "needs sh but is not marked external" in run.stdout


def test_an_unknown_marker_is_an_error():
    run = _pytest("import pytest\n\n@pytest.mark.extrenal\ndef test_typo():\n    pass\n")
    assert run.returncode != 0 and "'extrenal' not found in `markers` configuration option" in run.stdout + run.stderr
