"""The command line's exit status says what to fix: the command line (2), the settings (3), the
input (4), or a peer to wait for (5); --help and the README list them. Each case is a real
command in a subprocess, as a script or a supervisor would meet it."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from service import cli
from service.commands import COMMANDS
from service.exit_codes import ExitCode
from tests.support import small_study
from tests.support.processes import LOOPBACK, free_port

CLI = [sys.executable, "-m", "service.cli"]
REPO = Path(__file__).resolve().parents[2]
# The documented numbers, stated here rather than read from the code under test.
DOCUMENTED = {"ok": 0, "failed": 1, "usage": 2, "config": 3, "input": 4, "unavailable": 5, "interrupted": 130}


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("radiomics-cds: ")]
    return line


def test_the_codes_are_the_documented_ones() -> None:
    assert {code.name.lower(): code.value for code in ExitCode} == DOCUMENTED


def test_every_command_of_the_parser_has_what_runs_it_and_no_other() -> None:
    """The parser (service.cli) and the commands (service.commands, a module each) are apart: a
    command added to one and not the other would end in an ImportError, not in its work."""
    [commands] = [action for action in cli._parser()._actions if isinstance(action, argparse._SubParsersAction)]
    assert set(commands.choices) == set(COMMANDS)
    for command in COMMANDS:
        assert callable(importlib.import_module(f"service.commands.{command}").run), command


def test_help_describes_the_command_line_not_its_module() -> None:
    done = _run("--help")
    assert done.returncode == 0
    assert "radiomics-cds command line" in done.stdout and "service.commands" not in done.stdout


def test_usage() -> None:
    assert _run("frobnicate").returncode == 2
    assert _run("send").returncode == 2  # no path


def test_configuration(tmp_path: Path) -> None:
    (tmp_path / "index.sqlite").touch()
    done = _run("status", RCDS_VAR_DIR=str(tmp_path), RCDS_PACS_PORT="70000")
    assert done.returncode == 3 and "pacs_port must be a TCP port" in _one_line_error(done)


@pytest.mark.parametrize(("content", "said"), [(None, "No such file or directory"), (b"not DICOM", "'DICM' prefix")],
                         ids=["missing", "not-dicom"])
def test_input(tmp_path: Path, content: bytes | None, said: str) -> None:
    path = tmp_path / "sr.dcm"
    if content is not None:
        path.write_bytes(content)
    done = _run("show", str(path))
    assert done.returncode == 4, done.stderr
    assert said in _one_line_error(done)


def test_the_error_line_names_no_uid(tmp_path: Path) -> None:
    """Contours in another Frame of Reference: the error says so by role, naming neither Frame
    of Reference (their UIDs can identify the study), not even as the log's tokens."""
    small_study.write(tmp_path / "ct", small_study.ct_slices())
    rtstruct = small_study.rtstruct()
    other_frame = generate_uid()
    rtstruct.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = other_frame
    for roi in rtstruct.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = other_frame
    (rtstruct_file,) = small_study.write(tmp_path / "rt", [rtstruct])
    done = _run("features", "--ct", str(tmp_path / "ct"), "--rtstruct", str(rtstruct_file))
    assert done.returncode == 4, done.stderr
    line = _one_line_error(done)
    assert "Frame of Reference" in line and "uid:" not in line
    assert other_frame not in line and small_study.FRAME_UID not in line


def _unwritable_directory(tmp_path: Path) -> Path:
    """A directory in which no new entry can be made: a read-only one (mode 555) for a user; for
    root, whom modes do not stop, /sys (sysfs refuses even root a new directory)."""
    if os.geteuid() != 0:
        (tmp_path / "read-only").mkdir(mode=0o555)
        return tmp_path / "read-only"
    if not Path("/sys").is_dir():
        pytest.skip("running as root without /sys: no directory refuses root")
    return Path("/sys")


def test_an_output_directory_we_may_not_write_is_a_one_line_config_error(tmp_path: Path) -> None:
    small_study.write(tmp_path / "ct", small_study.ct_slices())
    rtstruct = small_study.rtstruct()
    rtstruct.SeriesInstanceUID = generate_uid()  # the outputs reference it
    (rtstruct_file,) = small_study.write(tmp_path / "rt", [rtstruct])
    out = _unwritable_directory(tmp_path) / "rcds-out"
    done = _run("score", "--ct", str(tmp_path / "ct"), "--rtstruct", str(rtstruct_file), "--out", str(out))
    assert done.returncode == DOCUMENTED["config"], done.stderr
    line = _one_line_error(done)
    assert line.startswith(f"radiomics-cds: cannot use {out}") and line.endswith(("Permission denied", "Operation not permitted"))
    assert not out.exists()


def test_unavailable_peer(tmp_path: Path) -> None:
    (ct_file,) = small_study.write(tmp_path / "ct", small_study.ct_slices()[:1])
    port = free_port()  # nobody listens
    done = _run("send", "--host", LOOPBACK, "--port", str(port), str(ct_file))
    assert done.returncode == 5
    assert f"no association with RADIOMICS_CDS at {LOOPBACK}:{port}" in _one_line_error(done)


def test_help_and_readme_list_every_code() -> None:
    shown = _run("--help").stdout
    readme = (REPO / "README.md").read_text()
    for name, value in DOCUMENTED.items():
        assert re.search(rf"^  {value} +{name}: \S", shown, re.MULTILINE), (name, shown)
        assert re.search(rf"^\| `{value}` \| {name} \| \S", readme, re.MULTILINE), name
