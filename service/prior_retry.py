"""Studies scored while their priors were unavailable: recorded, and scored again once a prior
source answers.

When no prior source answers (PACS down, the network), a study is still scored and its outputs
say "priors unavailable: <reason>": the tumour board has its scores without the response
assessment (RECIST, iRECIST, lesion tracking). `PriorsWatch` tells the worker that this
happened, and the worker records it in the index (StudyIndex.finish, priors_unavailable).
`PriorRetry` then asks the sources again about each such study, on reconciliation's schedule
(pacs_query_initial_backoff_seconds after it is first seen, a minute by default, then doubling
up to an hour), with the very lookup its scoring made; once they answer, with the patient's
earlier SRs or with none, it sends the study back to be scored (StudyIndex.rescore): the new
SR, compared with its priors, names the old one as predecessor, and the SRs the question
fetched wait in the prior cache. A study still without its priors prior_retry_hours after its
first result without them is no longer asked about; that is logged once (per process) and the
mark stays, for `status` to show and `radiomics-cds rescore --priors-unavailable` to select.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from service.backoff import Backoff
from service.imaging.selection import read_instance, study_info
from service.ingest.index import StudyIndex, StudyState
from service.ingest.spool import study_key
from service.model import StudyInfo
from service.observability import RepeatedErrorLog
from service.outputs.artefacts import Artefact, artefact_path
from service.priors import PriorsOutcome
from service.priors.resolve import PriorLookup

log = logging.getLogger(__name__)

REASON = "scored again: its priors are available now"
"""The error `status` shows for a study sent back, until it is scored."""


class PriorsWatch:
    """The scored study's prior lookup (`lookup`; None: priors are off), watched: `unavailable`
    says whether it was made and no source answered."""

    def __init__(self, lookup: PriorLookup | None) -> None:
        self.unavailable = False
        self.lookup = None if lookup is None else self._watching(lookup)

    def _watching(self, lookup: PriorLookup) -> PriorLookup:
        def watched(study: StudyInfo) -> PriorsOutcome:
            outcome = lookup(study)
            self.unavailable = outcome.unavailable is not None
            return outcome
        return watched


class PriorRetry:
    """Asks again about the index's done studies scored without their priors (at most one thread
    at a time: the worker's threads all call `run`); `stop` ends a run between studies."""

    def __init__(self, index: StudyIndex, lookup: PriorLookup, outbox_dir: Path, backoff: Backoff,
                 give_up_seconds: float, stop: threading.Event) -> None:
        self._index = index
        self._lookup = lookup
        self._outbox_dir = outbox_dir
        self._backoff = backoff
        self._give_up_seconds = give_up_seconds
        self._stop = stop
        self._running = threading.Lock()
        self._given_up: set[str] = set()  # logged once each
        self._errors = RepeatedErrorLog(log)

    def run(self, now: float) -> int:
        """Ask about each study that is due; how many were sent back to be scored."""
        if not self._running.acquire(blocking=False):
            return 0
        try:
            studies = self._index.scored_without_priors()
            self._given_up &= {study.study_instance_uid for study in studies}  # sent back since: told again
            sent_back = 0
            for study in studies:
                if self._stop.is_set():
                    break
                sent_back += self._retry(study, now)
            return sent_back
        finally:
            self._running.release()

    def _retry(self, study: StudyState, now: float) -> bool:
        """Ask about one study if it is due, and send it back when its priors can be had. First
        seen (scored a moment ago, or the process just started), it is only scheduled: its own
        lookup has just failed. A study sent back keeps its schedule: should its scoring find
        the sources failing again, it is asked about later, not at once."""
        uid, since = study.study_instance_uid, study.priors_unavailable_since
        if since is not None and now - since >= self._give_up_seconds:
            self._give_up(uid)
            return False
        if uid not in self._backoff:
            self._backoff.postpone(uid, now)
            return False
        if not self._backoff.due(uid, now):
            return False
        wait = self._backoff.postpone(uid, now)
        if not self._answers(study):
            log.info("study %s: its priors are still unavailable; asked again in %g s", study_key(uid), wait)
            return False
        if not self._index.rescore(uid, REASON):  # an instance arrived meanwhile: it is scored anyway
            return False
        log.info("study %s: scored again, its priors are available now", study_key(uid))
        return True

    def _answers(self, study: StudyState) -> bool:
        """Whether a prior source answers about the study now (with reports or none), asked
        about the study as its SR names it, which is what its scoring asked about."""
        if not study.result:
            return False
        try:
            sr = read_instance(artefact_path(self._outbox_dir, study.result, Artefact.SR), header_only=True)
            return self._lookup(study_info(sr)).unavailable is None
        except Exception:  # its SR removed, a full disk under the prior cache: asked again later
            self._errors.log("asking again for a study's priors failed; postponed", exc_info=True)
            return False

    def _give_up(self, uid: str) -> None:
        if uid not in self._given_up:
            self._given_up.add(uid)
            log.warning("study %s: its priors still unavailable %g h after it was scored without them; no longer "
                        "asked about (radiomics-cds rescore --priors-unavailable once a prior source answers)",
                        study_key(uid), self._give_up_seconds / 3600)
