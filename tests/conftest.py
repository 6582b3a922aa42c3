"""Shared test fixtures: where the shared real data is, and external programs.

Real data lives in ../shared/data (never copied into the repo). External programs (dcmtk,
dicom3tools) are skipped with a message when absent, unless RCDS_REQUIRE_EXTERNAL=1 (CI sets
it), where a missing program is a failure: a green CI must not hide a missing install.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def missing_dependency(message: str) -> None:
    """Skip locally; fail in CI (RCDS_REQUIRE_EXTERNAL=1), where everything must be present."""
    if os.environ.get("RCDS_REQUIRE_EXTERNAL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The system's program (dcmtk, dicom3tools), never a same-named script in our virtualenv:
    pynetdicom installs Python apps called storescp, storescu, ... there."""
    venv_bin = Path(sys.executable).parent
    search = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != venv_bin)
    path = shutil.which(name, path=search)
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
