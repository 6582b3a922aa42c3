"""`radiomics-cds send` shows its progress (files sent of all, and the rate) on a terminal, one
line rewritten in place, and nothing of the kind when its stderr is a file or a pipe. The
terminal is a real pseudo-terminal; the peer is dcmtk's storescp."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import small_study
from tests.support.processes import LOOPBACK, free_port
from tests.support.storescp import PACS_AE, StoreScp

pytestmark = pytest.mark.external

CLI = [sys.executable, "-m", "service.cli"]


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other end is closed (Linux)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_send_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    files = small_study.write(tmp_path / "ct", small_study.ct_slices())
    scp = StoreScp(tmp_path / "received", free_port())
    try:
        command = CLI + ["send", "--host", LOOPBACK, "--port", str(scp.port), "--aet", PACS_AE, str(tmp_path / "ct")]
        primary, secondary = pty.openpty()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary) as process:
            os.close(secondary)
            terminal = _read_all(primary).decode()
            stdout = process.stdout.read().decode() if process.stdout else ""
            assert process.wait(timeout=120) == 0, terminal
        os.close(primary)
        assert f"sent {len(files)} of {len(files)} files" in stdout
        lines = terminal.replace("\r\n", "\n").split("\r")  # the terminal shows a newline as CR LF
        assert lines[0] == "" and lines[-1].endswith("\n"), terminal  # one line, rewritten, ended
        assert re.fullmatch(rf"sent {len(files)}/{len(files)} files, \d+\.\d files/s\n", lines[-1]), terminal
        assert all(re.fullmatch(rf"sent \d+/{len(files)} files(, \d+\.\d files/s)?", line) for line in lines[1:-1])

        piped = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert piped.returncode == 0 and "\r" not in piped.stderr and "/s" not in piped.stderr, piped.stderr
    finally:
        scp.stop()
