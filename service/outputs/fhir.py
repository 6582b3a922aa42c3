"""The EHR output: a FHIR R4 transaction Bundle of the study's imaging biomarkers.

Shape (after the HL7 "DICOM SR to FHIR Resource Mapping" guide, as far as R4 allows, and
mCODE's TumorSize for the lesion size):
- one Device: the algorithm, its version, signature id/version/status and engines;
- one Observation per lesion (the TID 1411 group): size and CD8 score as components, focus =
  the tracked lesion (BodyStructure by its DICOM Tracking UID), bodySite = its location;
- one patient-level Observation (the TID 1501 group): value = risk group, distribution
  metrics as components, hasMember = the lesion Observations;
- one DiagnosticReport grouping them, with a conclusion a clinician can read.

References that leave the Bundle are logical (by identifier), so the Bundle never depends on
ids the EHR assigned: the Patient by a conditional reference ("Patient?identifier=..."), the
study as ImagingStudy by Study Instance UID, and the SR as DocumentReference by SOP Instance
UID. The SR goes to DocumentReference because R4 has no resource for one DICOM instance
(ImagingStudy names the study, not the SR), and a DICOM SR is a document the EHR can retrieve.

Every resource carries a deterministic identifier and is sent as a conditional update
("PUT <Type>?identifier=<system>|<value>"), so a re-sent study updates, never duplicates; and
fullUrls are UUIDv5 of those identifiers, so identical input gives a byte-identical Bundle.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device, DeviceDeviceName, DeviceVersion
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydicom.sr.coding import Code

from service.model import LesionResult, Metric, StudyResult
from service.outputs import codes
from service.durable import write_atomically
from service.outputs.sr import MANUFACTURER

OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0074"
DATA_ABSENT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_IDENTIFIER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, codes.RCDS_IDENTIFIER_SYSTEM)
_SEARCH_ESCAPES = re.compile(r"([\\|,$])")
_DEVICE_TYPE = "Imaging biomarker software (clinical decision support)"


@dataclass(frozen=True)
class _Key:
    """A resource's business identifier, and everything derived from it (fullUrl, request)."""

    resource_type: str
    value: str

    @classmethod
    def derive(cls, resource_type: str, *parts: str) -> _Key:
        """Identifier value = UUIDv5 of `parts`: stable, URL-safe, and free of patient data."""
        digest = uuid.uuid5(_IDENTIFIER_NAMESPACE, json.dumps([resource_type, *parts]))
        return cls(resource_type, f"{resource_type.lower()}-{digest}")

    def identifier(self) -> Identifier:
        return Identifier(system=codes.RCDS_IDENTIFIER_SYSTEM, value=self.value)

    @property
    def full_url(self) -> str:
        name = f"{codes.RCDS_IDENTIFIER_SYSTEM}|{self.value}"
        return f"urn:uuid:{uuid.uuid5(_IDENTIFIER_NAMESPACE, name)}"

    def reference(self) -> Reference:
        """In-Bundle reference; the server rewrites it to the id it assigns."""
        return Reference(reference=self.full_url, type=self.resource_type)

    def entry(self, resource: Resource) -> BundleEntry:
        """Conditional update: create if absent, else update the one with this identifier."""
        url = _conditional_url(self.resource_type, codes.RCDS_IDENTIFIER_SYSTEM, self.value)
        return BundleEntry(
            fullUrl=self.full_url,
            resource=resource,
            request=BundleEntryRequest(method="PUT", url=url),
        )


@dataclass(frozen=True)
class _Context:
    """What every Observation of one study shares: who, when, from what, by what."""

    result: StudyResult
    subject: Reference
    study: Reference
    sr: Reference
    device: Reference
    effective: str | None


def build_bundle(
    result: StudyResult,
    *,
    sr_sop_instance_uid: str,
    patient_identifier_system: str = "urn:dicom:patient-id",
) -> Bundle:
    """The transaction Bundle for a scored study whose SR has `sr_sop_instance_uid`."""
    study_uid = result.study.study_instance_uid
    device_key = _device_key(result)
    context = _Context(
        result=result,
        subject=Reference(
            reference=_conditional_url(
                "Patient", patient_identifier_system, result.study.patient_id
            ),
            type="Patient",
        ),
        study=_dicom_reference("ImagingStudy", study_uid),
        sr=_dicom_reference("DocumentReference", sr_sop_instance_uid),
        device=device_key.reference(),
        effective=_fhir_date(result.study.study_date),
    )
    lesion_keys = [_Key.derive("Observation", study_uid, x.tracking_uid) for x in result.lesions]
    patient_key = _Key.derive("Observation", study_uid, "patient-level")
    report_key = _Key.derive("DiagnosticReport", study_uid)
    entries = [
        device_key.entry(_device(result, device_key)),
        *(
            key.entry(_lesion_observation(context, key, lesion))
            for key, lesion in zip(lesion_keys, result.lesions, strict=True)
        ),
        patient_key.entry(_patient_observation(context, patient_key, lesion_keys)),
        report_key.entry(_diagnostic_report(context, report_key, [*lesion_keys, patient_key])),
    ]
    return Bundle(
        type="transaction",
        identifier=Identifier(system=codes.RCDS_IDENTIFIER_SYSTEM, value=sr_sop_instance_uid),
        entry=entries,
    )


def write_bundle(bundle: Bundle, outdir: Path) -> Path:
    """Write `<SR SOP Instance UID>.fhir.json` next to the SR it accompanies, atomically.

    The Bundle's identifier is the SR's SOP Instance UID (see build_bundle), so the pair share
    a name on disk.
    """
    target = Path(outdir) / f"{bundle.identifier.value}.fhir.json"
    data = bundle.model_dump_json(indent=2).encode("utf-8")
    write_atomically(target, lambda stream: stream.write(data))
    return target


# --- references and identifiers -----------------------------------------------------------


def _device_key(result: StudyResult) -> _Key:
    """One Device per algorithm and signature version, shared by every study it scored."""
    p = result.provenance
    return _Key.derive(
        "Device", p.algorithm_name, p.algorithm_version, p.signature_id, p.signature_version
    )


def _conditional_url(resource_type: str, system: str, value: str) -> str:
    """`<Type>?identifier=<system>|<value>`, escaped as FHIR token search and URLs require."""
    token = f"{_search_escape(system)}|{_search_escape(value)}"
    return f"{resource_type}?identifier={quote(token, safe=':/|')}"


def _search_escape(text: str) -> str:
    """FHIR search escaping: a literal | , $ or \\ inside a token part is backslash-escaped."""
    return _SEARCH_ESCAPES.sub(r"\\\1", text)


def _dicom_reference(resource_type: str, uid: str) -> Reference:
    """Logical reference by DICOM UID (system urn:dicom:uid, value urn:oid:<uid>)."""
    return Reference(
        type=resource_type,
        identifier=Identifier(system=codes.DICOM_UID_SYSTEM, value=f"urn:oid:{uid}"),
    )


def _fhir_date(dicom_date: str) -> str | None:
    """DICOM DA (YYYYMMDD) -> FHIR date; None when absent or malformed, never a guess.

    Date precision on purpose: a FHIR dateTime with a time needs a UTC offset, which DICOM
    Study Time does not carry.
    """
    if not re.fullmatch(r"\d{8}", dicom_date):
        return None
    return f"{dicom_date[:4]}-{dicom_date[4:6]}-{dicom_date[6:]}"


# --- values --------------------------------------------------------------------------------


def _coding(code: Code) -> Coding:
    return Coding(
        system=codes.FHIR_SYSTEMS[code.scheme_designator], code=code.value, display=code.meaning
    )


def _concept(*concepts: Code, text: str | None = None) -> CodeableConcept:
    return CodeableConcept(coding=[_coding(c) for c in concepts], text=text)


def _quantity(value: float, unit: Code) -> Quantity:
    """A UCUM quantity: EHRs convert and chart these, unlike free-text units."""
    return Quantity(
        value=value, unit=unit.meaning, system=codes.FHIR_SYSTEMS["UCUM"], code=unit.value
    )


_VALUE_FIELDS: dict[type, str] = {
    Quantity: "valueQuantity",
    CodeableConcept: "valueCodeableConcept",
    int: "valueInteger",
    str: "valueString",
}


def _component(
    code: CodeableConcept, value: Any, reason: str | None = None
) -> ObservationComponent:
    """A component with its value, or, when `value` is None, with why it is absent.

    An absent value is never 0 or NaN: it is dataAbsentReason "not-applicable" (the input
    cannot support it, e.g. too few voxels or lesions), with the reason in words.
    """
    if value is None:
        return ObservationComponent(
            code=code,
            dataAbsentReason=CodeableConcept(
                coding=[Coding(system=DATA_ABSENT_REASON_SYSTEM, code="not-applicable")],
                text=reason or "not computable",
            ),
        )
    return ObservationComponent(code=code, **{_VALUE_FIELDS[type(value)]: value})


def _metric_component(code: CodeableConcept, metric: Metric, unit: Code) -> ObservationComponent:
    value = None if metric.value is None else _quantity(metric.value, unit)
    return _component(code, value, metric.reason)


def _notes(result: StudyResult, *lines: str) -> list[Annotation]:
    """Notes every Observation carries: what it is for and how far the signature can be trusted."""
    signature = (
        f"CD8 radiomics signature {codes.signature_label(result.provenance)}; "
        f"cut-off {codes.cutoff_label(result.patient)}."
    )
    return [Annotation(text=text) for text in (*lines, signature, codes.DECISION_SUPPORT_NOTICE)]


def _observation(context: _Context, key: _Key, **content: Any) -> Observation:
    """The parts lesion and patient Observations share; `content` adds the rest."""
    return Observation(
        identifier=[key.identifier()],
        status="final",
        category=[
            CodeableConcept(
                coding=[
                    Coding(system=OBSERVATION_CATEGORY_SYSTEM, code="imaging", display="Imaging")
                ]
            )
        ],
        subject=context.subject,
        effectiveDateTime=context.effective,
        derivedFrom=[context.study, context.sr],
        device=context.device,
        **content,
    )


# --- resources -----------------------------------------------------------------------------


def _device(result: StudyResult, key: _Key) -> Device:
    """The algorithm as a Device: which version and signature made every number."""
    p = result.provenance
    versions = [
        ("algorithm", p.algorithm_version),
        (f"signature {p.signature_id}", p.signature_version),
        ("signature status", codes.signature_status_label(p)),
        *((f"engine {name}", version) for name, version in sorted(p.engine_versions.items())),
    ]
    return Device(
        identifier=[key.identifier()],
        status="active",
        manufacturer=MANUFACTURER,
        deviceName=[DeviceDeviceName(name=p.algorithm_name, type="model-name")],
        type=CodeableConcept(text=_DEVICE_TYPE),
        version=[DeviceVersion(type=CodeableConcept(text=t), value=v) for t, v in versions],
        note=[Annotation(text=line) for line in codes.provenance_lines(p)],
    )


def _body_site(location_class: str) -> CodeableConcept:
    """SNOMED CT site when the class names one; the class in words always."""
    site = codes.finding_site(location_class)
    return CodeableConcept(coding=[_coding(site)] if site else None, text=location_class)


def _lesion_observation(context: _Context, key: _Key, lesion: LesionResult) -> Observation:
    """One lesion: size, score (or why none), location and its source, candidacies."""
    return _observation(
        context,
        key,
        code=_concept(
            codes.LOINC_TUMOR_SIZE, codes.LESION_BIOMARKERS, text=codes.LESION_BIOMARKERS.meaning
        ),
        focus=[
            Reference(
                type="BodyStructure",
                identifier=Identifier(
                    system=codes.DICOM_UID_SYSTEM, value=f"urn:oid:{lesion.tracking_uid}"
                ),
                display=lesion.tracking_id,
            )
        ],
        bodySite=_body_site(lesion.location_class),
        note=_notes(context.result, codes.lesion_label(lesion)),
        component=_lesion_components(context.result, lesion),
    )


def _lesion_components(result: StudyResult, lesion: LesionResult) -> list[ObservationComponent]:
    score_class = (
        None
        if lesion.score_class is None
        else _concept(codes.lookup(codes.SCORE_CLASSES, lesion.score_class, "score class"))
    )
    location_source = codes.lookup(
        codes.LOCATION_SOURCES, lesion.location_source, "location source"
    )
    score_metric = Metric(lesion.score, lesion.not_computable)
    return [
        _component(_concept(codes.VOLUME), _quantity(lesion.volume_ml, codes.UNIT_ML)),
        _component(
            _concept(codes.LOINC_TUMOR_LONGEST_DIMENSION, codes.LONG_AXIS),
            _quantity(lesion.longest_axial_diameter_mm, codes.UNIT_MM),
        ),
        _component(_concept(codes.SHORT_AXIS), _quantity(lesion.short_axis_mm, codes.UNIT_MM)),
        _component(
            _concept(codes.MAX_3D_DIAMETER), _quantity(lesion.max_3d_diameter_mm, codes.UNIT_MM)
        ),
        _metric_component(_concept(codes.CD8_SCORE), score_metric, codes.UNIT_SCORE),
        _component(_concept(codes.CD8_SCORE_CLASS), score_class, lesion.not_computable),
        *(
            _component(_concept(codes.CD8_SCORE_TERM, text=f"CD8 radiomics score term {name}"),
                       _quantity(value, codes.UNIT_SCORE))
            for name, value in lesion.contributions.items()
        ),
        _component(_concept(codes.LOCATION_SOURCE), _concept(location_source)),
        *(
            _component(_concept(codes.RT_TARGET_CANDIDATE), _concept(candidacy))
            for candidacy in codes.candidate_codes(result.patient, lesion)
        ),
    ]


def _patient_observation(context: _Context, key: _Key, lesion_keys: Sequence[_Key]) -> Observation:
    """The patient-level biomarkers; value = risk group, the one result to act on."""
    patient = context.result.patient
    risk_group = codes.lookup(codes.RISK_GROUPS, patient.risk_group, "risk group")
    return _observation(
        context,
        key,
        code=_concept(codes.PATIENT_BIOMARKERS, text=codes.PATIENT_BIOMARKERS.meaning),
        valueCodeableConcept=_concept(risk_group),
        hasMember=[k.reference() for k in lesion_keys],
        note=_notes(context.result),
        component=_patient_components(context.result),
    )


def _patient_components(result: StudyResult) -> list[ObservationComponent]:
    patient = result.patient
    cutoff_code = _concept(codes.CUTOFF, text=f"{codes.CUTOFF.meaning} ({patient.cutoff_name})")
    components = [
        _component(_concept(codes.N_LESIONS), patient.n_lesions),
        _component(_concept(codes.N_COMPUTABLE), patient.n_computable),
        _component(_concept(codes.N_OVER_VOLUME_FILTER), patient.n_over_volume_filter),
        _component(
            _concept(codes.VOLUME_FILTER), _quantity(patient.volume_filter_ml, codes.UNIT_ML)
        ),
        _component(
            _concept(codes.TOTAL_VOLUME), _quantity(patient.total_volume_ml, codes.UNIT_ML)
        ),
        _component(_concept(codes.N_ORGANS), len(patient.organs_involved)),
        *(
            _component(_concept(codes.ORGAN_INVOLVED), _body_site(organ))
            for organ in patient.organs_involved
        ),
        _component(cutoff_code, _quantity(patient.cutoff_value, codes.UNIT_SCORE)),
    ]
    for key, metric in patient.score_stats.items():
        _, code = codes.lookup(codes.SCORE_STATISTICS, key, "score statistic")
        components.append(_metric_component(_concept(code), metric, codes.UNIT_SCORE))
    components += [
        _flagged_lesion_component(
            result, codes.LEAST_INFILTRATED_LESION, patient.least_infiltrated_tracking_uid
        ),
        _flagged_lesion_component(
            result, codes.HIGHEST_SCORE_LESION, patient.highest_score_tracking_uid
        ),
    ]
    return components


def _flagged_lesion_component(
    result: StudyResult, code: Code, tracking_uid: str | None
) -> ObservationComponent:
    """Which lesion the patient-level flag points at, in words (components hold no references)."""
    lesion = codes.flagged_lesion(result, tracking_uid)
    label = None if lesion is None else codes.lesion_label(lesion)
    return _component(_concept(code), label, "no lesion with a computable score")


def _diagnostic_report(
    context: _Context, key: _Key, result_keys: Sequence[_Key]
) -> DiagnosticReport:
    """Groups the Observations; its conclusion is the summary a tumour board reads first."""
    risk_group = codes.lookup(codes.RISK_GROUPS, context.result.patient.risk_group, "risk group")
    return DiagnosticReport(
        identifier=[key.identifier()],
        status="final",
        category=[
            CodeableConcept(
                coding=[
                    Coding(system=DIAGNOSTIC_SERVICE_SYSTEM, code="RAD", display="Radiology"),
                    Coding(system=codes.FHIR_SYSTEMS["LN"], code="LP29684-5", display="Radiology"),
                ]
            )
        ],
        code=_concept(codes.REPORT, text=codes.REPORT.meaning),
        subject=context.subject,
        effectiveDateTime=context.effective,
        imagingStudy=[context.study],
        result=[k.reference() for k in result_keys],
        conclusion="\n".join(codes.summary_lines(context.result)),
        conclusionCode=[_concept(risk_group)],
    )
