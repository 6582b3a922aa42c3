"""The durable outbox: results are files first, deliveries second.

Every SR and Bundle is written to var/outbox/ before anything is sent, so no delivery failure
can lose a result. Each configured destination (service.outputs.destinations) gets a delivery
row (SQLite, keyed by the destination's name) that background threads work off with
exponential backoff; rows survive restarts, and a permanently refused or exhausted delivery
stays visible (state `failed`, with the reason) next to its file.
Re-enqueueing bumps a row's generation, so an attempt that was already under way cannot mark
the newer content delivered.

Each peer (a destination's `peer`: the PACS by C-STORE takes the SR and the page) has a thread
of its own, its lane, which delivers its rows one at a time, oldest due first. A peer that
holds a connection open without answering holds each attempt for its timeout (60 s): with one
thread for all, an EHR that did so with ten Bundles due held every SR for the PACS behind it
for ten minutes. Rows of a destination no longer configured have a lane of their own, which
gives them up.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from service.observability import (DELIVERIES_GIVEN_UP, OUTBOX_FAILED, OUTBOX_PENDING, OUTPUTS_DELIVERED,
                                   OUTPUTS_FAILED, RepeatedErrorLog)
from service.errors import DeliveryError
from service.outputs.destinations import Destination

log = logging.getLogger(__name__)

_UNCONFIGURED = ""
"""The lane of rows whose destination is no longer configured (no peer has an empty name)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    destination TEXT NOT NULL,
    path TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    generation INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (destination, path)
);
-- what every lane asks each second: the due pending rows (delivered rows accumulate for ever)
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
"""



class DeliveryStatus(StrEnum):
    """A delivery's state; stored in the outbox as these strings."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# The members under the short names callers use.
PENDING: Final = DeliveryStatus.PENDING
DELIVERED: Final = DeliveryStatus.DELIVERED
FAILED: Final = DeliveryStatus.FAILED


@dataclass(frozen=True)
class Delivery:
    destination: str
    path: Path
    state: DeliveryStatus
    attempts: int
    last_error: str | None


def _deliveries(db: sqlite3.Connection) -> list[Delivery]:
    rows = db.execute("SELECT destination, path, state, attempts, last_error FROM deliveries ORDER BY updated_at")
    return [Delivery(r[0], Path(r[1]), DeliveryStatus(r[2]), r[3], r[4]) for r in rows.fetchall()]


def redeliver(database: Path, destination: str | None = None) -> dict[str, int]:
    """Every given-up delivery (of `destination`, else of all) back to pending, attempts from 0:
    for `radiomics-cds redeliver`, once the cause is fixed. A running service's outbox takes
    them up within a second (it polls the database; SQLite's WAL lets both write). Returns how
    many per destination."""
    with closing(sqlite3.connect(database, timeout=30, isolation_level=None)) as db:
        query, params = "WHERE state = ?", [FAILED.value]
        if destination is not None:
            query, params = query + " AND destination = ?", [*params, destination]
        db.execute("BEGIN IMMEDIATE")  # counted and changed in one transaction, beside the running outbox
        counts = dict(db.execute(f"SELECT destination, COUNT(*) FROM deliveries {query} GROUP BY destination",
                                 params).fetchall())
        now = time.time()
        db.execute(f"UPDATE deliveries SET state = ?, attempts = 0, next_attempt_at = ?, last_error = NULL,"
                   f" generation = generation + 1, updated_at = ? {query}", [PENDING.value, now, now, *params])
        db.execute("COMMIT")
    return counts


def read_deliveries(database: Path) -> list[Delivery]:
    """Every delivery of an outbox database, opened read-only (for `status`, next to a running
    service: nothing is created or locked for writing); none before the database exists."""
    if not database.is_file():
        return []
    with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as db:
        return _deliveries(db)


class Outbox:
    """Delivery bookkeeping plus the threads that deliver (a lane per peer)."""

    def __init__(self, database: Path, destinations: Iterable[Destination], *, max_attempts: int = 10,
                 initial_backoff_s: float = 5.0, max_backoff_s: float = 900.0) -> None:
        database.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._destinations = {destination.name: destination for destination in destinations}
        self._max_attempts = max_attempts
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._lanes = {destination.name: destination.peer for destination in self._destinations.values()}
        lanes = [*dict.fromkeys(self._lanes.values()), _UNCONFIGURED]
        self._wakes = {lane: threading.Event() for lane in lanes}
        self._threads = [threading.Thread(target=self._run, args=(lane,), name=f"outbox-{lane or 'unconfigured'}",
                                          daemon=True) for lane in lanes]
        self._cycle_errors = RepeatedErrorLog(log)  # a broken database fails every lane's cycle, once a second
        self._update_gauge()

    def _lane(self, destination: str) -> str:
        return self._lanes.get(destination, _UNCONFIGURED)

    def _of_lane(self, lane: str | None) -> tuple[str, tuple[str, ...]]:
        """The SQL condition on `destination` that keeps one lane's rows, and its parameters: a
        lane asks only for its own due rows, not for every lane's (an EHR down for a day leaves
        thousands due, which the PACS's lane would otherwise read each second)."""
        if lane is None:
            return "", ()
        if lane == _UNCONFIGURED:
            names = tuple(self._lanes)
            return f" AND destination NOT IN ({', '.join('?' * len(names))})", names
        names = tuple(name for name, peer in self._lanes.items() if peer == lane)
        return f" AND destination IN ({', '.join('?' * len(names))})", names

    def _wake(self, destination: str) -> None:
        self._wakes[self._lane(destination)].set()

    @property
    def destinations(self) -> tuple[Destination, ...]:
        return tuple(self._destinations.values())

    def enqueue(self, destination: str, path: Path) -> None:
        """(Re)schedule delivery of `path`; a re-written result is delivered again."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO deliveries (destination, path, state, attempts, next_attempt_at, updated_at)"
                " VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT (destination, path) DO UPDATE SET"
                " state = excluded.state, attempts = 0, next_attempt_at = excluded.next_attempt_at,"
                " last_error = NULL, generation = generation + 1, updated_at = excluded.updated_at",
                (destination, str(path), PENDING, now, now),
            )
        self._update_gauge()
        self._wake(destination)

    def enqueue_if_missing(self, destination: str, path: Path) -> bool:
        """Schedule delivery of `path` unless it is already known (in whatever state); True if
        it was not. For recovery: a delivered or failed row is left as it is."""
        now = time.time()
        with self._lock:
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO deliveries (destination, path, state, attempts, next_attempt_at, updated_at)"
                " VALUES (?, ?, ?, 0, ?, ?)", (destination, str(path), PENDING, now, now),
            ).rowcount == 1
        if inserted:
            self._update_gauge()
            self._wake(destination)
        return inserted

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return _deliveries(self._db)

    def state_of(self, destination: str, path: Path) -> DeliveryStatus | None:
        """Where the delivery of `path` to `destination` stands; None when it was never queued."""
        with self._lock:
            row = self._db.execute("SELECT state FROM deliveries WHERE destination = ? AND path = ?",
                                   (destination, str(path))).fetchone()
        return None if row is None else DeliveryStatus(row[0])

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM deliveries WHERE state = ?", (PENDING,)).fetchone()[0])

    def deliver_due(self, now: float | None = None, lane: str | None = None) -> int:
        """Attempt every delivery that is due, one after the other (of one `lane` alone: a
        peer, or _UNCONFIGURED), until the outbox stops; returns how many were attempted."""
        now = time.time() if now is None else now
        where, names = self._of_lane(lane)
        with self._lock:
            due = self._db.execute(
                "SELECT destination, path, attempts, generation FROM deliveries"
                f" WHERE state = ? AND next_attempt_at <= ?{where} ORDER BY next_attempt_at", (PENDING, now, *names),
            ).fetchall()
        attempted = 0
        for destination, path, attempts, generation in due:
            if self._stop.is_set():  # the rest are rows on disk: attempted after the restart
                break
            self._attempt(destination, Path(path), attempts, generation)
            attempted += 1
        self._update_gauge()
        return attempted

    def _attempt(self, destination: str, path: Path, attempts: int, generation: int) -> None:
        peer = self._destinations.get(destination)
        try:
            if peer is None:
                raise DeliveryError(f"destination {destination} is no longer configured", permanent=True)
            try:
                peer.send(path)
            except DeliveryError:
                raise
            except Exception as unexpected:  # a library error must cost one attempt, not its lane
                log.exception("delivery to %s raised unexpectedly", destination)
                raise DeliveryError(f"{type(unexpected).__name__}: {unexpected}") from unexpected
        except DeliveryError as error:
            OUTPUTS_FAILED.labels(destination).inc()
            attempts += 1
            exhausted = error.permanent or attempts >= self._max_attempts
            backoff = min(self._initial_backoff_s * 2 ** (attempts - 1), self._max_backoff_s)
            if exhausted:  # an operator must act: fix the cause, then `radiomics-cds redeliver`
                DELIVERIES_GIVEN_UP.labels(destination).inc()
                log.error("delivery to %s failed (attempt %d, giving up; `radiomics-cds redeliver` sends it again "
                          "once the cause is fixed): %s", destination, attempts, error)
            else:
                log.warning("delivery to %s failed (attempt %d, retry in %.0f s): %s", destination, attempts,
                            backoff, error)
            self._record(destination, path, generation, FAILED if exhausted else PENDING, attempts,
                         time.time() + backoff, str(error))
            return
        OUTPUTS_DELIVERED.labels(destination).inc()
        self._record(destination, path, generation, DELIVERED, attempts + 1, time.time(), None)

    def _record(self, destination: str, path: Path, generation: int, state: DeliveryStatus, attempts: int,
                next_at: float, error: str | None) -> None:
        """Store an attempt's outcome, unless the row was re-enqueued meanwhile."""
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, updated_at = ?"
                " WHERE destination = ? AND path = ? AND generation = ?",
                (state, attempts, next_at, error, time.time(), destination, str(path), generation),
            )

    def _update_gauge(self) -> None:
        """Both gauges from one query: it runs after every lane's cycle, each once a second. Set
        under the lock, so that a lane's older count never overwrites another's newer one."""
        with self._lock:
            rows = self._db.execute("SELECT destination, state, COUNT(*) FROM deliveries WHERE state IN (?, ?)"
                                    " GROUP BY destination, state", (PENDING, FAILED)).fetchall()
            OUTBOX_PENDING.set(sum(count for _, state, count in rows if state == PENDING))
            failed = {destination: count for destination, state, count in rows if state == FAILED}
            for name in {*self._destinations, *failed}:
                OUTBOX_FAILED.labels(name).set(failed.get(name, 0))

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def _run(self, lane: str) -> None:
        """One lane's thread: its due deliveries, then a wait for an enqueue or the next second
        (`redeliver` changes the database from another process: found at the next poll)."""
        wake = self._wakes[lane]
        while not self._stop.is_set():
            wake.clear()  # before the query: an enqueue during the cycle wakes the next wait
            try:
                self.deliver_due(lane=lane)
            except Exception:  # e.g. the outbox database is unwritable: keep trying
                self._cycle_errors.log("outbox cycle failed; retrying", exc_info=True)
            wake.wait(timeout=1.0)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every lane after the attempt it is in, waiting `timeout_s` for all together, then
        close the database. A lane still in an attempt then (a peer slower than that to answer
        or time out) keeps the database: its outcome is recorded if it ends before the process
        does, else the delivery is attempted again after the restart."""
        self._stop.set()
        for wake in self._wakes.values():
            wake.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if busy := [thread.name for thread in self._threads if thread.is_alive()]:
            log.warning("%s still in an attempt after %g s; stopping without it", ", ".join(busy), timeout_s)
            return
        with self._lock:
            self._db.close()
