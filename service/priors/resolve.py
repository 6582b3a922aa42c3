"""Resolve a scored study's priors: ask the sources in order, fetch (or reuse) and choose.

The outcome never raises for PACS trouble: when no source answers, the study keeps its scores
and its outputs say "priors unavailable: <reason>"; when a prior is left out (another patient,
unreadable, no study date) the outputs say so too. Notes and the reason name what failed, never
patient data; the log has counts and source names only.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from service.errors import InputError
from service.model import StudyInfo
from service.priors import selection
from service.priors.cache import PriorCache
from service.priors.reading import PriorReport, read_prior_report
from service.priors.source import PatientQuery, PriorProvider, SrLocation, first_answer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorsOutcome:
    """The priors of one study, oldest first; `unavailable` is the reason when no source answered."""

    reports: tuple[PriorReport, ...] = ()
    notes: tuple[str, ...] = ()
    unavailable: str | None = None
    source: str | None = None  # the provider that answered

    @property
    def looked_up(self) -> bool:
        """Whether the sources were asked: not without providers, a PatientID or a valid study date."""
        return self.source is not None or self.unavailable is not None

    @property
    def output_notes(self) -> tuple[str, ...]:
        """What the SR and FHIR outputs should carry about the priors."""
        return self.notes + ((f"priors unavailable: {self.unavailable}",) if self.unavailable else ())


PriorLookup = Callable[[StudyInfo], PriorsOutcome]
"""The scored study's priors (resolve_priors bound to its sources)."""


def resolve_priors(study: StudyInfo, providers: Sequence[PriorProvider], cache: PriorCache, *,
                   lookback_days: int, max_studies: int, issuer_of_patient_id: str = "") -> PriorsOutcome:
    """Our SRs of earlier studies of the patient: at most `max_studies` studies, the latest ones
    within `lookback_days` before this study, one SR each, identity checked. No providers: none."""
    if not providers:
        return PriorsOutcome()
    if not study.patient_id.strip():  # an empty PatientID matches every other study without one
        return PriorsOutcome(notes=("priors not looked up: the study has no PatientID",))
    try:
        date = datetime.datetime.strptime(study.study_date, "%Y%m%d").date()
    except ValueError:
        return PriorsOutcome(notes=("priors not looked up: the study has no valid study date",))
    query = PatientQuery(study.patient_id, issuer_of_patient_id,
                         (date - datetime.timedelta(days=lookback_days)).strftime("%Y%m%d"), study.study_date)
    answer = first_answer(providers, lambda provider: _resolve_with(provider, query, study, cache, max_studies),
                          "priors")
    if isinstance(answer, str):
        return PriorsOutcome(unavailable=answer)
    provider, outcome = answer
    logger.info("priors: %d prior SR(s) from %s, %d note(s)", len(outcome.reports), provider.name,
                len(outcome.notes))
    return outcome


def _resolve_with(provider: PriorProvider, query: PatientQuery, study: StudyInfo, cache: PriorCache,
                  max_studies: int) -> PriorsOutcome:
    notes: list[str] = []
    studies: dict[str, list[SrLocation]] = defaultdict(list)
    too_old, not_before = set(), set()
    for location in provider.find(query):
        if location.study_instance_uid == study.study_instance_uid:
            continue
        if not location.study_date:
            notes.append("prior SR ignored: its study has no study date")
        elif location.study_date < query.earliest_date:
            too_old.add(location.study_instance_uid)
        elif not _earlier(location, study):
            not_before.add(location.study_instance_uid)
        else:
            studies[location.study_instance_uid].append(location)
    # A source asked by date (PACS, the archive) returns no older study, and a later one only from
    # the same day; SRs named with --prior may be anything.
    if too_old:
        notes.append(f"{len(too_old)} earlier stud{'y' if len(too_old) == 1 else 'ies'} with our SR ignored: "
                     "before the lookback (prior_lookback_days)")
    if not_before:
        notes.append(f"{len(not_before)} stud{'y' if len(not_before) == 1 else 'ies'} with our SR ignored: "
                     "not before this study (a prior must be earlier)")
    latest = sorted(studies.values(), key=lambda group: (_moment(group[0]), group[0].study_instance_uid))[-max_studies:]
    fetched = {uid: [fetch_cached(provider, cache, location) for location in group]
               for uid, group in ((group[0].study_instance_uid, group) for group in latest)}
    replaced = selection.superseded(ds for group in fetched.values() for ds in group)
    reports = []
    for group in fetched.values():
        report = _choose(group, replaced, study, query.issuer_of_patient_id, notes)
        if report is not None:
            reports.append(report)
    return PriorsOutcome(tuple(reports), tuple(notes), source=provider.name)


def _choose(datasets: list[Dataset], replaced: set[str], study: StudyInfo, issuer: str,
            notes: list[str]) -> PriorReport | None:
    """The study's prior report, or None; every SR of ours left out for identity is noted."""
    chosen = current_sr(datasets, replaced, study, issuer, notes)
    if chosen is None:
        return None
    try:
        return read_prior_report(chosen)
    except InputError as error:
        notes.append(f"prior SR ignored: {error}")
        return None


def current_sr(datasets: Sequence[Dataset], replaced: set[str], study: StudyInfo, issuer: str,
               notes: list[str]) -> Dataset | None:
    """Of one study's SRs, the one that stands for it: ours, not superseded, the same patient as
    `study` (each SR of ours left out for identity is noted), chosen deterministically."""
    usable = []
    for dataset in datasets:
        if not selection.is_ours(dataset) or str(dataset.SOPInstanceUID) in replaced:
            continue
        differences = selection.identity_differences(dataset, study, issuer)
        if differences:
            notes.append(f"prior SR ignored: {', '.join(differences)} differ{'s' if len(differences) == 1 else ''}")
        else:
            usable.append(dataset)
    return selection.choose(usable) if usable else None


def fetch_cached(provider: PriorProvider, cache: PriorCache, location: SrLocation) -> Dataset:
    """From the cache when there, else from the source (and then kept)."""
    cached = cache.get(location.sop_instance_uid)
    if cached is not None:
        return cached
    dataset = provider.fetch(location)
    cache.put(dataset)
    return dataset


def _moment(location: SrLocation) -> tuple[str, str]:
    return selection.study_moment(location.study_date, location.study_time)


def _earlier(location: SrLocation, study: StudyInfo) -> bool:
    """Before the current study (same day: an earlier study time)."""
    return _moment(location) < selection.study_moment(study.study_date, study.study_time)
