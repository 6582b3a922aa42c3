"""The EHR output: a FHIR R4 transaction Bundle of the study's imaging biomarkers.

Shape (after the HL7 "DICOM SR to FHIR Resource Mapping" guide as far as R4 allows, and mCODE's
TumorSize for lesion size; docs/fhir.md has the full mapping and where we depart from it):
- one Device: the algorithm, its version, signature id/version/status and engines;
- per lesion (service.outputs.fhir_lesion): one Observation per biomarker group (tumour size,
  CD8 score, radiomics features per region) and a group Observation (the TID 1411 measurement
  group) with them as hasMember, all with focus = the lesion's DICOM Tracking UID;
- the patient level (service.outputs.fhir_patient): score distribution, tumour burden,
  least-infiltrated and highest-score lesions, risk group, under a panel Observation;
- one DiagnosticReport (category imaging) grouping every Observation, with a conclusion a
  clinician can read, and the tumour-board summary PDF as its presentedForm when there is one
  (service.outputs.fhir_presented_form).

References that leave the Bundle are logical (by identifier), so the Bundle never depends on ids
the EHR assigned: the Patient by a conditional reference ("Patient?identifier=..."), the study
as ImagingStudy by Study Instance UID, and the SR as DocumentReference by SOP Instance UID (R4
has no resource for one DICOM instance; R5's ImagingSelection would be it). Every resource is a
conditional update on its own deterministic identifier (service.outputs.fhir_common): a re-sent
study updates, never duplicates, and identical input gives a byte-identical Bundle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device, DeviceDeviceName, DeviceVersion
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.reference import Reference

from service.comparison import Comparison
from service.config import Config
from service.model import StudyInfo, StudyResult
from service.outputs import codes
from service.outputs.fhir_change import associated_studies, lesion_change_entry
from service.outputs.fhir_common import (ResourceKey, StudyContext, concept, conditional_url, dicom_reference,
                                         dicom_uid_identifier)
from service.outputs.fhir_lesion import lesion_entries, lesion_key
from service.outputs.fhir_patient import patient_entries
from service.outputs.fhir_presented_form import pdf_attachment
from service.outputs.fhir_response import response_entries
from service.outputs.sr import MANUFACTURER

DIAGNOSTIC_SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0074"
_DEVICE_TYPE = "Imaging biomarker software (clinical decision support)"


@dataclass(frozen=True)
class FhirSettings:
    """What a site decides about the Bundle: the system its PatientIDs are in for the EHR, and
    the status of the report and its Observations (service.config.FHIR_RESULT_STATUSES).

    `preliminary` by default: no one has verified these results (the SR says UNVERIFIED, and
    response categories need a radiologist's confirmation), and FHIR's `final` means "verified
    by an authorized person". Some EHRs hide preliminary reports from the chart; such a site
    chooses `final` knowingly.

    The defaults are service.config's (a test holds them together): the builders' callers
    without a configuration (warm-up, tests) build what a default deployment sends."""

    patient_identifier_system: str = "urn:dicom:patient-id"
    result_status: str = "preliminary"

    @classmethod
    def from_config(cls, config: Config) -> FhirSettings:
        return cls(config.patient_identifier_system, config.fhir_result_status)


def build_bundle(result: StudyResult, *, sr_sop_instance_uid: str, settings: FhirSettings = FhirSettings(),
                 comparison: Comparison = Comparison(), summary_pdf: bytes | None = None) -> Bundle:
    """The transaction Bundle for a scored study whose SR has `sr_sop_instance_uid`; with a
    lesion-change Observation per compared lesion, the response Observations of a follow-up
    (service.outputs.fhir_response) and the prior studies on the report, and `summary_pdf` (the
    tumour-board page) as the report's presentedForm. Not for a study bundle_withheld names."""
    if (withheld := bundle_withheld(result.study)) is not None:
        raise ValueError(withheld)
    device_key = _device_key(result)
    context = StudyContext(
        result=result,
        subject=Reference(reference=conditional_url("Patient", settings.patient_identifier_system,
                                                    result.study.patient_id), type="Patient"),
        study=dicom_reference("ImagingStudy", result.study.study_instance_uid),
        sr=dicom_reference("DocumentReference", sr_sop_instance_uid),
        device=device_key.reference(),
        effective=_fhir_date(result.study.study_date),
        status=settings.result_status,
    )
    entries: list[BundleEntry] = [device_key.entry(_device(result, device_key))]
    lesion_groups, changes = [], []
    for lesion in result.lesions:
        group_key, lesion_part = lesion_entries(context, lesion)
        lesion_groups.append(group_key)
        entries += lesion_part
        if (change := comparison.lesions.get(lesion.tracking_uid)) is not None:
            entries.append(lesion_change_entry(context, lesion, change))
            changes.append(lesion_key(context.study_uid, lesion.tracking_uid, "change"))
    _, patient_part = patient_entries(context, lesion_groups)
    entries += patient_part
    if comparison.response is not None:
        entries += response_entries(context, comparison.response, changes)
    report_key = ResourceKey.derive("DiagnosticReport", result.study.study_instance_uid)
    observations = [e for e in entries if e.resource is not None and e.resource.get_resource_type() == "Observation"]
    report = _diagnostic_report(context, report_key, observations, comparison)
    if summary_pdf is not None:
        report.presentedForm = [pdf_attachment(summary_pdf, context.effective)]
    entries.append(report_key.entry(report))
    # The Bundle is the SR's FHIR form: identified by the SR's UID, as DICOM UIDs are (docs/fhir.md).
    return Bundle(type="transaction", identifier=dicom_uid_identifier(sr_sop_instance_uid), entry=entries)


def bundle_withheld(study: StudyInfo) -> str | None:
    """Why a study gets no FHIR Bundle, or None. Without a PatientID its subject would be
    `Patient?identifier=<system>|`, which matches every Patient with an identifier in that
    system: its results could be filed to another patient. (A Bundle without a subject is no
    answer: the mCODE tumour-size profile requires one, and the EHR could file it nowhere.)"""
    if not study.patient_id.strip():
        return ("the study has no PatientID: no FHIR Bundle was written, so these results reach no patient's "
                "record in the EHR")
    return None


def bundle_json(bundle: Bundle) -> bytes:
    """The Bundle as the file the EHR destination posts: indented JSON, UTF-8."""
    return bundle.model_dump_json(indent=2).encode("utf-8")


def _device_key(result: StudyResult) -> ResourceKey:
    """One Device per algorithm and signature version, shared by every study it scored."""
    p = result.provenance
    return ResourceKey.derive("Device", p.algorithm_name, p.algorithm_version, p.signature_id, p.signature_version)


def _fhir_date(dicom_date: str) -> str | None:
    """DICOM DA (YYYYMMDD) -> FHIR date; None when absent or malformed, never a guess.

    Date precision on purpose: a FHIR dateTime with a time needs a UTC offset, which DICOM
    Study Time does not carry.
    """
    if not re.fullmatch(r"\d{8}", dicom_date):
        return None
    return f"{dicom_date[:4]}-{dicom_date[4:6]}-{dicom_date[6:]}"


def _device(result: StudyResult, key: ResourceKey) -> Device:
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


def _diagnostic_report(context: StudyContext, key: ResourceKey, observations: list[BundleEntry],
                       comparison: Comparison) -> DiagnosticReport:
    """Groups the Observations; its conclusion is the summary a tumour board reads first."""
    risk_group = codes.lookup(codes.RISK_GROUPS, context.result.patient.risk_group, "risk group")
    return DiagnosticReport(
        extension=associated_studies(comparison),
        identifier=[key.identifier()],
        status=context.status,
        category=[CodeableConcept(coding=[
            Coding(system=DIAGNOSTIC_SERVICE_SYSTEM, code="RAD", display="Radiology"),
            Coding(system=codes.FHIR_SYSTEMS["LN"], code="LP29684-5", display="Radiology"),
        ], text="Imaging")],
        code=concept(codes.REPORT, text=codes.REPORT.meaning),
        subject=context.subject,
        effectiveDateTime=context.effective,  # type: ignore[arg-type]  # a FHIR dateTime string, parsed by pydantic
        imagingStudy=[context.study],
        result=[Reference(reference=entry.fullUrl, type="Observation") for entry in observations],
        conclusion="\n".join([*codes.summary_lines(context.result), *codes.response_lines(comparison.response),
                               *comparison.notes]),
        conclusionCode=[concept(risk_group)],
    )
