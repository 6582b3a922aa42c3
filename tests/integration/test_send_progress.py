"""`radiomics-cds send` shows its progress (files sent of all, and the rate) on a terminal, one
line rewritten in place, and nothing of the kind when its stderr is a file or a pipe. The
terminal is a real pseudo-terminal; the peer is dcmtk's storescp."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import small_study
from tests.support.processes import LOOPBACK, free_port
from tests.support.storescp import PACS_AE, StoreScp
from tests.support.terminal import run_on_terminal

pytestmark = pytest.mark.external

CLI = [sys.executable, "-m", "service.cli"]


def test_send_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    files = small_study.write(tmp_path / "ct", small_study.ct_slices())
    scp = StoreScp(tmp_path / "received", free_port())
    try:
        command = CLI + ["send", "--host", LOOPBACK, "--port", str(scp.port), "--aet", PACS_AE, str(tmp_path / "ct")]
        run = run_on_terminal(command, timeout=120)
        terminal = run.terminal
        assert run.returncode == 0, terminal
        assert f"sent {len(files)} of {len(files)} files" in run.stdout
        lines = run.progress_lines()
        assert lines[0] == "" and lines[-1].endswith("\n"), terminal  # one line, rewritten, ended
        assert re.fullmatch(rf"sent {len(files)}/{len(files)} files, \d+\.\d files/s\n", lines[-1]), terminal
        assert all(re.fullmatch(rf"sent \d+/{len(files)} files(, \d+\.\d files/s)?", line) for line in lines[1:-1])

        piped = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert piped.returncode == 0 and "\r" not in piped.stderr and "/s" not in piped.stderr, piped.stderr
    finally:
        scp.stop()
