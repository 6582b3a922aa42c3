"""Tumour growth kinetics and the pattern flags (docs/method.md section 5.2).

Rates over the sum of diameters S of the same baseline targets at the pre-baseline (T-1),
baseline (T0) and first on-treatment (T1) scans, time t in months (days / 30.4375):
- TGR = 100 (exp(3 ln(S_b / S_a) / t) - 1), % volume per month (Ferte 2014 and his code,
  TGR_calculator.R); TGK = (S_b - S_a) / t, mm per month (Saada-Bouzid 2017).
- Ratios (TGR_exp / TGR_ref, TGKR) only when the reference is > 0: a shrinking or stable
  disease before treatment gives "ratio not computable", never a negative "ratio >= 2".
Hyperprogression: Champiat (PD at T1 and TGR ratio >= 2), Saada-Bouzid (TGKR >= 2), Ferrara (PD
at T1 and delta TGR > 50), Kas (delta TGR > 100); Kato and Lo Russo need clinical inputs. Each
flag is true, false, or not computable with its reason. Pseudoprogression (iUPD then iSD, iPR or
iCR), dissociated response (seed-002 definition and a lesion-level variant) and out-of-field
response (only with the irradiated lesions given) are flags too.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from service.longitudinal.change import at_least, at_most
from service.longitudinal.irecist import RESPONSES, IRecistCategory
from service.longitudinal.recist import (Assessment, MeasurementStatus, RecistResult, TargetResponse, assess)
from service.longitudinal.response_settings import HpdDefinition, KineticsSettings, RecistSettings
from service.longitudinal.targets import BaselineCategory, TargetSet
from service.model import Metric

RATIO_UNDEFINED = "ratio not computable: reference growth <= 0"
NO_PRE_BASELINE = "not computable: no pre-baseline scan"
CLINICAL_INPUT = "not computable: clinical input required ({inputs})"


@dataclass(frozen=True)
class SumAt:
    """The same-target sum of diameters at one scan; `sod_mm` None: not evaluable."""

    study_uid: str
    date: datetime.date | None
    sod_mm: float | None


@dataclass(frozen=True)
class Kinetics:
    tgr_ref: Metric  # %/mo
    tgr_exp: Metric
    tgr_delta: Metric
    tgr_ratio: Metric  # {ratio}
    tgk_ref: Metric  # mm/mo
    tgk_exp: Metric
    tgk_ratio: Metric


@dataclass(frozen=True)
class Flag:
    """One flag: True, False, or None (not computable, with `reason`)."""

    name: str
    value: bool | None
    reason: str | None
    definition: str


def target_sum(target_set: TargetSet, assessment: Assessment) -> SumAt:
    """S over the baseline targets at one scan (a pre-baseline scan included)."""
    total = 0.0
    for lesion in target_set.targets:
        m = assessment.get(lesion.tracking_uid)
        if m is None or m.status is MeasurementStatus.NOT_EVALUABLE:
            return SumAt(assessment.study_uid, assessment.date, None)
        total += m.diameter_mm if m.status is MeasurementStatus.MEASURED else 0.0
    return SumAt(assessment.study_uid, assessment.date, total if target_set.targets else None)


def _interval(a: SumAt, b: SumAt, settings: KineticsSettings) -> tuple[float, float, float] | str:
    """(S_a, S_b, months) or why not."""
    if a.sod_mm is None or b.sod_mm is None:
        return "a sum of diameters is not evaluable"
    if a.date is None or b.date is None:
        return "a study date is missing"
    months = (b.date - a.date).days / settings.days_per_month
    if months <= 0:
        return "time interval <= 0"
    return a.sod_mm, b.sod_mm, months


def tgr(a: SumAt, b: SumAt, settings: KineticsSettings = KineticsSettings()) -> Metric:
    got = _interval(a, b, settings)
    if isinstance(got, str):
        return Metric.not_computable(got)
    s_a, s_b, months = got
    if s_a <= 0 or s_b <= 0:
        return Metric.not_computable("a sum of diameters is 0")
    return Metric(100.0 * (math.exp(3.0 * math.log(s_b / s_a) / months) - 1.0))


def tgk(a: SumAt, b: SumAt, settings: KineticsSettings = KineticsSettings()) -> Metric:
    got = _interval(a, b, settings)
    if isinstance(got, str):
        return Metric.not_computable(got)
    s_a, s_b, months = got
    return Metric((s_b - s_a) / months)


def _ratio(num: Metric, ref: Metric) -> Metric:
    if num.value is None or ref.value is None:
        return Metric.not_computable(num.reason or ref.reason or "not computable")
    return Metric(num.value / ref.value) if ref.value > 0 else Metric.not_computable(RATIO_UNDEFINED)


def kinetics(pre: SumAt | None, baseline: SumAt, first: SumAt,
             settings: KineticsSettings = KineticsSettings()) -> Kinetics:
    missing = Metric.not_computable(NO_PRE_BASELINE)
    tgr_exp, tgk_exp = tgr(baseline, first, settings), tgk(baseline, first, settings)
    if pre is None:
        return Kinetics(missing, tgr_exp, missing, missing, missing, tgk_exp, missing)
    tgr_ref, tgk_ref = tgr(pre, baseline, settings), tgk(pre, baseline, settings)
    delta = (Metric(tgr_exp.value - tgr_ref.value) if tgr_exp.value is not None and tgr_ref.value is not None
             else Metric.not_computable(tgr_ref.reason or tgr_exp.reason or "not computable"))
    return Kinetics(tgr_ref, tgr_exp, delta, _ratio(tgr_exp, tgr_ref), tgk_ref, tgk_exp, _ratio(tgk_exp, tgk_ref))


def kinetics_points(sums: Sequence[SumAt], treatment_start: datetime.date | None
                    ) -> tuple[SumAt | None, SumAt, SumAt] | str:
    """(T-1, T0, T1) around the treatment start: T0 the last scan on or before it, T-1 the scan
    before T0, T1 the first scan after it. Or why not."""
    if treatment_start is None:
        return "not computable: no treatment start (baseline inferred)"
    dated = sorted((s for s in sums if s.date is not None), key=lambda s: s.date or datetime.date.min)
    before = [s for s in dated if s.date is not None and s.date <= treatment_start]
    after = [s for s in dated if s.date is not None and s.date > treatment_start]
    if not before or not after:
        return "not computable: no scan " + ("before" if not before else "after") + " the treatment start"
    return (before[-2] if len(before) > 1 else None), before[-1], after[0]


_DEFINITIONS = {
    HpdDefinition.CHAMPIAT: "RECIST PD at the first evaluation and TGR_exp / TGR_ref >= 2 (Champiat, Clin Cancer Res 2017)",
    HpdDefinition.SAADA_BOUZID: "TGK_exp / TGK_ref >= 2 (Saada-Bouzid, Ann Oncol 2017)",
    HpdDefinition.FERRARA: "RECIST PD at the first evaluation and TGR_exp - TGR_ref > 50 %/mo (Ferrara, JAMA Oncol 2018)",
    HpdDefinition.KAS: "TGR_exp - TGR_ref > 100 %/mo (Kas, JAMA Oncol 2020)",
    HpdDefinition.KATO: "TTF < 2 months, > 50 % tumour burden increase and > 2-fold pace (Kato, Clin Cancer Res 2017)",
    HpdDefinition.LO_RUSSO: ">= 3 of 5 clinical and imaging criteria (Lo Russo, Clin Cancer Res 2019)",
}


def _threshold(name: HpdDefinition, metric: Metric, passes: bool | None, pd: bool | None) -> Flag:
    definition = _DEFINITIONS[name]
    if pd is False:
        return Flag(name, False, "no RECIST PD at the first evaluation", definition)
    if metric.value is None:
        return Flag(name, None, metric.reason, definition)
    if pd is None:
        return Flag(name, None, "RECIST response at the first evaluation not available", definition)
    return Flag(name, passes, None, definition)


def hyperprogression(k: Kinetics, first_evaluation_pd: bool | None,
                     settings: KineticsSettings = KineticsSettings()) -> tuple[Flag, ...]:
    """The configured definitions; `first_evaluation_pd`: RECIST PD at T1 (None: unknown)."""
    flags = []
    for name in settings.hpd_definitions:
        if name is HpdDefinition.CHAMPIAT:
            r = k.tgr_ratio
            flags.append(_threshold(name, r, r.value is not None and r.value >= settings.champiat_ratio,
                                    first_evaluation_pd))
        elif name is HpdDefinition.SAADA_BOUZID:
            r = k.tgk_ratio
            flags.append(_threshold(name, r, r.value is not None and r.value >= settings.saada_bouzid_ratio, True))
        elif name is HpdDefinition.FERRARA:
            d = k.tgr_delta
            flags.append(_threshold(name, d, d.value is not None and d.value > settings.ferrara_delta_tgr,
                                    first_evaluation_pd))
        elif name is HpdDefinition.KAS:
            d = k.tgr_delta
            flags.append(_threshold(name, d, d.value is not None and d.value > settings.kas_delta_tgr, True))
        elif name is HpdDefinition.KATO:
            flags.append(Flag(name, None, CLINICAL_INPUT.format(inputs="time to treatment failure"), _DEFINITIONS[name]))
        else:
            flags.append(Flag(name, None, CLINICAL_INPUT.format(inputs="time to treatment failure, ECOG PS"),
                              _DEFINITIONS[name]))
    return tuple(flags)


PSEUDOPROGRESSION = "iUPD followed by iSD, iPR or iCR at the next assessment (retrospective)"


def pseudoprogression(categories: Sequence[IRecistCategory]) -> Flag:
    """Over the iRECIST categories in time order; true at the report that shows the response:
    an iUPD followed by iSD, iPR, iCR or, in disease without targets, Non-iCR/Non-iUPD (the
    categories that reset iRECIST's bar, irecist.RESPONSES)."""
    if len(categories) < 2:
        return Flag("pseudoprogression", None, "needs two assessments after baseline", PSEUDOPROGRESSION)
    hit = any(a is IRecistCategory.IUPD and b in RESPONSES for a, b in zip(categories, categories[1:]))
    return Flag("pseudoprogression", hit, None, PSEUDOPROGRESSION)


DISSOCIATED = "new lesion with target shrinkage from baseline or < 20 % increase from nadir (seed 002, fig. 2)"
DISSOCIATED_LESION = "a lesion -30 % or less and a lesion +20 % or more, or a new lesion (lesion level)"


def dissociated_response(recist: RecistResult, lesion_percent: Mapping[str, float],
                         settings: KineticsSettings = KineticsSettings()) -> tuple[Flag, Flag]:
    """(seed-002 definition, lesion-level variant); `lesion_percent`: tracking UID -> % vs baseline."""
    new = bool(recist.new_lesions)
    bl, nadir = recist.percent_vs_baseline.value, recist.percent_vs_nadir.value
    if bl is None or nadir is None:
        patient = Flag("dissociated_response", None, recist.percent_vs_baseline.reason
                       or recist.percent_vs_nadir.reason, DISSOCIATED)
    else:
        patient = Flag("dissociated_response", new and (bl < 0 or nadir < 20.0), None, DISSOCIATED)
    shrinking = any(at_most(p, settings.responding_pct) for p in lesion_percent.values())
    growing = any(at_least(p, settings.progressing_pct) for p in lesion_percent.values()) or new
    return patient, Flag("dissociated_response_lesion", shrinking and growing, None, DISSOCIATED_LESION)


OOF_LESION = "a non-irradiated lesion -30 % or less (out-of-field response, definition a)"
OOF_RECIST = "RECIST 1.1 PR or CR on the non-irradiated targets (out-of-field response, definition b)"


def out_of_field(irradiated: Collection[str] | None, target_set: TargetSet, series: Sequence[Assessment],
                 lesion_percent: Mapping[str, float], settings: RecistSettings = RecistSettings(),
                 kinetics_settings: KineticsSettings = KineticsSettings()) -> tuple[Flag, Flag]:
    """(definition a, definition b); not computable without the irradiated lesions."""
    if irradiated is None:
        why = "not computable: irradiated lesions not given"
        return Flag("out_of_field_lesion", None, why, OOF_LESION), Flag("out_of_field_recist", None, why, OOF_RECIST)
    lesion = Flag("out_of_field_lesion", any(at_most(p, kinetics_settings.responding_pct)
                                             for uid, p in lesion_percent.items() if uid not in irradiated),
                  None, OOF_LESION)
    remaining = TargetSet(target_set.source, tuple(
        replace(x, category=BaselineCategory.NON_TARGET) if x.tracking_uid in irradiated
        and x.category is BaselineCategory.TARGET else x for x in target_set.lesions), target_set.organ_key)
    if not remaining.targets:
        return lesion, Flag("out_of_field_recist", None, "no non-irradiated target", OOF_RECIST)
    if len(series) < 2:
        return lesion, Flag("out_of_field_recist", None, "no follow-up", OOF_RECIST)
    response = assess(remaining, series, settings).target_response
    if response is TargetResponse.NE or response is None:
        return lesion, Flag("out_of_field_recist", None, "target response not evaluable", OOF_RECIST)
    return lesion, Flag("out_of_field_recist", response in (TargetResponse.PR, TargetResponse.CR),
                        f"non-irradiated targets: {response}", OOF_RECIST)
