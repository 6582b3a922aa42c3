"""The study worker: turns complete studies in the index into results in the outbox.

`concurrent_studies` threads, one study at a time each (the index's claim hands a study to one
thread only), so a large study does not hold up the others; they share the scorer pool. A study
that fails (bad input or a bug) is marked failed with a specific reason, and the worker goes on
to the next: one broken study never stops the service. Nothing here holds state the index and
the outbox do not: after a restart, interrupted studies are simply assessed again, and a study
that was marked done but whose deliveries were never queued (a crash between the two commits,
which live in two databases) has them queued at start.

With prior_providers set, a scored study is compared with its priors pulled from PACS before its
outputs are written (the same run_study as `score --prior`), and once its SR has reached PACS the
worker reconciles: later studies of the patient whose report did not compare with this SR (their
baseline arrived after them) are scored again: sent back if this ingest scored them, else
retrieved from PACS into this ingest (service.adoption). A prior in another frame of reference
is registered with its CT retrieved from PACS (service.prior_ct), when a source can retrieve.
Better still, a study ready to score waits while an earlier study of the patient is in flight here
(receiving, scoring, or its SR not yet delivered to PACS, where the prior lookup finds it), at
most prior_in_flight_wait_seconds after its last instance: baseline and follow-up sent together
give one SR for the follow-up, compared with the baseline. The wait is decided anew at each poll
from the index and the outbox, so a restart while waiting changes nothing. A study scored while
no prior source answered is marked in the index, and scored again once one does
(service.prior_retry), for at most prior_retry_hours.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from pydicom import Dataset

from service.config import PACS_QUERY_MAX_BACKOFF_SECONDS, Config
from service.adoption import Adoption
from service.backoff import Backoff
from service.errors import ConfigError, InputError, PriorNotHeld, PriorSourceError, ScorerError, ScorerUnavailable
from service.ingest.completeness import EarlyMargin, Outcome, assess
from service.ingest.index import DONE, FAILED, PROCESSING, RECEIVING, InstanceRecord, StudyIndex, StudyState
from service.ingest.spool import Spool, missing_from_spool, study_key
from service.model import StudyInfo
from service.observability import (PRIOR_LOOKUP_SECONDS, PRIOR_LOOKUPS, SCORING_SECONDS, STUDIES_COMPLETED,
                                   STUDIES_FAILED, STUDY_STAGE_SECONDS, RepeatedErrorLog, redact_uids)
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.destinations import pacs_tls
from service.outputs.fhir import FhirSettings
from service.outputs.outbox import DELIVERED, PENDING, Outbox
from service.outputs.page_process import PageRenderer, start_page_renderer
from service.outputs.warm_up import start_warm_up
from service.imaging.crops import BSPLINE_PREFILTER_VOXELS
from service.imaging.selection import read_instance, read_study_instance, study_info
from service.pipeline import PriorLookup, WrittenOutputs, run_study
from service.prior_ct import RetrievedPriorCt
from service.prior_retry import PriorRetry, PriorsWatch
from service.response import ResponseInputs
from service.restoration import OutsideSpool, SpoolRestoration
from service.priors import PriorCache, PriorsOutcome, build_providers, resolve_priors, stale_later_studies
from service.priors.retrieve import RetrievalLimits, retrieving
from service.priors.selection import priors_used
from service.scorer import Scorer
from service.sop_classes import CT_SOP_CLASSES
from service.scoring.settings import ExtractionSettings

log = logging.getLogger(__name__)

# Attempts at one study before it is failed: bounds retries for a study that crashed the
# process mid-scoring (counted again after each restart).
MAX_ATTEMPTS = 5
# Seconds before a study a peer could not serve is claimed again, attempt after attempt: a
# scorer restarting, rescheduled or crash-looping, or a PACS that does not give back the
# study's instances gone from the spool (service.restoration), for up to about an hour (their
# sum), leaves the study waiting, not failed. Claimed again at once, five attempts failed
# studies for good within 75 s of a scorer outage. One more attempt than waits; a study that
# itself brings its scorer down (a lesion too large for the pod's memory), or that PACS no
# longer holds, is still failed in the end.
PEER_RETRY_WAITS_S = (10.0, 30.0, 90.0, 270.0, 600.0, 600.0, 600.0, 600.0, 600.0)
# Early completeness while the scorer cannot state its settings: the flat margin used before the
# margin was derived from them, wide enough for any ring up to 7 mm.
UNKNOWN_SETTINGS_MARGIN = EarlyMargin(ring_mm=10.0, resampled_voxel_mm=0.0, support_slices=0)
# How long the margin from the scorer's settings is trusted: a scorer redeployed with other
# settings (a wider ring) is asked again within this time, as its connections are recycled.
MARGIN_REFRESH_SECONDS = 300.0
# Rest between cycles woken by arrivals: a study streaming in wakes the worker with every
# instance, and each cycle re-reads every receiving study's instances; back to back that is
# quadratic in the series and holds the GIL against the listener's C-STORE threads. After a
# cycle that scored nothing, the next starts REST_PER_ASSESSING_SECOND times its duration after
# it (each study thread assesses at most a ninth of the time, whatever the series' size: with
# concurrent_studies threads, that many ninths), and at most MAX_REST_SECONDS: a flat 0.2 s
# made the cycle after a study's last instance start 0.1 s late on average, for cycles of a few
# milliseconds.
REST_PER_ASSESSING_SECOND = 9.0
MAX_REST_SECONDS = 0.2


def _counted_lookup(study: StudyInfo, lookup: Callable[[], PriorsOutcome], retried: bool) -> PriorsOutcome:
    """`lookup` of the study's priors, counted by outcome (rcds_prior_lookups_total) and, when it
    asked the sources, timed (rcds_prior_lookup_seconds). A study without its priors is still
    scored and delivered, its notes saying "priors unavailable": without the count, a prior
    source down or blocked shows only study by study. Such a study is named in the log. Only
    a scoring's lookup is counted: service.prior_retry's questions about such a study later
    are not lookups of a scored study (each would count a PACS outage again). `retried`:
    whether prior retry will ask again about it (prior_retry_hours above 0), which the log says."""
    started = time.monotonic()
    outcome_name = "error"
    try:
        outcome = lookup()
        outcome_name = _lookup_outcome(outcome)
    finally:
        PRIOR_LOOKUPS.labels(outcome_name).inc()
        if outcome_name != "not_looked_up":
            PRIOR_LOOKUP_SECONDS.observe(time.monotonic() - started)
    if outcome_name == "unavailable":
        key = study_key(study.study_instance_uid)
        then = ("scored again by itself once a prior source answers (within prior_retry_hours; then "
                "`radiomics-cds rescore %s`)" if retried else "once a prior source answers, `radiomics-cds rescore %s` "
                "compares it")
        log.warning("study %s: priors unavailable, compared with none; " + then, key, key)
    return outcome


def _lookup_outcome(outcome: PriorsOutcome) -> str:
    """Its outcome in rcds_prior_lookups_total (service.observability.PRIOR_LOOKUP_OUTCOMES)."""
    if outcome.unavailable is not None:
        return "unavailable"
    if not outcome.looked_up:
        return "not_looked_up"
    return "found" if outcome.reports else "none"


def early_margin(settings: ExtractionSettings) -> EarlyMargin:
    """The CT the scoring reads beyond a contour under `settings` (EarlyMargin explains the
    terms): the ring, one resampled voxel along z (a z spacing kept as is, 0 or no resampling,
    is one more original slice), and the interpolator's support (the B-spline's two slices plus
    its pre-filter's reach, as service.imaging.crops pads its crops)."""
    spacing = settings.resampledPixelSpacing
    resampled_z = spacing[2] if spacing is not None else 0.0
    support = 2 + BSPLINE_PREFILTER_VOXELS if settings.interpolator == "sitkBSpline" else 1
    return EarlyMargin(ring_mm=settings.ringWidthMm, resampled_voxel_mm=max(resampled_z, 0.0),
                       support_slices=support + (0 if resampled_z > 0 else 1))


class StudyWorker:
    """Assesses the index's receiving studies when an instance arrives (`arrivals`, set by the
    listener's store handler), when the quiet period or the hard cap of a waiting study runs out,
    and at least every `poll_seconds` (a missed wake-up costs one poll), scores ready studies,
    writes and enqueues their outputs."""

    def __init__(self, config: Config, index: StudyIndex, scorer: Scorer, outbox: Outbox,
                 poll_seconds: float = 0.5) -> None:
        self._config = config
        self._index = index
        self._scorer = scorer
        self._outbox = outbox
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self.arrivals = threading.Event()
        self._cycle_errors = RepeatedErrorLog(log)
        self._providers = build_providers(config, dimse_tls=pacs_tls(config))
        self._response_inputs = ResponseInputs.from_config(config)  # reads response_settings_file: once, at start
        self._prior_cache = PriorCache(config.prior_cache_dir)
        retrievers, limits = retrieving(self._providers), RetrievalLimits(config.instance_limits)
        self._prior_ct = RetrievedPriorCt(retrievers, config.var_dir / "retrieved", limits) if retrievers else None
        self._adoption = Adoption(retrievers, index, Spool(config.spool_dir), config.var_dir / "retrieved",
                                  config.var_dir / "adopted", limits) if retrievers else None
        self._restoration = SpoolRestoration(retrievers, index, config.spool_dir, config.var_dir / "retrieved",
                                             limits) if retrievers else None
        self._reconciling = threading.Lock()  # one thread reconciles at a time
        # Reconciliation asks again after PACS did not answer, or while a later study of the
        # patient is still being received or scored here; a study scored while its priors were
        # unavailable is asked about again on the same schedule (service.prior_retry).
        self._reconcile_backoff = self._pacs_query_backoff()  # study -> next ask
        self._reconcile_errors = RepeatedErrorLog(log)
        lookup = self._uncounted_prior_lookup()
        self._prior_retry = PriorRetry(index, lookup, config.outbox_dir,
                                       self._pacs_query_backoff(),
                                       config.prior_retry_hours * 3600, self._stop) \
            if lookup and config.prior_retry_hours > 0 else None
        self._retry_at: dict[str, float] = {}  # study -> when to claim it again (PEER_RETRY_WAITS_S)
        self._waiting: set[str] = set()  # studies held for an earlier one, each logged once
        self._margin: tuple[EarlyMargin, float] | None = None  # from the scorer's settings, and when asked
        self._margin_errors = RepeatedErrorLog(log)
        # Per thread: when a study this thread left waiting has its quiet period or hard cap run out.
        self._deadlines = threading.local()
        self._pages: PageRenderer | None = None  # from start(): before, pages are rendered in-thread
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
        if self._adoption is not None:
            self._adoption.remove_leftovers()
        self._pages = start_page_renderer()  # its process starts and loads matplotlib meanwhile
        start_warm_up(self._pages)  # in the background: highdicom warm here, the renderer's first page drawn
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float | None = 60.0) -> None:
        self._stop.set()
        self.arrivals.set()  # wakes the threads now, not at their next poll
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            rest = MAX_REST_SECONDS
            self.arrivals.clear()  # before the cycle: an arrival during it brings the next one soon
            try:
                if self.process_ready() == 0:
                    rest = min(rest, REST_PER_ASSESSING_SECOND * (time.monotonic() - started))
                self.reconcile_delivered()
                self.retry_without_priors()
            except Exception:  # e.g. the index's disk is full: keep trying, never die silently
                self._cycle_errors.log("worker cycle failed; retrying", exc_info=True)
                self._deadlines.next = float("inf")  # a failed cycle's deadline is stale: the next after a poll
            next_deadline = getattr(self._deadlines, "next", float("inf"))
            self.arrivals.wait(min(self._poll_seconds, max(0.0, next_deadline - time.time())))
            self._stop.wait(max(0.0, rest - (time.monotonic() - started)))

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
        """Assess every receiving study; process those ready. Returns how many were processed.
        Notes when the quiet period or the hard cap of a study left waiting runs out first: the
        cycle then wakes at that moment, not up to a poll later."""
        processed = 0
        next_deadline = float("inf")
        receiving = list(self._index.studies_in(RECEIVING))
        margin = self._early_margin() if receiving else UNKNOWN_SETTINGS_MARGIN
        for study in receiving:
            if self._stop.is_set():
                break
            instances = self._index.instances(study.study_instance_uid)
            moment = time.time() if now is None else now
            decision = assess(study, instances, moment, self._config.quiet_seconds, self._config.hard_cap_seconds,
                              margin)
            retry_at = self._retry_at.get(study.study_instance_uid, 0.0)
            if decision.failed and self._index.claim(study.study_instance_uid):
                self._fail(study.study_instance_uid, decision.reason, "input")
            elif decision.ready and retry_at > moment:  # a peer (scorer, PACS) could not serve it: wait before asking again
                next_deadline = min(next_deadline, retry_at)
            elif decision.ready and not self._waits_for_earlier(study, moment) and \
                    self._index.claim(study.study_instance_uid):
                self._retry_at.pop(study.study_instance_uid, None)
                self._waiting.discard(study.study_instance_uid)
                STUDY_STAGE_SECONDS.labels("waiting").observe(max(0.0, moment - study.last_received_at))
                log.info("study %s ready: %s", study_key(study.study_instance_uid), decision.reason)
                self._process(study.study_instance_uid, study.attempts + 1)
                processed += 1
            elif decision.outcome is Outcome.WAIT:  # a quiet period already run out (no contours yet) is no deadline
                deadlines = (study.last_received_at + self._config.quiet_seconds,
                             study.waiting_since + self._config.hard_cap_seconds)
                next_deadline = min([next_deadline, *(d for d in deadlines if d > moment)])
        self._deadlines.next = next_deadline
        return processed

    def _early_margin(self) -> EarlyMargin:
        """The completeness margin of the scorer's settings, asked again every
        MARGIN_REFRESH_SECONDS; the flat UNKNOWN_SETTINGS_MARGIN while the scorer cannot answer
        or states settings this release cannot read (a newer scorer in a rolling upgrade): that
        must not stop the worker from assessing studies."""
        now = time.monotonic()
        if self._margin is None or now - self._margin[1] >= MARGIN_REFRESH_SECONDS:
            try:
                self._margin = (early_margin(ExtractionSettings.from_dict(dict(self._scorer.describe().settings))), now)
            except ScorerError:
                return self._margin[0] if self._margin is not None else UNKNOWN_SETTINGS_MARGIN
            except (ConfigError, TypeError, ValueError) as error:
                self._margin_errors.log("the scorer's settings cannot be read (%s); early completeness uses "
                                        "the flat margin", error)
                return UNKNOWN_SETTINGS_MARGIN
        return self._margin[0]

    def _waits_for_earlier(self, study: StudyState, now: float) -> bool:
        """Whether a ready study waits for an earlier study of the patient still in flight here
        (priors on, within prior_in_flight_wait_seconds of its last instance)."""
        if not self._providers or now - study.last_received_at >= self._config.prior_in_flight_wait_seconds:
            return False
        if not any(self._in_flight(earlier) for earlier in self._index.earlier_studies(study.study_instance_uid)):
            return False
        if study.study_instance_uid not in self._waiting:
            self._waiting.add(study.study_instance_uid)
            log.info("study %s: waiting (up to %g s) for an earlier study of the patient in progress here",
                     study_key(study.study_instance_uid), self._config.prior_in_flight_wait_seconds)
        return True

    def _in_flight(self, study: StudyState) -> bool:
        """Receiving or scoring, or done with its SR not yet delivered to or refused by PACS."""
        if study.state is RECEIVING or study.state is PROCESSING:
            return True
        if study.state is not DONE or not study.result:
            return False
        path = artefact_path(self._config.outbox_dir, study.result, Artefact.SR)
        return path.exists() and bool({self._outbox.state_of(destination.name, path) for destination in self._outbox.destinations
                     if destination.artefact is Artefact.SR} & {PENDING, None})

    def _process(self, study_uid: str, attempt: int) -> None:
        """Score one claimed study; whatever happens, it leaves `processing`."""
        key = study_key(study_uid)
        started = time.monotonic()
        try:
            records = self._index.instances(study_uid)
            removed_at = self._index.files_removed_at(study_uid)
            gone = missing_from_spool(records, removed_at)
            if gone is not None and self._restoration is not None:
                if not self._put_back(self._restoration, study_uid, records, removed_at, attempt):
                    return
            elif gone is not None:  # our files, not the sender's data (retention's, perhaps): failed as internal
                self._fail(study_uid, gone, "internal")
                return
            elif removed_at is not None:  # every file is back (sent again, or restored before a crash)
                self._index.files_restored(study_uid)
            with STUDY_STAGE_SECONDS.labels("reading").time():
                datasets = [read_study_instance(record.path, ct_image=record.sop_class_uid in CT_SOP_CLASSES)
                            for record in records]
            priors = PriorsWatch(self._prior_lookup())
            written = run_study(
                datasets, self._scorer, self._config.outbox_dir,
                fhir=FhirSettings.from_config(self._config),
                parallel=self._config.scorer_workers,
                lesion_roi_types=frozenset(self._config.lesion_roi_types),
                max_lesions=self._config.max_lesions_per_study,
                predecessor=self._previous_report(study_uid), limits=self._config.instance_limits,
                priors=priors.lookup, prior_ct=self._prior_ct,
                response_inputs=self._response_inputs, pages=self._pages,
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
        with STUDY_STAGE_SECONDS.labels("completing").time():
            completed = self.complete(study_uid, written, priors_unavailable=priors.unavailable)
        if completed:
            STUDIES_COMPLETED.inc()
            log.info("study %s done: %d lesions, SR %s, FHIR Bundle %s", key, len(written.result.lesions),
                     written.sr_path, written.bundle_path)

    def complete(self, study_uid: str, written: WrittenOutputs, *, priors_unavailable: bool = False) -> bool:
        """Mark a scored study done, then queue its deliveries (queue_missing_deliveries covers a
        crash in between). False when instances arrived while it was scored: the result is
        incomplete and superseded before anyone received it, so it is dropped and the study is
        scored again with everything. `priors_unavailable`: no prior source answered for it, which
        the index records (StudyIndex.finish) for the study to be scored again once one does."""
        if not self._index.finish(study_uid, DONE, result=written.sr_sop_instance_uid,
                                  priors_unavailable=priors_unavailable):
            log.info("study %s: new instances arrived while scoring; scoring again", study_key(study_uid))
            for path in written.paths.values():
                path.unlink(missing_ok=True)
            return False
        for destination in self._outbox.destinations:  # each gets the artefact it takes
            if destination.artefact is Artefact.FHIR_BUNDLE and written.bundle_path is None:
                # withheld (service.outputs.fhir.bundle_withheld): the study's SR and page say why
                log.warning("study %s: nothing sent to %s: no FHIR Bundle was written for it (see its SR's notes)",
                            study_key(study_uid), destination.name)
                continue
            self._outbox.enqueue(destination.name, written.paths[destination.artefact])
        if self._adoption is not None:
            self._adoption.forget(study_uid)
        return True

    def _prior_lookup(self) -> PriorLookup | None:
        """The scored study's priors from the configured PACS sources, counted (_counted_lookup);
        None: priors are off."""
        uncounted = self._uncounted_prior_lookup()
        if uncounted is None:
            return None
        retried = self._config.prior_retry_hours > 0
        return lambda study: _counted_lookup(study, lambda: uncounted(study), retried)

    def _pacs_query_backoff(self) -> Backoff:
        """When to ask PACS again about each study after it did not answer
        (pacs_query_initial_backoff_seconds, doubled up to PACS_QUERY_MAX_BACKOFF_SECONDS)."""
        return Backoff(self._config.pacs_query_initial_backoff_seconds, PACS_QUERY_MAX_BACKOFF_SECONDS)

    def _uncounted_prior_lookup(self) -> PriorLookup | None:
        """A study's priors from the configured PACS sources; None: priors are off."""
        if not self._providers:
            return None

        def lookup(study: StudyInfo) -> PriorsOutcome:
            return resolve_priors(study, self._providers, self._prior_cache,
                                  lookback_days=self._config.prior_lookback_days,
                                  max_studies=self._config.prior_max_studies)
        return lookup

    def reconcile_delivered(self, now: float | None = None) -> int:
        """Reconcile each done study whose SR has reached PACS (no SR delivery still pending, one
        delivered) and has not been reconciled: its later studies that did not compare with it
        are scored again (README, `prior_providers`). Returns how many were sent back to be scored.

        Durable across restarts (the index records each reconciled result), so a crash before
        the question was answered only asks it again. A stale later study scored by another
        ingest replica is not in this index: it is retrieved from PACS and scored here; when
        that fails, it is counted in the log.
        """
        sr_destinations = [d.name for d in self._outbox.destinations if d.artefact is Artefact.SR]
        if not self._providers or not sr_destinations or not self._reconciling.acquire(blocking=False):
            return 0
        try:
            now = time.time() if now is None else now
            rescored = 0
            for study in self._index.unreconciled():
                if self._stop.is_set():
                    break
                if not study.result:
                    continue
                path = artefact_path(self._config.outbox_dir, study.result, Artefact.SR)
                if not path.exists():  # removed by an operator: nothing of it can be in PACS from here
                    self._index.mark_reconciled(study.study_instance_uid, study.result)
                    continue
                states = {self._outbox.state_of(name, path) for name in sr_destinations}
                if not self._reconcile_backoff.due(study.study_instance_uid, now) or states & {PENDING, None}:
                    continue
                if DELIVERED not in states:  # refused everywhere: PACS cannot give it to a later study
                    self._index.mark_reconciled(study.study_instance_uid, study.result)
                    continue
                try:
                    done = self._reconcile(study, study.result, read_instance(path, header_only=True))
                except Exception:  # a full disk under the prior cache, an unreadable answer: postponed too
                    self._reconcile_errors.log("reconciliation of a study failed; postponed", exc_info=True)
                    done = None
                if done is None:
                    self._reconcile_backoff.postpone(study.study_instance_uid, now)
                    continue
                self._reconcile_backoff.forget(study.study_instance_uid)
                self._index.mark_reconciled(study.study_instance_uid, study.result)
                rescored += done
            return rescored
        finally:
            self._reconciling.release()

    def retry_without_priors(self, now: float | None = None) -> int:
        """Ask the prior sources again about the done studies scored while none answered, and
        send back to be scored those they now answer about (service.prior_retry, on
        reconciliation's schedule); how many were sent back."""
        if self._prior_retry is None:
            return 0
        return self._prior_retry.run(time.time() if now is None else now)

    def _reconcile(self, study: StudyState, sr_uid: str, sr: Dataset) -> int | None:
        """How many stale later studies were sent back; None: ask again later (PACS did not
        answer, or a stale later study is still being received or scored here)."""
        later = stale_later_studies(study_info(sr), sr_uid, self._providers, self._prior_cache,
                                    lookback_days=self._config.prior_lookback_days)
        if later.unavailable is not None:
            log.warning("study %s: reconciliation postponed: priors unavailable: %s",
                        study_key(study.study_instance_uid), later.unavailable)
            return None
        rescored = elsewhere = 0
        for uid in later.stale:
            state = self._index.study(uid)
            if state is None:
                adopted = self._adopt(uid, later.reports[uid])
                if adopted is None:
                    return None
                if adopted:
                    rescored += 1
                else:
                    elsewhere += 1
            elif state.state is DONE and not self._result_uses(state, sr_uid):
                if state.files_removed_at is not None:
                    restored = self._restore_removed(uid)
                    if restored is None:
                        return None
                    if not restored:
                        continue
                if self._index.rescore(uid, "scored again: an earlier study's report arrived after it"):
                    log.info("study %s: scored again, an earlier study's report arrived after it", study_key(uid))
                    rescored += 1
            elif state.state is not DONE and state.state is not FAILED:
                return None
        if elsewhere:
            log.warning("study %s: %d later stud%s of the patient, scored by another ingest replica, did not "
                        "compare with this report and could not be retrieved; re-send %s to be scored again",
                        study_key(study.study_instance_uid), elsewhere, "y" if elsewhere == 1 else "ies",
                        "it" if elsewhere == 1 else "them")
        return rescored

    def _adopt(self, study_uid: str, standing_sr: Dataset) -> bool | None:
        """Retrieve a stale study another replica scored, to be scored here; False: it cannot be
        (PACS cannot give it); None: not now (our spool or index could not take it, e.g. a full
        disk), ask again after reconciliation's backoff rather than at once."""
        if self._adoption is None:
            return False
        try:
            new = self._adoption.adopt(standing_sr)
        except PriorSourceError as error:
            log.warning("study %s: retrieving it from PACS failed: %s", study_key(study_uid), error)
            return False
        except (OSError, sqlite3.Error) as error:
            log.warning("study %s: storing it after retrieval from PACS failed, trying again later: %s",
                        study_key(study_uid), error)
            return None
        log.info("study %s: retrieved from PACS (%d new instances) to be scored again here, an earlier "
                 "study's report arrived after it", study_key(study_uid), new)
        return True

    def _restore_removed(self, study_uid: str) -> bool | None:
        """Before a done study whose spooled instances retention removed is scored again for a
        late earlier report: its instances back from PACS (True). False: they cannot be (no
        source retrieves images, PACS does not hold them all, the index places them outside the
        spool): it stays done with its result, not failed for want of them, and the log says so.
        None: not now (PACS could not be asked, our spool could not take them), ask again after
        reconciliation's backoff."""
        unanswered = "spool retention has removed its instances"
        if self._restoration is not None:
            try:
                self._restoration.restore(study_uid, self._index.instances(study_uid))
            except (PriorNotHeld, OutsideSpool) as error:
                unanswered += f" and putting them back from PACS failed ({_why(error)})"
            except (PriorSourceError, OSError) as error:
                log.warning("study %s: putting its instances missing from the spool back from PACS failed, trying "
                            "again later: %s", study_key(study_uid), _why(error))
                return None
            else:
                return True
        log.warning("study %s: an earlier study's report arrived after it, but %s; send it again to have it compared",
                    study_key(study_uid), unanswered)
        return False

    def _put_back(self, restoration: SpoolRestoration, study_uid: str, records: list[InstanceRecord],
                  removed_at: float | None, attempt: int) -> bool:
        """The study's instances missing from the spool back from PACS (service.restoration): True
        once they are. Else it leaves processing: a PACS that could not be asked (down, timed
        out) is asked again after a wait, as an unavailable scorer is (PEER_RETRY_WAITS_S), then
        the study fails; a PACS that answered that it does not hold them, or our spool not taking
        them, fails it at once. The failure says what is missing, what went wrong and what to do."""
        try:
            with STUDY_STAGE_SECONDS.labels("restoring").time():
                restoration.restore(study_uid, records)
        except (PriorSourceError, OSError) as error:
            why = _why(error)
            failure = missing_from_spool(records, removed_at, unretrievable=why) or why
            if isinstance(error, PriorSourceError) and not isinstance(error, PriorNotHeld):  # may answer later
                self._retry_later(study_uid, attempt, f"putting its instances missing from the spool back from PACS "
                                  f"failed ({why})", failure)
            else:  # asking again will not help
                self._fail(study_uid, failure, "internal")
            return False
        return True

    def _result_uses(self, state: StudyState, sr_uid: str) -> bool:
        """Whether the study's latest SR here (perhaps not yet in PACS) compared with `sr_uid`."""
        path = artefact_path(self._config.outbox_dir, state.result, Artefact.SR) if state.result else None
        return path is not None and path.exists() and sr_uid in priors_used(read_instance(path, header_only=True))

    def _previous_report(self, study_uid: str) -> Dataset | None:
        """The SR an earlier scoring of this study delivered, if any (another replica's, for a
        study retrieved from PACS): the new one replaces it."""
        state = self._index.study(study_uid)
        path = artefact_path(self._config.outbox_dir, state.result, Artefact.SR) if state and state.result else None
        if path is not None and path.exists():
            return read_instance(path, header_only=True)
        return self._adoption.replaced_report(study_uid) if self._adoption is not None else None

    def _scorer_failed(self, study_uid: str, error: ScorerError, attempt: int) -> None:
        """A scorer restarting or scaling is retried after a wait (PEER_RETRY_WAITS_S);
        any other refusal fails the study."""
        if isinstance(error, ScorerUnavailable):
            self._retry_later(study_uid, attempt, f"scorer unavailable ({error.code})", f"scorer: {error}")
            return
        self._retry_at.pop(study_uid, None)
        self._fail(study_uid, f"scorer: {error}", "internal")

    def _retry_later(self, study_uid: str, attempt: int, why: str, failure: str) -> None:
        """A study a peer could not serve (`why`) back to receiving, claimed again after the
        attempt's wait (PEER_RETRY_WAITS_S); once they are all spent, failed (internal) with
        `failure`."""
        if attempt > len(PEER_RETRY_WAITS_S):
            self._retry_at.pop(study_uid, None)
            self._fail(study_uid, failure, "internal")
            return
        wait = PEER_RETRY_WAITS_S[attempt - 1]
        log.warning("study %s: %s, attempt %d of %d; will retry in %g s",
                    study_key(study_uid), why, attempt, len(PEER_RETRY_WAITS_S) + 1, wait)
        self._retry_at[study_uid] = time.time() + wait
        self._index.requeue(study_uid, f"{why}; retried in {wait:g} s")

    def _fail(self, study_uid: str, reason: str, kind: str) -> None:
        """The reason is stored with its UIDs redacted: `status` prints it, an operator reads it."""
        reason = redact_uids(reason)
        self._index.finish(study_uid, FAILED, error=reason)
        STUDIES_FAILED.labels(kind).inc()
        log.error("study %s failed: %s", study_key(study_uid), reason)


def _why(error: Exception) -> str:
    """What went wrong, for a reason or a log line: an OSError's own words without its "[Errno
    N]" prefix (and without a file name: those of the spool hold UIDs)."""
    return (error.strerror or str(error)) if isinstance(error, OSError) else str(error)
