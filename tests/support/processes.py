"""Helpers shared by the tests that run real peers (serve, storescp, Orthanc) as processes."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


_PORTS_BELOW_EPHEMERAL = range(20000, 32768)
"""Linux hands out local ports of outgoing connections from 32768 up (ip_local_port_range), and
so did port 0: between our bind and the peer's, a connection to Orthanc or a scorer could take
the port handed out ("Address already in use" at the peer's start, seen once under load). Ports
below that range are taken only by a deliberate bind."""


def _ports_of_this_process() -> range:
    """_PORTS_BELOW_EPHEMERAL, or under pytest-xdist this worker's share of them (gwN of
    PYTEST_XDIST_WORKER_COUNT): free_port knows only the ports its own process handed out, and
    two workers could hand out the same one between the check and the peer's bind."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return _PORTS_BELOW_EPHEMERAL
    share = len(_PORTS_BELOW_EPHEMERAL) // count
    first = _PORTS_BELOW_EPHEMERAL.start + int(worker[2:]) * share
    return range(first, first + share)


_PORTS = _ports_of_this_process()
_handed_out: set[int] = set()
_random = random.Random(os.getpid())


def free_port() -> int:
    """A TCP port free on loopback now (the peer binds it a moment later), below the ephemeral
    range, never handed out before by this process and, under pytest-xdist, in this worker's
    share of the ports."""
    while True:
        port = _random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


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
