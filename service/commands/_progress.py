"""A progress line on the terminal for the commands that work through many items (send, score)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def terminal_progress(verb: str, unit: str) -> TerminalProgress | None:
    """A progress line when stderr is a terminal; None otherwise, so logs and pipes get no
    carriage returns."""
    return TerminalProgress(verb, unit) if sys.stderr.isatty() else None


class TerminalProgress:
    """`sent 120/600 files, 35.2 files/s` (or `scored 2/5 lesions (lesion 4), 0.3 lesions/s`) on
    one terminal line, rewritten in place (at most ten times a second) and ended with a newline
    once everything is done."""

    def __init__(self, verb: str, unit: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._verb, self._unit, self._clock = verb, unit, clock
        self._start = clock()
        self._shown_at = -1.0

    def update(self, done: int, total: int, current: str = "") -> None:
        """`current`: what was just done, shown in brackets (a lesion's number, never its name)."""
        now = self._clock()
        if done < total and now - self._shown_at < 0.1:
            return
        self._shown_at = now
        elapsed = now - self._start
        rate = f", {done / elapsed:.1f} {self._unit}/s" if elapsed > 0 and done else ""
        detail = f" ({current})" if current else ""
        print(f"\r{self._verb} {done}/{total} {self._unit}{detail}{rate}", end="\n" if done == total else "",
              file=sys.stderr, flush=True)

    def lesion_done(self, done: int, total: int, number: int) -> None:
        """score_lesions' progress callback (service.scorer.LesionProgress)."""
        self.update(done, total, f"lesion {number}")
