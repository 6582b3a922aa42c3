"""Patient-level response of a scored study against its prior SRs (docs/method.md 5.2, 5.3).

Wires the pure core (service.longitudinal: targets, recist, irecist, kinetics) to what the
pipeline has: the current study's lesions under their carried tracking UIDs (the links to the
previous time point) and the prior SRs read back. Nothing here is kept between studies: every
input comes from PACS (the prior SRs), so any replica computes the same result.

- Baseline: `baseline_study_uid` when it names one of the studies; else, with
  `treatment_start`, the last study on or before it; else the earliest ("baseline inferred").
  Studies before the baseline are pre-baseline scans, used by the kinetics only.
- Targets are chosen once, at the baseline (targets.select_targets, irradiated lesions
  excluded), and every SR states the Baseline Category of each of its lesions; a later study
  reads the categories from the baseline SR and never re-selects. An SR that states none (an
  older version) is selected from, with a note; so is a baseline an anchor moved to a study
  whose report followed another baseline (its categories are that series').
- RECIST 1.1 over the whole series from the baseline to this study: each prior's lesions are
  read back from its SR (a split fragment summed under its parent; a target the SR does not hold
  is not evaluable), so the nadir is that of the whole series.
- iRECIST continues from the state the previous SR carries (any replica can), and the nadir
  from the one it states, only when that SR assessed this series (continues_series: a baseline
  moved by an anchor leaves the old series' behind); without one (the previous study is the
  baseline, or its SR predates the state) or when it cannot be read (a note says so: one bad
  report must not fail every later study of the patient), from the series.
- Kinetics and flags around `treatment_start`; out-of-field response only with
  `irradiated_lesions`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.config import Config
from service.comparison import PatternFlag, ResponseAssessment, ResponseThresholds, SeriesPoint, recist_assessment_uid
from service.longitudinal.identity import CarriedIdentity
from service.longitudinal.irecist import Basis, IRecistCategory, IRecistResult, IRecistState, read_state, run, step
from service.longitudinal.kinetics import (Flag, Kinetics, SumAt, dissociated_response, hyperprogression, kinetics,
                                           kinetics_points, out_of_field, pseudoprogression, target_sum)
from service.longitudinal.links import Link
from service.longitudinal.recist import (MERGED_AWAY, Assessment, LesionMeasurement, MeasurementStatus,
                                         OverallResponse, RecistResult, assess_series, baseline_assessment,
                                         follow_up_assessment, lineage_root)
from service.longitudinal.response_settings import KineticsSettings, RecistSettings
from service.longitudinal.settings_file import ResponseSettings, read_response_settings
from service.longitudinal.targets import BaselineCategory, BaselineLesion, SelectionSource, TargetSet, select_targets
from service.longitudinal.timepoint import TimepointLesion
from service.model import Metric

# An SR states a sum as DS (16 characters): a carried nadir this close to the series' own is the same one.
_CARRIED_TOLERANCE_MM = 1e-6
BASELINE_INFERRED = "baseline inferred: the earliest study (no treatment_start or baseline_study_uid)"


@dataclass(frozen=True)
class ResponseInputs:
    """The time anchors (README, Configuration; `irradiated_lesions` None: not given) and the
    site's rule settings (response_settings_file)."""

    treatment_start: datetime.date | None = None
    baseline_study_uid: str | None = None
    irradiated_lesions: tuple[str, ...] | None = None
    rules: ResponseSettings = ResponseSettings()

    @classmethod
    def from_config(cls, config: Config) -> ResponseInputs:
        """Reads response_settings_file: call once at start (ConfigError if it is wrong)."""
        return cls(None if config.treatment_start is None else datetime.date.fromisoformat(config.treatment_start),
                   config.baseline_study_uid, config.irradiated_lesions or None,
                   read_response_settings(config.response_settings_file))

    def key(self) -> list[str]:
        """What the SR's UID key adds when an anchor is set or a rule setting is not the
        default: other anchors or other rules, another report."""
        parts = [f"rule:{key}={value}" for key, value, _ in self.rules.changed()]
        if self.treatment_start is not None:
            parts.append(f"treatment_start:{self.treatment_start.isoformat()}")
        if self.baseline_study_uid is not None:
            parts.append(f"baseline:{self.baseline_study_uid}")
        if self.irradiated_lesions is not None:
            parts.append("irradiated:" + ",".join(sorted(self.irradiated_lesions)))
        return parts

    def notes(self) -> list[str]:
        """The report's statement of the rule settings that are not the guideline's defaults."""
        changed = self.rules.changed()
        if not changed:
            return []
        return ["response rule settings not at their defaults: " + "; ".join(
            f"{key} {value} (default {default})" for key, value, default in changed)]


@dataclass(frozen=True)
class StudyLesions:
    """One study as the response rules see it: its lesions under carried tracking UIDs.

    `state`: the iRECIST state its SR carried (JSON), None for the current study or an SR
    without an assessment. `parents`: split fragment UID -> the parent's tracking UID.
    `baseline_sod_mm`, `nadir_sod_mm`, `assessment_uid`: the SODBL, SODNADIR and RECIST group
    Tracking UID its SR states (None: not stated), for when the series compared no longer
    reaches back to the baseline or misses the nadir. `merged`: the lesions its SR names as
    merged into one of its lesions (MERGEDUID), 0 mm there, each to the lesion it merged into. `organs`: the organ of a lesion
    whose location class is not its organ (service.location.organ_key; the current study's,
    from its SEG), for the per-organ limits of target and new-lesion target selection.
    `not_new`: lesions not evaluable as new (first seen outside the scan before's coverage), under
    carried UIDs, a split one under its fragments' and its own: never new lesions.
    """

    study_uid: str
    date: datetime.date | None
    study_date: str  # DICOM DA, as the series states it
    lesions: tuple[TimepointLesion, ...]
    slice_thickness_mm: float | None
    categories: Mapping[str, str]  # tracking UID -> the Baseline Category its SR states
    parents: Mapping[str, str]
    state: str | None = None
    baseline_sod_mm: float | None = None
    nadir_sod_mm: float | None = None
    assessment_uid: str | None = None
    merged: Mapping[str, str] = dataclasses.field(default_factory=dict)  # merged lesion -> the one it merged into
    organs: Mapping[str, str] = dataclasses.field(default_factory=dict)  # tracking UID -> organ key (organ_key)
    not_new: frozenset[str] = frozenset()  # carried tracking UIDs of lesions not evaluable as new


@dataclass(frozen=True)
class ResponseOutcome:
    categories: Mapping[str, str]  # current tracking UID -> BaselineCategory value
    assessment: ResponseAssessment | None
    series: tuple[SeriesPoint, ...]
    notes: tuple[str, ...]


def dicom_date(value: str) -> datetime.date | None:
    try:
        return datetime.datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        return None


def assess_response(current: StudyLesions, priors: Sequence[StudyLesions], links: Sequence[Link],
                    identities: Mapping[str, CarriedIdentity], lesion_percent: Mapping[str, float],
                    inputs: ResponseInputs = ResponseInputs()) -> ResponseOutcome:
    """The Baseline Categories of the current lesions and, after the baseline, the assessment,
    under the rule settings `inputs` carries.

    `priors` oldest first; `links`/`identities` relate the current lesions to the previous
    study's; `lesion_percent`: tracking UID -> diameter % change against baseline.
    """
    settings, rules = inputs.rules.recist, inputs.rules
    carried = {own: identity.tracking_uid for own, identity in identities.items()}
    parents = {identity.tracking_uid: identity.derived_from_uid for identity in identities.values()
               if identity.derived_from_uid is not None}
    studies = [*priors, _under_carried_identities(current, carried, parents)]
    base, notes, anchored = choose_baseline(studies, inputs)
    notes += _baseline_timing(studies[base], inputs.treatment_start, settings)
    irradiated = inputs.irradiated_lesions or ()
    target_set, selection_notes = _target_set(studies[base], base < len(priors), settings, irradiated,
                                              moved=anchored and _assessed_from_elsewhere(studies[base]))
    notes += selection_notes
    categories = {x.tracking_uid: _category(target_set, x.tracking_uid, parents) for x in studies[-1].lesions}
    if base == len(studies) - 1:
        return ResponseOutcome(categories, None, (), tuple(notes))

    # a pre-baseline scan is for the kinetics: a target there is the sum of the lesions that later
    # merged into it (RECIST 1.1 compares a coalesced lesion with its sources), or its growth
    # before treatment would be that of one source alone
    merged_into = {**{absorbed: kept for study in studies[base:] for absorbed, kept in study.merged.items()},
                   **{absorbed: identity.tracking_uid for identity in identities.values()
                      for absorbed in identity.absorbed_uids}}
    assessments = [_prior_assessment(study if index >= base else dataclasses.replace(
        study, parents={**study.parents, **merged_into}), settings) for index, study in enumerate(priors)]
    assessments[base] = baseline_assessment(priors[base].study_uid, priors[base].date,
                                            _rooted(priors[base]), priors[base].slice_thickness_mm,
                                            organs=priors[base].organs, settings=settings)
    assessments.append(follow_up_assessment(current.study_uid, current.date, links, identities,
                                            slice_thickness_mm=current.slice_thickness_mm, organs=current.organs,
                                            not_new=current.not_new, settings=settings))
    for index, roots in enumerate(_split_incomplete(studies[base:]), start=base):
        assessments[index] = _not_evaluable(assessments[index], roots, FRAGMENT_MISSING)
    series = assessments[base:]
    previous = studies[-2]
    # the previous report carries sums and a state only if it was a follow-up's: even when it is the
    # earliest study compared (the patient's earlier studies trimmed), it continues the series
    results, assessment_uid = _recist(target_set, series, settings, previous, may_be_trimmed=base == 0 and not anchored)
    history: tuple[IRecistResult, ...] = () if previous is studies[base] else run(
        results[:-1], settings=rules.irecist, recist_settings=settings)
    carried_state = previous.state if continues_series(previous, studies[base].study_uid, assessment_uid) else None
    stated, state_notes = read_state(carried_state) if carried_state else (None, ())
    state = stated if stated is not None else history[-1].state if history else IRecistState()
    notes += state_notes
    irecist = step(state, results[-1], rules.irecist, settings, slice_thickness_mm=current.slice_thickness_mm)
    categories_over_time = [_prior_category(study, result) for study, result in zip(studies[base + 1:-1], history)]
    categories_over_time.append(str(irecist.category))

    sums = [target_sum(target_set, assessment) for assessment in assessments]
    rates, first_pd = _kinetics(sums, results, inputs.treatment_start, rules.kinetics)
    dissociated, lesion_level = dissociated_response(results[-1], lesion_percent, rules.kinetics)
    flags = [*hyperprogression(rates, first_pd, rules.kinetics),
             pseudoprogression([IRecistCategory(c) for c in categories_over_time]),
             dissociated,
             *out_of_field(inputs.irradiated_lesions, target_set, series, lesion_percent, settings, rules.kinetics)]
    notes += _sd_timing(results[-1], inputs.treatment_start or studies[base].date, settings)
    notes.append(f"dissociated response, lesion level ({lesion_level.definition}): "
                 f"{'yes' if lesion_level.value else 'no'}")
    last = results[-1]
    assessment = ResponseAssessment(
        **last.recist_sums(),
        baseline_study_uid=studies[base].study_uid,
        n_targets=len(target_set.targets),
        target_response=None if last.target_response is None else str(last.target_response),
        non_target_response=None if last.non_target_response is None else str(last.non_target_response),
        new_lesion_count=len(last.new_lesions), overall=str(last.overall), irecist=str(irecist.category),
        irecist_state=json.dumps(irecist.state.to_dict(), sort_keys=True),
        iupd_pending=irecist.state.pending_iupd,
        iupd_date=irecist.state.iupd_date.isoformat() if irecist.state.iupd_date else None,
        confirmation_window=None if irecist.confirmation_window is None else (
            irecist.confirmation_window[0].isoformat(), irecist.confirmation_window[1].isoformat()),
        nlt_sum_mm=irecist.nlt_sum_mm,
        kinetics={name: getattr(rates, name) for name in Kinetics.__dataclass_fields__},
        flags=tuple(_flag(flag) for flag in flags),
        notes=(*last.flags, *([f"target response: {last.target_reason}"] if last.target_reason else []),
               *irecist.reasons, *irecist.flags, *notes),
        thresholds=ResponseThresholds(settings.pr_pct, settings.pd_pct, settings.pd_abs_mm,
                                      settings.nontarget_pd_volume_pct, rules.irecist.confirm_abs_mm),
        previous_study_uid=None if previous is studies[base] else previous.study_uid,
        # the reference of the target sum's iCPD line: only when the targets are a basis of the iUPD
        # (else they confirm it by RECIST progression, whose line is drawn anyway: irecist._confirming)
        iupd_target_sod_mm=irecist.state.target_sod_at_iupd
        if irecist.state.pending_iupd and Basis.TARGET in irecist.state.iupd_basis else None,
        assessment_uid=assessment_uid,
    )
    points = [SeriesPoint(studies[base].study_uid, studies[base].study_date, sums[base].sod_mm, None, None)]
    points += [SeriesPoint(study.study_uid, study.study_date, result.sod_mm.value, str(result.overall), category)
               for study, result, category in zip(studies[base + 1:], results, categories_over_time)]
    return ResponseOutcome(categories, assessment, tuple(points), ())


def _recist(target_set: TargetSet, series: Sequence[Assessment], settings: RecistSettings,
            previous: StudyLesions, *, may_be_trimmed: bool) -> tuple[tuple[RecistResult, ...], str]:
    """RECIST 1.1 over the series, with what the previous report carried (a baseline report
    carries nothing); and the Tracking UID of this report's assessment group (the baseline's).

    When the series starts at the earliest study compared (`may_be_trimmed`) and the previous
    report measured from another baseline (its assessment's Tracking UID is not the one of
    series[0]), the patient's earlier studies were trimmed by the prior limits: its baseline
    SoD and its group UID are carried. Its nadir is carried when it is below the series' own at
    this study (the series misses the time point that set it), and only when that report
    continues this series (continues_series). Either is flagged (docs/method.md 5.3).
    """
    own_uid = recist_assessment_uid(series[0].study_uid)
    trimmed = may_be_trimmed and previous.assessment_uid is not None and previous.baseline_sod_mm is not None \
        and previous.assessment_uid != own_uid
    carried_baseline = previous.baseline_sod_mm if trimmed else None
    uid = previous.assessment_uid if trimmed and previous.assessment_uid is not None else own_uid
    results = assess_series(target_set, series, settings, carried_baseline=carried_baseline)
    own_nadir = results[-1].nadir_sod_mm.value
    if not continues_series(previous, series[0].study_uid, uid) or previous.nadir_sod_mm is None \
            or own_nadir is None or previous.nadir_sod_mm >= own_nadir - _CARRIED_TOLERANCE_MM:
        return results, uid
    last = assess_series(target_set, series, settings, carried_baseline=carried_baseline,
                         carried_nadir=(previous.nadir_sod_mm, None))[-1]
    return (*results[:-1], last), uid


def continues_series(previous: StudyLesions, baseline_uid: str, assessment_uid: str) -> bool:
    """Did the previous report assess this series: a follow-up (not the baseline itself) whose
    assessment group is this series' (`assessment_uid`; a report that names none is taken
    at its word)? A report measured from another baseline (the baseline moved, by
    treatment_start or baseline_study_uid) carries a nadir and an iRECIST state of that other
    series: neither applies here."""
    if previous.assessment_uid is None:
        return previous.study_uid != baseline_uid
    return previous.assessment_uid == assessment_uid


def choose_baseline(studies: Sequence[StudyLesions], inputs: ResponseInputs) -> tuple[int, list[str], bool]:
    """(index of the baseline, notes, whether an anchor chose it). A baseline an anchor chose
    (baseline_study_uid, the last study on or before treatment_start) is the baseline even if
    the patient's earlier studies were trimmed by the prior limits; the earliest study
    compared, taken for want of one, may stand for a trimmed baseline (_recist)."""
    uids = [study.study_uid for study in studies]
    if len(studies) == 1:
        return 0, [], False
    if inputs.baseline_study_uid is not None:
        if inputs.baseline_study_uid in uids:
            return uids.index(inputs.baseline_study_uid), [], True
        notes = ["baseline_study_uid is not among this patient's studies compared: ignored"]
    else:
        notes = []
    if inputs.treatment_start is not None:
        before = [i for i, study in enumerate(studies) if study.date is not None and study.date <= inputs.treatment_start]
        if before:
            return before[-1], notes, True
        return 0, [*notes, "no study on or before treatment_start: the earliest is the baseline"], False
    return 0, [*notes, BASELINE_INFERRED], False


def _baseline_timing(baseline: StudyLesions, treatment_start: datetime.date | None,
                     settings: RecistSettings) -> list[str]:
    """A flag, never a refusal, when the baseline is older than `baseline_max_days_before_start`
    before the treatment start (RECIST 1.1: as close as possible, never more than 4 weeks before)."""
    if treatment_start is None or baseline.date is None:
        return []
    days = (treatment_start - baseline.date).days
    if days <= settings.baseline_max_days_before_start:
        return []
    return [f"baseline {days} days before treatment_start: more than baseline_max_days_before_start "
            f"({settings.baseline_max_days_before_start})"]


def _sd_timing(result: RecistResult, reference: datetime.date | None, settings: RecistSettings) -> list[str]:
    """A flag on an SD earlier than the protocol's minimum interval (`sd_min_days` after the
    treatment start, else the baseline): by RECIST 1.1 an SD counts towards the best overall
    response only once that interval has passed; the time point's category stays SD."""
    if result.overall is not OverallResponse.SD or settings.sd_min_days <= 0:
        return []
    if reference is None or result.date is None:
        return [f"SD: the minimum interval sd_min_days ({settings.sd_min_days}) cannot be checked (date unknown)"]
    days = (result.date - reference).days
    if days >= settings.sd_min_days:
        return []
    return [f"SD at day {days}, before sd_min_days ({settings.sd_min_days}): "
            "not yet SD for the best overall response"]


def _assessed_from_elsewhere(study: StudyLesions) -> bool:
    """Was the study's report a follow-up of another baseline (its RECIST assessment is that
    baseline's series)? Its Baseline Categories were then chosen at that other baseline."""
    return study.assessment_uid is not None and study.assessment_uid != recist_assessment_uid(study.study_uid)


def _target_set(baseline: StudyLesions, is_prior: bool, settings: RecistSettings,
                irradiated: Sequence[str], *, moved: bool = False) -> tuple[TargetSet, list[str]]:
    """The categories the baseline SR states; else (the current study, or an SR stating none)
    a selection on the baseline's lesions. `moved`: an anchor made this study the baseline
    though its report followed another baseline: the categories it states are that series',
    so targets are selected again (RECIST 1.1: targets are chosen at the baseline)."""
    lesions = _rooted(baseline)
    if moved:
        chosen = select_targets(lesions, baseline.slice_thickness_mm, settings, organs=baseline.organs,
                                irradiated=irradiated)
        return chosen, ["the baseline moved to a study reported as a follow-up of an earlier baseline: "
                        "targets selected again from its lesions", *chosen.notes]
    if lesions and all(x.tracking_uid in baseline.categories for x in lesions):
        return TargetSet(SelectionSource.AUTOMATIC, tuple(
            BaselineLesion(x.tracking_uid, BaselineCategory(baseline.categories[x.tracking_uid]), x.location_class,
                           x.diameter_mm, x.is_node, True, "read from the baseline report")
            for x in sorted(lesions, key=lambda x: x.tracking_uid)), "read from the baseline report"), []
    chosen = select_targets(lesions, baseline.slice_thickness_mm, settings, organs=baseline.organs,
                            irradiated=irradiated)
    notes = ["the baseline report states no Baseline Category: targets selected from its lesions"] if is_prior else []
    return chosen, [*notes, *chosen.notes]


def _under_carried_identities(current: StudyLesions, carried: Mapping[str, str],
                              parents: Mapping[str, str]) -> StudyLesions:
    """The current study with each lesion under the tracking UID it carries from the prior
    reports (`carried`: own UID -> carried UID), and its split fragments' parents. Its
    categories are stated under those UIDs, so a baseline chosen at this study (the treatment
    starts after it) must select its targets under them too: selected under the lesions' own
    UIDs, every lesion matched to a prior read back as Non-Lesion at Baseline."""
    return dataclasses.replace(current, lesions=tuple(
        dataclasses.replace(x, tracking_uid=carried.get(x.tracking_uid, x.tracking_uid)) for x in current.lesions),
        parents={**current.parents, **parents},
        organs={carried.get(uid, uid): organ for uid, organ in current.organs.items()})


def _rooted(study: StudyLesions) -> list[TimepointLesion]:
    """The study's lesions without the split fragments whose parent is among them (the parent
    stands for them). A fragment whose parent is not in this study (it split before this study
    became the baseline) is a lesion of this baseline in its own right."""
    present = {x.tracking_uid for x in study.lesions}
    return [x for x in study.lesions if study.parents.get(x.tracking_uid) not in present]


def _category(target_set: TargetSet, uid: str, parents: Mapping[str, str]) -> str:
    """A split fragment inherits its parent's category (the parent is what RECIST follows),
    unless the baseline categorised the fragment itself (it split before the baseline)."""
    chosen = {lesion.tracking_uid for lesion in target_set.lesions}
    seen = set()
    while uid not in chosen and uid in parents and uid not in seen:
        seen.add(uid)
        uid = parents[uid]
    return str(target_set.category(uid))


def _prior_assessment(study: StudyLesions, settings: RecistSettings) -> Assessment:
    """A prior follow-up as its SR states it: fragments summed under their parent; a lesion its
    SR names as merged into another is 0 mm; any other lesion the SR does not hold is absent
    from the assessment, so a target is not evaluable there."""
    parts: dict[str, list[TimepointLesion]] = {}
    for lesion in study.lesions:
        parts.setdefault(lineage_root(lesion.tracking_uid, study.parents), []).append(lesion)
    measured = [LesionMeasurement(uid, MeasurementStatus.MEASURED, sum(x.diameter_mm for x in group),
                                  sum(x.volume_ml for x in group), group[0].is_node, group[0].location_class,
                                  tracking_id=group[0].tracking_id)
                for uid, group in parts.items()]
    merged = [LesionMeasurement(uid, MeasurementStatus.ABSENT, reason=MERGED_AWAY)
              for uid in study.merged if uid not in parts]
    return Assessment(study.study_uid, study.date, tuple(sorted([*measured, *merged], key=lambda m: m.tracking_uid)),
                      study.slice_thickness_mm, study.not_new)


FRAGMENT_MISSING = "a fragment of this split lesion not evaluable (not contoured): the sum of its fragments is not known"


def _split_incomplete(studies: Sequence[StudyLesions]) -> list[set[str]]:
    """Per study, the split lesions (their root's tracking UID) one of whose fragments, seen at an
    earlier study of `studies`, it does not hold: neither as a lesion, nor merged into one, nor
    split further (a parent of its lesions). RECIST 1.1 adds the fragments' diameters up
    (appendix II), so without one the lesion is not evaluable there, as a target not contoured
    is; measured from the fragments left, a false response would set a false nadir."""
    seen: dict[str, str] = {}  # fragment -> parent, over the studies before
    incomplete = []
    for study in studies:
        held = {x.tracking_uid for x in study.lesions} | set(study.merged) | set(study.parents.values())
        incomplete.append({lineage_root(fragment, seen) for fragment in seen if fragment not in held})
        seen.update(study.parents)
    return incomplete


def _not_evaluable(assessment: Assessment, uids: set[str], reason: str) -> Assessment:
    """The assessment with the lesions `uids` not evaluable, for `reason`."""
    if not uids:
        return assessment
    return dataclasses.replace(assessment, lesions=tuple(
        dataclasses.replace(m, status=MeasurementStatus.NOT_EVALUABLE, diameter_mm=0.0, volume_ml=0.0, reason=reason)
        if m.tracking_uid in uids else m for m in assessment.lesions))


def _prior_category(study: StudyLesions, rerun: IRecistResult) -> str:
    """The iRECIST category a prior report stated (its carried state), else the rerun's."""
    carried = read_state(study.state)[0] if study.state else None
    if carried is not None and carried.last_category is not None:
        return str(carried.last_category)
    return str(rerun.category)


def _kinetics(sums: Sequence[SumAt], results: Sequence[RecistResult], treatment_start: datetime.date | None,
              settings: KineticsSettings) -> tuple[Kinetics, bool | None]:
    """TGR/TGK around the treatment start, and whether T1 was RECIST PD (None: unknown)."""
    points = kinetics_points(sums, treatment_start)
    if isinstance(points, str):
        missing = Metric.not_computable(points)
        return Kinetics(*(missing,) * len(Kinetics.__dataclass_fields__)), None
    pre, baseline, first = points
    at_first = next((r for r in results if r.study_uid == first.study_uid), None)
    return kinetics(pre, baseline, first, settings), None if at_first is None else at_first.overall is OverallResponse.PD


def _flag(flag: Flag) -> PatternFlag:
    return PatternFlag(str(flag.name), flag.value, flag.reason, flag.definition)
