"""Group commit: concurrent associations share one SQLite transaction (one fsync) and one fsync
of each spool directory their files were moved into.

Each C-STORE must have its spool file's name durable (its directory fsync'd: the file's data
already is, service.ingest.spool.Spool.move_in) and be indexed in a committed, fsync'd
transaction before it is answered. With both per instance, concurrent associations queue behind
each other's fsyncs; a series' instances share one study directory. Here an instance that
arrives while a commit is running waits for it to finish and is then committed together with every other instance that arrived meanwhile, by whichever waiting
thread takes the turn: the group's distinct directories are fsync'd, then its rows committed.
Each caller still returns only once its own file name and row are durable, or raises the error
that kept them from being so (and is answered with a failure status). One association alone
syncs exactly as before: its instance is the whole group.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field

from service.durable import fsync_directory
from service.ingest.index import InstanceRecord, StudyIndex, StudyOrder


@dataclass
class _Pending:
    record: InstanceRecord
    order: StudyOrder
    done: bool = False
    is_new: bool = False
    error: BaseException | None = None
    committed: threading.Event = field(default_factory=threading.Event)


def _not_indexed() -> sqlite3.Error:
    """The error of an instance whose committing thread died before indexing it: an index error
    (so the listener answers Out of Resources, counts and logs it), one per caller, since an
    exception raised in several threads at once would share one traceback."""
    return sqlite3.OperationalError("the indexing thread stopped before committing")


class GroupCommit:
    """Makes instances durable for the listener's association threads, a group at a time."""

    def __init__(self, index: StudyIndex) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        self._committing = False

    def add_instance(self, record: InstanceRecord, order: StudyOrder) -> bool:
        """Fsync the directory of `record.path` (a file already moved into the spool) and index
        the instance; returns (True when new) once both are durable."""
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
            outcomes = self._make_durable(group)
        finally:  # even if the thread dies here, the others are woken (and one leads)
            with self._lock:
                for k, pending in enumerate(group):
                    pending.is_new, pending.error = outcomes[k] if k < len(outcomes) else (False, _not_indexed())
                    pending.done = True
                self._committing = False
                waiting = list(self._waiting)
            for pending in group + waiting:  # the group returns; one of those waiting leads next
                pending.committed.set()

    def _make_durable(self, group: list[_Pending]) -> list[tuple[bool, BaseException | None]]:
        """The directory entries first: a committed row never names a file a crash can lose.
        A directory that cannot be fsync'd fails the whole group (its files may not survive)."""
        try:
            for directory in {pending.record.path.parent for pending in group}:
                fsync_directory(directory)
        except OSError as error:
            return [(False, error)] * len(group)
        return self._index(group)

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
