"""When to ask a peer again about each of several things (studies), after it could not answer.

A PACS down for days must not be asked (nor logged) once a minute per study: each thing's wait
starts at `first` seconds and doubles at each postponement up to `most`. In memory only: after a
restart nothing is postponed, which costs at most one question per thing.
"""

from __future__ import annotations


class Backoff:
    """Per key: when it is due again, and its last wait (doubled at the next postponement)."""

    def __init__(self, first: float, most: float) -> None:
        self._first = first
        self._most = most
        self._after: dict[str, float] = {}  # key -> when to ask again
        self._wait: dict[str, float] = {}  # key -> its last postponement

    def __contains__(self, key: str) -> bool:
        """Whether `key` has been postponed and not forgotten since."""
        return key in self._after

    def due(self, key: str, now: float) -> bool:
        """Whether `key` may be asked about at `now` (never postponed, or its wait is over)."""
        return self._after.get(key, 0.0) <= now

    def postpone(self, key: str, now: float) -> float:
        """Not before `first` seconds from `now`, or twice the last wait (at most `most`); the wait."""
        wait = min(2 * self._wait.get(key, self._first / 2), self._most)
        self._wait[key] = wait
        self._after[key] = now + wait
        return wait

    def forget(self, key: str) -> None:
        """`key` answered: its next postponement starts from `first` again."""
        self._after.pop(key, None)
        self._wait.pop(key, None)
