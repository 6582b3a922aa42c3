"""Spool retention: the spooled instances of studies that no longer need them are removed.

A CT study is 150-500 MB, and a spool that keeps every study fills its volume after a hundred or
so; then every C-STORE is refused. The results live on in PACS and the EHR. The spooled copies
are needed only while a study is received and scored, for `radiomics-cds rescore`, and for
reconciliation (service.worker), which scores a study again when an earlier study's report
arrives after it: the days of retention are what keeps them for that (which study will need it
cannot be known before the earlier report arrives; a study removed by then is retrieved from
PACS again when a prior source can (service.restoration), else left done, the log saying to send
it again). So with `spool_retention_days` set, a study's spooled files are
removed once
- it is done or failed, and nothing has happened to it (an outcome, an instance received) for
  that many days;
- no delivery of its current result is pending: until the result has reached PACS and the EHR,
  the spool is what it could be made again from;
- it is not waiting for its priors: a study scored while no prior source answered is scored
  again once one does (service.prior_retry), for prior_retry_hours after its first result
  without them, and that scoring reads the spool.

The instance rows stay (small, and the study's history); the index marks the study
(`files_removed_at`), so that `status` shows it, and `rescore` and the worker say that retention
removed the files. The mark comes first, in a transaction that checks the study again
(StudyIndex.mark_files_removed): an instance indexed meanwhile either keeps the study from being
marked or is not among the files removed. Then the files go, each directory fsync'd, and the
study's directory once empty. A crash in between leaves a marked study whose directory remains,
which the next sweep removes. An instance received again (the study sent again, to be rescored)
clears the mark and counts as activity, so its files are not removed again before they can be
used.

The ingest sweeps once at start and every SWEEP_INTERVAL_SECONDS in a thread of its own,
removing at most MAX_STUDIES_PER_SWEEP studies per sweep, so that the first sweep over a spool of
years does not hold the disk for minutes; errors are logged at most once a minute and never end
the thread. `radiomics-cds prune` removes (or with --dry-run lists) the same studies at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.config import Config
from service.durable import fsync_directory
from service.ingest.index import StudyIndex, StudyState
from service.ingest.spool import Spool, study_key
from service.observability import SPOOL_REMOVED_BYTES, SPOOL_STUDIES_REMOVED, RepeatedErrorLog
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.outbox import PENDING, Delivery, Outbox

log = logging.getLogger(__name__)

DAY_SECONDS = 86400.0
SWEEP_INTERVAL_SECONDS = 600.0
# 15-50 GB of CT per sweep: enough to keep pace with any site's intake at one sweep every
# ten minutes, little enough that a sweep's unlinks and fsyncs do not hold the disk the listener
# writes to for long.
MAX_STUDIES_PER_SWEEP = 100


def cutoff(retention_days: float, now: float) -> float:
    """The moment before which a study must have last changed for its files to be removed."""
    return now - retention_days * DAY_SECONDS


def expired(index: StudyIndex, spool: Spool, deliveries: Iterable[Delivery], config: Config,
            now: float) -> list[StudyState]:
    """The studies whose spooled files retention removes at `now` under `config`'s
    spool_retention_days, least recently changed first (the module's docstring says which);
    none while it is 0, which keeps every study."""
    if config.spool_retention_days <= 0:
        return []
    pending = {delivery.path for delivery in deliveries if delivery.state == PENDING}
    return [study for study in index.unchanged_since(cutoff(config.spool_retention_days, now))
            if _has_files(study, spool) and not _delivery_pending(study, pending, config.outbox_dir)
            and not _waiting_for_priors(study, config, now)]


def _waiting_for_priors(study: StudyState, config: Config, now: float) -> bool:
    """Scored while no prior source answered, and still to be scored again once one does
    (service.prior_retry asks for prior_retry_hours; after that only a `rescore` would, and the
    study is no longer kept for it)."""
    since = study.priors_unavailable_since
    return bool(config.prior_providers) and since is not None and now - since < config.prior_retry_hours * 3600


def _has_files(study: StudyState, spool: Spool) -> bool:
    """Not marked, or marked but its directory still there (a crash mid-removal, or an
    instance received since)."""
    return study.files_removed_at is None or spool.directory_for(study.study_instance_uid).exists()


def _delivery_pending(study: StudyState, pending: set[Path], outbox_dir: Path) -> bool:
    """A delivery of any artefact of its current result still pending (`pending`: the queued
    files with a delivery pending, to any destination)."""
    if not study.result:
        return False
    return any(artefact_path(outbox_dir, study.result, artefact) in pending for artefact in Artefact)


def remove(index: StudyIndex, spool: Spool, study: StudyState, before: float) -> int | None:
    """Mark the study and remove its spooled files and, once empty, its directory, durably;
    the bytes freed, or None when it may no longer be removed (it changed since `before`).
    OSError when a file cannot be removed: the study stays marked, and its directory makes the
    next sweep try again."""
    records = index.mark_files_removed(study.study_instance_uid, before)
    if records is None:
        return None
    freed = sum(_unlink(record.path, before) for record in records)
    for directory in {record.path.parent for record in records}:
        if directory.is_dir():
            fsync_directory(directory)
    _remove_if_empty(spool.directory_for(study.study_instance_uid), spool.root)
    log.debug("study %s: spooled instances removed (%d bytes)", study_key(study.study_instance_uid), freed)
    return freed


def _unlink(path: Path, before: float) -> int:
    """Remove one file unless it was written at or after `before`; its size, 0 when it was gone
    already or kept.

    A file that new is an instance being received again: the listener moves it into the spool
    (where the same SOP Instance UID always lands) before its index transaction, which finds
    the row already there and clears the study's mark. Between the two, the study can be marked
    and listed with it; removed then, an instance answered Success would be lost. A received
    file keeps the time it was written through the rename into the spool, and every file the
    study held before has an older one (the study is unchanged since `before`)."""
    try:
        status = path.stat()
        if status.st_mtime >= before:
            return 0
        path.unlink()
    except FileNotFoundError:
        return 0
    return status.st_size


def _remove_if_empty(directory: Path, parent: Path) -> None:
    """rmdir, durably; left alone when something is in it (an instance received meanwhile,
    whose study is then scored again) or it is gone."""
    try:
        directory.rmdir()
    except OSError:  # not empty, or not there
        return
    fsync_directory(parent)


@dataclass(frozen=True)
class Freed:
    """What a sweep removed."""

    studies: int = 0
    bytes: int = 0


class SpoolRetention:
    """The ingest's sweep: once at start, then every `interval_s`, in a thread of its own; not
    started while spool_retention_days is 0 (keep for ever)."""

    def __init__(self, config: Config, index: StudyIndex, spool: Spool, outbox: Outbox,
                 interval_s: float = SWEEP_INTERVAL_SECONDS) -> None:
        self._config = config
        self._index = index
        self._spool = spool
        self._outbox = outbox
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._errors = RepeatedErrorLog(log)
        self._thread = threading.Thread(target=self._run, name="spool-retention", daemon=True)

    def start(self) -> None:
        if self._config.spool_retention_days > 0:
            self._thread.start()

    def stop(self) -> None:
        """Ends the sweep after the study in hand."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # the index or the outbox failing: try again at the next sweep
                self._errors.log("spool retention sweep failed; trying again in %g s", self._interval_s,
                                 exc_info=True)
            self._stop.wait(self._interval_s)

    def sweep(self, now: float | None = None) -> Freed:
        """Remove the files of up to MAX_STUDIES_PER_SWEEP expired studies; counted in the
        rcds_spool_* metrics and logged as counts and bytes (never a UID)."""
        now = time.time() if now is None else now
        due = expired(self._index, self._spool, self._outbox.deliveries(), self._config, now)
        freed = self._remove_each(due[:MAX_STUDIES_PER_SWEEP], cutoff(self._config.spool_retention_days, now))
        if freed.studies:
            log.info("spool retention removed the spooled instances of %d studies (%d bytes) done or failed more "
                     "than %g days ago; %d more are due", freed.studies, freed.bytes,
                     self._config.spool_retention_days, max(0, len(due) - MAX_STUDIES_PER_SWEEP))
        return freed

    def _remove_each(self, studies: Sequence[StudyState], before: float) -> Freed:
        """One study failing (a file it may not remove) does not hold up the others."""
        removed = total = 0
        for study in studies:
            if self._stop.is_set():
                break
            try:
                freed = remove(self._index, self._spool, study, before)
            except OSError as error:
                self._errors.log("spool retention could not remove a study's files (%s); trying again at the next "
                                 "sweep", error)
                continue
            if freed is not None:
                removed, total = removed + 1, total + freed
                SPOOL_STUDIES_REMOVED.inc()
                SPOOL_REMOVED_BYTES.inc(freed)
        return Freed(removed, total)
