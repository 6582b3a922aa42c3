"""A role stops on SIGTERM/SIGINT or its `stop` event, and never deadlocks when both come at once.

Each case runs in a child interpreter (its own main thread and signal handlers, not pytest's), so
a deadlock fails the test by its timeout instead of hanging the suite."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.service import REPO


def run_role_stop(body: str) -> subprocess.CompletedProcess[str]:
    program = "import os, signal, threading\nfrom service.stop_signals import StopSignals\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_a_signal_while_the_main_thread_holds_the_events_lock_still_stops():
    """The interleaving that hung serve's scorer child after a kill -9 of serve: the lifeline
    thread set `stop` and the parent-death SIGTERM's handler ran while the main thread held the
    event's internal lock (CPython's Event._cond, taken here on purpose to force that moment).
    A handler that called Event.set() there waited for its own thread's lock for ever."""
    ended = run_role_stop("""
        signals = StopSignals()
        with signals.stop._cond:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # bytecodes inside the lock: the handler runs here
                pass
        signals.wait()
        print("stopped", signals.stop.is_set())
    """)
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.split() == ["stopped", "True"]


def test_another_threads_stop_ends_the_wait():
    ended = run_role_stop("""
        stop = threading.Event()
        signals = StopSignals(stop)
        threading.Timer(0.1, stop.set).start()
        signals.wait()
        print("stopped")
    """)
    assert ended.returncode == 0 and ended.stdout.split() == ["stopped"], ended.stderr


def test_sigint_ends_the_wait_and_sets_stop_for_the_other_threads():
    ended = run_role_stop("""
        stop = threading.Event()
        signals = StopSignals(stop)
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        signals.wait()
        print("stopped", stop.is_set())
    """)
    assert ended.returncode == 0 and ended.stdout.split() == ["stopped", "True"], ended.stderr
