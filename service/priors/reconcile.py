"""Reconciliation (README, `prior_providers`): the patient's later studies that must be re-scored.

A baseline whose SR reaches PACS after its follow-up was scored leaves that follow-up compared
without it; a prior re-scored after its follow-up leaves the follow-up compared with a replaced
SR. So once a study's SR is in PACS, PACS is asked for our SRs of the patient's LATER studies
(within the lookback those studies' own prior lookup uses); a later study whose standing SR does
not list this SR among the priors it compared with is stale. PACS alone answers, so any replica
can ask and no state is shared; re-scoring the stale study is the caller's business.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from service.model import StudyInfo
from service.priors import selection
from service.priors.cache import PriorCache
from service.priors.resolve import current_sr, fetch_cached
from service.priors.source import PatientQuery, PriorProvider, SrLocation, first_answer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaterStudies:
    """The later studies whose report does not know this study's SR; `unavailable`: no source
    answered (the reason), so the question must be asked again."""

    stale: tuple[str, ...] = ()  # StudyInstanceUIDs, in UID order
    unavailable: str | None = None
    # each stale study's standing SR: what names its images, for a replica that must retrieve them
    reports: Mapping[str, Dataset] = field(default_factory=dict)


def stale_later_studies(study: StudyInfo, sr_sop_instance_uid: str, providers: Sequence[PriorProvider],
                        cache: PriorCache, *, lookback_days: int, issuer_of_patient_id: str = "") -> LaterStudies:
    """The patient's studies after `study`, up to `lookback_days` later, whose standing SR of ours
    did not compare with `sr_sop_instance_uid`. No providers or no valid study date: none."""
    if not providers:
        return LaterStudies()
    try:
        date = datetime.datetime.strptime(study.study_date, "%Y%m%d").date()
    except ValueError:
        return LaterStudies()
    query = PatientQuery(study.patient_id, issuer_of_patient_id, study.study_date,
                         (date + datetime.timedelta(days=lookback_days)).strftime("%Y%m%d"))
    answer = first_answer(providers, lambda provider: _stale(provider, query, study, sr_sop_instance_uid, cache),
                          "reconciliation")
    if isinstance(answer, str):
        return LaterStudies(unavailable=answer)
    provider, reports = answer
    logger.info("reconciliation: %d later stud%s to re-score (asked %s)", len(reports),
                "y" if len(reports) == 1 else "ies", provider.name)
    return LaterStudies(tuple(reports), reports=reports)


def _stale(provider: PriorProvider, query: PatientQuery, study: StudyInfo, sr_uid: str,
           cache: PriorCache) -> dict[str, Dataset]:
    moment = selection.study_moment(study.study_date, study.study_time)
    later: dict[str, list[SrLocation]] = defaultdict(list)
    for location in provider.find(query):
        if selection.study_moment(location.study_date, location.study_time) > moment:
            later[location.study_instance_uid].append(location)
    fetched = {uid: [fetch_cached(provider, cache, location) for location in group]
               for uid, group in sorted(later.items())}
    replaced = selection.superseded(dataset for group in fetched.values() for dataset in group)
    stale = {}
    for uid, group in fetched.items():
        standing = current_sr(group, replaced, study, query.issuer_of_patient_id, [])
        if standing is not None and sr_uid not in selection.priors_used(standing):
            stale[uid] = standing
    return stale
