"""One lesion in FHIR R4: its biomarker groups, one Observation each, under a group Observation.

After the HL7 "DICOM SR to FHIR Resource Mapping" guide: the TID 1411 measurement group becomes
a group Observation (code DCM 125007 "Measurement Group") whose hasMember are the lesion's
biomarker Observations, and the lesion's Tracking Unique Identifier is every one's
focus.identifier (the guide's mapping of DCM 112040; focus because R4 has no
Observation.bodyStructure), a logical BodyStructure reference with the Tracking Identifier as its
display. We do not create the BodyStructure itself: R4 servers commonly cannot search
BodyStructure by identifier (the conditional update would fail the whole transaction), and
the logical reference carries the same identity. The groups:

- tumour size, conforming to mCODE's TumorSize and declaring it in meta.profile: code LOINC
  21889-1, method CT, longest axial diameter as component 33728-7, short axis as 33729-5 (both
  in mm), plus the maximum 3D diameter and the volume (the profile's component slicing is open);
- the CD8 radiomics score: value (or why there is none), interpretation = its cut-off class,
  components for the class, the cut-off, the signature's status and each term's contribution;
- the radiomics features, one Observation per region (lesion core, peritumoral ring; the
  region is the Observation's method), each feature a component coded with its IBSI
  identifier (code system codes.IBSI_FHIR_SYSTEM) and the IBSI tag as text.

Every one carries the lesion's site as bodySite (fhir_common.lesion_body_site: the same coded
site as the SR's finding site).
"""

from __future__ import annotations

import math
from typing import Any

from fhir.resources.R4B.bundle import BundleEntry
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.reference import Reference

from service.model import LesionResult, RingCut
from service.outputs import codes
from service.outputs.feature_codes import REGION_METHODS, feature_concept, ibsi_identifier
from service.scoring.degenerate import undefined_features_text
from service.outputs.fhir_common import (
    ResourceKey,
    StudyContext,
    component,
    concept,
    cutoff_component,
    dicom_uid_identifier,
    lesion_body_site,
    notes,
    observation,
    quantity,
    value_fields,
)


def lesion_focus(lesion: LesionResult) -> Reference:
    """The tracked lesion, by its DICOM Tracking UID (stable across re-sends and re-scoring)."""
    return Reference(type="BodyStructure", identifier=dicom_uid_identifier(lesion.tracking_uid),
                     display=lesion.tracking_id)


def lesion_about(lesion: LesionResult) -> dict[str, Any]:
    """What every Observation about the lesion says of it: focus (its Tracking UID) and bodySite."""
    return {"focus": [lesion_focus(lesion)], "bodySite": lesion_body_site(lesion)}


def lesion_key(study_instance_uid: str, tracking_uid: str, group: str) -> ResourceKey:
    """The identifier of a lesion's Observation: the study, the lesion's tracking UID and the
    group. Another study's Bundle (a follow-up) derives the same key to reference it."""
    return ResourceKey.derive("Observation", study_instance_uid, tracking_uid, group)


def lesion_entries(context: StudyContext, lesion: LesionResult) -> tuple[ResourceKey, list[BundleEntry]]:
    """The lesion's biomarker Observations and group Observation, in Bundle order; returns the
    group's key too (the patient level points at it)."""
    about = lesion_about(lesion)

    def key(group: str) -> ResourceKey:
        return lesion_key(context.study_uid, lesion.tracking_uid, group)

    members: list[tuple[ResourceKey, Observation]] = [
        (key("size"), _tumour_size(context, key("size"), lesion, about)),
        (key("cd8-score"), _cd8_score(context, key("cd8-score"), lesion, about)),
        *((key(f"features-{region}"), _features(context, key(f"features-{region}"), about, region, values,
                                                lesion.ring_cut if region == "ring" else None))
          for region, values in sorted(lesion.features.items())),
    ]
    group_key = key("group")
    group = observation(
        context, group_key,
        code=concept(codes.MEASUREMENT_GROUP, codes.LESION_BIOMARKERS, text=codes.LESION_BIOMARKERS.meaning),
        **about,
        hasMember=[member_key.reference() for member_key, _ in members],
        note=notes(context.result, codes.lesion_label(lesion)),
        component=_group_components(context, lesion),
    )
    entries = [member_key.entry(resource) for member_key, resource in members]
    return group_key, entries + [group_key.entry(group)]


def _tumour_size(context: StudyContext, key: ResourceKey, lesion: LesionResult, about: dict[str, Any]) -> Observation:
    size = [
        (concept(codes.LOINC_TUMOR_LONGEST_DIMENSION, codes.LONG_AXIS), lesion.longest_axial_diameter_mm, codes.UNIT_MM),
        (concept(codes.LOINC_TUMOR_ADDITIONAL_DIMENSION, codes.SHORT_AXIS), lesion.short_axis_mm, codes.UNIT_MM),
        (concept(codes.MAX_3D_DIAMETER), lesion.max_3d_diameter_mm, codes.UNIT_MM),
        (concept(codes.VOLUME), lesion.volume_ml, codes.UNIT_ML),
    ]
    return observation(
        context, key,
        meta=Meta(profile=[codes.MCODE_TUMOR_SIZE_PROFILE]),
        code=concept(codes.LOINC_TUMOR_SIZE, text="Tumour size"),
        **about, method=concept(codes.CT_METHOD),
        component=[component(code, quantity(value, unit)) for code, value, unit in size],
    )


def _cd8_score(context: StudyContext, key: ResourceKey, lesion: LesionResult, about: dict[str, Any]) -> Observation:
    """The score, or dataAbsentReason with why; every component says how to read it."""
    patient, provenance = context.result.patient, context.result.provenance
    score_class = (None if lesion.score_class is None
                   else concept(codes.lookup(codes.SCORE_CLASSES, lesion.score_class, "score class")))
    components = [
        component(concept(codes.CD8_SCORE_CLASS), score_class, lesion.not_computable),
        cutoff_component(patient),
        component(concept(codes.SIGNATURE_STATUS),
                  f"{provenance.signature_id} {provenance.signature_version}: {codes.signature_status_label(provenance)}"),
        *(component(concept(codes.CD8_SCORE_TERM, text=f"CD8 radiomics score term {name}"),
                    quantity(value, codes.UNIT_SCORE))
          for name, value in lesion.contributions.items()),
    ]
    score = None if lesion.score is None else quantity(lesion.score, codes.UNIT_SCORE)
    return observation(
        context, key,
        code=concept(codes.CD8_SCORE, text=codes.CD8_SCORE.meaning),
        **about,
        **value_fields(score, lesion.not_computable),
        interpretation=[score_class] if score_class is not None else None,
        note=notes(context.result),
        component=components,
    )


def _features(context: StudyContext, key: ResourceKey, about: dict[str, Any], region: str,
              values: dict[str, float], cut: RingCut | None) -> Observation:
    """The IBSI-defined features of one region. Features IBSI does not define (no identifier to
    code them with) and features without a value (NaN: not computable on this region, e.g. the
    kurtosis of a constant region) are named in a note, with the reason, instead; so is a ring
    cut by the image edge (`cut`), whose features describe only its part inside."""
    components: list[ObservationComponent] = []
    uncoded, not_finite = [], []
    for tag, value in sorted(values.items()):
        identifier, feature = ibsi_identifier(tag), feature_concept(tag)
        if identifier is None or feature is None:
            uncoded.append(tag)
        elif not math.isfinite(value):
            not_finite.append(tag)
        else:
            components.append(component(concept(identifier, text=tag), quantity(value, feature.unit)))
    extra = [f"Not IBSI-defined, not coded here: {', '.join(uncoded)}."] if uncoded else []
    extra += [f"Not computable: {undefined_features_text({tag: values[tag] for tag in not_finite})}."] if not_finite else []
    extra += [cut.statement()] if cut else []
    method = codes.lookup(REGION_METHODS, region, "feature region")
    return observation(
        context, key,
        code=concept(codes.RADIOMICS_FEATURES, text=f"{codes.RADIOMICS_FEATURES.meaning}, {method.meaning}"),
        **about, method=concept(method),
        note=notes(context.result, *codes.provenance_lines(context.result.provenance), *extra),
        component=components or None,
        **({} if components else value_fields(None, "no IBSI-defined feature computed for this region")),
    )


def _group_components(context: StudyContext, lesion: LesionResult) -> list[ObservationComponent]:
    """Qualitative evaluations of the lesion: where its location came from, its RT candidacies."""
    source = codes.lookup(codes.LOCATION_SOURCES, lesion.location_source, "location source")
    return [
        component(concept(codes.LOCATION_SOURCE), concept(source)),
        *(component(concept(codes.RT_TARGET_CANDIDATE), concept(candidacy))
          for candidacy in codes.candidate_codes(context.result.patient, lesion)),
    ]
