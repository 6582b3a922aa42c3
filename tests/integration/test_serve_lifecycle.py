"""`serve` and its scorer child live and die together, and serve works only with a scorer it
started: a kill -9 of serve ends the child and frees the scorer port, and ends its page
renderer (service.outputs.page_process) and that renderer's resource tracker; a scorer port held by
another process stops serve (and the scorer role) at start with a message naming the setting.

The port holders are the test's own listening sockets: a plain one, and one bound with
SO_REUSEPORT as a gRPC server binds, i.e. as a scorer left over from an earlier serve holds it
(on the old code a second scorer started on such a port and shared its calls).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.lifeline import start_child, wait_ready
from tests.support.processes import LOOPBACK, port_is_free, process_ended, stop_process, wait_until
from tests.support.service import CLI, REPO, RunningService, service_env

pytestmark = pytest.mark.timeout(300)


def test_kill_9_of_serve_ends_its_scorer_child_and_frees_the_scorer_port(tmp_path):
    service = RunningService(tmp_path / "var")
    scorer_port = int(service.env["RCDS_SCORER_ADDRESS"].rpartition(":")[2])
    child = service.scorer_child()
    try:
        service.process.kill()
        service.process.wait(timeout=10)
        wait_until(lambda: process_ended(child), 60, "the scorer child to exit after serve was killed")
        wait_until(lambda: port_is_free(scorer_port), 10, "the scorer port to be free")
        assert "stopping: no new calls" in service.read_log()  # its usual stop, not a kill
    finally:
        service.stop()
        if not process_ended(child):  # the defect itself: never leave it running after the test
            os.kill(child, signal.SIGKILL)


def test_the_scorer_child_logs_at_serves_log_level(tmp_path):
    """--log-level is a flag of serve's command line; the child gets only --config, so serve
    hands the level on in the child's RCDS_LOG_LEVEL (over the INFO of the test's settings)."""
    service = RunningService(tmp_path / "var", options=("--log-level", "DEBUG"), log_level="INFO")
    try:
        environ = (Path("/proc") / str(service.scorer_child()) / "environ").read_bytes().split(b"\0")
        assert b"RCDS_LOG_LEVEL=DEBUG" in environ
    finally:
        service.stop()


def test_kill_9_of_serve_ends_its_page_renderer(tmp_path):
    service = RunningService(tmp_path / "var")
    renderers: list[int] = []
    try:
        def multiprocessing_children() -> list[int]:
            found = subprocess.run(["pgrep", "-P", str(service.process.pid), "-f", "from multiprocessing"],
                                   capture_output=True, text=True).stdout.split()
            return [int(pid) for pid in found]
        wait_until(lambda: len(multiprocessing_children()) == 2, 60, "the page renderer and its resource tracker")
        renderers = multiprocessing_children()
        service.process.kill()
        service.process.wait(timeout=10)
        wait_until(lambda: all(process_ended(pid) for pid in renderers), 60,
                   "the page renderer and its resource tracker to exit after serve was killed")
    finally:
        service.stop()
        for pid in renderers:  # the defect itself: never leave them running after the test
            if not process_ended(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_scorer_child_stops_when_its_lifeline_closes(tmp_path):
    """The portable path alone: the test is the parent and stays alive (so no PR_SET_PDEATHSIG
    signal); closing its end of the lifeline makes the child stop as on SIGTERM and exit 0."""
    child, lifeline = start_child(CLI + ["scorer"], service_env(tmp_path / "var"))
    try:
        assert wait_ready(lifeline, timeout_s=90)
        lifeline.close()
        assert child.wait(timeout=60) == 0
    finally:
        stop_process(child)


@pytest.fixture(params=["plain", "reuseport"])
def held_port(request) -> Iterator[int]:
    """A loopback port another process listens on: a plain socket, or one bound as gRPC binds."""
    with socket.socket() as holder:
        if request.param == "reuseport":
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((LOOPBACK, 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "scorer"])
def test_a_taken_scorer_port_stops_the_start_with_a_message(tmp_path, held_port, command):
    """serve refuses before it starts its child (so it never reports ready against a scorer it
    did not start); the scorer role refuses to share the port."""
    env = service_env(tmp_path / "var", scorer_address=f"{LOOPBACK}:{held_port}")
    ended = subprocess.run(CLI + [command], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ended.returncode == 3, ended.stderr
    assert "radiomics-cds: scorer_address: " in ended.stderr, ended.stderr
    assert f"{LOOPBACK}:{held_port}" in ended.stderr and "Traceback" not in ended.stderr, ended.stderr
    assert "DICOM listener" not in ended.stderr
