"""The FHIR R4 transaction Bundle: parses back, references resolve, values and absences are
faithful, re-sends are conditional updates, and identical input gives identical bytes.

Expected values come from the synthetic StudyResult (tests/support).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation, ObservationComponent

from service.model import StudyResult
from service.outputs import codes
from service.outputs.fhir import build_bundle, write_bundle
from tests.support.synthetic_results import make_study_result

SR_UID = "2.25.123456789"
PATIENT_SYSTEM = "urn:dicom:patient-id"


@pytest.fixture
def result() -> StudyResult:
    return make_study_result(3)[0]


@pytest.fixture
def bundle(result: StudyResult) -> Bundle:
    """The Bundle as an EHR receives it: serialised to JSON and parsed back."""
    built = build_bundle(result, sr_sop_instance_uid=SR_UID)
    return Bundle.model_validate_json(built.model_dump_json())


def _resources(bundle: Bundle, resource_type: str) -> list:
    return [e.resource for e in bundle.entry if e.resource.get_resource_type() == resource_type]


def _lesion_observation(bundle: Bundle, tracking_uid: str) -> Observation:
    matches = [
        o
        for o in _resources(bundle, "Observation")
        if o.focus and o.focus[0].identifier.value == f"urn:oid:{tracking_uid}"
    ]
    assert len(matches) == 1
    return matches[0]


def _patient_observation(bundle: Bundle) -> Observation:
    (observation,) = [
        o
        for o in _resources(bundle, "Observation")
        if o.code.coding[0].code == codes.PATIENT_BIOMARKERS.value
    ]
    return observation


def _component(observation: Observation, code) -> ObservationComponent:
    matches = [
        c for c in observation.component if any(x.code == code.value for x in c.code.coding)
    ]
    assert len(matches) == 1, code
    return matches[0]


def test_bundle_round_trips_through_json(result: StudyResult) -> None:
    built = build_bundle(result, sr_sop_instance_uid=SR_UID)
    parsed = Bundle.model_validate_json(built.model_dump_json())
    assert parsed.type == "transaction"
    assert parsed.model_dump_json() == built.model_dump_json()


def test_resource_counts(bundle: Bundle, result: StudyResult) -> None:
    assert len(_resources(bundle, "Observation")) == len(result.lesions) + 1
    assert len(_resources(bundle, "DiagnosticReport")) == 1
    assert len(_resources(bundle, "Device")) == 1
    assert len(bundle.entry) == len(result.lesions) + 3


def test_every_entry_is_a_conditional_update_on_its_identifier(bundle: Bundle) -> None:
    for entry in bundle.entry:
        (identifier,) = entry.resource.identifier
        assert identifier.system == codes.RCDS_IDENTIFIER_SYSTEM
        assert entry.request.method == "PUT"
        assert entry.request.url == (
            f"{entry.resource.get_resource_type()}?identifier="
            f"{codes.RCDS_IDENTIFIER_SYSTEM}|{identifier.value}"
        )
        assert entry.fullUrl.startswith("urn:uuid:")
    assert len({e.fullUrl for e in bundle.entry}) == len(bundle.entry)


def test_subject_and_derivation_of_every_observation(bundle: Bundle, result: StudyResult) -> None:
    patient_reference = f"Patient?identifier={PATIENT_SYSTEM}|{result.study.patient_id}"
    study = f"urn:oid:{result.study.study_instance_uid}"
    for observation in _resources(bundle, "Observation"):
        assert observation.status == "final"
        assert observation.category[0].coding[0].code == "imaging"
        assert observation.subject.reference == patient_reference
        derived = {
            (r.type, r.identifier.system, r.identifier.value) for r in observation.derivedFrom
        }
        assert ("ImagingStudy", "urn:dicom:uid", study) in derived
        assert ("DocumentReference", "urn:dicom:uid", f"urn:oid:{SR_UID}") in derived
    (report,) = _resources(bundle, "DiagnosticReport")
    assert report.subject.reference == patient_reference


def test_in_bundle_references_resolve(bundle: Bundle) -> None:
    full_urls = {e.fullUrl for e in bundle.entry}
    (device,) = [e.fullUrl for e in bundle.entry if e.resource.get_resource_type() == "Device"]
    (report,) = _resources(bundle, "DiagnosticReport")
    observations = _resources(bundle, "Observation")
    assert all(o.device.reference == device for o in observations)
    assert {r.reference for r in report.result} == {
        e.fullUrl for e in bundle.entry if e.resource.get_resource_type() == "Observation"
    }
    assert {m.reference for m in _patient_observation(bundle).hasMember} <= full_urls


def test_lesion_values_match_the_input(bundle: Bundle, result: StudyResult) -> None:
    for lesion in result.lesions:
        observation = _lesion_observation(bundle, lesion.tracking_uid)
        expected = [
            (codes.VOLUME, lesion.volume_ml, "mL"),
            (codes.LOINC_TUMOR_LONGEST_DIMENSION, lesion.longest_axial_diameter_mm, "mm"),
            (codes.SHORT_AXIS, lesion.short_axis_mm, "mm"),
            (codes.MAX_3D_DIAMETER, lesion.max_3d_diameter_mm, "mm"),
        ]
        for code, value, unit in expected:
            quantity = _component(observation, code).valueQuantity
            assert (float(quantity.value), quantity.code, quantity.system) == (
                pytest.approx(value),
                unit,
                "http://unitsofmeasure.org",
            )
        site = codes.FINDING_SITES.get(lesion.location_class)
        assert observation.bodySite.text == lesion.location_class
        assert [c.code for c in observation.bodySite.coding or []] == ([site.value] if site else [])


def test_scored_lesion_has_score_and_class(bundle: Bundle, result: StudyResult) -> None:
    for lesion in (x for x in result.lesions if x.score is not None):
        observation = _lesion_observation(bundle, lesion.tracking_uid)
        score = _component(observation, codes.CD8_SCORE)
        assert float(score.valueQuantity.value) == pytest.approx(lesion.score)
        assert score.valueQuantity.code == "{score}"
        score_class = _component(observation, codes.CD8_SCORE_CLASS).valueCodeableConcept
        assert score_class.coding[0].code == codes.SCORE_CLASSES[lesion.score_class].value
        terms = {
            c.code.text.removeprefix("CD8 radiomics score term "): float(c.valueQuantity.value)
            for c in observation.component if c.code.coding[0].code == codes.CD8_SCORE_TERM.value
        }
        assert terms == pytest.approx(lesion.contributions) and terms


def test_not_computable_values_carry_data_absent_reason(
    bundle: Bundle, result: StudyResult
) -> None:
    (lesion,) = [x for x in result.lesions if x.score is None]
    score = _component(_lesion_observation(bundle, lesion.tracking_uid), codes.CD8_SCORE)
    assert score.valueQuantity is None
    assert score.dataAbsentReason.coding[0].code == "not-applicable"
    assert score.dataAbsentReason.text == lesion.not_computable
    patient = _patient_observation(bundle)
    for key, metric in result.patient.score_stats.items():
        component = _component(patient, codes.SCORE_STATISTICS[key][1])
        if metric.value is None:
            assert component.valueQuantity is None
            assert component.dataAbsentReason.text == metric.reason
        else:
            assert float(component.valueQuantity.value) == pytest.approx(metric.value)


def test_patient_level_observation(bundle: Bundle, result: StudyResult) -> None:
    patient = result.patient
    observation = _patient_observation(bundle)
    assert observation.valueCodeableConcept.coding[0].code == (
        codes.RISK_GROUPS[patient.risk_group].value
    )
    assert _component(observation, codes.N_LESIONS).valueInteger == patient.n_lesions
    total = _component(observation, codes.TOTAL_VOLUME).valueQuantity
    assert float(total.value) == pytest.approx(patient.total_volume_ml)
    assert len(observation.hasMember) == len(result.lesions)
    least = _component(observation, codes.LEAST_INFILTRATED_LESION).valueString
    (lesion,) = [
        x for x in result.lesions if x.tracking_uid == patient.least_infiltrated_tracking_uid
    ]
    assert lesion.tracking_id in least


def test_report_and_device_tell_the_reader_what_this_is(bundle: Bundle) -> None:
    (report,) = _resources(bundle, "DiagnosticReport")
    assert report.status == "final"
    assert {c.code for c in report.category[0].coding} == {"RAD", "LP29684-5"}
    assert "tumour board" in report.conclusion
    assert "uncalibrated - research use only" in report.conclusion
    (device,) = _resources(bundle, "Device")
    versions = {v.type.text: v.value for v in device.version}
    assert versions["signature cd8-radiomics"] == "0.1"
    assert versions["signature status"] == "uncalibrated - research use only"


def test_identical_input_gives_identical_bytes(tmp_path: Path) -> None:
    first = build_bundle(make_study_result(3)[0], sr_sop_instance_uid=SR_UID)
    again = build_bundle(make_study_result(3)[0], sr_sop_instance_uid=SR_UID)
    assert first.model_dump_json() == again.model_dump_json()
    path_a = write_bundle(first, tmp_path / "a")
    path_b = write_bundle(again, tmp_path / "b")
    assert path_a.name == f"{SR_UID}.fhir.json"
    assert path_a.read_bytes() == path_b.read_bytes()
    assert [p.name for p in path_a.parent.iterdir()] == [path_a.name]


def test_patient_identifier_is_escaped_in_the_conditional_reference(result: StudyResult) -> None:
    odd = dataclasses.replace(result, study=dataclasses.replace(result.study, patient_id="A|B C"))
    bundle = build_bundle(odd, sr_sop_instance_uid=SR_UID, patient_identifier_system="urn:x")
    (report,) = _resources(bundle, "DiagnosticReport")
    assert report.subject.reference == "Patient?identifier=urn:x|A%5C|B%20C"
