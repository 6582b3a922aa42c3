"""The FHIR R4 transaction Bundle: its shape (biomarker groups per lesion under a group, the
patient level, the report), that its values and absences are faithful to the result, that every
reference resolves, that re-sends are conditional updates with identical bytes, and that an
independent validator (Medplum, official R4 StructureDefinitions, mCODE's TumorSize for the
tumour size) finds nothing wrong with it.

Expected values come from the synthetic StudyResult (tests/support).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation, ObservationComponent

from service.model import CodedConcept, LesionResult, StudyResult
from service.outputs import codes
from service.outputs.fhir import FhirSettings, build_bundle
from tests.support.fhir_validation import assert_valid_fhir, validation_issues
from tests.support.synthetic_results import make_study_result
from tests.support.written_outputs import write_bundle

SR_UID = "2.25.123456789"
PATIENT_SYSTEM = "urn:dicom:patient-id"
UCUM = "http://unitsofmeasure.org"
MCODE_TUMOR_SIZE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-tumor-size"


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


def _full_url(bundle: Bundle, resource: Any) -> str:
    (url,) = [e.fullUrl for e in bundle.entry if e.resource is resource]
    return url


def _codes(resource: Any) -> set[str]:
    return {c.code for c in resource.code.coding or []}


def _observations(bundle: Bundle, code) -> list[Observation]:
    return [o for o in _resources(bundle, "Observation") if code.value in _codes(o)]


def _is_about(observation: Observation, lesion: LesionResult) -> bool:
    """Focus = the lesion by its DICOM Tracking UID (a logical BodyStructure reference)."""
    return bool(observation.focus) and observation.focus[0].identifier.value == f"urn:oid:{lesion.tracking_uid}"


def _lesion_observation(bundle: Bundle, lesion: LesionResult, code) -> Observation:
    (observation,) = [o for o in _observations(bundle, code) if _is_about(o, lesion)]
    return observation


def _component(observation: Observation, code) -> ObservationComponent:
    matches = [c for c in observation.component or [] if any(x.code == code.value for x in c.code.coding or [])]
    assert len(matches) == 1, code
    return matches[0]


def _quantity(component: ObservationComponent) -> tuple[float, str, str]:
    q = component.valueQuantity
    return float(q.value), q.code, q.system


def test_bundle_round_trips_through_json(result: StudyResult) -> None:
    built = build_bundle(result, sr_sop_instance_uid=SR_UID)
    parsed = Bundle.model_validate_json(built.model_dump_json())
    assert parsed.type == "transaction"
    assert parsed.model_dump_json() == built.model_dump_json()


def test_resource_counts(bundle: Bundle, result: StudyResult) -> None:
    """Per lesion: size, CD8 score, features per region, group; the patient level adds
    distribution, burden, two flagged lesions, risk group and the panel."""
    per_lesion = sum(3 + len(lesion.features) for lesion in result.lesions)
    assert len(_resources(bundle, "Observation")) == per_lesion + 6
    assert len(_resources(bundle, "DiagnosticReport")) == 1
    assert len(_resources(bundle, "Device")) == 1
    assert len(bundle.entry) == per_lesion + 6 + 2


def test_every_entry_is_a_conditional_update_on_its_identifier(bundle: Bundle) -> None:
    for entry in bundle.entry:
        (identifier,) = entry.resource.identifier
        assert identifier.system == codes.RCDS_IDENTIFIER_SYSTEM
        assert entry.request.method == "PUT"
        assert entry.request.url == (f"{entry.resource.get_resource_type()}?identifier="
                                     f"{codes.RCDS_IDENTIFIER_SYSTEM}|{identifier.value}")
        assert entry.fullUrl.startswith("urn:uuid:")
    assert len({e.fullUrl for e in bundle.entry}) == len(bundle.entry)
    assert len({e.request.url for e in bundle.entry}) == len(bundle.entry)


def test_subject_and_derivation_of_every_observation(bundle: Bundle, result: StudyResult) -> None:
    patient_reference = f"Patient?identifier={PATIENT_SYSTEM}|{result.study.patient_id}"
    study = f"urn:oid:{result.study.study_instance_uid}"
    for observation in _resources(bundle, "Observation"):
        assert observation.status == "preliminary"  # no one has verified it (test_a_site_may_call_the_results_final)
        assert observation.category[0].coding[0].code == "imaging"
        assert observation.subject.reference == patient_reference
        derived = {(r.type, r.identifier.system, r.identifier.value) for r in observation.derivedFrom}
        assert derived == {("ImagingStudy", "urn:dicom:uid", study),
                           ("DocumentReference", "urn:dicom:uid", f"urn:oid:{SR_UID}")}
    (report,) = _resources(bundle, "DiagnosticReport")
    assert report.subject.reference == patient_reference
    assert report.imagingStudy[0].identifier.value == study


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for value in node.values() for r in _references(value)]
    if isinstance(node, list):
        return [r for value in node for r in _references(value)]
    return []


def test_every_in_bundle_reference_resolves(bundle: Bundle) -> None:
    full_urls = {e.fullUrl for e in bundle.entry}
    references = _references(json.loads(bundle.model_dump_json()))
    in_bundle = [r for r in references if r.startswith("urn:uuid:")]
    assert set(in_bundle) <= full_urls
    assert {r for r in references if not r.startswith("urn:uuid:")} == {
        f"Patient?identifier={PATIENT_SYSTEM}|{make_study_result(3)[0].study.patient_id}"}
    (device,) = [e.fullUrl for e in bundle.entry if e.resource.get_resource_type() == "Device"]
    assert all(o.device.reference == device for o in _resources(bundle, "Observation"))


def test_every_lesion_observation_focuses_on_its_tracking_uid(bundle: Bundle, result: StudyResult) -> None:
    for lesion in result.lesions:
        about = [o for o in _resources(bundle, "Observation") if _is_about(o, lesion)]
        flagged = lesion.tracking_uid in (result.patient.least_infiltrated_tracking_uid,
                                          result.patient.highest_score_tracking_uid)
        both = result.patient.least_infiltrated_tracking_uid == result.patient.highest_score_tracking_uid == lesion.tracking_uid
        assert len(about) == 3 + len(lesion.features) + flagged + both
        assert all(o.focus[0].type == "BodyStructure" and o.focus[0].identifier.system == "urn:dicom:uid"
                   and o.focus[0].display == lesion.tracking_id for o in about)


def test_tumour_size_is_mcode_style(bundle: Bundle, result: StudyResult) -> None:
    for lesion in result.lesions:
        size = _lesion_observation(bundle, lesion, codes.LOINC_TUMOR_SIZE)
        assert {c.system for c in size.code.coding} == {"http://loinc.org"}
        assert _quantity(_component(size, codes.LOINC_TUMOR_LONGEST_DIMENSION)) == (
            pytest.approx(lesion.longest_axial_diameter_mm), "mm", UCUM)
        assert _quantity(_component(size, codes.LOINC_TUMOR_ADDITIONAL_DIMENSION)) == (
            pytest.approx(lesion.short_axis_mm), "mm", UCUM)
        assert _quantity(_component(size, codes.MAX_3D_DIAMETER)) == (pytest.approx(lesion.max_3d_diameter_mm), "mm", UCUM)
        assert _quantity(_component(size, codes.VOLUME)) == (pytest.approx(lesion.volume_ml), "mL", UCUM)
        assert size.bodySite.text == lesion.location_class
        assert size.meta.profile == [MCODE_TUMOR_SIZE]
        assert [(c.system, c.code) for c in size.method.coding] == [("http://snomed.info/sct", "77477000")]


def _lesion_observations(bundle: Bundle, lesion: LesionResult) -> list[Observation]:
    return [o for o in _resources(bundle, "Observation") if _is_about(o, lesion)]


# DICOM CID 4 "Anatomic Region" (SNOMED CT) for the location classes of the synthetic lesions.
CID4 = {"lung": "39607008", "liver": "10200004", "adenopathy": "59441001", "head_and_neck": "774007"}


def test_every_lesion_observation_carries_the_location_class_site(bundle: Bundle, result: StudyResult) -> None:
    """Without a segment's own region the site is the location class's (CID 4); "other" names none."""
    for lesion in result.lesions:
        expected = ([("http://snomed.info/sct", CID4[lesion.location_class])]
                    if lesion.location_class != "other" else [])
        for observation in _lesion_observations(bundle, lesion):
            assert [(c.system, c.code) for c in observation.bodySite.coding or []] == expected
            assert observation.bodySite.text == lesion.location_class


@pytest.mark.parametrize("region, coding", [
    (CodedConcept("72481006", "SCT", "Right lobe of liver"), [("http://snomed.info/sct", "72481006")]),
    (CodedConcept("T-62000", "SRT", "Liver"), [("http://snomed.info/srt", "T-62000")]),
    (CodedConcept("LIV1", "99LOCAL", "Liver, local code"), []),
], ids=["SNOMED CT", "SNOMED RT", "private scheme"])
def test_a_segments_anatomic_region_is_the_body_site(result: StudyResult, region: CodedConcept, coding) -> None:
    """The segment's own code wins over the location class, as the SR's finding site does; a
    private scheme has no FHIR system, so the site is left uncoded (the class in words stays)."""
    scored = next(x for x in result.lesions if x.features)
    lesion = dataclasses.replace(scored, anatomic_region=region)
    changed = dataclasses.replace(result, lesions=[lesion if x is scored else x for x in result.lesions])
    about = _lesion_observations(build_bundle(changed, sr_sop_instance_uid=SR_UID), lesion)
    assert len(about) >= 3 + len(lesion.features)  # size, score, features per region, group
    for observation in about:
        assert [(c.system, c.code) for c in observation.bodySite.coding or []] == coding
        assert observation.bodySite.text == lesion.location_class


def test_scored_lesion_has_score_class_cutoff_status_and_terms(bundle: Bundle, result: StudyResult) -> None:
    for lesion in (x for x in result.lesions if x.score is not None):
        score = _lesion_observation(bundle, lesion, codes.CD8_SCORE)
        assert (float(score.valueQuantity.value), score.valueQuantity.code) == (pytest.approx(lesion.score), "{score}")
        expected_class = codes.SCORE_CLASSES[lesion.score_class].value
        assert score.interpretation[0].coding[0].code == expected_class
        assert _component(score, codes.CD8_SCORE_CLASS).valueCodeableConcept.coding[0].code == expected_class
        assert float(_component(score, codes.CUTOFF).valueQuantity.value) == result.patient.cutoff_value
        assert "uncalibrated - research use only" in _component(score, codes.SIGNATURE_STATUS).valueString
        terms = {c.code.text.removeprefix("CD8 radiomics score term "): float(c.valueQuantity.value)
                 for c in score.component if c.code.coding[0].code == codes.CD8_SCORE_TERM.value}
        assert terms == pytest.approx(lesion.contributions) and terms


def test_not_computable_values_carry_data_absent_reason(bundle: Bundle, result: StudyResult) -> None:
    (lesion,) = [x for x in result.lesions if x.score is None]
    score = _lesion_observation(bundle, lesion, codes.CD8_SCORE)
    assert score.valueQuantity is None and score.interpretation is None
    assert score.dataAbsentReason.coding[0].code == "not-applicable"
    assert score.dataAbsentReason.text == lesion.not_computable
    assert _component(score, codes.CD8_SCORE_CLASS).dataAbsentReason.text == lesion.not_computable
    assert not [o for o in _observations(bundle, codes.RADIOMICS_FEATURES) if _is_about(o, lesion)]
    (distribution,) = _observations(bundle, codes.SCORE_DISTRIBUTION)
    for key, metric in result.patient.score_stats.items():
        component = _component(distribution, codes.SCORE_STATISTICS[key][1])
        if metric.value is None:
            assert component.valueQuantity is None and component.dataAbsentReason.text == metric.reason
        else:
            assert float(component.valueQuantity.value) == pytest.approx(metric.value)


def test_features_are_coded_with_ibsi_identifiers_per_region(bundle: Bundle, result: StudyResult) -> None:
    """stat_min is IBSI 1GSF in HU, SRHGE GD3A and SRLGE HTZT (dimensionless); the region is the
    method; a pyradiomics-only feature has no IBSI identifier and is named in a note instead."""
    expected_codes = {"stat_min": ("1GSF", "[hnsf'U]"), "rlm_srhge_3D_avg": ("GD3A", "1"),
                      "rlm_srlge_3D_avg": ("HTZT", "1")}
    for lesion in (x for x in result.lesions if x.features):
        for region, values in lesion.features.items():
            (features,) = [o for o in _observations(bundle, codes.RADIOMICS_FEATURES)
                           if _is_about(o, lesion) and o.method.coding[0].code == f"RGN{region.upper()}"]
            coded = {c.code.text: (c.code.coding[0].system, c.code.coding[0].code, c.valueQuantity.code,
                                   float(c.valueQuantity.value)) for c in features.component}
            ibsi = {tag: value for tag, value in values.items() if tag in expected_codes}
            assert coded == {tag: (codes.IBSI_FHIR_SYSTEM, *expected_codes[tag], pytest.approx(value))
                             for tag, value in ibsi.items()}
            uncoded = set(values) - set(ibsi)
            assert all(any(tag in n.text for n in features.note) for tag in uncoded)


def test_lesion_group_has_its_biomarkers_as_members(bundle: Bundle, result: StudyResult) -> None:
    for lesion in result.lesions:
        group = _lesion_observation(bundle, lesion, codes.MEASUREMENT_GROUP)
        members = {m.reference for m in group.hasMember}
        expected = {_full_url(bundle, o) for o in _resources(bundle, "Observation")
                    if o is not group and _is_about(o, lesion) and not _codes(o) & {codes.LEAST_INFILTRATED_LESION.value, codes.HIGHEST_SCORE_LESION.value}}
        assert members == expected and len(members) == 2 + len(lesion.features)
        candidacies = {c.valueCodeableConcept.coding[0].code for c in group.component
                       if c.code.coding[0].code == codes.RT_TARGET_CANDIDATE.value}
        assert candidacies == {c.value for c in codes.candidate_codes(result.patient, lesion)}


def test_patient_level(bundle: Bundle, result: StudyResult) -> None:
    patient = result.patient
    (panel,) = _observations(bundle, codes.PATIENT_BIOMARKERS)
    (risk,) = _observations(bundle, codes.RISK_GROUP)
    assert risk.valueCodeableConcept.coding[0].code == codes.RISK_GROUPS[patient.risk_group].value
    (burden,) = _observations(bundle, codes.TUMOUR_BURDEN)
    assert float(burden.valueQuantity.value) == pytest.approx(patient.total_volume_ml)
    assert _component(burden, codes.N_ORGANS).valueInteger == len(patient.organs_involved)
    (least,) = _observations(bundle, codes.LEAST_INFILTRATED_LESION)
    (lesion,) = [x for x in result.lesions if x.tracking_uid == patient.least_infiltrated_tracking_uid]
    assert _is_about(least, lesion)
    assert lesion.tracking_id in least.valueString
    assert _component(least, codes.RT_TARGET_CANDIDATE).valueCodeableConcept.coding[0].code == codes.SBRT_CANDIDATE.value
    groups = _observations(bundle, codes.MEASUREMENT_GROUP)
    patient_level = [_observations(bundle, c)[0] for c in (codes.SCORE_DISTRIBUTION, codes.TUMOUR_BURDEN,
                     codes.LEAST_INFILTRATED_LESION, codes.HIGHEST_SCORE_LESION, codes.RISK_GROUP)]
    assert [m.reference for m in panel.hasMember] == [_full_url(bundle, o) for o in patient_level + groups]


def test_report_groups_every_observation_and_reads_as_a_summary(bundle: Bundle) -> None:
    (report,) = _resources(bundle, "DiagnosticReport")
    assert report.status == "preliminary"
    assert {c.code for c in report.category[0].coding} == {"RAD", "LP29684-5"}
    assert {r.reference for r in report.result} == {_full_url(bundle, o) for o in _resources(bundle, "Observation")}
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


def test_rescoring_keeps_every_resource_identity(result: StudyResult) -> None:
    """A re-scored study (new SR, other values) updates the same resources: same identifiers."""
    first = build_bundle(result, sr_sop_instance_uid=SR_UID)
    changed = dataclasses.replace(result, lesions=[dataclasses.replace(x, volume_ml=x.volume_ml + 1) for x in result.lesions])
    again = build_bundle(changed, sr_sop_instance_uid="2.25.987654321")
    assert [e.request.url for e in again.entry] == [e.request.url for e in first.entry]
    assert first.model_dump_json() != again.model_dump_json()


def test_patient_identifier_is_escaped_in_the_conditional_reference(result: StudyResult) -> None:
    odd = dataclasses.replace(result, study=dataclasses.replace(result.study, patient_id="A|B C"))
    bundle = build_bundle(odd, sr_sop_instance_uid=SR_UID, settings=FhirSettings(patient_identifier_system="urn:x"))
    (report,) = _resources(bundle, "DiagnosticReport")
    assert report.subject.reference == "Patient?identifier=urn:x|A%5C|B%20C"


@pytest.mark.external
@pytest.mark.parametrize("n_lesions, source", [(3, "RTSTRUCT"), (5, "SEG"), (1, "RTSTRUCT"), (0, "RTSTRUCT")])
def test_bundles_validate_against_the_official_r4_definitions(tmp_path: Path, n_lesions: int, source: str) -> None:
    """Medplum's validator, not fhir.resources: scored and unscored lesions, SEG and RTSTRUCT,
    a single not-computable lesion, and no lesion at all."""
    result, _ = make_study_result(n_lesions, source)
    assert_valid_fhir(write_bundle(build_bundle(result, sr_sop_instance_uid=SR_UID), tmp_path))


@pytest.mark.external
def test_the_validator_finds_what_fhir_resources_would_let_through(tmp_path: Path, result: StudyResult) -> None:
    """The validator is not a rubber stamp: an element R4 does not have (R5's bodyStructure) and
    a value together with a dataAbsentReason (invariant obs-6) are both reported."""
    data = json.loads(build_bundle(result, sr_sop_instance_uid=SR_UID).model_dump_json())
    observations = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"]
    observations[0]["bodyStructure"] = {"reference": "BodyStructure/x"}
    observations[1]["valueString"] = "also a value"
    observations[1]["dataAbsentReason"] = {"text": "and absent"}
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    issues = "\n".join(validation_issues([broken])[str(broken)])
    assert "bodyStructure" in issues
    assert "obs-6" in issues


@pytest.mark.external
def test_the_validator_checks_the_declared_mcode_profile(tmp_path: Path) -> None:
    """Against mCODE TumorSize, not only R4: a tumour size without its longest dimension (the
    profile's required slice), one with a second focus (the profile allows one) and one whose
    code is not LOINC 21889-1 are each rejected, though R4 itself allows all three; a misspelt
    profile is reported, not skipped."""
    result, _ = make_study_result(4)
    data = json.loads(build_bundle(result, sr_sop_instance_uid=SR_UID).model_dump_json())
    sizes = [e["resource"] for e in data["entry"] if e["resource"].get("meta", {}).get("profile") == [MCODE_TUMOR_SIZE]]
    assert len(sizes) == len(result.lesions) == 4
    sizes[0]["component"] = [c for c in sizes[0]["component"]
                             if codes.LOINC_TUMOR_LONGEST_DIMENSION.value not in {x["code"] for x in c["code"]["coding"]}]
    sizes[1]["focus"] = sizes[1]["focus"] * 2
    sizes[2]["code"]["coding"] = [{"system": "http://loinc.org", "code": "21888-3"}]
    sizes[3]["meta"]["profile"] = [MCODE_TUMOR_SIZE.replace("tumor", "tumour")]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    errors = [issue for issue in validation_issues([broken])[str(broken)] if issue.startswith("error")]
    at = [f"@ entry[{[e['resource'] for e in data['entry']].index(size)}] " for size in sizes]
    assert any("tumorLongestDimension" in issue and f"{at[0]}({MCODE_TUMOR_SIZE})" in issue for issue in errors)
    assert any(f"{at[1]}({MCODE_TUMOR_SIZE}) Observation.focus" in issue for issue in errors)
    assert any(f"{at[2]}({MCODE_TUMOR_SIZE}) Observation.code" in issue for issue in errors)
    assert any("unknown profile" in issue and f"{at[3]}meta.profile" in issue for issue in errors)
    # R4 alone finds nothing wrong with any of them: what was rejected, the profile rejected.
    assert all(f"({MCODE_TUMOR_SIZE})" in issue or "unknown profile" in issue for issue in errors)


@pytest.mark.external  # the Bundle goes through the FHIR validator
def test_a_feature_that_is_not_a_finite_number_is_named_not_sent(tmp_path: Path, result: StudyResult) -> None:
    """A feature without a value (NaN) is left out and named with the reason, and the Bundle still builds."""
    scored = next(x for x in result.lesions if x.features)
    odd = dataclasses.replace(scored, features={**scored.features, "core": {**scored.features["core"],
                                                                             "stat_min": float("nan")}})
    changed = dataclasses.replace(result, lesions=[odd if x is scored else x for x in result.lesions])
    bundle = build_bundle(changed, sr_sop_instance_uid=SR_UID)
    (core,) = [o for o in _observations(bundle, codes.RADIOMICS_FEATURES)
               if _is_about(o, odd) and o.method.coding[0].code == "RGNCORE"]
    assert "stat_min" not in {c.code.text for c in core.component}
    assert any("Not computable: stat_min (the engine's formula has no value for this region)" in n.text
               for n in core.note)
    assert_valid_fhir(write_bundle(bundle, tmp_path))


def test_a_study_without_patient_id_gets_no_bundle(result: StudyResult) -> None:
    """`Patient?identifier=<system>|` (an empty PatientID) would match every Patient with an
    identifier in that system: no Bundle is built for such a study (the pipeline's test checks
    that its SR and page say why and that the EHR is sent nothing)."""
    anonymous = dataclasses.replace(result, study=dataclasses.replace(result.study, patient_id="  "))
    with pytest.raises(ValueError, match="^the study has no PatientID: no FHIR Bundle was written"):
        build_bundle(anonymous, sr_sop_instance_uid=SR_UID)


def test_the_bundle_is_identified_by_the_srs_uid_as_a_dicom_uid(bundle: Bundle) -> None:
    """docs/fhir.md: DICOM UIDs under urn:dicom:uid as urn:oid:<uid>; rcds-id holds only our
    UUIDv5 business identifiers."""
    assert (bundle.identifier.system, bundle.identifier.value) == ("urn:dicom:uid", f"urn:oid:{SR_UID}")


def test_a_site_may_call_the_results_final(result: StudyResult) -> None:
    """fhir_result_status final (for an EHR that hides preliminary reports) applies to the report
    and to every Observation alike."""
    bundle = build_bundle(result, sr_sop_instance_uid=SR_UID, settings=FhirSettings(result_status="final"))
    statuses = {r.status for r in (*_resources(bundle, "Observation"), *_resources(bundle, "DiagnosticReport"))}
    assert statuses == {"final"}


@pytest.mark.external  # the Bundle goes through the FHIR validator
def test_a_bundle_of_final_results_is_valid_too(result: StudyResult, tmp_path: Path) -> None:
    assert_valid_fhir(write_bundle(build_bundle(result, sr_sop_instance_uid=SR_UID,
                                                settings=FhirSettings(result_status="final")), tmp_path))
