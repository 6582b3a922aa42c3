"""The supported Python versions: pyproject.toml states them twice (requires-python, for pip; the
classifiers, which scripts/find-python reads to pick the interpreter `make` builds .venv with), and
the static checks target the oldest. These tests keep the statements in step and run the real
script against interpreter layouts built in a temporary directory from the running interpreter.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from tests.support.external import missing_dependency, require_external
from tests.support.processes import system_tool

REPO = Path(__file__).resolve().parents[2]
FIND_PYTHON = REPO / "scripts" / "find-python"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CLASSIFIED = sorted(
    (tuple(int(part) for part in match.group(1).split(".")) for classifier in PYPROJECT["project"]["classifiers"]
     if (match := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", classifier))),
)
RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
# What the script runs: a PATH of these alone has no Python on it.
TOOLS = ("bash", "sed", "sort", "ls", "tac", "paste", "dirname")


def test_classifiers_are_exactly_the_versions_requires_python_accepts() -> None:
    accepts = SpecifierSet(PYPROJECT["project"]["requires-python"])
    accepted = [(3, minor) for minor in range(30) if f"3.{minor}.0" in accepts]
    assert all(f"3.{minor}.99" in accepts for _, minor in accepted)  # whole minor versions, no patch cut-off
    assert CLASSIFIED == accepted
    assert sys.version_info[:2] in CLASSIFIED  # the tests run on a supported Python


def test_static_checks_target_the_oldest_supported_python() -> None:
    oldest = CLASSIFIED[0]
    assert PYPROJECT["tool"]["mypy"]["python_version"] == "%d.%d" % oldest
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py%d%d" % oldest


def _bin_dir(tmp_path: Path) -> Path:
    """A PATH directory with the tools the script needs and no Python."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is part of every Debian system"
        (directory / tool).symlink_to(found)
    return directory


def _find_python(bin_dir: Path, pyenv_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": str(bin_dir), "PYENV_ROOT": str(pyenv_root), "HOME": str(pyenv_root)}
    return subprocess.run([str(bin_dir / "bash"), str(FIND_PYTHON), *args], env=environment,
                          capture_output=True, text=True, timeout=60)


def _version_of(interpreter: str) -> str:
    return subprocess.run([interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def test_a_supported_python3_is_the_one_used(tmp_path: Path) -> None:
    bin_dir = _bin_dir(tmp_path)
    (bin_dir / "python3").symlink_to(sys.executable)
    result = _find_python(bin_dir, tmp_path / "no-pyenv")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == bin_dir
    assert _version_of(result.stdout.strip()) == RUNNING


def test_pyenv_versions_are_found_newest_patch_first(tmp_path: Path) -> None:
    """python3 here stands in for a pyenv shim whose version pyenv does not select: it fails when
    run (no real pyenv in the tests), and the script goes on to pyenv's own directories."""
    bin_dir = _bin_dir(tmp_path)
    shim = bin_dir / "python3"
    shim.write_text("#!/bin/sh\necho \"pyenv: python3: command not found\" >&2\nexit 127\n")
    shim.chmod(0o755)
    pyenv_root = tmp_path / "pyenv"
    for patch in ("9", "10"):  # 10 is newer than 9: a version sort, not a text sort
        versioned = pyenv_root / "versions" / f"{RUNNING}.{patch}" / "bin"
        versioned.mkdir(parents=True)
        (versioned / f"python{RUNNING}").symlink_to(sys.executable)
    result = _find_python(bin_dir, pyenv_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(pyenv_root / "versions" / f"{RUNNING}.10" / "bin" / f"python{RUNNING}")
    assert _find_python(bin_dir, pyenv_root, RUNNING).stdout == result.stdout  # CI's second interpreter, by version


def test_no_supported_python_names_the_versions_to_install(tmp_path: Path) -> None:
    result = _find_python(_bin_dir(tmp_path), tmp_path / "no-pyenv")
    names = ["%d.%d" % version for version in CLASSIFIED]
    assert result.returncode == 1 and result.stdout == ""
    assert f"needs Python {', '.join(names[:-1])} or {names[-1]}" in result.stderr
    assert "make PYTHON=" in result.stderr


@pytest.mark.parametrize("version", ["3.10", "3.99"])
def test_an_unsupported_version_is_refused_by_name(tmp_path: Path, version: str) -> None:
    bin_dir = _bin_dir(tmp_path)
    (bin_dir / f"python{version}").symlink_to(sys.executable)
    result = _find_python(bin_dir, tmp_path / "no-pyenv", version)
    assert result.returncode == 2 and result.stdout == ""
    assert f"Python {version} is not supported" in result.stderr


@pytest.mark.external
def test_make_builds_the_venv_with_the_script_s_choice_or_stops(tmp_path: Path) -> None:
    """`make -n -B setup` prints the recipe without running it (nothing is installed)."""
    require_external("make")
    make = system_tool("make")
    if make is None:
        missing_dependency("make is not installed (Debian: make)")
    bin_dir = _bin_dir(tmp_path)
    environment = {"PATH": str(bin_dir), "PYENV_ROOT": str(tmp_path / "no-pyenv"), "HOME": str(tmp_path)}
    command = [str(make), "--no-print-directory", "-n", "-B", "-C", str(REPO), "setup"]
    stopped = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    assert stopped.returncode != 0 and stopped.stdout == ""
    assert "No supported Python found" in stopped.stderr and "no supported Python found" in stopped.stderr
    (bin_dir / "python3").symlink_to(sys.executable)
    planned = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines()[0] == f"{bin_dir / 'python3'} -m venv .venv"
