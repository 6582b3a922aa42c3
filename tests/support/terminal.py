"""Run a command with its stderr on a real pseudo-terminal (the CLI's progress lines appear only
there) and its stdout on a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TerminalRun:
    returncode: int
    terminal: str  # what the terminal received, carriage returns included
    stdout: str

    def progress_lines(self) -> list[str]:
        """The terminal's text split at carriage returns (a line rewritten in place), once the
        terminal's CR LF for a newline is undone: the first element is what preceded the first
        CR (empty for a progress line), the last ends with the newline that closes the line."""
        return self.terminal.replace("\r\n", "\n").split("\r")


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


def run_on_terminal(command: Sequence[str], timeout: float = 300) -> TerminalRun:
    primary, secondary = pty.openpty()
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary) as process:
            os.close(secondary)
            secondary = -1
            terminal = _read_all(primary).decode()
            stdout = process.stdout.read().decode() if process.stdout else ""
            return TerminalRun(process.wait(timeout=timeout), terminal, stdout)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
