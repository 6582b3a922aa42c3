"""iRECIST as a state machine (docs/method.md section 5.2; Seymour 2017, EORTC iRECIST FAQ).

The first RECIST 1.1 progression (target, non-target or new lesions) is iUPD, unconfirmed. At a
later assessment at least 28 days after it (less the FAQ's ~2-day tolerance) it becomes iCPD if,
against the iUPD time point: a basis of the iUPD grew further (the target sum >= 5 mm, cumulative
since iUPD; the non-target volume), a category that was not a basis now meets RECIST 1.1
progression, the new-lesion-target (NLT) sum rose >= 5 mm, the new-lesion-non-target (NLNT)
volume rose, or there are more new lesions (_confirming).
Otherwise the bar is reset when the progression no longer holds (or, FAQ scenario B, the targets
shrank further and meet iPR), and it stays iUPD when nothing changed. A scan before day 28
cannot confirm. New lesions are kept apart: up to 5 measurable ones (2 per organ, largest
first, fixed at first appearance) are NLT, whose sum is recorded separately; the rest NLNT.
After a reset, known new lesions give a new iUPD only when more appear, when the NLT sum meets
RECIST PD against its own nadir, or when the NLNT volume rises by the non-target proxy.

The state is a plain dataclass with `to_dict` / `from_dict`, carried in every SR so that any
replica continues it. `read_state` reads it back without ever failing the study: a state that
cannot be read (not JSON, a field of the wrong kind) is no state, and the caller recomputes it
from the series; fields this version does not know (a newer writer) are ignored. Either is said
in a note. iRECIST is "recommendations for data handling ... not validated response
criteria" (EORTC): its categories are states for review.
"""

from __future__ import annotations

import datetime
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, get_args, get_origin, get_type_hints

from service.longitudinal.recist import (LesionMeasurement, NonTargetResponse, OverallResponse, RecistResult,
                                         TargetResponse, meets_pd, overall_response)
from service.longitudinal.response_settings import IRecistSettings, NewLesionPolicy, RecistSettings
from service.longitudinal.targets import measurable_limit_mm

NOT_VALIDATED = "iRECIST: recommendations for data handling, not validated response criteria (EORTC)"
TOO_EARLY = "confirmation not possible before day 28 (iRECIST)"
OUTSIDE_WINDOW = "outside the 4-8-week confirmation window"
FLAG_ONLY = "new lesions flagged only (new_lesion_policy: flag_only): not counted by iRECIST either"
UNREADABLE_STATE = "the carried iRECIST state of the prior report was unreadable"
NO_SUM_AT_IUPD = "the target sum at iUPD is not known (a target was not evaluable)"
RULES_VERSION = 2
"""The version of the rules a carried state was reached under. 1: a state without the field,
written before iCPD needed a basis category to grow further or another to meet RECIST
progression (Seymour 2017 table 2) and before a lesion back after a complete response was
progression. A state of other rules is not continued: iRECIST is recomputed from the series
under these, or an iCPD those rules reached wrongly would stand at every later study."""


class IRecistCategory(StrEnum):
    ICR = "iCR"
    IPR = "iPR"
    ISD = "iSD"
    IUPD = "iUPD"
    ICPD = "iCPD"
    NE = "NE"
    NON_ICR_NON_IUPD = "Non-iCR/Non-iUPD"


class Basis(StrEnum):
    TARGET = "target"
    NON_TARGET = "nontarget"
    NEW = "new"


_FROM_RECIST = {OverallResponse.CR: IRecistCategory.ICR, OverallResponse.PR: IRecistCategory.IPR,
                OverallResponse.SD: IRecistCategory.ISD, OverallResponse.NE: IRecistCategory.NE,
                OverallResponse.NON_CR_NON_PD: IRecistCategory.NON_ICR_NON_IUPD}
RESPONSES = (IRecistCategory.ICR, IRecistCategory.IPR, IRecistCategory.ISD, IRecistCategory.NON_ICR_NON_IUPD)


@dataclass(frozen=True)
class IRecistState:
    """What one report hands to the next. Dates are ISO strings in `to_dict`."""

    pending_iupd: bool = False
    iupd_date: datetime.date | None = None
    iupd_study_uid: str | None = None
    iupd_basis: tuple[Basis, ...] = ()
    target_sod_at_iupd: float | None = None
    non_target_volume_at_iupd: float | None = None
    nlt_sum_at_iupd: float | None = None
    nlnt_volume_at_iupd: float | None = None
    new_count_at_iupd: int = 0
    confirmed: bool = False  # iCPD reached: final
    nlt_uids: tuple[str, ...] = ()  # new-lesion targets, fixed at first appearance
    known_new_uids: tuple[str, ...] = ()  # every new lesion seen so far
    nlt_baseline_mm: float | None = None
    nlt_nadir_mm: float | None = None
    nlnt_volume_nadir: float | None = None
    last_category: IRecistCategory | None = None
    rules_version: int = RULES_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["iupd_date"] = self.iupd_date.isoformat() if self.iupd_date else None
        data["iupd_basis"] = [str(b) for b in self.iupd_basis]
        data["nlt_uids"], data["known_new_uids"] = list(self.nlt_uids), list(self.known_new_uids)
        data["last_category"] = str(self.last_category) if self.last_category else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IRecistState:
        """The state `to_dict` wrote; a field left out keeps its default (an older writer), one
        this version does not know is ignored (a newer writer). ValueError naming the field
        whose value is not of its kind."""
        hints = get_type_hints(cls)
        fields = {name: _field_value(name, hints[name], value) for name, value in data.items() if name in hints}
        return cls(**{"rules_version": 1, **fields})  # a state without the field predates it


def _field_value(name: str, kind: Any, value: Any) -> Any:
    """`value` as JSON gives it, converted to the field's type, or ValueError naming the field:
    a wrong type would otherwise fail later, inside the rules."""
    options = [arg for arg in get_args(kind) if arg is not type(None)]
    if len(options) == 1 and get_origin(kind) is not tuple:  # X | None
        if value is None:
            return None
        kind = options[0]
    if get_origin(kind) is tuple and isinstance(value, list):
        return tuple(_field_value(name, get_args(kind)[0], item) for item in value)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if isinstance(value, str) and kind is datetime.date:
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    if isinstance(kind, type) and issubclass(kind, StrEnum) and value in {member.value for member in kind}:
        return kind(value)
    raise ValueError(f"iRECIST state field {name}: not a valid value")


def read_state(text: str) -> tuple[IRecistState | None, tuple[str, ...]]:
    """The state a prior report carried, and notes: (None, why) when it cannot be read, so the
    caller falls back on the series instead of failing every later study of the patient. The
    notes name fields only, never values (they hold study and tracking UIDs)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None, (f"{UNREADABLE_STATE} (not JSON): iRECIST recomputed from the series",)
    if not isinstance(data, dict):
        return None, (f"{UNREADABLE_STATE} (not a JSON object): iRECIST recomputed from the series",)
    try:
        state = IRecistState.from_dict(data)
    except ValueError as error:
        return None, (f"{UNREADABLE_STATE} ({error}): iRECIST recomputed from the series",)
    if state.rules_version != RULES_VERSION:
        stated = f"; it stated {state.last_category}" if state.last_category is not None else ""
        return None, (f"the carried iRECIST state was reached under other rules (version {state.rules_version}, "
                      f"this version's {RULES_VERSION}{stated}): iRECIST recomputed from the series, which "
                      "may not reach back to its iUPD: review",)
    unknown = sorted(str(key) for key in set(data) - set(IRecistState.__dataclass_fields__))
    if not unknown:
        return state, ()
    named = [key for key in unknown if key.isidentifier() and len(key) <= 40]
    return state, (f"the carried iRECIST state has {len(unknown)} field(s) this version does not know, ignored"
                   + (f": {', '.join(named)}" if named else ""),)


@dataclass(frozen=True)
class IRecistResult:
    category: IRecistCategory
    state: IRecistState  # to carry into this study's report
    nlt_sum_mm: float
    nlnt_volume_ml: float
    new_lesion_count: int
    days_since_iupd: int | None
    confirmation_window: tuple[datetime.date, datetime.date] | None  # iUPD + 28 .. + 56 days
    reasons: tuple[str, ...]
    flags: tuple[str, ...] = field(default=())


def _new_lesion_split(new: Sequence[LesionMeasurement], known_nlt: Sequence[str], slice_thickness_mm: float | None,
                      settings: IRecistSettings, recist: RecistSettings) -> tuple[str, ...]:
    """NLT UIDs: those already NLT, then the largest measurable newcomers, <= 5, <= 2 per organ."""
    present = {m.tracking_uid for m in new}
    nlt = [uid for uid in known_nlt if uid in present] + [uid for uid in known_nlt if uid not in present]
    per_organ: dict[str, int] = defaultdict(int)
    organ = {m.tracking_uid: m.organ for m in new}
    for uid in nlt:
        per_organ[organ.get(uid, "")] += 1

    def measurable(m: LesionMeasurement) -> bool:
        limit = recist.node_target_sa_mm if m.is_node else measurable_limit_mm(slice_thickness_mm, recist)
        return m.diameter_mm >= limit

    for m in sorted(new, key=lambda m: (-m.diameter_mm, m.tracking_uid)):
        if m.tracking_uid in known_nlt or not measurable(m):
            continue
        if len(nlt) < settings.max_new_targets and per_organ[m.organ] < settings.max_new_targets_per_organ:
            nlt.append(m.tracking_uid)
            per_organ[m.organ] += 1
    return tuple(nlt)


def step(state: IRecistState, recist: RecistResult, settings: IRecistSettings = IRecistSettings(),
         recist_settings: RecistSettings = RecistSettings(), *,
         slice_thickness_mm: float | None = None) -> IRecistResult:
    """The iRECIST category of one follow-up, given the state the previous report carried.

    Under `new_lesion_policy: flag_only` new lesions are candidates the RECIST result only flags,
    so iRECIST does not count them either (no new-lesion iUPD, NLT/NLNT or confirmation by new
    lesions): both categories rest on the same evidence, never RECIST SD beside iRECIST iUPD
    from the same new lesion.
    """
    counted = recist_settings.new_lesion_policy is NewLesionPolicy.COUNTS_AS_PD
    new = recist.new_lesions if counted else ()
    nlt_uids = _new_lesion_split(new, state.nlt_uids, slice_thickness_mm, settings, recist_settings)
    nlt_sum = sum(m.diameter_mm for m in new if m.tracking_uid in nlt_uids)
    nlnt_volume = sum(m.volume_ml for m in new if m.tracking_uid not in nlt_uids)
    new_uids = {m.tracking_uid for m in new}
    unseen = sorted(new_uids - set(state.known_new_uids))
    sod = recist.sod_mm.value
    nt_volume = recist.non_target_volume_ml.value
    nlt_baseline = state.nlt_baseline_mm if state.nlt_baseline_mm is not None else (nlt_sum if nlt_uids else None)
    nlt_nadir = state.nlt_nadir_mm
    base = replace(state, nlt_uids=nlt_uids, known_new_uids=tuple(sorted(set(state.known_new_uids) | new_uids)),
                   nlt_baseline_mm=nlt_baseline)
    reasons: list[str] = []
    flags: list[str] = [] if counted or not recist.new_lesions else [FLAG_ONLY]

    # What progresses now, by RECIST 1.1 with iRECIST's handling of new lesions already seen.
    progressing: list[Basis] = []
    if recist.target_response is TargetResponse.PD:
        progressing.append(Basis.TARGET)
    if recist.non_target_response is NonTargetResponse.PD:
        progressing.append(Basis.NON_TARGET)
    if unseen or (nlt_nadir is not None and nlt_uids and meets_pd(nlt_sum, nlt_nadir, recist_settings)) or (
            state.nlnt_volume_nadir and nlnt_volume >= state.nlnt_volume_nadir
            * (1 + recist_settings.nontarget_pd_volume_pct / 100.0)):
        progressing.append(Basis.NEW)

    def finish(category: IRecistCategory, new_state: IRecistState, days: int | None = None) -> IRecistResult:
        nadir = nlt_nadir if not nlt_uids else nlt_sum if nlt_nadir is None else min(nlt_nadir, nlt_sum)
        nlnt_nadir = state.nlnt_volume_nadir
        if new_uids - set(nlt_uids):
            nlnt_nadir = nlnt_volume if nlnt_nadir is None else min(nlnt_nadir, nlnt_volume)
        new_state = replace(new_state, nlt_nadir_mm=nadir, nlnt_volume_nadir=nlnt_nadir, last_category=category)
        window = None
        if new_state.pending_iupd and new_state.iupd_date is not None:
            window = (new_state.iupd_date + datetime.timedelta(days=settings.confirm_min_days),
                      new_state.iupd_date + datetime.timedelta(days=settings.confirm_max_days))
        return IRecistResult(category, new_state, nlt_sum, nlnt_volume, len(new), days, window,
                             tuple(reasons), tuple(flags))

    if state.confirmed:
        reasons.append("iCPD confirmed at an earlier assessment")
        return finish(IRecistCategory.ICPD, base)

    if not state.pending_iupd:
        if progressing:
            reasons.append("RECIST 1.1 progression (" + ", ".join(progressing) + "): unconfirmed")
            iupd = replace(base, pending_iupd=True, iupd_date=recist.date, iupd_study_uid=recist.study_uid,
                           iupd_basis=tuple(progressing), target_sod_at_iupd=sod,
                           non_target_volume_at_iupd=nt_volume, nlt_sum_at_iupd=nlt_sum,
                           nlnt_volume_at_iupd=nlnt_volume, new_count_at_iupd=len(new))
            return finish(IRecistCategory.IUPD, iupd)
        return finish(_without_new(recist, bool(new)), base)

    days = (recist.date - state.iupd_date).days if recist.date and state.iupd_date else None
    if days is None:
        reasons.append("dates unknown: the confirmation window cannot be checked")
        return finish(IRecistCategory.IUPD, base)
    if Basis.TARGET in state.iupd_basis and state.target_sod_at_iupd is None and sod is not None:
        # The iUPD rested on the evaluable targets alone (a target not evaluable there): the
        # first whole sum since is the reference further growth is measured from, not a
        # confirmation by itself (a target back in the sum is no growth).
        reasons.append(f"{NO_SUM_AT_IUPD}: the first whole sum since, {sod:g} mm, is the reference")
        base = replace(base, target_sod_at_iupd=sod)
    # Targets not evaluable while an iUPD waits: the time point is NE and the iUPD stays pending
    # (Seymour 2017 table 3, example 8: iUPD, NE, NE, ... gives iBOR iUPD).
    not_evaluable = recist.target_response is TargetResponse.NE
    if days < settings.confirm_min_days - settings.confirm_tolerance_days:
        reasons.append(TOO_EARLY)
        return finish(IRecistCategory.NE if not_evaluable else IRecistCategory.IUPD, base, days)
    if days > settings.confirm_max_days:
        flags.append(OUTSIDE_WINDOW)

    confirming = _confirming(state, recist, nlt_sum, nlnt_volume, len(new), unseen, settings)
    if confirming:
        reasons += confirming
        return finish(IRecistCategory.ICPD, replace(base, pending_iupd=False, confirmed=True), days)
    if not_evaluable:
        reasons.append("not evaluable: confirmation of the iUPD still pending")
        return finish(IRecistCategory.NE, base, days)
    still = [b for b in state.iupd_basis if _still_progressing(b, recist, new)]
    shrank_further = (sod is not None and state.target_sod_at_iupd is not None and sod < state.target_sod_at_iupd
                      and recist.target_response in (TargetResponse.PR, TargetResponse.CR))
    category = _without_new(recist, bool(new))
    if (not still or shrank_further) and category in RESPONSES:
        reasons.append("progression not confirmed and no longer met: the bar is reset")
        cleared = replace(base, pending_iupd=False, iupd_date=None, iupd_study_uid=None, iupd_basis=(),
                          target_sod_at_iupd=None, non_target_volume_at_iupd=None, nlt_sum_at_iupd=None,
                          nlnt_volume_at_iupd=None, new_count_at_iupd=0)
        return finish(category, cleared, days)
    reasons.append("no further increase since iUPD: remains iUPD, confirmation pending")
    return finish(IRecistCategory.IUPD, base, days)


def _without_new(recist: RecistResult, new_present: bool) -> IRecistCategory:
    """The RECIST category of target and non-target disease, new lesions handled by iRECIST.
    Lesions that appeared earlier and persist rule out iCR (iPR at best)."""
    target, non_target = recist.target_response, recist.non_target_response
    if target is TargetResponse.PD or non_target is NonTargetResponse.PD:
        return IRecistCategory.IUPD
    category = _FROM_RECIST[overall_response(target, non_target, False)]
    if category is IRecistCategory.ICR and new_present:
        return IRecistCategory.IPR if target is not None else IRecistCategory.NON_ICR_NON_IUPD
    return category


def _still_progressing(basis: Basis, recist: RecistResult, new: Sequence[LesionMeasurement]) -> bool:
    if basis is Basis.TARGET:
        return recist.target_response is TargetResponse.PD
    if basis is Basis.NON_TARGET:
        return recist.non_target_response is NonTargetResponse.PD
    return bool(new)


def _confirming(state: IRecistState, recist: RecistResult, nlt_sum: float, nlnt_volume: float, new_count: int,
                unseen: Sequence[str], settings: IRecistSettings) -> list[str]:
    """Why the progression is confirmed, against the iUPD time point; empty if it is not.

    Seymour 2017 table 2: a category that was a basis of the iUPD confirms it by a further
    increase in that category (targets: the sum >= 5 mm since iUPD, cumulative; non-targets: any
    increase, not necessarily unequivocal). A category that was not a basis confirms it when it
    now meets RECIST 1.1 progression itself (EORTC iRECIST FAQ: "'new' progression in other
    disease categories ... can of course also confirm progression"): targets that grew 5 mm
    since an iUPD on a new lesion while still a partial response against baseline confirm
    nothing. New lesions confirm whatever the basis: the new-lesion-target sum >= 5 mm, the
    new-lesion-non-target volume, more of them, or one never seen before (`unseen`: EORTC
    iRECIST FAQ, new lesions confirm "when ... another lesion appears", also while an earlier
    one resolves and their number stays the same).
    """
    why = []
    tolerance = 1.0 + settings.volume_tolerance_pct / 100.0
    sod, nt_volume = recist.sod_mm.value, recist.non_target_volume_ml.value
    if Basis.TARGET in state.iupd_basis:
        if sod is not None and state.target_sod_at_iupd is not None and \
                sod - state.target_sod_at_iupd >= settings.confirm_abs_mm - 1e-9:
            why.append(f"target sum +{sod - state.target_sod_at_iupd:.1f} mm since iUPD")
    elif recist.target_response is TargetResponse.PD:
        why.append("target lesions now meet RECIST 1.1 progression (not a basis of the iUPD)")
    if Basis.NON_TARGET in state.iupd_basis:
        if nt_volume is not None and state.non_target_volume_at_iupd \
                and nt_volume > state.non_target_volume_at_iupd * tolerance:
            why.append("non-target volume increased since iUPD")
    elif recist.non_target_response is NonTargetResponse.PD:
        why.append("non-target lesions now meet RECIST 1.1 progression (not a basis of the iUPD)")
    if state.nlt_sum_at_iupd is not None and nlt_sum - state.nlt_sum_at_iupd >= settings.confirm_abs_mm - 1e-9:
        why.append(f"new-lesion-target sum +{nlt_sum - state.nlt_sum_at_iupd:.1f} mm since iUPD")
    if state.nlnt_volume_at_iupd and nlnt_volume > state.nlnt_volume_at_iupd * tolerance:
        why.append("new-lesion-non-target volume increased since iUPD")
    if new_count > state.new_count_at_iupd:
        why.append(f"more new lesions ({state.new_count_at_iupd} -> {new_count})")
    elif unseen:
        why.append(f"{len(unseen)} new lesion(s) not seen before")
    return why


def run(recist_results: Sequence[RecistResult], state: IRecistState = IRecistState(),
        settings: IRecistSettings = IRecistSettings(), recist_settings: RecistSettings = RecistSettings(),
        slice_thickness_mm: Mapping[str, float | None] | None = None) -> tuple[IRecistResult, ...]:
    """iRECIST over consecutive follow-ups, each step starting from the state the last one left."""
    out = []
    for result in recist_results:
        step_result = step(state, result, settings, recist_settings,
                           slice_thickness_mm=(slice_thickness_mm or {}).get(result.study_uid))
        out.append(step_result)
        state = step_result.state
    return tuple(out)
