"""RECIST 1.1 at each follow-up (docs/method.md section 5.2; Eisenhauer 2009, EORTC Q&A).

Input: the baseline target set and, per time point from the baseline on, what was measured of
each lesion under its carried tracking UID (`Assessment`). Output per follow-up: the sum of
diameters (SoD) over the baseline targets (nodes by their short axis, as measured, also below
10 mm), baseline and nadir SoD, the target, non-target and overall responses, new lesions and
flags. A non-nodal target below `small_lesion_mm` counts as measured (flagged), or as 5 mm under
`small_lesion_policy: recist_5mm_if_below`. Comparisons are >= / <= on unrounded values (a 1e-9 relative tolerance absorbs binary
floating point only).

- Target: PD when SoD - nadir >= 20 % of the nadir and >= 5 mm (nadir: smallest SoD of the
  earlier evaluable time points, baseline included); CR when every non-nodal target is absent
  and every node (target, or measured non-target) has SA < 10 mm; PR at <= -30 % against
  baseline; else SD. Once PR (or CR) was reached, a later time point that meets neither PD nor
  PR stays PR (EORTC FAQ "Managing PR"). A target not evaluable gives NE, unless the evaluable
  targets alone already reach PD. After an overall CR at the last evaluable time point, a target
  present again (a node: at 10 mm SA or more) is PD (EORTC FAQ "Does a new lesion always result
  in PD?"), and stays PD while it is there; before one, a lesion that reappears only adds to the
  sum.
- Non-target, an automated proxy and labelled so: CR only when every non-target is explicitly
  absent (nodes: or SA < 10 mm); PD suggested when their total volume rose >= 73 % over its
  smallest value on study (the volume equivalent of +20 % in diameter, EORTC iRECIST FAQ);
  NE when one is not evaluable and the rest do not suggest PD; else Non-CR/Non-PD. After an
  overall CR at the last evaluable time point, a non-target present again is PD.
- New lesions: measured lesions not recorded at baseline, candidates requiring confirmation;
  PD by `new_lesion_policy` (default), or only flagged.
- Overall: Eisenhauer 2009 table 1 (targets at baseline) or table 2 (non-target disease only).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from service.comparison import RecistSums
from service.longitudinal.change import at_least, at_most
from service.longitudinal.identity import CarriedIdentity
from service.longitudinal.links import Link, LinkStatus
from service.longitudinal.response_settings import NewLesionPolicy, RecistSettings, SmallLesionPolicy
from service.longitudinal.targets import BaselineCategory, TargetSet, organ_of
from service.longitudinal.timepoint import TimepointLesion
from service.model import Metric

REQUIRES_CONFIRMATION = "requires radiologist confirmation"
REAPPEARED = "reappeared after a complete response"
DECISION_SUPPORT = "algorithmic RECIST 1.1 / iRECIST: decision support, " + REQUIRES_CONFIRMATION
NON_TARGET_SOURCE = "automated_proxy"
ZERO_REFERENCE = "the reference sum is 0: relative change undefined"
NO_TARGETS = "no target lesions at baseline"
TOO_SMALL_TO_MEASURE_MM = 5.0  # RECIST 1.1's value for a lesion present but too small to measure


class MeasurementStatus(StrEnum):
    MEASURED = "measured"
    ABSENT = "absent"  # explicitly gone (an empty contour, a site convention, merged into another): 0 mm
    NOT_EVALUABLE = "not_evaluable"


class TargetResponse(StrEnum):
    CR = "CR"
    PR = "PR"
    SD = "SD"
    PD = "PD"
    NE = "NE"


class NonTargetResponse(StrEnum):
    CR = "CR"
    NON_CR_NON_PD = "Non-CR/Non-PD"
    PD = "PD"
    NE = "NE"


class OverallResponse(StrEnum):
    CR = "CR"
    PR = "PR"
    SD = "SD"
    PD = "PD"
    NE = "NE"
    NON_CR_NON_PD = "Non-CR/Non-PD"  # non-target disease only (table 2)


@dataclass(frozen=True)
class LesionMeasurement:
    """One lesion at one time point, under its carried (baseline) tracking UID; D in mm.

    `tracking_id`: its Tracking Identifier (human-readable, e.g. "lesion 3"), how flags name it:
    they go into the SR, the Bundle and the tumour-board page, where a UID must not.
    """

    tracking_uid: str
    status: MeasurementStatus
    diameter_mm: float = 0.0
    volume_ml: float = 0.0
    is_node: bool = False
    organ: str = ""
    reason: str | None = None
    tracking_id: str = ""


@dataclass(frozen=True)
class Assessment:
    """What one study shows: `lesions` holds each lesion at most once."""

    study_uid: str
    date: datetime.date | None
    lesions: tuple[LesionMeasurement, ...]
    slice_thickness_mm: float | None = None
    not_new: frozenset[str] = frozenset()  # first seen outside the scan before: never new lesions

    def get(self, tracking_uid: str) -> LesionMeasurement | None:
        return next((m for m in self.lesions if m.tracking_uid == tracking_uid), None)


@dataclass(frozen=True)
class RecistResult(RecistSums):
    study_uid: str
    date: datetime.date | None
    target_response: TargetResponse | None  # None: no targets at baseline
    target_reason: str | None
    non_target_response: NonTargetResponse | None  # None: no non-target lesions at baseline
    non_target_volume_ml: Metric
    new_lesions: tuple[LesionMeasurement, ...]  # candidates, requiring confirmation
    overall: OverallResponse
    flags: tuple[str, ...]
    non_target_source: str = NON_TARGET_SOURCE
    reappeared: bool = False  # PD by a lesion back after a complete response (_reappeared)


def lineage_root(uid: str, parents: Mapping[str, str]) -> str:
    """The lesion RECIST follows for `uid`: up `parents` (split fragment -> parent, or a merged
    source -> the lesion it merged into) to the first UID without one; a cycle ends the walk."""
    seen = set()
    while uid in parents and uid not in seen:
        seen.add(uid)
        uid = parents[uid]
    return uid


def meets_pd(sod: float, nadir: float, settings: RecistSettings = RecistSettings()) -> bool:
    """+20 % and +5 mm against the nadir; with a 0 mm nadir, the 5 mm alone."""
    increase = sod - nadir
    if nadir <= 0:
        return at_least(increase, settings.pd_abs_mm)
    return at_least(100.0 * increase / nadir, settings.pd_pct) and at_least(increase, settings.pd_abs_mm)


def meets_pr(sod: float, baseline: float, settings: RecistSettings = RecistSettings()) -> bool:
    return baseline > 0 and at_most(100.0 * (sod - baseline) / baseline, settings.pr_pct)


def overall_response(target: TargetResponse | None, non_target: NonTargetResponse | None,
                     new_lesions: bool) -> OverallResponse:
    """Eisenhauer 2009 table 1 (target given) or table 2 (target None). A missing non-target
    column (no non-target lesions at baseline) reads as CR."""
    if target is None:
        if new_lesions or non_target is NonTargetResponse.PD:
            return OverallResponse.PD
        return {NonTargetResponse.CR: OverallResponse.CR, NonTargetResponse.NON_CR_NON_PD: OverallResponse.NON_CR_NON_PD,
                NonTargetResponse.NE: OverallResponse.NE, None: OverallResponse.NE}[non_target]
    if target is TargetResponse.PD or non_target is NonTargetResponse.PD or new_lesions:
        return OverallResponse.PD
    if target is TargetResponse.CR:
        return OverallResponse.CR if non_target in (NonTargetResponse.CR, None) else OverallResponse.PR
    return {TargetResponse.PR: OverallResponse.PR, TargetResponse.SD: OverallResponse.SD,
            TargetResponse.NE: OverallResponse.NE}[target]


def _sod(targets: Sequence[str], assessment: Assessment, settings: RecistSettings) -> tuple[float, list[str]]:
    """(sum of diameters over the evaluable targets, UIDs of the targets not evaluable)."""
    return _total(targets, assessment, lambda m: _summed_mm(m, settings))


def _summed_mm(m: LesionMeasurement, settings: RecistSettings) -> float:
    """The diameter a target adds to the SoD: as measured; under `small_lesion_policy:
    recist_5mm_if_below` a non-nodal target measured below `small_lesion_mm` adds 5 mm
    (Eisenhauer 2009 appendix I, EORTC Q&A: a lesion present but too small to measure is
    recorded as 5 mm). Nodes add their short axis as measured (a node under 10 mm is normal)."""
    if settings.small_lesion_policy is SmallLesionPolicy.RECIST_5MM_IF_BELOW and not m.is_node \
            and 0 < m.diameter_mm < settings.small_lesion_mm:
        return TOO_SMALL_TO_MEASURE_MM
    return m.diameter_mm


def _non_target_volume(uids: Sequence[str], assessment: Assessment) -> tuple[float, list[str]]:
    """(total volume of the evaluable non-targets, UIDs of those not evaluable)."""
    return _total(uids, assessment, lambda m: m.volume_ml)


def _total(uids: Sequence[str], assessment: Assessment,
           size: Callable[[LesionMeasurement], float]) -> tuple[float, list[str]]:
    """A size summed over the measured lesions (absent ones count 0), and the not-evaluable ones."""
    total, missing = 0.0, []
    for uid in uids:
        m = assessment.get(uid)
        if m is None or m.status is MeasurementStatus.NOT_EVALUABLE:
            missing.append(uid)
        elif m.status is MeasurementStatus.MEASURED:
            total += size(m)
    return total, missing


def _is_normal(m: LesionMeasurement | None, settings: RecistSettings) -> bool:
    """Gone: explicitly absent, or a node measured below 10 mm SA."""
    if m is None or m.status is MeasurementStatus.NOT_EVALUABLE:
        return False
    return m.status is MeasurementStatus.ABSENT or (m.is_node and m.diameter_mm < settings.node_normal_sa_mm)


def new_lesions(target_set: TargetSet, assessment: Assessment,
                settings: RecistSettings = RecistSettings()) -> tuple[LesionMeasurement, ...]:
    """Measured lesions not recorded as lesions at baseline: never seen there, or a node that was
    normal there (a Non-Lesion at Baseline) and is pathological now; never one first seen outside
    the scan before's coverage (`assessment.not_new`: not evaluable as new, at every study).

    A node is judged by its short axis (EORTC RECIST FAQ "New lymph node lesions"): under 10 mm
    it is non-pathological and not recorded, so a new one is no new lesion; a node that reaches
    10 mm "has met the criteria for being considered malignant", so a node normal at baseline
    that does is one (a candidate, as every new lesion is: the FAQ suggests that a node growing
    from 9 to 11 mm, the only evidence of progression, be judged again at the next assessment).
    """
    lesions = {lesion.tracking_uid for lesion in target_set.lesions
               if lesion.category is not BaselineCategory.NON_LESION}
    return tuple(m for m in assessment.lesions
                 if m.tracking_uid not in lesions and m.tracking_uid not in assessment.not_new
                 and m.status is MeasurementStatus.MEASURED and not _is_normal(m, settings))


def _pct(value: float, reference: float) -> Metric:
    return Metric(100.0 * (value - reference) / reference) if reference > 0 else Metric.not_computable(ZERO_REFERENCE)


MERGED_AWAY = "merged into another lesion (0 mm)"
"""Why a lesion merged into another (now, or at an earlier study) counts 0 mm: RECIST 1.1
records coalesced lesions as 0 mm and the mass by its own measure."""

CARRIED_NADIR = ("nadir carried from the latest prior report: the studies compared do not reach back to it "
                 "(an intermediate report missing, or trimmed by the prior limits)")
CARRIED_BASELINE = ("baseline sum carried from the latest prior report: the baseline study is not among the "
                    "studies compared (trimmed by the prior limits)")


def assess_series(target_set: TargetSet, series: Sequence[Assessment], settings: RecistSettings = RecistSettings(),
                  *, carried_nadir: tuple[float, str | None] | None = None,
                  carried_baseline: float | None = None) -> tuple[RecistResult, ...]:
    """RECIST 1.1 at every follow-up; series[0] is the baseline, in date order.

    `carried_nadir` (SoD, study UID if known): the nadir a prior SR carried, used (and flagged)
    when it is below the series' own, i.e. the series misses the time point that set it.
    `carried_baseline`: the baseline SoD a prior SR carried, when the baseline study itself is
    not in the series (then series[0] is the earliest follow-up kept, an ordinary time point
    whose SoD may be the nadir); flagged at every follow-up.
    """
    if len(series) < 2:
        return ()
    targets = [lesion.tracking_uid for lesion in target_set.targets]
    non_targets = [lesion.tracking_uid for lesion in target_set.non_targets]
    baseline_sod, baseline_missing = _sod(targets, series[0], settings)
    nadir: tuple[float, str | None] | None = None if baseline_missing else (baseline_sod, series[0].study_uid)
    if carried_baseline is not None:
        if nadir is None or carried_baseline < nadir[0]:
            nadir = (carried_baseline, None)
        baseline_sod, baseline_missing = carried_baseline, []
    nt_nadir: float | None = None if _non_target_volume(non_targets, series[0])[1] else \
        _non_target_volume(non_targets, series[0])[0]
    results: list[RecistResult] = []
    responded = False
    # CR at the last evaluable time point, or PD since by a lesion back after it: a lesion present
    # then is a recurrence (_reappeared); NE time points leave it as it was.
    after_cr = False
    for assessment in series[1:]:
        flags: list[str] = [CARRIED_BASELINE] if carried_baseline is not None else []
        used_nadir = nadir
        if carried_nadir is not None and (used_nadir is None or carried_nadir[0] < used_nadir[0]):
            used_nadir = carried_nadir
            flags.append(CARRIED_NADIR)
        result = _assess_one(target_set, targets, non_targets, assessment, baseline_sod, baseline_missing,
                             used_nadir, nt_nadir, responded, settings, flags, after_cr=after_cr)
        results.append(result)
        if result.overall is not OverallResponse.NE:
            # while a lesion back after the CR stays, the disease has not returned to CR: PD still,
            # not a response against the 0 mm nadir
            after_cr = result.overall is OverallResponse.CR or result.reappeared
        if result.target_response is TargetResponse.PD:
            responded = False
        elif result.target_response in (TargetResponse.PR, TargetResponse.CR):
            responded = True
        if result.sod_mm.value is not None and result.target_response is not TargetResponse.NE \
                and (nadir is None or result.sod_mm.value < nadir[0]):
            nadir = (result.sod_mm.value, assessment.study_uid)
        volume, missing = _non_target_volume(non_targets, assessment)
        if not missing and (nt_nadir is None or volume < nt_nadir):
            nt_nadir = volume
    return tuple(results)


def assess(target_set: TargetSet, series: Sequence[Assessment], settings: RecistSettings = RecistSettings(),
           *, carried_nadir: tuple[float, str | None] | None = None) -> RecistResult:
    """RECIST 1.1 at the last time point of the series."""
    if len(series) < 2:
        raise ValueError("RECIST needs the baseline and at least one follow-up")
    return assess_series(target_set, series, settings, carried_nadir=carried_nadir)[-1]


def _assess_one(target_set: TargetSet, targets: list[str], non_targets: list[str], assessment: Assessment,
                baseline_sod: float, baseline_missing: list[str], nadir: tuple[float, str | None] | None,
                nt_nadir: float | None, responded: bool, settings: RecistSettings,
                flags: list[str], *, after_cr: bool = False) -> RecistResult:
    """RECIST 1.1 at one follow-up. `after_cr`: the last evaluable time point's overall response
    was CR, or PD since by a lesion back after it, so a baseline lesion present is PD (_reappeared)."""
    sod, missing = _sod(targets, assessment, settings)
    target: TargetResponse | None = None
    reason: str | None = None
    not_computable = Metric.not_computable(NO_TARGETS)
    sod_metric = base_metric = nadir_metric = pct_bl = pct_nadir = mm_nadir = not_computable
    if targets and baseline_missing:
        target, reason = TargetResponse.NE, "a target was not evaluable at baseline"
    elif targets:
        assert nadir is not None
        base_metric, nadir_metric = Metric(baseline_sod), Metric(nadir[0])
        pct_bl, pct_nadir, mm_nadir = _pct(sod, baseline_sod), _pct(sod, nadir[0]), Metric(sod - nadir[0])
        sod_metric = Metric(sod)
        if missing:
            if meets_pd(sod, nadir[0], settings):
                target, reason = TargetResponse.PD, (f"the evaluable targets alone reach PD ({sod:g} mm, "
                                                     f"{sod - nadir[0]:+g} mm against the nadir); "
                                                     f"{len(missing)} target(s) not evaluable")
            else:
                target, reason = TargetResponse.NE, f"{len(missing)} target(s) not evaluable"
            # The sum of the evaluable targets alone is not the sum of diameters, nor are changes
            # of it changes of the sum (every target missing would read -100 %; one coming back,
            # growth): what the PD rests on is in the reason.
            sod_metric = pct_bl = pct_nadir = mm_nadir = Metric.not_computable(reason)
        elif meets_pd(sod, nadir[0], settings):
            target = TargetResponse.PD
        elif all(_is_normal(assessment.get(uid), settings) for uid in targets) and all(
                _is_normal(m, settings) or m.status is not MeasurementStatus.MEASURED
                for uid in non_targets if (m := assessment.get(uid)) is not None and m.is_node):
            target = TargetResponse.CR
        elif meets_pr(sod, baseline_sod, settings):
            target = TargetResponse.PR
        elif responded:
            target, reason = TargetResponse.PR, "PR maintained: PD not met since PR (EORTC FAQ)"
        else:
            target = TargetResponse.SD
        flags += _borderline(pct_bl, pct_nadir, mm_nadir, settings)
        flags += [f"target {m.tracking_id or f'#{n}'}: < {settings.small_lesion_mm:g} mm (" + (
                  "measured value kept)" if _summed_mm(m, settings) == m.diameter_mm else
                  f"counted as {TOO_SMALL_TO_MEASURE_MM:g} mm, small_lesion_policy)")
                  for n, uid in enumerate(targets, start=1)
                  if (m := assessment.get(uid)) is not None and m.status is MeasurementStatus.MEASURED
                  and 0 < m.diameter_mm < settings.small_lesion_mm]

    volume, nt_missing = _non_target_volume(non_targets, assessment)
    non_target: NonTargetResponse | None = None
    if non_targets:
        rose = nt_nadir is not None and nt_nadir > 0 and at_least(100.0 * (volume - nt_nadir) / nt_nadir,
                                                               settings.nontarget_pd_volume_pct)
        if rose:
            non_target = NonTargetResponse.PD
            flags.append(f"non-target PD suggested (volume +{settings.nontarget_pd_volume_pct:g} % or more): "
                         f"{REQUIRES_CONFIRMATION}")
        elif nt_missing:
            non_target = NonTargetResponse.NE
        elif all(_is_normal(assessment.get(uid), settings) for uid in non_targets):
            non_target = NonTargetResponse.CR
        else:
            non_target = NonTargetResponse.NON_CR_NON_PD
    reappeared = False
    if after_cr and (back := _reappeared(targets, assessment, settings)):
        target, reason, reappeared = TargetResponse.PD, _reappearance(back), True
    if after_cr and non_target is not None and (back := _reappeared(non_targets, assessment, settings)):
        non_target, reappeared = NonTargetResponse.PD, True
        flags.append(_reappearance(back))
    new = new_lesions(target_set, assessment, settings)
    if new:
        flags.append(f"{len(new)} new lesion candidate(s): {REQUIRES_CONFIRMATION}")
    counts = bool(new) and settings.new_lesion_policy is NewLesionPolicy.COUNTS_AS_PD
    if new and not counts:
        flags.append("new lesions flagged only (new_lesion_policy: flag_only)")
    return RecistResult(
        sod_mm=sod_metric, baseline_sod_mm=base_metric, nadir_sod_mm=nadir_metric,
        nadir_study_uid=nadir[1] if nadir and targets else None, percent_vs_baseline=pct_bl,
        percent_vs_nadir=pct_nadir, mm_vs_nadir=mm_nadir,
        study_uid=assessment.study_uid, date=assessment.date, target_response=target, target_reason=reason,
        non_target_response=non_target,
        non_target_volume_ml=Metric(volume) if not nt_missing and non_targets else
        Metric.not_computable("no non-target lesions" if not non_targets else "a non-target not evaluable"),
        new_lesions=new, overall=overall_response(target, non_target, counts), flags=tuple(flags),
        reappeared=reappeared)


def _reappeared(uids: Sequence[str], assessment: Assessment, settings: RecistSettings) -> list[LesionMeasurement]:
    """The lesions of `uids` present again: measured, and a node only when pathological again
    (10 mm short axis or more; EORTC RECIST FAQ "Abnormal lymph node": a node under 10 mm is
    benign, so it has not reappeared)."""
    return [m for uid in uids if (m := assessment.get(uid)) is not None
            and m.status is MeasurementStatus.MEASURED and not _is_normal(m, settings)]


def _reappearance(back: Sequence[LesionMeasurement]) -> str:
    """Why a lesion present again after a complete response is PD (EORTC RECIST FAQ "Does a new
    lesion always result in PD?": after an overall CR at the previous assessment, "the
    reappearance of any malignant lesion results in PD"; the FAQ recommends that the CR be
    confirmed, as the lesion may have been present but indistinct)."""
    names = ", ".join(m.tracking_id or "a lesion" for m in back)
    return (f"{REAPPEARED}: {names} (PD; {REQUIRES_CONFIRMATION}, and that of the CR: the lesion may have "
            "been present but indistinct)")



def _borderline(pct_bl: Metric, pct_nadir: Metric, mm_nadir: Metric, settings: RecistSettings) -> list[str]:
    flags = []
    if pct_bl.value is not None and abs(pct_bl.value - settings.pr_pct) <= settings.borderline_margin_pct:
        flags.append(f"borderline: {pct_bl.value:+.1f} % against baseline, PR at {settings.pr_pct:g} %")
    if pct_nadir.value is not None and abs(pct_nadir.value - settings.pd_pct) <= settings.borderline_margin_pct:
        flags.append(f"borderline: {pct_nadir.value:+.1f} % against the nadir, PD at +{settings.pd_pct:g} %")
    if mm_nadir.value is not None and abs(mm_nadir.value - settings.pd_abs_mm) <= settings.borderline_margin_mm:
        flags.append(f"borderline: {mm_nadir.value:+.1f} mm against the nadir, PD at +{settings.pd_abs_mm:g} mm")
    return flags


def baseline_assessment(study_uid: str, date: datetime.date | None, lesions: Sequence[TimepointLesion],
                        slice_thickness_mm: float | None = None, organs: Mapping[str, str] | None = None,
                        settings: RecistSettings = RecistSettings()) -> Assessment:
    """The baseline study's lesions, all measured."""
    return Assessment(study_uid, date, tuple(
        LesionMeasurement(x.tracking_uid, MeasurementStatus.MEASURED, x.diameter_mm, x.volume_ml, x.is_node,
                          organ_of(x, organs or {}, settings), tracking_id=x.tracking_id)
        for x in sorted(lesions, key=lambda x: x.tracking_uid)), slice_thickness_mm)


def follow_up_assessment(study_uid: str, date: datetime.date | None, links: Sequence[Link],
                         identities: Mapping[str, CarriedIdentity], *, slice_thickness_mm: float | None = None,
                         explicitly_absent: Collection[str] = (), absent_by_convention: bool = False,
                         root_of: Mapping[str, str] | None = None, organs: Mapping[str, str] | None = None,
                         not_new: Collection[str] = (), settings: RecistSettings = RecistSettings()) -> Assessment:
    """A follow-up's lesions under their carried tracking UIDs, from the links to the prior study.

    `root_of` takes a split fragment's UID to its parent's (docs/method.md 5.1), so fragments are
    summed under the lesion they came from, at this or any later time point. A prior lesion not
    found is absent (0 mm) only when `explicitly_absent` names it (an empty contour) or the site's
    convention says so; otherwise not evaluable. Merged sources other than the kept one are
    absent (0 mm, RECIST), and stay so at every later study: `identities` carries them with the
    lesion they merged into (service.follow_up). Ambiguous links go to review: both sides not
    evaluable.
    """
    root_of = dict(root_of or {})
    organs = organs or {}
    for identity in identities.values():
        if identity.derived_from_uid is not None:
            root_of.setdefault(identity.tracking_uid, identity.derived_from_uid)

    def root(uid: str) -> str:
        return lineage_root(uid, root_of)

    measured: dict[str, list[TimepointLesion]] = {}
    status: dict[str, tuple[MeasurementStatus, str | None, TimepointLesion]] = {}
    for link in links:
        if link.status in (LinkStatus.MATCHED, LinkStatus.SPLIT, LinkStatus.MERGED):
            for c in link.current:
                measured.setdefault(root(identities[c.tracking_uid].tracking_uid), []).append(c)
            for c in link.current:  # merged now, or into the lesion it follows at an earlier study
                for absorbed in identities[c.tracking_uid].absorbed_uids:
                    p = next((p for p in link.prior if p.tracking_uid == absorbed), c)
                    status.setdefault(root(absorbed), (MeasurementStatus.ABSENT, MERGED_AWAY, p))
        elif link.status is LinkStatus.NEW:
            measured.setdefault(root(link.current[0].tracking_uid), []).append(link.current[0])
        elif link.status is LinkStatus.DISAPPEARED:
            p = link.prior[0]
            if p.tracking_uid in explicitly_absent or absent_by_convention:
                status[root(p.tracking_uid)] = (MeasurementStatus.ABSENT, "disappeared", p)
            else:
                status[root(p.tracking_uid)] = (MeasurementStatus.NOT_EVALUABLE,
                                                "not contoured, and its absence is not explicit", p)
        else:  # not evaluable or ambiguous
            why = link.reason or ("ambiguous match: for review" if link.status is LinkStatus.AMBIGUOUS
                                  else "not evaluable")
            for lesion in (*link.prior, *link.current):
                status.setdefault(root(lesion.tracking_uid), (MeasurementStatus.NOT_EVALUABLE, why, lesion))
    out = [LesionMeasurement(uid, MeasurementStatus.MEASURED, sum(x.diameter_mm for x in parts),
                             sum(x.volume_ml for x in parts), parts[0].is_node, organ_of(parts[0], organs, settings),
                             tracking_id=parts[0].tracking_id)
           for uid, parts in measured.items()]
    out += [LesionMeasurement(uid, s, 0.0, 0.0, lesion.is_node, organ_of(lesion, organs, settings), why,
                              lesion.tracking_id)
            for uid, (s, why, lesion) in status.items() if uid not in measured]
    return Assessment(study_uid, date, tuple(sorted(out, key=lambda m: m.tracking_uid)), slice_thickness_mm,
                      frozenset(not_new))
