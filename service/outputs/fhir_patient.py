"""The patient level in FHIR R4: one panel Observation whose hasMember are the patient-level
biomarker Observations and the lesion groups (as TID 1500's patient-level measurements sit
beside the per-lesion groups):

- the distribution of lesion CD8 scores (counts, volume filter, min, max, mean, SD, skewness,
  kurtosis, entropy; each absent statistic with why);
- the tumour burden (total volume, lesion count, organs involved);
- the least-infiltrated lesion and the highest-score lesion, each with focus = the lesion's
  Tracking UID and bodySite = its site (or why there is none): candidates for ablative SBRT and for low-dose RT;
- the risk group, by the named cut-off.
"""

from __future__ import annotations

from collections.abc import Sequence

from fhir.resources.R4B.bundle import BundleEntry
from fhir.resources.R4B.observation import Observation
from pydicom.sr.coding import Code

from service.outputs import codes
from service.outputs.fhir_common import (
    ResourceKey,
    StudyContext,
    body_site,
    component,
    concept,
    cutoff_component,
    metric_component,
    notes,
    observation,
    quantity,
    value_fields,
)
from service.outputs.fhir_lesion import lesion_about


def patient_entries(context: StudyContext, lesion_groups: Sequence[ResourceKey]) -> tuple[ResourceKey, list[BundleEntry]]:
    """The patient-level Observations and their panel, in Bundle order; returns the panel's key."""
    patient = context.result.patient

    def key(name: str) -> ResourceKey:
        return ResourceKey.derive("Observation", context.study_uid, "patient", name)

    members = [
        (key("distribution"), _distribution(context, key("distribution"))),
        (key("burden"), _burden(context, key("burden"))),
        (key("least-infiltrated"), _flagged_lesion(context, key("least-infiltrated"), codes.LEAST_INFILTRATED_LESION,
                                                   patient.least_infiltrated_tracking_uid, codes.SBRT_CANDIDATE)),
        (key("highest-score"), _flagged_lesion(context, key("highest-score"), codes.HIGHEST_SCORE_LESION,
                                               patient.highest_score_tracking_uid, codes.LOW_DOSE_RT_CANDIDATE)),
        (key("risk-group"), _risk_group(context, key("risk-group"))),
    ]
    panel_key = key("panel")
    panel = observation(
        context, panel_key,
        code=concept(codes.PATIENT_BIOMARKERS, text=codes.PATIENT_BIOMARKERS.meaning),
        hasMember=[k.reference() for k, _ in members] + [k.reference() for k in lesion_groups],
        note=notes(context.result),
    )
    return panel_key, [k.entry(resource) for k, resource in members] + [panel_key.entry(panel)]


def _distribution(context: StudyContext, key: ResourceKey) -> Observation:
    patient = context.result.patient
    components = [
        component(concept(codes.N_LESIONS), patient.n_lesions),
        component(concept(codes.N_COMPUTABLE), patient.n_computable),
        component(concept(codes.N_OVER_VOLUME_FILTER), patient.n_over_volume_filter),
        component(concept(codes.VOLUME_FILTER), quantity(patient.volume_filter_ml, codes.UNIT_ML)),
    ]
    for statistic, metric in patient.score_stats.items():
        _, code = codes.lookup(codes.SCORE_STATISTICS, statistic, "score statistic")
        components.append(metric_component(concept(code), metric, codes.UNIT_SCORE))
    return observation(context, key, code=concept(codes.SCORE_DISTRIBUTION, text=codes.SCORE_DISTRIBUTION.meaning),
                       component=components, note=notes(context.result))


def _burden(context: StudyContext, key: ResourceKey) -> Observation:
    """Total lesion volume as the value; counts and organs as components."""
    patient = context.result.patient
    return observation(
        context, key,
        code=concept(codes.TUMOUR_BURDEN, text=codes.TUMOUR_BURDEN.meaning),
        valueQuantity=quantity(patient.total_volume_ml, codes.UNIT_ML),
        component=[
            component(concept(codes.TOTAL_VOLUME), quantity(patient.total_volume_ml, codes.UNIT_ML)),
            component(concept(codes.N_LESIONS), patient.n_lesions),
            component(concept(codes.N_ORGANS), len(patient.organs_involved)),
            *(component(concept(codes.ORGAN_INVOLVED), body_site(organ)) for organ in patient.organs_involved),
        ],
    )


def _flagged_lesion(context: StudyContext, key: ResourceKey, code: Code, tracking_uid: str | None,
                    candidacy: Code) -> Observation:
    """Which lesion a patient-level flag points at: focus = its Tracking UID, value = the lesion
    in words, a component saying what it is a candidate for; or why no lesion qualifies."""
    lesion = codes.flagged_lesion(context.result, tracking_uid)
    if lesion is None or lesion.score is None:  # the flags point at scored lesions only
        return observation(context, key, code=concept(code, text=code.meaning),
                           **value_fields(None, "no lesion with a computable score"), note=notes(context.result))
    return observation(
        context, key,
        code=concept(code, text=code.meaning),
        **lesion_about(lesion),
        valueString=codes.lesion_label(lesion),
        component=[component(concept(codes.RT_TARGET_CANDIDATE), concept(candidacy)),
                   component(concept(codes.CD8_SCORE), quantity(lesion.score, codes.UNIT_SCORE))],
        note=notes(context.result),
    )


def _risk_group(context: StudyContext, key: ResourceKey) -> Observation:
    patient = context.result.patient
    risk_group = codes.lookup(codes.RISK_GROUPS, patient.risk_group, "risk group")
    return observation(
        context, key,
        code=concept(codes.RISK_GROUP, text=codes.RISK_GROUP.meaning),
        valueCodeableConcept=concept(risk_group),
        component=[cutoff_component(patient)],
        note=notes(context.result),
    )
