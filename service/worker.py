"""The study worker: turns complete studies in the index into results in the outbox.

`concurrent_studies` threads, one study at a time each (the index's claim hands a study to one
thread only), so a large study does not hold up the others; they share the scorer pool. A study
that fails (bad input or a bug) is marked failed with a specific reason, and the worker goes on
to the next: one broken study never stops the service. Nothing here holds state the index and
the outbox do not: after a restart, interrupted studies are simply assessed again, and a study
that was marked done but whose deliveries were never queued (a crash between the two commits,
which live in two databases) has them queued at start.
"""

from __future__ import annotations

import logging
import threading
import time

from pydicom import Dataset

from service.config import Config
from service.errors import InputError, ScorerError, ScorerUnavailable
from service.ingest.completeness import assess
from service.ingest.index import DONE, FAILED, RECEIVING, StudyIndex
from service.ingest.spool import study_key
from service.observability import SCORING_SECONDS, STUDIES_COMPLETED, STUDIES_FAILED, RepeatedErrorLog
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.outbox import Outbox
from service.imaging.selection import read_instance
from service.pipeline import WrittenOutputs, run_study
from service.scorer import Scorer

log = logging.getLogger(__name__)

# Attempts at one study before it is failed: bounds retries for an unavailable scorer and for
# a study that crashed the process mid-scoring (counted again after each restart).
MAX_ATTEMPTS = 5


class StudyWorker:
    """Polls the index, scores ready studies, writes and enqueues their outputs."""

    def __init__(self, config: Config, index: StudyIndex, scorer: Scorer, outbox: Outbox,
                 poll_seconds: float = 0.5) -> None:
        self._config = config
        self._index = index
        self._scorer = scorer
        self._outbox = outbox
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._cycle_errors = RepeatedErrorLog(log)
        self._threads = [threading.Thread(target=self._run, name=f"study-worker-{n + 1}", daemon=True)
                         for n in range(config.concurrent_studies)]

    def start(self) -> None:
        requeued, given_up = self._index.requeue_interrupted(MAX_ATTEMPTS)
        if requeued:
            log.info("re-assessing %d studies interrupted by the last stop", requeued)
        if given_up:
            STUDIES_FAILED.labels("internal").inc(given_up)
            log.error("%d studies failed: interrupted %d times while scoring", given_up, MAX_ATTEMPTS)
        recovered = self.queue_missing_deliveries()
        if recovered:
            log.warning("queued %d deliveries of done studies that an interrupted stop had not queued", recovered)
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float | None = 60.0) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.process_ready()
            except Exception:  # e.g. the index's disk is full: keep trying, never die silently
                self._cycle_errors.log("worker cycle failed; retrying", exc_info=True)
            self._stop.wait(self._poll_seconds)

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def queue_missing_deliveries(self) -> int:
        """Queue every delivery of a done study's result that the outbox does not know.

        Marking a study done (index) and queuing its deliveries (outbox) are two commits in two
        databases; this makes a crash between them harmless. Returns how many were queued.
        """
        queued = 0
        for study in self._index.studies_in(DONE):
            if not study.result:
                continue
            for destination in self._outbox.destinations:
                path = artefact_path(self._config.outbox_dir, study.result, destination.artefact)
                if path.exists() and self._outbox.enqueue_if_missing(destination.name, path):
                    queued += 1
        return queued

    def process_ready(self, now: float | None = None) -> int:
        """Assess every receiving study; process those ready. Returns how many were processed."""
        processed = 0
        for study in self._index.studies_in(RECEIVING):
            if self._stop.is_set():
                break
            instances = self._index.instances(study.study_instance_uid)
            decision = assess(study, instances, time.time() if now is None else now,
                              self._config.quiet_seconds, self._config.hard_cap_seconds)
            if decision.failed and self._index.claim(study.study_instance_uid):
                self._fail(study.study_instance_uid, decision.reason, "input")
            elif decision.ready and self._index.claim(study.study_instance_uid):
                log.info("study %s ready: %s", study_key(study.study_instance_uid), decision.reason)
                self._process(study.study_instance_uid, study.attempts + 1)
                processed += 1
        return processed

    def _process(self, study_uid: str, attempt: int) -> None:
        """Score one claimed study; whatever happens, it leaves `processing`."""
        key = study_key(study_uid)
        started = time.monotonic()
        try:
            datasets = [read_instance(record.path, header_only=True) for record in self._index.instances(study_uid)]
            written = run_study(
                datasets, self._scorer, self._config.outbox_dir,
                patient_identifier_system=self._config.patient_identifier_system,
                parallel=self._config.scorer_workers,
                lesion_roi_types=frozenset(self._config.lesion_roi_types),
                max_lesions=self._config.max_lesions_per_study,
                predecessor=self._previous_report(study_uid), limits=self._config.instance_limits,
            )
        except InputError as error:
            self._fail(study_uid, str(error), "input")
            return
        except ScorerError as error:
            self._scorer_failed(study_uid, error, attempt)
            return
        except Exception as error:  # a bug must fail this study, not stop the service
            log.exception("study %s: internal error", key)
            self._fail(study_uid, f"internal error ({type(error).__name__}); see the service log", "internal")
            return
        SCORING_SECONDS.observe(time.monotonic() - started)
        if self.complete(study_uid, written):
            STUDIES_COMPLETED.inc()
            log.info("study %s done: %d lesions, SR %s, FHIR Bundle %s", key, len(written.result.lesions),
                     written.sr_path, written.bundle_path)

    def complete(self, study_uid: str, written: WrittenOutputs) -> bool:
        """Mark a scored study done, then queue its deliveries (queue_missing_deliveries covers a
        crash in between). False when instances arrived while it was scored: the result is
        incomplete and superseded before anyone received it, so it is dropped and the study is
        scored again with everything."""
        if not self._index.finish(study_uid, DONE, result=written.sr_sop_instance_uid):
            log.info("study %s: new instances arrived while scoring; scoring again", study_key(study_uid))
            for path in written.paths.values():
                path.unlink(missing_ok=True)
            return False
        for destination in self._outbox.destinations:  # each gets the artefact it takes
            self._outbox.enqueue(destination.name, written.paths[destination.artefact])
        return True

    def _previous_report(self, study_uid: str) -> Dataset | None:
        """The SR an earlier scoring of this study delivered, if any: the new one replaces it."""
        state = self._index.study(study_uid)
        path = artefact_path(self._config.outbox_dir, state.result, Artefact.SR) if state and state.result else None
        return read_instance(path, header_only=True) if path is not None and path.exists() else None

    def _scorer_failed(self, study_uid: str, error: ScorerError, attempt: int) -> None:
        """A scorer restarting or scaling is retried (bounded); any other refusal fails the study."""
        if isinstance(error, ScorerUnavailable) and attempt < MAX_ATTEMPTS:
            log.warning("study %s: scorer unavailable (%s), attempt %d of %d; will retry",
                        study_key(study_uid), error.code, attempt, MAX_ATTEMPTS)
            self._index.requeue(study_uid, f"scorer unavailable ({error.code})")
            return
        self._fail(study_uid, f"scorer: {error}", "internal")

    def _fail(self, study_uid: str, reason: str, kind: str) -> None:
        self._index.finish(study_uid, FAILED, error=reason)
        STUDIES_FAILED.labels(kind).inc()
        log.error("study %s failed: %s", study_key(study_uid), reason)
