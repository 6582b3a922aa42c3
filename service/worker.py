"""The study worker: turns complete studies in the index into results in the outbox.

One study at a time per worker thread; a study that fails (bad input or a bug) is marked failed
with a specific reason, and the worker goes on to the next: one broken study never stops the
service. Nothing here holds state the index does not: after a restart, interrupted studies are
simply assessed again.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
from pydicom import Dataset

from service.config import Config
from service.errors import InputError
from service.ingest.completeness import assess
from service.ingest.index import DONE, FAILED, PROCESSING, RECEIVING, StudyIndex
from service.ingest.spool import study_key
from service.observability import QUEUE_DEPTH, SCORING_SECONDS, STUDIES_COMPLETED, STUDIES_FAILED
from service.outputs.outbox import Outbox
from service.pipeline import read_instance, run_study
from service.scoring.client import ScoringClient

log = logging.getLogger(__name__)

_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# Attempts at one study before it is failed: bounds retries for an unavailable scorer and for
# a study that crashed the process mid-scoring (counted again after each restart).
MAX_ATTEMPTS = 5


class StudyWorker:
    """Polls the index, scores ready studies, writes and enqueues their outputs."""

    def __init__(self, config: Config, index: StudyIndex, client: ScoringClient, outbox: Outbox,
                 poll_seconds: float = 0.5) -> None:
        self._config = config
        self._index = index
        self._client = client
        self._outbox = outbox
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="study-worker", daemon=True)

    def start(self) -> None:
        requeued, given_up = self._index.requeue_interrupted(MAX_ATTEMPTS)
        if requeued:
            log.info("re-assessing %d studies interrupted by the last stop", requeued)
        if given_up:
            STUDIES_FAILED.labels("internal").inc(given_up)
            log.error("%d studies failed: interrupted %d times while scoring", given_up, MAX_ATTEMPTS)
        self._thread.start()

    def stop(self, timeout_s: float | None = 60.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.process_ready()
            except Exception:  # e.g. the index's disk is full: keep trying, never die silently
                log.exception("worker cycle failed; retrying")
            self._stop.wait(self._poll_seconds)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

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
        self._update_gauges()
        return processed

    def _process(self, study_uid: str, attempt: int) -> None:
        """Score one claimed study; whatever happens, it leaves `processing`."""
        key = study_key(study_uid)
        started = time.monotonic()
        try:
            datasets = [read_instance(record.path, header_only=True) for record in self._index.instances(study_uid)]
            written = run_study(
                datasets, self._client, self._config.outbox_dir,
                patient_identifier_system=self._config.patient_identifier_system,
                parallel=self._config.scorer_workers,
                lesion_roi_types=frozenset(self._config.lesion_roi_types),
                predecessor=self._previous_report(study_uid), limits=self._config.instance_limits,
            )
        except InputError as error:
            self._fail(study_uid, str(error), "input")
            return
        except grpc.RpcError as error:
            self._scorer_failed(study_uid, error, attempt)
            return
        except Exception as error:  # a bug must fail this study, not stop the service
            log.exception("study %s: internal error", key)
            self._fail(study_uid, f"internal error ({type(error).__name__}); see the service log", "internal")
            return
        SCORING_SECONDS.observe(time.monotonic() - started)
        if not self._index.finish(study_uid, DONE, result=written.sr_sop_instance_uid):
            # Instances arrived while we scored: this result is incomplete and superseded before
            # anyone received it. Drop it; the study is scored again with everything.
            log.info("study %s: new instances arrived while scoring; scoring again", key)
            for path in (written.sr_path, written.bundle_path):
                path.unlink(missing_ok=True)
            return
        for destination in self._outbox.destinations:
            self._outbox.enqueue(destination, written.sr_path if destination == "pacs" else written.bundle_path)
        STUDIES_COMPLETED.inc()
        log.info("study %s done: %d lesions, SR %s, FHIR Bundle %s", key, len(written.result.lesions),
                 written.sr_path, written.bundle_path)

    def _previous_report(self, study_uid: str) -> Dataset | None:
        """The SR an earlier scoring of this study delivered, if any: the new one replaces it."""
        state = self._index.study(study_uid)
        path = self._config.outbox_dir / f"{state.result}.dcm" if state and state.result else None
        return read_instance(path, header_only=True) if path is not None and path.exists() else None

    def _scorer_failed(self, study_uid: str, error: grpc.RpcError, attempt: int) -> None:
        """A scorer restarting or scaling is retried (bounded); any other refusal fails the study."""
        if error.code() in _TRANSIENT and attempt < MAX_ATTEMPTS:
            log.warning("study %s: scorer unavailable (%s), attempt %d of %d; will retry",
                        study_key(study_uid), error.code().name, attempt, MAX_ATTEMPTS)
            self._index.finish(study_uid, RECEIVING, error=f"scorer unavailable ({error.code().name})")
            return
        self._fail(study_uid, f"scorer: {error.code().name}: {error.details()}", "internal")

    def _fail(self, study_uid: str, reason: str, kind: str) -> None:
        self._index.finish(study_uid, FAILED, error=reason)
        STUDIES_FAILED.labels(kind).inc()
        log.error("study %s failed: %s", study_key(study_uid), reason)

    def _update_gauges(self) -> None:
        for state in (RECEIVING, PROCESSING):
            QUEUE_DEPTH.labels(state).set(self._index.count_in(state))
