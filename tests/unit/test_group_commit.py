"""Group commit: concurrent instances share a transaction and their directories' fsyncs, and
each caller (the C-STORE handler, which answers Success right after) returns only once its own
file's directory is fsync'd and its row committed.

The index is the real StudyIndex on a real SQLite file; "committed" is checked from a second
connection, as a restarted process would read it. The one stand-in is a subclass that holds its
first transaction open until the test lets it go (no real peer makes a commit last as long as
the test needs), so that the others provably arrive while a commit is running.
"""

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.ingest import group_commit
from service.ingest.group_commit import GroupCommit
from service.ingest.index import InstanceRecord, StudyIndex, StudyOrder
from service.sop_classes import CT_IMAGE

NO_ORDER = StudyOrder("", "")


def _record(uid: str, directory: Path, positions: tuple = (0.0,)) -> InstanceRecord:
    """An instance whose spool file is in `directory` (it must exist: its entry is fsync'd)."""
    return InstanceRecord(uid, CT_IMAGE, "1.2.3", "1.2.3.1", "CT", "1.2.3.9", positions, directory / f"{uid}.dcm", 100.0)


def _committed(path: Path) -> set[str]:
    """SOP Instance UIDs a second connection sees: what is committed."""
    with sqlite3.connect(path) as other:
        return {row[0] for row in other.execute("SELECT sop_instance_uid FROM instances")}


class HeldIndex(StudyIndex):
    """Records each transaction's size; the first waits for `release` before committing."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.groups: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def add_instances(self, batch: Sequence[tuple[InstanceRecord, StudyOrder]]) -> list[bool]:
        self.groups.append([record.sop_instance_uid for record, _ in batch])
        if len(self.groups) == 1:
            self.entered.set()
            self.release.wait()
        return super().add_instances(batch)


def _start(committer: GroupCommit, record: InstanceRecord, results: dict[str, object]) -> threading.Thread:
    def run() -> None:
        try:
            results[record.sop_instance_uid] = committer.add_instance(record, NO_ORDER)
        except BaseException as error:  # noqa: BLE001 - the test inspects what each caller got
            results[record.sop_instance_uid] = error
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_queued(committer: GroupCommit, count: int) -> None:
    while len(committer._waiting) < count:  # no time limit: the threads only have to get there
        time.sleep(0.001)


@dataclass
class HeldCommit:
    """Instance 1.1's commit held open, the others queued behind it (none answered yet)."""

    path: Path
    index: HeldIndex
    results: dict[str, object]
    threads: list[threading.Thread]

    def finish(self) -> None:
        """Let the held commit go and wait for every caller to return."""
        self.index.release.set()
        for thread in self.threads:
            thread.join()


def _hold_first_commit(tmp_path: Path, others: Sequence[InstanceRecord], index_class: type[HeldIndex] = HeldIndex,
                       first_directory: Path | None = None) -> HeldCommit:
    path = tmp_path / "index.sqlite"
    index = index_class(path)
    committer = GroupCommit(index)
    results: dict[str, object] = {}
    first = _start(committer, _record("1.1", first_directory or tmp_path), results)
    index.entered.wait()
    threads = [first, *(_start(committer, record, results) for record in others)]
    _wait_queued(committer, len(others))
    return HeldCommit(path, index, results, threads)


def test_a_lone_instance_is_committed_before_add_returns(tmp_path):
    path = tmp_path / "index.sqlite"
    committer = GroupCommit(StudyIndex(path))
    assert committer.add_instance(_record("1.1", tmp_path), NO_ORDER) is True
    assert _committed(path) == {"1.1"}
    assert committer.add_instance(_record("1.1", tmp_path), NO_ORDER) is False  # a repeat is not new


def test_instances_arriving_during_a_commit_share_the_next_and_wait_for_it(tmp_path):
    held = _hold_first_commit(tmp_path, [_record(uid, tmp_path) for uid in ("1.2", "1.3", "1.4")])
    path, index, results = held.path, held.index, held.results
    assert results == {} and _committed(path) == set()  # nobody answered before a commit
    held.finish()
    assert index.groups[0] == ["1.1"] and sorted(index.groups[1]) == ["1.2", "1.3", "1.4"]
    assert len(index.groups) == 2  # four instances, two fsync'd transactions
    assert results == {"1.1": True, "1.2": True, "1.3": True, "1.4": True}
    assert _committed(path) == {"1.1", "1.2", "1.3", "1.4"}


def test_a_failing_instance_fails_alone_and_the_rest_of_its_group_commits(tmp_path):
    bad = _record("1.3", tmp_path, positions=(object(),))  # cannot be written: its transaction is rolled back
    held = _hold_first_commit(tmp_path, [_record("1.2", tmp_path), bad])
    path, index, results = held.path, held.index, held.results
    held.finish()
    assert sorted(index.groups[1]) == ["1.2", "1.3"]  # together first, then one by one
    assert isinstance(results["1.3"], TypeError)
    assert results["1.1"] is True and results["1.2"] is True
    assert _committed(path) == {"1.1", "1.2"}


def test_a_group_fsyncs_each_of_its_directories_once_before_committing(tmp_path, monkeypatch):
    """The spy forwards to the real fsync_directory: it only records which directory, and
    whether the group's rows were committed yet (they must not be)."""
    path = tmp_path / "index.sqlite"
    study_a, study_b = tmp_path / "a", tmp_path / "b"
    study_a.mkdir()
    study_b.mkdir()
    synced: list[tuple[Path, set[str]]] = []

    def spy(directory: Path) -> None:
        synced.append((directory, _committed(path)))
        group_commit_fsync(directory)

    group_commit_fsync = group_commit.fsync_directory
    monkeypatch.setattr(group_commit, "fsync_directory", spy)
    held = _hold_first_commit(tmp_path, [_record(uid, directory) for uid, directory in
                                         (("1.2", study_a), ("1.3", study_a), ("1.4", study_b))],
                              first_directory=study_a)
    held.finish()
    results = held.results
    assert results == {"1.1": True, "1.2": True, "1.3": True, "1.4": True}
    assert synced[0] == (study_a, set())  # the first group alone
    assert sorted(synced[1:]) == [(study_a, {"1.1"}), (study_b, {"1.1"})]  # once each, before the commit


def test_a_directory_that_cannot_be_fsynced_fails_its_group_and_indexes_nothing(tmp_path):
    """A real OS error: the study directory is gone (its files with it), so nothing may be answered."""
    path = tmp_path / "index.sqlite"
    committer = GroupCommit(StudyIndex(path))
    with pytest.raises(FileNotFoundError):
        committer.add_instance(_record("1.1", tmp_path / "removed"), NO_ORDER)
    assert _committed(path) == set()
    assert committer.add_instance(_record("1.1", tmp_path), NO_ORDER) is True  # the next group is not held up


class _Crash(BaseException):
    """What kills a thread outright (not an Exception the committer handles)."""


class DyingIndex(HeldIndex):
    """The second transaction's thread dies inside it."""

    def add_instances(self, batch: Sequence[tuple[InstanceRecord, StudyOrder]]) -> list[bool]:
        if self.groups:
            self.groups.append([record.sop_instance_uid for record, _ in batch])
            raise _Crash()
        return super().add_instances(batch)


def test_when_the_committing_thread_dies_its_group_gets_index_errors_each_its_own(tmp_path):
    """The others of the dead leader's group are answered with an index error (the listener
    answers Out of Resources, counts and logs it), each a distinct exception object."""
    held = _hold_first_commit(tmp_path, [_record(uid, tmp_path) for uid in ("1.2", "1.3", "1.4")],
                              index_class=DyingIndex)
    held.finish()
    outcomes = [held.results[uid] for uid in sorted(held.index.groups[1])]
    assert sum(isinstance(outcome, _Crash) for outcome in outcomes) == 1  # the leader's own thread
    errors = [outcome for outcome in outcomes if not isinstance(outcome, _Crash)]
    assert len(errors) == 2 and all(isinstance(error, sqlite3.OperationalError) for error in errors)
    assert errors[0] is not errors[1]
    assert _committed(held.path) == {"1.1"}
