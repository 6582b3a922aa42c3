"""Helpers shared by the tests that run real peers (serve, storescp, Orthanc) as processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback now (the peer binds it a moment later)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens on loopback:`port` (bound as a server binds it, SO_REUSEADDR)."""
    try:
        socket.create_server((LOOPBACK, port)).close()
    except OSError:
        return False
    return True


def process_ended(pid: int) -> bool:
    """`pid` no longer runs: gone, or a zombie nobody reaped yet (an orphan whose adopter does not
    reap, as PID 1 in some containers)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail saying what never happened."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def stop_process(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it does not end in time: a test never leaves a peer running."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def system_tool(name: str) -> str | None:
    """The system's program (dcmtk, dicom3tools), never a same-named script in our virtualenv:
    pynetdicom installs Python apps called storescp, storescu, ... there."""
    venv_bin = Path(sys.executable).parent
    search = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != venv_bin)
    return shutil.which(name, path=search)
