"""What every resource of our FHIR R4 Bundle is built from: deterministic keys, the study's
shared context, and coded values (fhir.resources R4B models).

Every resource carries a business identifier derived from what it describes (UUIDv5 of the
study, lesion and group), is sent as a conditional update on that identifier, and has a fullUrl
derived from it too: identical input gives a byte-identical Bundle, and a re-sent or re-scored
study updates the same resources instead of adding new ones.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.bundle import BundleEntry, BundleEntryRequest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydicom.sr.coding import Code

from service.model import LesionResult, Metric, PatientResult, StudyResult
from service.outputs import codes

OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_IDENTIFIER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, codes.RCDS_IDENTIFIER_SYSTEM)
_SEARCH_ESCAPES = re.compile(r"([\\|,$])")


@dataclass(frozen=True)
class ResourceKey:
    """A resource's business identifier, and everything derived from it (fullUrl, request)."""

    resource_type: str
    value: str

    @classmethod
    def derive(cls, resource_type: str, *parts: str) -> ResourceKey:
        """Identifier value = UUIDv5 of `parts`: stable, URL-safe, and free of patient data."""
        digest = uuid.uuid5(_IDENTIFIER_NAMESPACE, json.dumps([resource_type, *parts]))
        return cls(resource_type, f"{resource_type.lower()}-{digest}")

    def identifier(self) -> Identifier:
        return Identifier(system=codes.RCDS_IDENTIFIER_SYSTEM, value=self.value)

    @property
    def full_url(self) -> str:
        name = f"{codes.RCDS_IDENTIFIER_SYSTEM}|{self.value}"
        return f"urn:uuid:{uuid.uuid5(_IDENTIFIER_NAMESPACE, name)}"

    def reference(self, display: str | None = None) -> Reference:
        """In-Bundle reference; the server rewrites it to the id it assigns."""
        return Reference(reference=self.full_url, type=self.resource_type, display=display)

    def entry(self, resource: Resource) -> BundleEntry:
        """Conditional update: create if absent, else update the one with this identifier."""
        url = conditional_url(self.resource_type, codes.RCDS_IDENTIFIER_SYSTEM, self.value)
        return BundleEntry(fullUrl=self.full_url, resource=resource,
                           request=BundleEntryRequest(method="PUT", url=url))


def conditional_url(resource_type: str, system: str, value: str) -> str:
    """`<Type>?identifier=<system>|<value>`, escaped as FHIR token search and URLs require."""
    token = f"{_search_escape(system)}|{_search_escape(value)}"
    return f"{resource_type}?identifier={quote(token, safe=':/|')}"


def _search_escape(text: str) -> str:
    """FHIR search escaping: a literal | , $ or \\ inside a token part is backslash-escaped."""
    return _SEARCH_ESCAPES.sub(r"\\\1", text)


def dicom_uid_identifier(uid: str) -> Identifier:
    """A DICOM UID as FHIR writes it (system urn:dicom:uid, value urn:oid:<uid>)."""
    return Identifier(system=codes.DICOM_UID_SYSTEM, value=f"urn:oid:{uid}")


def dicom_reference(resource_type: str, uid: str) -> Reference:
    """Logical reference by DICOM UID, for resources the PACS or EHR owns (ImagingStudy, the SR)."""
    return Reference(type=resource_type, identifier=dicom_uid_identifier(uid))


@dataclass(frozen=True)
class StudyContext:
    """What every resource of one study shares: who, when, from what, by what."""

    result: StudyResult
    subject: Reference
    study: Reference
    sr: Reference
    device: Reference
    effective: str | None
    status: str  # the report's and every Observation's (FhirSettings.result_status)

    @property
    def study_uid(self) -> str:
        return self.result.study.study_instance_uid


def coding(code: Code) -> Coding:
    return Coding(system=codes.FHIR_SYSTEMS[code.scheme_designator], code=code.value, display=code.meaning)


def concept(*concepts: Code, text: str | None = None) -> CodeableConcept:
    return CodeableConcept(coding=[coding(c) for c in concepts], text=text)


def quantity(value: float, unit: Code) -> Quantity:
    """A UCUM quantity: EHRs convert and chart these, unlike free-text units."""
    # fhir.resources validates with pydantic, which takes the float for its Decimal field.
    return Quantity(value=value, unit=unit.meaning, system=codes.FHIR_SYSTEMS["UCUM"],  # type: ignore[arg-type]
                    code=unit.value)


def absent(reason: str | None) -> CodeableConcept:
    """dataAbsentReason "not-applicable" (the input cannot support the value), with why in words."""
    return CodeableConcept(coding=[Coding(system=DATA_ABSENT_REASON_SYSTEM, code="not-applicable")],
                           text=reason or "not computable")


_VALUE_FIELDS: dict[type, str] = {
    Quantity: "valueQuantity", CodeableConcept: "valueCodeableConcept", int: "valueInteger", str: "valueString",
}


def value_fields(value: Any, reason: str | None = None) -> dict[str, Any]:
    """`value[x]` for a value, or dataAbsentReason when it is None: an absent value is never 0."""
    if value is None:
        return {"dataAbsentReason": absent(reason)}
    return {_VALUE_FIELDS[type(value)]: value}


def component(code: CodeableConcept, value: Any, reason: str | None = None) -> ObservationComponent:
    return ObservationComponent(code=code, **value_fields(value, reason))


def metric_component(code: CodeableConcept, metric: Metric, unit: Code) -> ObservationComponent:
    return component(code, None if metric.value is None else quantity(metric.value, unit), metric.reason)


def cutoff_component(patient: PatientResult) -> ObservationComponent:
    """The applied cut-off, by name and value (docs/method.md section 3: outputs say which applied)."""
    return component(concept(codes.CUTOFF, text=f"{codes.CUTOFF.meaning} ({patient.cutoff_name})"),
                     quantity(patient.cutoff_value, codes.UNIT_SCORE))


def notes(result: StudyResult, *lines: str) -> list[Annotation]:
    """What a reader must know next to a result: what it is for and how far to trust the signature."""
    signature = (f"CD8 radiomics signature {codes.signature_label(result.provenance)}; "
                 f"cut-off {codes.cutoff_label(result.patient)}.")
    return [Annotation(text=text) for text in (*lines, signature, codes.DECISION_SUPPORT_NOTICE)]


def observation(context: StudyContext, key: ResourceKey, **content: Any) -> Observation:
    """The parts every Observation shares (identifier, status, category imaging, subject, time,
    the study and SR it derives from, the Device); `content` adds the rest."""
    return Observation(
        identifier=[key.identifier()],
        status=context.status,
        category=[CodeableConcept(coding=[Coding(system=OBSERVATION_CATEGORY_SYSTEM, code="imaging",
                                                 display="Imaging")])],
        subject=context.subject,
        effectiveDateTime=context.effective,  # type: ignore[arg-type]  # a FHIR dateTime string, parsed by pydantic
        derivedFrom=[context.study, context.sr],
        device=context.device,
        **content,
    )


def body_site(location_class: str) -> CodeableConcept:
    """SNOMED CT site when the class names one; the class in words always."""
    return _site(codes.finding_site(location_class), location_class)


def lesion_body_site(lesion: LesionResult) -> CodeableConcept:
    """The lesion's bodySite: the same coded site as the SR's finding site
    (codes.lesion_finding_site: the SEG segment's anatomic region, else the location class's
    body structure); the location class in words always."""
    return _site(codes.lesion_finding_site(lesion), lesion.location_class)


def _site(site: Code | None, location_class: str) -> CodeableConcept:
    """A site whose coding scheme has no FHIR system (a private scheme of the SEG's author) is
    left uncoded rather than sent with a made-up system; the SR still carries it."""
    if site is None or site.scheme_designator not in codes.FHIR_SYSTEMS:
        return CodeableConcept(text=location_class)
    return CodeableConcept(coding=[coding(site)], text=location_class)
