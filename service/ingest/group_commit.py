"""Group commit of the index: concurrent associations share one SQLite transaction (one fsync).

Each C-STORE must be indexed in a committed, fsync'd transaction before it is answered. With
one transaction per instance, concurrent associations queue behind each other's fsync of the
index. Here an instance that arrives while a commit is running waits for it to finish and is
then committed together with every other instance that arrived meanwhile, by whichever waiting
thread takes the turn: each caller still returns only once its own row is committed, or raises
the error that kept it out of the index (and is answered with a failure status). One
association alone commits exactly as before: its instance is the whole group.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from service.ingest.index import InstanceRecord, StudyIndex, StudyOrder


_NOT_INDEXED = RuntimeError("the indexing thread stopped before committing")


@dataclass
class _Pending:
    record: InstanceRecord
    order: StudyOrder
    done: bool = False
    is_new: bool = False
    error: BaseException | None = None
    committed: threading.Event = field(default_factory=threading.Event)


class GroupCommit:
    """Indexes instances for the listener's association threads, a group per transaction."""

    def __init__(self, index: StudyIndex) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        self._committing = False

    def add_instance(self, record: InstanceRecord, order: StudyOrder) -> bool:
        """Index one instance; returns (True when new) once it is committed."""
        pending = _Pending(record, order)
        with self._lock:
            self._waiting.append(pending)
        while True:
            with self._lock:
                if pending.done:
                    break
                lead = not self._committing
                if lead:
                    self._committing = True
                    group, self._waiting = self._waiting, []
            if lead:
                self._commit(group)
            else:
                pending.committed.wait()
                pending.committed.clear()
        if pending.error is not None:
            raise pending.error
        return pending.is_new

    def _commit(self, group: list[_Pending]) -> None:
        outcomes: list[tuple[bool, BaseException | None]] = []
        try:
            outcomes = self._index(group)
        finally:  # even if the thread dies here, the others are woken (and one leads)
            with self._lock:
                for k, pending in enumerate(group):
                    pending.is_new, pending.error = outcomes[k] if k < len(outcomes) else (False, _NOT_INDEXED)
                    pending.done = True
                self._committing = False
                waiting = list(self._waiting)
            for pending in group + waiting:  # the group returns; one of those waiting leads next
                pending.committed.set()

    def _index(self, group: list[_Pending]) -> list[tuple[bool, BaseException | None]]:
        """Whether each is new, or the error that kept it out of the index. A transaction that
        fails is rolled back whole: a group's members are then committed one by one, so that one
        bad instance (or a transient error) fails only itself."""
        try:
            return [(is_new, None) for is_new in self.index.add_instances([(p.record, p.order) for p in group])]
        except Exception as error:  # sqlite3.Error mostly; whatever it is, the sender must retry
            if len(group) == 1:
                return [(False, error)]
            return [self._index([pending])[0] for pending in group]
