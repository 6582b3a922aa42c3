"""Stop on SIGTERM/SIGINT, or when another thread sets the role's `stop` event.

The signal handlers only record the signal; they never touch a lock. A Python signal handler
runs in the main thread between bytecodes, also while that thread is inside `Event.wait()` or
`Event.set()` and holds the event's internal lock. A handler that called `stop.set()` there
waited for a lock its own thread held, for ever: serve's scorer child hung this way after a
kill -9 of serve, when the lifeline thread (EOF on the socket pair) and the kernel's
parent-death SIGTERM asked it to stop at the same moment. So the main thread waits on the event
in short slices and looks at what the handlers recorded between them; another thread's
`stop.set()` still ends the wait at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_SIGNAL_CHECK_SECONDS = 0.2
"""How long a recorded signal can wait to be noticed: well inside any orchestrator's grace period."""


class StopSignals:
    """Installed before a role starts serving (a SIGTERM during start-up is then a stop, not
    Python's default termination); `wait()` returns once a stop was asked for, and sets `stop`."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self._received: list[int] = []  # list.append: no lock, safe in a handler
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self._received.append(signum)

    def wait(self) -> None:
        while not self._received and not self.stop.wait(_SIGNAL_CHECK_SECONDS):
            pass
        self.stop.set()  # in the main thread outside any handler: other threads see the stop too
