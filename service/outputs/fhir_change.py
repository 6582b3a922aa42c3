"""A matched lesion's change against earlier studies in FHIR R4 (docs/fhir.md, "lesion change").

One Observation (99RCDS LESCHG) per lesion that has a comparison: focus is the lesion's tracking
UID, the same BodyStructure identifier in every study's Bundle, so an EHR sees one tumour over
time (bodySite its site, as on the lesion's other Observations); derivedFrom names this study's
size Observation in the Bundle and the earlier studies' size Observations by their
deterministic identifiers, computed the way those Bundles made them (no EHR query needed, and
identical on every replica).

The Observation also carries, as the SR's LESCHG container does, the change of every radiomic
feature against the previous time point: per feature and region two components coded like the
feature in the "radiomics features" Observation (its IBSI identifier), one in the feature's
unit (the difference), one in % (relative). R4 components have no method, so the region is in
the code's text. When the two studies' features are not comparable (settings, signature or
acquisition differ), a NOTCOMPARABLE component states why, next to the values, as in the SR.
"""

from __future__ import annotations

import math

from fhir.resources.R4B.bundle import BundleEntry
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.observation import ObservationComponent
from fhir.resources.R4B.reference import Reference

from service.comparison import Comparison, LesionComparison
from service.model import LesionResult, Metric
from service.outputs import codes
from service.outputs.feature_codes import REGION_METHODS, feature_concept, ibsi_identifier
from service.outputs.fhir_common import (
    ResourceKey,
    StudyContext,
    component,
    concept,
    dicom_reference,
    metric_component,
    notes,
    observation,
)
from service.outputs.fhir_lesion import lesion_about, lesion_key


def size_reference(study_instance_uid: str, tracking_uid: str) -> Reference:
    """The tumour-size Observation of `tracking_uid` in the Bundle of another study, logically."""
    key = lesion_key(study_instance_uid, tracking_uid, "size")
    return Reference(type="Observation", identifier=key.identifier())


def lesion_change_entry(context: StudyContext, lesion: LesionResult, change: LesionComparison) -> BundleEntry:
    key = lesion_key(context.study_uid, lesion.tracking_uid, "change")
    caveats = ([f"{codes.NOT_COMPARABLE.meaning} (CD8 score, radiomic features): "
                f"{'; '.join(change.cd8_not_comparable)}"] if change.cd8_not_comparable else [])
    uncoded = sorted({delta.tag for delta in change.feature_deltas if ibsi_identifier(delta.tag) is None})
    caveats += [f"Feature changes not IBSI-defined, not coded here: {', '.join(uncoded)}."] if uncoded else []
    caveats += [codes.LESION_RESPONSE_CAVEAT] if change.category in codes.LESION_CATEGORIES else []
    caveats += [f"Lesion-wise flag: {flag}" for flag in change.flags]
    resource = observation(
        context, key,
        code=concept(codes.LESION_CHANGE, text=codes.LESION_CHANGE.meaning),
        **lesion_about(lesion),
        note=notes(context.result, codes.lesion_label(lesion), *caveats),
        component=_components(change) + _feature_components(change),
    )
    resource.derivedFrom = [*(resource.derivedFrom or []), lesion_key(context.study_uid, lesion.tracking_uid,
                                                                      "size").reference(),
                            *(size_reference(study, uid) for study in change.size_sources
                              for uid in change.prior_uids or (lesion.tracking_uid,))]
    return key.entry(resource)


def _components(change: LesionComparison) -> list:
    category = codes.LESION_CATEGORIES.get(change.category)
    parts = [
        metric_component(concept(codes.LD_PCT_BASELINE), change.diameter_pct_baseline, codes.UNIT_PERCENT),
        metric_component(concept(codes.LD_PCT_PREVIOUS), change.diameter_pct_previous, codes.UNIT_PERCENT),
        metric_component(concept(codes.LD_MM_BASELINE), change.diameter_delta_mm_baseline, codes.UNIT_MM),
        metric_component(concept(codes.VOLUME_PCT_BASELINE), change.volume_pct_baseline, codes.UNIT_PERCENT),
        metric_component(concept(codes.CD8_SCORE_DELTA), change.cd8_delta, codes.UNIT_SCORE),
        component(concept(codes.LESION_RESPONSE), None if category is None else concept(category),
                  f"lesion-wise response {change.category.replace('_', ' ')}"),
        component(concept(codes.MATCH_METHOD), change.match_method),
        component(concept(codes.MATCH_CONFIDENCE), change.match_confidence, "no confidence stated"),
        metric_component(concept(codes.MATCH_DISTANCE), Metric(change.match_distance_mm, "no mapping between frames"),
                         codes.UNIT_MM),
    ]
    return parts


def _feature_components(change: LesionComparison) -> list[ObservationComponent]:
    """NOTCOMPARABLE with the reasons when so, then each IBSI-coded feature's change in its unit
    and in %; a change without a value (the feature missing in one study, a zero reference, not
    a finite number) is a dataAbsentReason with why, never 0."""
    if not change.feature_deltas:
        return []
    parts = ([component(concept(codes.NOT_COMPARABLE), "; ".join(change.cd8_not_comparable))]
             if change.cd8_not_comparable else [])
    for delta in change.feature_deltas:
        identifier, feature = ibsi_identifier(delta.tag), feature_concept(delta.tag)
        if identifier is None or feature is None:
            continue
        region = codes.lookup(REGION_METHODS, delta.region, "feature region").meaning
        parts += [metric_component(concept(identifier, text=f"Change of {delta.tag}, {region}"), _finite(delta.delta),
                                   feature.unit),
                  metric_component(concept(identifier, text=f"Relative change of {delta.tag} (%), {region}"),
                                   _finite(delta.relative_percent), codes.UNIT_PERCENT)]
    return parts


def _finite(metric: Metric) -> Metric:
    """FHIR decimals cannot carry NaN or infinity: such a value is absent, with why."""
    if metric.value is None or math.isfinite(metric.value):
        return metric
    return Metric.not_computable("not a finite number")


def associated_studies(comparison: Comparison) -> list[Extension] | None:
    """IHE IMR associatedStudy: each prior ImagingStudy and DiagnosticReport, by identifier."""
    extensions = []
    for prior in comparison.priors:
        report = ResourceKey.derive("DiagnosticReport", prior.study_instance_uid)
        for reference in (dicom_reference("ImagingStudy", prior.study_instance_uid),
                          Reference(type="DiagnosticReport", identifier=report.identifier())):
            extensions.append(Extension(url=codes.IMR_ASSOCIATED_STUDY, valueReference=reference))
    return extensions or None
