"""The SQLite index of received instances and of each study's processing state.

The index is the service's memory across restarts: an instance is indexed (in a committed,
fsync'd transaction) before its C-STORE is answered, and a study's state moves
receiving -> processing -> done | failed. A new instance for a done or failed study sends it
back to receiving (the study is re-scored); a repeated instance changes nothing. `rescore`
sends a study back without a new instance (reconciliation, `radiomics-cds rescore`).

Every new instance bumps the study's `generation`. A worker claims a study at a generation and
may only finish it at that generation: an instance that arrives while the study is being
scored leaves it receiving, so it is scored again with that instance, never silently dropped.

A done study whose result was written while no prior source answered is marked so
(`priors_unavailable_since`, see `finish`) until a scoring has its priors.

Each study also records whose it is and when (`StudyOrder`: a hash of the patient's identifier
and issuer, never the identifier, and its date and time), so that the worker can tell which of
its studies are a patient's earlier ones (`earlier_studies`), and when spool retention removed
its spooled files (`files_removed_at`, service.retention): the instance rows stay, the
study's history, and say why a study cannot be scored again until it is sent again or
retrieved from PACS (service.restoration).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    sop_class_uid TEXT NOT NULL,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    modality TEXT NOT NULL,
    frame_of_reference_uid TEXT NOT NULL,
    positions TEXT NOT NULL,
    path TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_instance_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    waiting_since REAL NOT NULL,
    last_received_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    claimed_generation INTEGER NOT NULL DEFAULT -1,
    error TEXT,
    result TEXT,
    updated_at REAL NOT NULL,
    patient_key TEXT NOT NULL DEFAULT '',
    study_datetime TEXT NOT NULL DEFAULT '',
    priors_unavailable_since REAL,
    files_removed_at REAL,
    interruptions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reconciled (
    study_instance_uid TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (study_instance_uid, result)
);
"""
# Columns added since the first release: an index written before them gains them at open.
_ADDED_STUDY_COLUMNS = {"patient_key": "TEXT NOT NULL DEFAULT ''", "study_datetime": "TEXT NOT NULL DEFAULT ''",
                        "priors_unavailable_since": "REAL", "files_removed_at": "REAL",
                        "interruptions": "INTEGER NOT NULL DEFAULT 0"}


class StudyStatus(StrEnum):
    """A study's processing state; stored in the index as these strings."""

    RECEIVING = "receiving"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


# The members under the short names callers use (Final: mypy keeps each one's literal type).
RECEIVING: Final = StudyStatus.RECEIVING
PROCESSING: Final = StudyStatus.PROCESSING
DONE: Final = StudyStatus.DONE
FAILED: Final = StudyStatus.FAILED


@dataclass(frozen=True)
class InstanceRecord:
    """What completeness and loading need to know of one stored instance."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    frame_of_reference_uid: str
    positions: tuple[float, ...]  # CT: slice z (mm); contours: plane z (mm)
    path: Path
    received_at: float


@dataclass(frozen=True)
class StudyOrder:
    """Whose study an instance belongs to and when, as far as ordering a patient's studies needs."""

    patient_key: str  # a hash of PatientID and IssuerOfPatientID; "" when the instance names no patient
    study_datetime: str  # StudyDate + StudyTime as sortable text; "" without a StudyDate

    @property
    def known(self) -> bool:
        return bool(self.patient_key and self.study_datetime)


@dataclass(frozen=True)
class StudyState:
    """A study's row of the index; the fields are named after its columns (_columns and
    STATE_SINCE read them by name)."""

    study_instance_uid: str
    state: StudyStatus
    waiting_since: float
    last_received_at: float
    attempts: int
    error: str | None
    result: str | None
    updated_at: float
    # When a done result was first written without the priors no source could give (its outputs
    # say "priors unavailable"); None: it was not, or a later scoring had them (finish says when).
    priors_unavailable_since: float | None = None
    files_removed_at: float | None = None  # when spool retention removed its spooled files; None: they were not

    @property
    def since(self) -> float:
        """When the study entered its current state, as far as the index tells: what its age in
        `status` and in rcds_queue_oldest_seconds counts from (the column STATE_SINCE names).

        Receiving: waiting_since, the first instance of this round of waiting. The hard cap
        counts from it, so a healthy worker decides by waiting_since + hard_cap_seconds, and a
        scorer retry, which sends the study back here, keeps it: the age is how long the result
        has been awaited. last_received_at and updated_at move with each instance, so a study
        whose sender trickles instances would look young however long it has waited.
        Processing: updated_at, which the claim sets. waiting_since would add the reception and
        the earlier attempts' retry waits, none of them a sign of a hung call. (An instance
        arriving while the study is scored moves updated_at too; it is then scored again anyway.)
        Done, failed: updated_at, when the outcome was recorded.
        """
        return float(getattr(self, STATE_SINCE[self.state]))


# The column each state's age counts from (StudyState.since says why).
STATE_SINCE: Final[dict[StudyStatus, str]] = {RECEIVING: "waiting_since", PROCESSING: "updated_at",
                                              DONE: "updated_at", FAILED: "updated_at"}


class StudyIndex:
    """Thread-safe: the SCP's association threads and the worker share one connection."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Two processes may write it: the service, and `rescore` beside it. Each transaction is
        # short; waiting up to 30 s for the other's (as `redeliver` does on the outbox) beats
        # failing with "database is locked" after sqlite3's default 5 s on a slow disk.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # committed means on disk: we acknowledge after it
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(studies)")}
        for column, definition in _ADDED_STUDY_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE studies ADD COLUMN {column} {definition}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_instance(self, record: InstanceRecord, order: StudyOrder = StudyOrder("", "")) -> bool:
        """Index an instance; True when it is new (and its study must be (re)assessed). Its study
        keeps the first known `order`."""
        return self.add_instances([(record, order)])[0]

    def add_instances(self, batch: Sequence[tuple[InstanceRecord, StudyOrder]]) -> list[bool]:
        """Index several instances in one transaction (one fsync: service.ingest.group_commit
        gathers concurrent associations' instances); for each, whether it is new. All or none
        are committed."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return [self._insert(record, order) for record, order in batch]

    def _insert(self, record: InstanceRecord, order: StudyOrder) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.sop_instance_uid, record.sop_class_uid, record.study_instance_uid,
                record.series_instance_uid, record.modality, record.frame_of_reference_uid,
                json.dumps(list(record.positions)), str(record.path), record.received_at,
            ),
        )
        is_new = cursor.rowcount == 1
        if is_new:
            self._touch_study(record.study_instance_uid, record.received_at)
        else:
            self._restore_files(record.study_instance_uid, record.received_at)
        if order.known:
            self._db.execute(
                "UPDATE studies SET patient_key = ?, study_datetime = ? WHERE study_instance_uid = ?"
                " AND (patient_key = '' OR study_datetime = '')",
                (order.patient_key, order.study_datetime, record.study_instance_uid),
            )
        return is_new

    def _touch_study(self, study_uid: str, now: float) -> None:
        row = self._db.execute("SELECT state FROM studies WHERE study_instance_uid = ?", (study_uid,)).fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO studies (study_instance_uid, state, waiting_since, last_received_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)", (study_uid, RECEIVING, now, now, now),
            )
        elif row[0] in (DONE, FAILED):
            self._db.execute(
                "UPDATE studies SET state = ?, waiting_since = ?, last_received_at = ?, updated_at = ?,"
                " attempts = 0, interruptions = 0, generation = generation + 1 WHERE study_instance_uid = ?",
                (RECEIVING, now, now, now, study_uid),
            )
        else:
            self._db.execute(
                "UPDATE studies SET last_received_at = ?, updated_at = ?, generation = generation + 1"
                " WHERE study_instance_uid = ?", (now, now, study_uid),
            )

    def _restore_files(self, study_uid: str, now: float) -> None:
        """An instance received again whose study's files retention removed: the spool holds it
        again (the listener moved it in at its old path), so the study is no longer marked, and
        it was received now, which retention counts from: a study being sent again, to be
        rescored, is not removed again before it can be. Whether every file is back, `rescore`
        and the worker check (service.ingest.spool.missing_from_spool)."""
        self._db.execute(
            "UPDATE studies SET files_removed_at = NULL, last_received_at = ?"
            " WHERE study_instance_uid = ? AND files_removed_at IS NOT NULL", (now, study_uid),
        )

    def files_restored(self, study_uid: str) -> None:
        """The study's spooled files that retention removed are back, retrieved from PACS again
        (service.restoration): as for instances received again, it is no longer marked, and
        retention counts from now."""
        with self._lock, self._db:
            self._restore_files(study_uid, time.time())

    def instances(self, study_uid: str) -> list[InstanceRecord]:
        with self._lock:
            return self._instances(study_uid)

    def _instances(self, study_uid: str) -> list[InstanceRecord]:
        rows = self._db.execute(
            "SELECT * FROM instances WHERE study_instance_uid = ? ORDER BY received_at", (study_uid,)
        ).fetchall()
        return [
            InstanceRecord(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), Path(r[7]), r[8])
            for r in rows
        ]

    def study(self, study_uid: str) -> StudyState | None:
        with self._lock:
            row = self._db.execute(_STUDIES + " WHERE study_instance_uid = ?", (study_uid,)).fetchone()
        return _study_state(row) if row else None

    def studies_in(self, state: StudyStatus | None = None) -> list[StudyState]:
        """Studies in one state (all when None), oldest activity first."""
        with self._lock:
            rows = self._db.execute(
                _STUDIES + (" WHERE state = ?" if state else "") + " ORDER BY last_received_at", (state,) if state else (),
            ).fetchall()
        return [_study_state(row) for row in rows]

    def unchanged_since(self, cutoff: float) -> list[StudyState]:
        """Done and failed studies to which nothing has happened since `cutoff` (no outcome
        recorded, no instance received), least recently changed first: what spool retention
        considers (service.retention)."""
        with self._lock:
            rows = self._db.execute(
                _STUDIES + " WHERE state IN (?, ?) AND MAX(updated_at, last_received_at) < ?"
                " ORDER BY MAX(updated_at, last_received_at)", (DONE, FAILED, cutoff),
            ).fetchall()
        return [_study_state(row) for row in rows]

    def mark_files_removed(self, study_uid: str, cutoff: float) -> list[InstanceRecord] | None:
        """Record that retention removes the study's spooled files, if it still may (done or
        failed, unchanged since `cutoff`); the instances whose files are to be removed, None
        when it may not. Checked and listed in one transaction: a new instance indexed before it
        makes the study receiving (nothing is removed), one indexed after it is not listed (its
        file stays), and a `rescore` after it finds the mark and says why the files are gone. An
        instance received again (its SOP Instance UID known) is listed, its file at the same
        place: the remover keeps files written since `cutoff` (service.retention._unlink)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            marked = self._db.execute(
                "UPDATE studies SET files_removed_at = ? WHERE study_instance_uid = ? AND state IN (?, ?)"
                " AND MAX(updated_at, last_received_at) < ?",
                (time.time(), study_uid, DONE, FAILED, cutoff),
            ).rowcount == 1
            return self._instances(study_uid) if marked else None

    def files_removed_at(self, study_uid: str) -> float | None:
        """When retention removed the study's spooled files; None if it did not (or no such study)."""
        state = self.study(study_uid)
        return state.files_removed_at if state else None

    def earlier_studies(self, study_uid: str) -> list[StudyState]:
        """The same patient's studies in this index that are earlier (date, then time) than this
        one; none when either's patient or date is unknown."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_columns('e')} FROM studies s JOIN studies e ON e.patient_key = s.patient_key"
                " AND e.study_datetime < s.study_datetime WHERE s.study_instance_uid = ? AND s.patient_key <> ''"
                " AND e.study_datetime <> '' ORDER BY e.study_datetime", (study_uid,),
            ).fetchall()
        return [_study_state(row) for row in rows]

    def count_in(self, state: StudyStatus) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM studies WHERE state = ?", (state,)).fetchone()[0])

    def oldest_age(self, state: StudyStatus, now: float | None = None) -> float:
        """Seconds the study longest in `state` has been in it (StudyState.since), 0 when none
        is: a study stuck there (a wedged worker) shows as a number that only grows."""
        with self._lock:
            oldest = self._db.execute(f"SELECT MIN({STATE_SINCE[state]}) FROM studies WHERE state = ?",
                                      (state,)).fetchone()[0]
        return 0.0 if oldest is None else max(0.0, (time.time() if now is None else now) - oldest)

    def claim(self, study_uid: str) -> bool:
        """Move a receiving study to processing at its current generation; False if taken."""
        with self._lock, self._db:
            cursor = self._db.execute(
                "UPDATE studies SET state = ?, attempts = attempts + 1, claimed_generation = generation,"
                " updated_at = ? WHERE study_instance_uid = ? AND state = ?",
                (PROCESSING, time.time(), study_uid, RECEIVING),
            )
            return cursor.rowcount == 1

    def finish(self, study_uid: str, state: Literal[StudyStatus.DONE, StudyStatus.FAILED], *,
               error: str | None = None, result: str | None = None, priors_unavailable: bool = False) -> bool:
        """Record the outcome; if instances arrived since the claim, the study goes back to
        receiving instead (returns False), so they are scored too. A failure keeps the last SR
        delivered for the study, which a later successful scoring names as its predecessor.

        `priors_unavailable`: a done result was written without its priors, no source having
        answered; the worker asks the sources again and scores the study again once one does
        (scored_without_priors). Its clock (priors_unavailable_since) keeps the first such result,
        so that scoring again while the sources still fail never extends how long they are asked.
        A done result with its priors (or with priors off) clears it; a failure leaves it: the
        SR standing for the study is still the one without them."""
        return self._leave_processing(study_uid, state, error, result, priors_unavailable)

    def requeue(self, study_uid: str, error: str) -> None:
        """Send a claimed study back to receiving after a failure that retrying can cure (a
        scorer restarting): it is assessed and claimed again, each claim counted in `attempts`.
        `error` is kept as the reason of the last attempt, unless instances arrived since the
        claim (the study is receiving for them anyway)."""
        self._leave_processing(study_uid, RECEIVING, error, None)

    def _leave_processing(self, study_uid: str, state: StudyStatus, error: str | None, result: str | None,
                          priors_unavailable: bool = False) -> bool:
        """`state` (with `error`, `result`; done, with `priors_unavailable` as finish says) at the
        claimed generation, True; else receiving, False."""
        now = time.time()
        with self._lock, self._db:
            cursor = self._db.execute(
                "UPDATE studies SET state = ?, error = ?, result = COALESCE(?, result), updated_at = ?,"
                " priors_unavailable_since = CASE WHEN ? <> ? THEN priors_unavailable_since"
                " WHEN ? THEN COALESCE(priors_unavailable_since, ?) END"
                " WHERE study_instance_uid = ? AND state = ? AND generation = claimed_generation",
                (state, error, result, now, state, DONE, priors_unavailable, now, study_uid, PROCESSING),
            )
            if cursor.rowcount == 1:
                return True
            self._db.execute(
                "UPDATE studies SET state = ?, updated_at = ? WHERE study_instance_uid = ? AND state = ?",
                (RECEIVING, now, study_uid, PROCESSING),
            )
            return False

    def unreconciled(self) -> list[StudyState]:
        """Done studies whose current result has not been reconciled (service.priors.reconcile)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_columns('s')} FROM studies s LEFT JOIN reconciled r"
                " ON r.study_instance_uid = s.study_instance_uid AND r.result = s.result"
                " WHERE s.state = ? AND s.result IS NOT NULL AND r.result IS NULL ORDER BY s.updated_at", (DONE,),
            ).fetchall()
        return [_study_state(row) for row in rows]

    def scored_without_priors(self) -> list[StudyState]:
        """Done studies whose result was written while no prior source answered, the longest
        without them first: the worker asks the sources again for each, `status` shows them."""
        with self._lock:
            rows = self._db.execute(
                _STUDIES + " WHERE state = ? AND priors_unavailable_since IS NOT NULL ORDER BY priors_unavailable_since",
                (DONE,),
            ).fetchall()
        return [_study_state(row) for row in rows]

    def mark_reconciled(self, study_uid: str, result: str) -> None:
        """The later studies of this result have been checked (a new result is checked anew)."""
        with self._lock, self._db:
            self._db.execute("INSERT OR IGNORE INTO reconciled VALUES (?, ?)", (study_uid, result))

    def rescore(self, study_uid: str, reason: str, *, failed_too: bool = False) -> bool:
        """Send a done study, or with `failed_too` a failed one, back to receiving at a new
        generation, attempts from 0, to be scored again with what is now known; True when it was
        sent back. Done only by default: reconciliation sends back a done study whose priors
        arrived after it, and a prior arriving cures no failure. `radiomics-cds rescore` adds
        failed, for a failure whose cause is fixed (a scorer down longer than the worker's
        retries, a bug); attempts from 0 give it the scorer's whole retry schedule again.

        A receiving or processing study is left as it is: it is being scored anyway, and a new
        generation under a claim would drop that scoring's result. The study's result (a failed
        one's too: the last SR delivered) stays, and the new SR names it as predecessor, unless
        nothing changed and it is the same document. `reason` replaces the last error, for
        `status` to show until the study is scored. The quiet period and the hard cap count from
        now, as after an arrival: a study sent back waits for an earlier one of the patient in
        progress here (the worker's prior_in_flight_wait_seconds) like any other."""
        now = time.time()
        with self._lock, self._db:
            return self._db.execute(
                "UPDATE studies SET state = ?, error = ?, waiting_since = ?, last_received_at = ?, updated_at = ?,"
                " attempts = 0, interruptions = 0, generation = generation + 1 WHERE study_instance_uid = ? AND state IN (?, ?)",
                (RECEIVING, reason, now, now, now, study_uid, DONE, FAILED if failed_too else DONE),
            ).rowcount == 1

    def requeue_interrupted(self, max_attempts: int) -> tuple[int, int]:
        """After a restart: studies that were processing are assessed again, unless they have
        been interrupted `max_attempts` times (a study that crashes the process must not
        crash-loop it). Returns (requeued, failed). Interruptions are counted apart from
        attempts: a study waiting out a scorer's or a PACS's retries is claimed again and again
        (attempts), and a restart during one of those claims is its first interruption, not its
        sixth. Both start again from 0 when the study is sent back (an instance, a rescore)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("UPDATE studies SET interruptions = interruptions + 1 WHERE state = ?", (PROCESSING,))
            failed = self._db.execute(
                "UPDATE studies SET state = ?, error = ?, updated_at = ? WHERE state = ? AND interruptions >= ?",
                (FAILED, f"interrupted {max_attempts} times while being scored", now, PROCESSING, max_attempts),
            ).rowcount
            requeued = self._db.execute(
                "UPDATE studies SET state = ?, updated_at = ? WHERE state = ?", (RECEIVING, now, PROCESSING)
            ).rowcount
        return requeued, failed


def read_studies(path: Path) -> list[StudyState]:
    """Every study of an index, oldest activity first, opened read-only (for `status`, next to a
    running service: no schema script, no migration, nothing locked for writing); none while
    the index has no studies table yet. A column an older release's index lacks (one of
    _ADDED_STUDY_COLUMNS, not yet added by a service opening it) reads as NULL."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as db:
        present = {row[1] for row in db.execute("PRAGMA table_info(studies)")}
        if not present:
            return []
        columns = ", ".join(field.name if field.name in present else f"NULL AS {field.name}"
                            for field in fields(StudyState))
        return [_study_state(row) for row in db.execute(f"SELECT {columns} FROM studies ORDER BY last_received_at")]


def _columns(table: str = "") -> str:
    """The studies columns StudyState holds, in its order, of `table` (an alias) if given."""
    return ", ".join(f"{table}.{field.name}" if table else field.name for field in fields(StudyState))


_STUDIES = f"SELECT {_columns()} FROM studies"


def _study_state(row: tuple) -> StudyState:
    return StudyState(row[0], StudyStatus(row[1]), *row[2:])
