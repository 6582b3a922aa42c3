"""The patient-level response of a follow-up in FHIR R4 (docs/fhir.md, Resources).

Three Observations per study with a response assessment, each with the decision-support notes:
- "RECIST 1.1 time-point response" (99RCDS RECIST11TPR; method DCM 126081): the overall
  category as value; target and non-target responses (DCM 112041-112047), new-lesion
  candidates and the sums of diameters as components; hasMember the lesion-change
  Observations; derivedFrom the previous study's RECIST Observation, by identifier.
- "iRECIST time-point response" (IRECISTTPR): the category, the pending iUPD, its date and the
  confirmation window; hasMember the RECIST Observation; derivedFrom the previous iRECIST one.
- "Tumour growth kinetics" (TGKIN): TGR/TGK and every flag (Yes/No, or absent with the reason).

Never mCODE CancerDiseaseStatus (LOINC 97509-4): that is a clinician's judgement; these are
algorithm outputs that require radiologist confirmation. Identifiers derive from the study, so
the next study's Bundle names this one's Observations without asking the EHR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fhir.resources.R4B.bundle import BundleEntry
from fhir.resources.R4B.observation import ObservationComponent
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.reference import Reference
from pydicom.sr.coding import Code

from service.comparison import ResponseAssessment
from service.model import Metric
from service.outputs import codes
from service.outputs.response_values import sum_of_diameters_values
from service.outputs.fhir_common import (ResourceKey, StudyContext, component, concept, metric_component, notes,
                                         observation)

RECIST, IRECIST, KINETICS = "recist", "irecist", "kinetics"


def response_key(study_instance_uid: str, kind: str) -> ResourceKey:
    """The identifier of a study's response Observation (`kind`: recist, irecist, kinetics)."""
    return ResourceKey.derive("Observation", study_instance_uid, "response", kind)


def response_entries(context: StudyContext, response: ResponseAssessment,
                     lesion_changes: Sequence[ResourceKey]) -> list[BundleEntry]:
    keys = {kind: response_key(context.study_uid, kind) for kind in (RECIST, IRECIST, KINETICS)}
    lines = notes(context.result, codes.RESPONSE_NOTICE, *response.notes)
    recist = observation(
        context, keys[RECIST],
        code=concept(codes.RECIST_RESPONSE, text=codes.RECIST_RESPONSE.meaning),
        method=concept(codes.RECIST_11),
        valueCodeableConcept=concept(codes.lookup(codes.OVERALL_RESPONSES, response.overall, "RECIST response"),
                                     text=f"RECIST 1.1 overall {response.overall}"),
        component=_recist_components(response),
        hasMember=[key.reference() for key in lesion_changes] or None,
        note=lines,
    )
    irecist = observation(
        context, keys[IRECIST],
        code=concept(codes.IRECIST_RESPONSE, text=codes.IRECIST_RESPONSE.meaning),
        valueCodeableConcept=concept(codes.lookup(codes.IRECIST_CATEGORIES, response.irecist, "iRECIST category"),
                                     text=response.irecist),
        component=_irecist_components(response),
        hasMember=[keys[RECIST].reference()],
        note=lines,
    )
    kinetics = observation(
        context, keys[KINETICS],
        code=concept(codes.TUMOUR_GROWTH_KINETICS, text=codes.TUMOUR_GROWTH_KINETICS.meaning),
        component=_kinetics_components(response),
        note=lines,
    )
    kinetics.derivedFrom = [*(kinetics.derivedFrom or []), keys[RECIST].reference()]
    if response.previous_study_uid is not None:
        for resource, kind in ((recist, RECIST), (irecist, IRECIST)):
            previous = response_key(response.previous_study_uid, kind)
            resource.derivedFrom = [*(resource.derivedFrom or []),
                                    Reference(type="Observation", identifier=previous.identifier())]
    return [keys[RECIST].entry(recist), keys[IRECIST].entry(irecist), keys[KINETICS].entry(kinetics)]


def _recist_components(response: ResponseAssessment) -> list[ObservationComponent]:
    parts = [
        _category(codes.TARGET_RESPONSES, response.target_response, "Target response", "no target lesions at baseline"),
        _category(codes.NON_TARGET_RESPONSES, response.non_target_response,
                  "Non-target response (automated proxy)", "no non-target lesions at baseline"),
        component(concept(codes.NEW_LESION_CANDIDATES), response.new_lesion_count),
    ]
    for code, metric, unit in sum_of_diameters_values(response):
        parts.append(metric_component(concept(code), metric, unit))
    return parts


def _category(table: Mapping[str, Code], value: str | None, label: str, none: str) -> ObservationComponent:
    """A CID 6144 response; NE (no code there) and "none at baseline" as absent, in words."""
    code = table.get(value) if value is not None else None
    reason = none if value is None else f"{label}: not evaluable (NE)"
    return component(concept(codes.CURRENT_RESPONSE, text=label), None if code is None else concept(code), reason)


def _irecist_components(response: ResponseAssessment) -> list[ObservationComponent]:
    parts = [
        component(concept(codes.IUPD_PENDING), concept(codes.YES if response.iupd_pending else codes.NO)),
        metric_component(concept(codes.NLT_SUM), Metric(response.nlt_sum_mm), codes.UNIT_MM),
    ]
    if response.iupd_date is not None:
        parts.append(ObservationComponent(code=concept(codes.IUPD_DATE),
                                          valueDateTime=response.iupd_date))  # type: ignore[arg-type]  # FHIR date string
    if response.confirmation_window is not None:
        start, end = response.confirmation_window
        parts.append(ObservationComponent(code=concept(codes.CONFIRMATION_WINDOW),
                                          valuePeriod=Period(start=start, end=end)))  # type: ignore[arg-type]
    return parts


def _kinetics_components(response: ResponseAssessment) -> list[ObservationComponent]:
    parts = [metric_component(concept(codes.KINETICS_CODES[key][0]), metric, codes.KINETICS_CODES[key][1])
             for key, metric in response.kinetics.items()]
    for flag in response.flags:
        code = codes.lookup(codes.FLAG_CODES, flag.key, "flag")
        value = None if flag.value is None else concept(codes.YES if flag.value else codes.NO)
        parts.append(component(concept(code, text=f"{code.meaning}: {flag.definition}"), value, flag.reason))
    return parts
