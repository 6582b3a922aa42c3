"""The TID 1500 SR: valid DICOM (dciodvfy, dsrdump), readable back, faithful, deterministic.

Expected values come from the synthetic StudyResult (tests/support), and reading back goes
through highdicom's public TID 1500 accessors, not through the builder's own helpers.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import Dataset
from pydicom.sr.coding import Code

from service.comparison import Comparison, LesionComparison
from service.model import LesionResult, Metric, StudyResult
from service.outputs import codes
from service.outputs import sr as sr_module
from service.scoring.degenerate import not_computable_reason
from service.outputs.sr import build_measurement_report
from service.sop_classes import RT_STRUCTURE_SET
from tests.support.external import require_tool
from tests.support.sr_document import assert_same_as_highdicoms_build, document_bytes
from tests.support.sr_groups import CORE, RING, lesion_groups, region_groups
from tests.support.synthetic_results import make_study_result
from tests.support.written_outputs import write_sr

REGION_IN_SPACE = hd.sr.CodedConcept("130488", "DCM", "Region In Space")


# Each source's SR is built, written and read back once per module: building and reading an SR
# is most of this file's time, and the tests only read them. A test that needs another result
# (rescored, another signature version) builds that one itself.
@dataclasses.dataclass(frozen=True)
class Built:
    result: StudyResult
    evidence: list[Dataset]
    evidence_before: list[Dataset]  # a copy taken before the build, to show it changed nothing
    sr: Dataset


@pytest.fixture(scope="module")
def built() -> Callable[[str], Built]:
    """The SR of make_study_result(3, source), built on first use."""
    cache: dict[str, Built] = {}

    def build(source: str) -> Built:
        if source not in cache:
            result, evidence = make_study_result(3, source)
            before = copy.deepcopy(evidence)
            cache[source] = Built(result, evidence, before, build_measurement_report(result, evidence))
        return cache[source]

    return build


@pytest.fixture(scope="module", params=["RTSTRUCT", "SEG"])
def source(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def written(source: str, built, tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    return built(source).result, write_sr(built(source).sr, tmp_path_factory.mktemp(f"sr-{source}"))


@pytest.fixture(scope="module")
def report(written: tuple[StudyResult, Path]) -> hd.sr.MeasurementReport:
    return hd.sr.srread(written[1]).content


def _group(report: hd.sr.MeasurementReport, lesion: LesionResult, region: str = CORE):
    (group,) = region_groups(report, region, tracking_uid=lesion.tracking_uid)
    return group


def _value(group, name) -> tuple[float, str]:
    (measurement,) = group.get_measurements(name=name)
    return measurement.value, measurement.unit.value


def _evaluations(group) -> set[tuple[str, str]]:
    return {(e.name.value, e.value.value) for e in group.get_qualitative_evaluations()}


@pytest.mark.external
def test_dciodvfy_reports_no_errors(written: tuple[StudyResult, Path]) -> None:
    run = subprocess.run(
        [require_tool("dciodvfy"), str(written[1])], capture_output=True, text=True, check=False
    )
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


@pytest.mark.external
def test_dsrdump_renders(written: tuple[StudyResult, Path]) -> None:
    run = subprocess.run(
        [require_tool("dsrdump"), str(written[1])], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "Imaging Measurement Report" in run.stdout


def test_file_is_named_by_sop_instance_uid_and_no_temp_file_is_left(
    written: tuple[StudyResult, Path],
) -> None:
    path = written[1]
    assert path.name == f"{hd.sr.srread(path).SOPInstanceUID}.dcm"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_core_group_per_lesion_and_a_ring_group_per_lesion_with_ring_features(
    written: tuple[StudyResult, Path], report: hd.sr.MeasurementReport
) -> None:
    """The region is the group's Measurement Method, so that a reader keeping the method per
    group (dcmqi) tells core from ring; both groups of a lesion are that lesion (one Tracking
    Identifier and UID), and each holds only its own region's features."""
    result = written[0]
    groups = report.get_volumetric_roi_measurement_groups()
    with_ring = [x for x in result.lesions if x.features.get("ring")]
    assert 0 < len(with_ring) < len(result.lesions)  # the synthetic study has a lesion without features
    assert len(groups) == len(result.lesions) + len(with_ring)
    core, ring = region_groups(report, CORE), region_groups(report, RING)
    assert [(g.tracking_uid, str(g.tracking_identifier)) for g in core] == [
        (x.tracking_uid, x.tracking_id) for x in result.lesions]
    assert [(g.tracking_uid, str(g.tracking_identifier)) for g in ring] == [
        (x.tracking_uid, x.tracking_id) for x in with_ring]
    for group, region in [*((g, CORE) for g in core), *((g, RING) for g in ring)]:
        assert {m.method.value for m in group.get_measurements() if m.method is not None} <= {region}
    for group in ring:  # the lesion's statements are in its core group; the ring's states its time point only
        assert {e.name.value for e in group.get_qualitative_evaluations()} == {"126072"}  # DCM Time Point Type


def test_lesion_values_and_units_match_the_input(
    written: tuple[StudyResult, Path], report: hd.sr.MeasurementReport
) -> None:
    for lesion in written[0].lesions:
        group = _group(report, lesion)
        assert _value(group, codes.VOLUME) == (pytest.approx(lesion.volume_ml), "mL")
        assert _value(group, codes.LONG_AXIS) == (
            pytest.approx(lesion.longest_axial_diameter_mm),
            "mm",
        )
        assert _value(group, codes.SHORT_AXIS) == (pytest.approx(lesion.short_axis_mm), "mm")
        assert _value(group, codes.MAX_3D_DIAMETER) == (
            pytest.approx(lesion.max_3d_diameter_mm),
            "mm",
        )
        assert group.tracking_identifier == lesion.tracking_id


def test_scored_lesions_carry_score_class_and_algorithm(
    written: tuple[StudyResult, Path], report: hd.sr.MeasurementReport
) -> None:
    for lesion in (x for x in written[0].lesions if x.score is not None):
        group = _group(report, lesion)
        assert _value(group, codes.CD8_SCORE) == (pytest.approx(lesion.score), "{score}")
        (measurement,) = group.get_measurements(name=codes.CD8_SCORE)
        parameters = [
            item.value
            for item in measurement[0].ContentSequence
            if item.name == hd.sr.CodedConcept("111002", "DCM", "Algorithm Parameters")
        ]
        assert "signature: cd8-radiomics 0.1 uncalibrated - research use only" in parameters
        assert (
            codes.CD8_SCORE_CLASS.value,
            codes.SCORE_CLASSES[lesion.score_class].value,
        ) in _evaluations(group)


def test_not_computable_lesion_has_no_score(
    written: tuple[StudyResult, Path], report: hd.sr.MeasurementReport
) -> None:
    (lesion,) = [x for x in written[0].lesions if x.score is None]
    group = _group(report, lesion)
    assert group.get_measurements(name=codes.CD8_SCORE) == []
    assert (codes.CD8_SCORE.value, codes.SCORE_NOT_COMPUTED.value) in _evaluations(group)
    notes = _notes(report)
    assert any(lesion.not_computable in note for note in notes)


def test_candidates_are_flagged_on_their_lesions(
    written: tuple[StudyResult, Path], report: hd.sr.MeasurementReport
) -> None:
    patient = written[0].patient
    least = _evaluations(
        _lesion_group_by_uid(written[0], report, patient.least_infiltrated_tracking_uid)
    )
    highest = _evaluations(
        _lesion_group_by_uid(written[0], report, patient.highest_score_tracking_uid)
    )
    assert (codes.RT_TARGET_CANDIDATE.value, codes.SBRT_CANDIDATE.value) in least
    assert (codes.RT_TARGET_CANDIDATE.value, codes.LOW_DOSE_RT_CANDIDATE.value) in highest


def _lesion_group_by_uid(result: StudyResult, report: hd.sr.MeasurementReport, uid: str | None):
    (lesion,) = [x for x in result.lesions if x.tracking_uid == uid]
    return _group(report, lesion)


def test_contour_reference_fits_the_source(
    written: tuple[StudyResult, Path], report: hd.sr.MeasurementReport
) -> None:
    """Both groups of a lesion reference its contour: the ring is built around it."""
    result = written[0]
    for lesion in result.lesions:
        groups = report.get_volumetric_roi_measurement_groups(tracking_uid=lesion.tracking_uid)
        assert len(groups) == (2 if lesion.features.get("ring") else 1)
        for group in groups:
            if lesion.source == "SEG":
                segment_item = group.referenced_segment[0]
                reference = segment_item.ReferencedSOPSequence[0]
                assert reference.ReferencedSegmentNumber == lesion.number
                assert reference.ReferencedSOPInstanceUID == result.ct.contour_sop_instance_uid
            else:
                assert group.reference_type == REGION_IN_SPACE
                assert _roi_identifiers(group) == [str(lesion.number)]
        if lesion.source == "RTSTRUCT":
            matches = report.get_volumetric_roi_measurement_groups(
                tracking_uid=lesion.tracking_uid,
                referenced_sop_class_uid=RT_STRUCTURE_SET,
                referenced_sop_instance_uid=result.ct.contour_sop_instance_uid,
            )
            assert len(matches) == len(groups)


def _roi_identifiers(group) -> list[str]:
    """The group's DCM 130489 "Referenced Region of Interest Identifier" values, as stored."""
    return [item.TextValue for item in group[0].ContentSequence
            if item.ValueType == "TEXT" and item.RelationshipType == "CONTAINS"
            and (item.ConceptNameCodeSequence[0].CodeValue, item.ConceptNameCodeSequence[0].CodingSchemeDesignator)
            == ("130489", "DCM")]


def test_rtstruct_group_names_the_exact_roi_by_its_roi_number(tmp_path: Path) -> None:
    """A planning system finds the ROI from the SR alone: the lesion made from the RTSTRUCT's
    ROI carries that ROI's ROI Number (read here from the RTSTRUCT with pydicom) next to its
    Region In Space reference (DCM 130489)."""
    result, evidence = make_study_result(3, "RTSTRUCT")
    (rtstruct,) = [ds for ds in evidence if ds.SOPClassUID == RT_STRUCTURE_SET]
    (roi,) = rtstruct.StructureSetROISequence
    lesions = [dataclasses.replace(result.lesions[0], number=int(roi.ROINumber), name=str(roi.ROIName)),
               *result.lesions[1:]]
    result = dataclasses.replace(result, lesions=lesions)
    report = hd.sr.srread(write_sr(build_measurement_report(result, evidence), tmp_path)).content
    assert _roi_identifiers(_group(report, lesions[0])) == [str(roi.ROINumber)]
    assert [_roi_identifiers(_group(report, lesion)) for lesion in lesions[1:]] == [["2"], ["3"]]


def test_roi_identifier_only_for_structure_set_rois(written: tuple[StudyResult, Path], report) -> None:
    """Each RTSTRUCT lesion names its own ROI Number; a SEG lesion is referenced by segment
    number (Referenced Segment) and has no 130489 item."""
    for lesion in written[0].lesions:
        expected = [str(lesion.number)] if lesion.source == "RTSTRUCT" else []
        assert _roi_identifiers(_group(report, lesion)) == expected


# SNOMED CT body structures of DICOM CID 4 "Anatomic Region" for each location class.
_CLASS_SITES = {"lung": ("39607008", "SCT"), "liver": ("10200004", "SCT"), "adenopathy": ("59441001", "SCT"),
                "head_and_neck": ("774007", "SCT")}


def test_every_lesion_with_a_known_location_has_its_coded_finding_site(written, report) -> None:
    """Without a SEG anatomic region (the synthetic lesions have none), the finding site is the
    location class's body structure; "other" asserts none."""
    result = written[0]
    assert {lesion.location_class for lesion in result.lesions} >= {"lung", "liver", "adenopathy"}
    for lesion in result.lesions:
        sites = [(site.value.value, site.value.scheme_designator) for site in _group(report, lesion).finding_sites]
        assert sites == ([_CLASS_SITES[lesion.location_class]] if lesion.location_class in _CLASS_SITES else [])


def test_patient_level_group(
    written: tuple[StudyResult, Path], report: hd.sr.MeasurementReport
) -> None:
    patient = written[0].patient
    (group,) = report.get_image_measurement_groups()
    assert _value(group, codes.N_LESIONS) == (patient.n_lesions, "{lesions}")
    scores = {
        m.derivation.value: m.value for m in group.get_measurements(name=codes.CD8_SCORE)
    }
    expected = {
        codes.SCORE_STATISTICS[key][0].value: metric.value
        for key, metric in patient.score_stats.items()
        if metric.value is not None
    }
    assert scores == pytest.approx(expected)
    assert (codes.RISK_GROUP.value, codes.RISK_GROUPS[patient.risk_group].value) in _evaluations(
        group
    )


def _notes(report: hd.sr.MeasurementReport) -> list[str]:
    """TEXT comments of the report-level Qualitative Evaluations container."""
    (container,) = [
        item for item in report[0].ContentSequence if item.name == codes.QUALITATIVE_EVALUATIONS
    ]
    return [item.value for item in container.ContentSequence]


def test_reader_sees_decision_support_status_and_provenance(
    report: hd.sr.MeasurementReport,
) -> None:
    text = "\n".join(_notes(report))
    assert "tumour board" in text
    assert "uncalibrated - research use only" in text
    assert "pyradiomics-bhklab 3.1.4" in text  # the engine by its distribution
    assert "discretisation=fixed bin size 10 HU from -1000 HU" in text
    assert "Score skewness not computable" in text


def test_reader_sees_how_each_score_is_made(report: hd.sr.MeasurementReport, written) -> None:
    result, _ = written
    notes = _notes(report)
    for lesion in (x for x in result.lesions if x.score is not None):
        (line,) = [n for n in notes if n.startswith(f"Lesion {lesion.tracking_id}: score ")]
        intercept = lesion.score - sum(lesion.contributions.values())
        assert f"score {lesion.score:.3f} = intercept {intercept:.3f}" in line
        for name, value in lesion.contributions.items():
            assert f"{'-' if value < 0 else '+'} {name} {abs(value):.3f}" in line


def test_device_observer_is_the_algorithm(report: hd.sr.MeasurementReport) -> None:
    (context,) = report.get_observer_contexts()
    assert context.observer_type == Code("121007", "DCM", "Device")
    assert context.observer_identifying_attributes.name == "radiomics-cds"


def test_series_attributes(written: tuple[StudyResult, Path]) -> None:
    sr = hd.sr.srread(written[1])
    assert sr.Manufacturer == "radiomics-cds"
    assert sr.SeriesDescription == "radiomics-cds CD8 radiomics (decision support)"
    assert (sr.SeriesNumber, sr.InstanceNumber) == (9900, 1)
    assert sr.StudyInstanceUID == written[0].study.study_instance_uid


def test_uids_are_deterministic_and_follow_the_signature_version(built) -> None:
    result, evidence, first = built("RTSTRUCT").result, built("RTSTRUCT").evidence, built("RTSTRUCT").sr
    again = build_measurement_report(result, evidence)
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (
        again.SOPInstanceUID,
        again.SeriesInstanceUID,
    )
    rescored = dataclasses.replace(
        result, provenance=dataclasses.replace(result.provenance, signature_version="0.2")
    )
    other = build_measurement_report(rescored, evidence)
    assert other.SOPInstanceUID != first.SOPInstanceUID
    assert other.SeriesInstanceUID != first.SeriesInstanceUID


def test_long_study_id_is_left_empty_not_truncated(built) -> None:
    result, sr = built("RTSTRUCT").result, built("RTSTRUCT").sr
    assert len(result.study.study_id) > 16  # the STS quirk this guards
    assert sr.StudyID == ""
    assert sr.PatientID == result.study.patient_id


def test_empty_specific_character_set_in_evidence_is_handled(built) -> None:
    evidence, sr = built("SEG").evidence, built("SEG").sr
    assert evidence[0].SpecificCharacterSet == ""  # the ct-seg quirk this guards
    assert sr.SpecificCharacterSet == "ISO_IR 192"


def test_evidence_lists_ct_and_contour_and_callers_datasets_are_untouched(source: str, built) -> None:
    result, sr = built(source).result, built(source).sr
    assert built(source).evidence == built(source).evidence_before
    referenced = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert referenced == {*result.ct.sop_instance_uids, result.ct.contour_sop_instance_uid}


def test_radiomics_features_are_coded_with_ibsi_codes_and_their_region(report, written) -> None:
    result, _ = written
    for lesion in (x for x in result.lesions if x.features):
        group = _group(report, lesion)
        srhge = hd.sr.CodedConcept("GD3A", "IBSI", "Short Run High Gray Level Emphasis")
        srlge = hd.sr.CodedConcept("HTZT", "IBSI", "Short Run Low Gray Level Emphasis")
        (core_srhge,) = group.get_measurements(name=srhge)
        (ring_srlge,) = _group(report, lesion, RING).get_measurements(name=srlge)
        assert core_srhge.value == pytest.approx(lesion.features["core"]["rlm_srhge_3D_avg"])
        assert ring_srlge.value == pytest.approx(lesion.features["ring"]["rlm_srlge_3D_avg"])
        assert (core_srhge.method.value, ring_srlge.method.value) == ("RGNCORE", "RGNRING")
        # stat_min: DICOM's region-statistics convention, Attenuation Coefficient + Minimum, in HU.
        attenuation = hd.sr.CodedConcept("112031", "DCM", "Attenuation Coefficient")
        (minimum,) = group.get_measurements(name=attenuation)
        assert minimum.derivation.value == "255605001" and minimum.unit.value == "[hnsf'U]"
        assert minimum.value == pytest.approx(lesion.features["core"]["stat_min"])
        # firstorder_TotalEnergy is not IBSI-defined: not in the SR.
        assert all(m.value != 1e6 for m in group.get_measurements())


def test_target_points_are_read_back_in_the_ct_frame_of_reference(report, written) -> None:
    result, _ = written
    for lesion in result.lesions:
        group = _group(report, lesion)
        points = [hd.sr.Scoord3DContentItem.from_dataset(item) for item in group[0].ContentSequence
                  if item.ValueType == "SCOORD3D"]
        (point,) = points
        assert point.name.value == "128138" and point.graphic_type == hd.sr.GraphicTypeValues3D.POINT
        assert point.ReferencedFrameOfReferenceUID == result.ct.frame_of_reference_uid
        assert point.value.tolist() == [list(lesion.centroid_mm)]


def _library_uids(sr) -> list[str]:
    (library,) = [item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "111028"]
    return [entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for group in library.ContentSequence for entry in group.ContentSequence if entry.ValueType == "IMAGE"]


def _ends(ct: list) -> set[str]:
    """The first two and the last image by z (the test data are axial), sorted here, not by the SR."""
    ordered = sorted(ct, key=lambda ds: float(ds.ImagePositionPatient[2]))
    return {str(ds.SOPInstanceUID) for ds in (ordered[0], ordered[1], ordered[-1])}


def test_image_library_lists_the_series_ends_and_evidence_every_image(built) -> None:
    """Three library entries whatever the slice count (the build no longer grows with it); every
    CT image is still evidence."""
    result, evidence = built("RTSTRUCT").result, built("RTSTRUCT").evidence
    ct = [ds for ds in evidence if ds.get("Modality") == "CT"]
    sr = build_measurement_report(result, evidence)
    listed = _library_uids(sr)
    assert len(listed) == 3 and set(listed) == _ends(ct)
    evidence_uids = {item.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                     for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert set(result.ct.sop_instance_uids) <= evidence_uids


def test_ct_images_the_library_cannot_describe_stay_evidence_only(built) -> None:
    """SliceThickness is Type 2 (present but empty is valid); highdicom's library entry needs a
    value. Such images are left out of the library, not the report: the study is not failed."""
    result, evidence = built("RTSTRUCT").result, copy.deepcopy(built("RTSTRUCT").evidence)
    ct = sorted((ds for ds in evidence if ds.get("Modality") == "CT"), key=lambda ds: float(ds.ImagePositionPatient[2]))
    ct[0].SliceThickness = None
    del ct[1].SliceThickness
    sr = build_measurement_report(result, evidence)
    assert set(_library_uids(sr)) == _ends(ct[2:])
    evidence_uids = {item.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                     for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert {str(ds.SOPInstanceUID) for ds in ct} <= evidence_uids


def test_procedure_and_title_are_tid_1500s(report) -> None:
    assert report[0].ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report
    procedures = [item for item in report[0].ContentSequence if item.name == hd.sr.CodedConcept("121058", "DCM", "Procedure reported")]
    assert [p.value.value for p in procedures] == [codes.PROCEDURE_CT.value]


@pytest.mark.external  # dciodvfy checks the new document
def test_rescored_study_references_its_predecessor(tmp_path: Path, built) -> None:
    result, evidence, first = built("RTSTRUCT").result, built("RTSTRUCT").evidence, built("RTSTRUCT").sr
    # The same study scored again under another setting: a new document that says what it replaces.
    provenance = dataclasses.replace(result.provenance, settings={**result.provenance.settings, "featurePanel": "full"})
    second = build_measurement_report(dataclasses.replace(result, provenance=provenance), evidence, predecessor=first)
    (reference,) = second.PredecessorDocumentsSequence
    assert reference.StudyInstanceUID == first.StudyInstanceUID
    (series,) = reference.ReferencedSeriesSequence
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.SOPInstanceUID != first.SOPInstanceUID
    path = write_sr(second, tmp_path)
    check = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    assert [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")] == []
    # Re-issuing the identical document does not call itself its own predecessor.
    again = build_measurement_report(result, evidence, predecessor=first)
    assert "PredecessorDocumentsSequence" not in again and again.SOPInstanceUID == first.SOPInstanceUID


def test_the_document_is_the_one_highdicoms_own_build_gives(source: str, built,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without highdicom's copy of the content tree (service.outputs.sr._ReportDocument): the same
    bytes, for a first report and for one that replaces an earlier one."""
    result, evidence, first = built(source).result, built(source).evidence, built(source).sr
    provenance = dataclasses.replace(result.provenance, settings={**result.provenance.settings, "featurePanel": "full"})
    rescored = dataclasses.replace(result, provenance=provenance)
    assert_same_as_highdicoms_build(lambda: build_measurement_report(result, evidence), monkeypatch)
    assert_same_as_highdicoms_build(lambda: build_measurement_report(rescored, evidence, predecessor=first),
                                    monkeypatch)


def test_a_segs_lesion_groups_are_the_ones_highdicoms_tid_1411_constructor_gives(
        built, monkeypatch: pytest.MonkeyPatch) -> None:
    """service.outputs.sr._RoiGroup builds a SEG lesion's TID 1411 groups without highdicom's
    search of every measurement for coordinates: the same document, byte for byte, as with
    highdicom's own TID 1411 constructor, which searches them (and finds none)."""
    result, evidence = built("SEG").result, built("SEG").evidence
    ours = build_measurement_report(result, evidence)
    segments: list[hd.sr.ReferencedSegment] = []

    def highdicoms(roi_reference: hd.sr.ReferencedSegment, **group) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
        segments.append(roi_reference)
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=roi_reference, **group)

    with monkeypatch.context() as patch:
        patch.setattr(sr_module, "_RoiGroup", highdicoms)
        theirs = build_measurement_report(result, evidence)
    groups = theirs.content.get_volumetric_roi_measurement_groups()
    assert len(segments) == len(groups) > len(region_groups(theirs.content, CORE))  # core and ring groups
    assert document_bytes(ours) == document_bytes(theirs)


def test_the_documents_content_accessor_answers_as_a_reader_of_the_file(source: str, built, report) -> None:
    """highdicom fills `content` from its copy at construction; ours parses the document when
    asked: the same lesion groups a reader of the written file finds."""
    from_object = built(source).sr.content
    assert [g.tracking_uid for g in lesion_groups(from_object)] == [g.tracking_uid for g in lesion_groups(report)]
    assert len(lesion_groups(report)) == len(built(source).result.lesions)


def test_a_reference_outside_the_evidence_stops_the_build_as_highdicoms_own_check_does(
        built, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SR IOD lists every instance the content references in its evidence; a lesion naming a
    contour object the study does not hold (as a scorer answering for another study would)
    must not give a document that breaks it."""
    result, evidence = built("RTSTRUCT").result, built("RTSTRUCT").evidence
    lesions = [dataclasses.replace(result.lesions[0], source_sop_instance_uid="2.25.999"), *result.lesions[1:]]
    stray = dataclasses.replace(result, lesions=lesions)
    with pytest.raises(ValueError, match="1 instance"):
        build_measurement_report(stray, evidence)
    with monkeypatch.context() as patch:
        patch.setattr(sr_module, "_ReportDocument", hd.sr.Comprehensive3DSR)
        with pytest.raises(ValueError, match="No evidence was provided"):
            build_measurement_report(stray, evidence)


def test_a_feature_without_a_value_is_named_with_its_reason_not_dropped(tmp_path: Path) -> None:
    """NaN is never written as a measurement, and a feature left out must not vanish without a
    word: the lesion's core group says which, per region, and why (as the Bundle's notes do)."""
    result, evidence = make_study_result(3, "RTSTRUCT")
    lesion = result.lesions[1]
    features = {"core": {**lesion.features["core"], "stat_min": float("nan")},
                "ring": {**lesion.features["ring"], "rlm_srlge_3D_avg": float("nan")}}
    result = dataclasses.replace(result, lesions=[result.lesions[0], dataclasses.replace(lesion, features=features),
                                                  *result.lesions[2:]])
    report = hd.sr.srread(write_sr(build_measurement_report(result, evidence), tmp_path)).content
    core = _group(report, result.lesions[1])
    comments = [item.TextValue for item in core[0].ContentSequence
                if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert comments == [f"Not computable, core: stat_min ({not_computable_reason('stat_min')}); "
                        f"ring: rlm_srlge_3D_avg ({not_computable_reason('rlm_srlge_3D_avg')})."]
    assert not [item for item in _group(report, result.lesions[0])[0].ContentSequence
                if item.ValueType == "TEXT" and item.TextValue.startswith("Not computable")]


def test_a_lesion_wise_response_is_stated_with_its_caveat_and_its_flags(tmp_path: Path) -> None:
    """Every lesion-wise category the SR states says it is algorithmic and needs a radiologist's
    confirmation, and carries the change's flags (docs/method.md 5.1)."""
    result, evidence = make_study_result(3, "RTSTRUCT")
    lesion = result.lesions[1]
    change = LesionComparison("tracking_uid", "high", None, Metric(8.0), Metric(21.0), Metric(21.0), Metric(60.0),
                              Metric(0.1), (), "progressing", ("1.2.3",),
                              flags=("borderline: within 2 % of the 20 % threshold",))
    sr = build_measurement_report(result, evidence, comparison=Comparison(lesions={lesion.tracking_uid: change}))
    report = hd.sr.srread(write_sr(sr, tmp_path)).content
    comments = [item.TextValue for item in _group(report, lesion)[0].ContentSequence
                if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert codes.LESION_RESPONSE_CAVEAT in comments
    assert "Lesion-wise flag: borderline: within 2 % of the 20 % threshold" in comments
