"""service.follow_up against a baseline SR built and read back (docs/method.md 5.1).

The baseline is a real SR of make_study_result's STS_019 headers, read back with
read_prior_report exactly as a prior from PACS would be. The expected extent, acquisition, sizes
and deltas are computed here from the CT headers and the lesions' own numbers.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from service.follow_up import AT_BASELINE, follow_up
from service.longitudinal.matching import OUTSIDE_PRIOR
from service.longitudinal.response_settings import RecistSettings
from service.longitudinal.settings_file import ResponseSettings
from service.longitudinal.timepoint import Acquisition
from service.model import CodedConcept, LesionResult, LocationClass, Metric, StudyResult
from service.outputs import codes
from service.outputs.fhir import build_bundle
from service.outputs.sr import build_measurement_report
from service.priors.reading import PriorReport, read_prior_report
from service.response import ResponseInputs
from tests.support.sr_groups import CORE, RING, region_groups
from tests.support.synthetic_results import make_study_result
from tests.support.sr_document import assert_same_as_highdicoms_build
from tests.support.written_outputs import write_bundle, write_sr


@pytest.fixture(scope="module")
def baseline() -> tuple[StudyResult, list[pydicom.Dataset]]:
    result, evidence = make_study_result(3, "RTSTRUCT")
    centre = _grid_centre(evidence)
    liver = [dataclasses.replace(lesion, location_class=LocationClass("liver"), centroid_mm=tuple(centre + offset))
             for lesion, offset in zip(result.lesions, ([0.0, 0, 0], [-60.0, 0, 0], [60.0, 0, 0]))]
    return dataclasses.replace(result, lesions=liver), evidence


@pytest.fixture(scope="module")
def prior(baseline, tmp_path_factory) -> PriorReport:
    result, evidence = baseline
    path = write_sr(build_measurement_report(result, evidence), tmp_path_factory.mktemp("baseline"))
    return read_prior_report(pydicom.dcmread(path))


def _ct(evidence: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    return [ds for ds in evidence if ds.Modality == "CT"]


def _grid_centre(evidence: list[pydicom.Dataset]) -> np.ndarray:
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in _ct(evidence)])
    first = _ct(evidence)[0]
    in_plane = np.array([float(first.Columns - 1) * float(first.PixelSpacing[1]),
                         float(first.Rows - 1) * float(first.PixelSpacing[0]), 0.0]) / 2
    return positions.mean(axis=0) + in_plane  # axial slices (orientation 1 0 0 0 1 0)


def _acquisition(evidence: list[pydicom.Dataset], **changes: object) -> Acquisition:
    first = _ct(evidence)[0]
    acquisition = Acquisition(float(first.KVP), str(first.ConvolutionKernel), float(first.SliceThickness))
    return dataclasses.replace(acquisition, **changes)  # type: ignore[arg-type]


def _follow_up_study(result: StudyResult, lesions: list[LesionResult]) -> StudyResult:
    study = dataclasses.replace(result.study, study_instance_uid=result.study.study_instance_uid + ".9",
                                study_date="20021001")
    return dataclasses.replace(result, study=study, lesions=lesions)


def _new_lesion(template: LesionResult, uid_suffix: str, centroid: np.ndarray, **changes: object) -> LesionResult:
    return dataclasses.replace(template, tracking_uid=template.tracking_uid + uid_suffix,
                               tracking_id=template.tracking_id + uid_suffix, name=f"{template.name}{uid_suffix}",
                               centroid_mm=tuple(float(v) for v in centroid), **changes)  # type: ignore[arg-type]


def test_a_follow_ups_document_is_the_one_highdicoms_own_build_gives(baseline, prior: PriorReport,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With prior reports in its evidence and content (service.outputs.sr._ReportDocument)."""
    result, evidence = baseline
    followed = follow_up(_follow_up_study(result, result.lesions), None, _acquisition(evidence), [prior])
    assert followed.comparison.priors and followed.comparison.response is not None
    assert_same_as_highdicoms_build(
        lambda: build_measurement_report(followed.result, evidence, comparison=followed.comparison), monkeypatch)


def test_the_sr_states_its_ct_extent_and_acquisition(baseline, prior: PriorReport) -> None:
    _, evidence = baseline
    headers = _ct(evidence)
    z = sorted(float(ds.ImagePositionPatient[2]) for ds in headers)
    first = headers[0]
    assert prior.ct.extent is not None
    assert prior.ct.extent.size == (first.Columns, first.Rows, len(headers))
    assert prior.ct.extent.spacing == pytest.approx((float(first.PixelSpacing[1]), float(first.PixelSpacing[0]),
                                                     (z[-1] - z[0]) / (len(z) - 1)))
    assert prior.ct.extent.origin[2] == pytest.approx(z[0])
    assert (prior.ct.kvp, prior.ct.convolution_kernel, prior.ct.slice_thickness_mm) == (
        float(first.KVP), str(first.ConvolutionKernel), pytest.approx(float(first.SliceThickness)))


def test_unmatched_lesions_are_new_inside_the_prior_scan_and_not_evaluable_outside(baseline, prior) -> None:
    result, evidence = baseline
    centre = _grid_centre(evidence)
    inside = _new_lesion(result.lesions[1], "-in", centre + [0.0, 30.0, 0.0])
    outside = _new_lesion(result.lesions[1], "-out", centre + [0.0, 0.0, 500.0])
    current = _follow_up_study(result, [*result.lesions, inside, outside])
    followed = follow_up(current, None, _acquisition(evidence), [prior])
    assert f"lesion {inside.tracking_id}: new" in followed.comparison.notes
    assert f"lesion {outside.tracking_id}: not evaluable ({OUTSIDE_PRIOR})" in followed.comparison.notes


def test_every_feature_has_a_delta_comparable_under_the_same_acquisition(baseline, prior) -> None:
    result, evidence = baseline
    grown = dataclasses.replace(result.lesions[1], features={
        region: {tag: value * 1.5 for tag, value in values.items()} for region, values in result.lesions[1].features.items()})
    followed = follow_up(_follow_up_study(result, [result.lesions[0], grown, result.lesions[2]]), None,
                         _acquisition(evidence), [prior])
    change = followed.comparison.lesions[grown.tracking_uid]
    assert change.cd8_not_comparable == ()
    deltas = {(d.region, d.tag): d for d in change.feature_deltas}
    # every feature the SR codes (pyradiomics-only ones are not in the prior SR, so no value there)
    assert deltas[("core", "stat_min")].delta.value == pytest.approx(0.5 * result.lesions[1].features["core"]["stat_min"])
    assert deltas[("core", "stat_min")].relative_percent.value == pytest.approx(-50.0)  # negative prior: |prior|
    assert deltas[("ring", "rlm_srlge_3D_avg")].relative_percent.value == pytest.approx(50.0)
    assert deltas[("core", "firstorder_TotalEnergy")].delta.value is None


@pytest.mark.parametrize(("changes", "reason"), [
    ({"kvp": 100.0}, "kVp differs (140 -> 100)"),
    ({"convolution_kernel": "LUNG"}, "convolution kernel differs (SOFT -> LUNG)"),
    ({"slice_thickness_mm": 1.0}, "slice thickness (mm) differs"),
])
def test_another_acquisition_marks_every_delta_not_comparable(baseline, prior, changes, reason, tmp_path: Path) -> None:
    result, evidence = baseline
    current = _follow_up_study(result, result.lesions)
    followed = follow_up(current, None, _acquisition(evidence, **changes), [prior])
    change = followed.comparison.lesions[result.lesions[1].tracking_uid]
    assert any(r.startswith(reason) for r in change.cd8_not_comparable), change.cd8_not_comparable
    sr = hd.sr.srread(write_sr(build_measurement_report(followed.result, evidence, comparison=followed.comparison),
                               tmp_path))
    # each region's group (core, ring) holds the deltas of its features, and says why they are not comparable
    for region, feature in ((CORE, "GD3A"), (RING, "HTZT")):  # IBSI: SRHGE in the core, SRLGE in the ring
        (group,) = region_groups(sr.content, region, tracking_uid=result.lesions[1].tracking_uid)
        (container,) = [item for item in group[0].ContentSequence if item.ValueType == "CONTAINER"
                        and item.ConceptNameCodeSequence[0].CodeValue == codes.FEATURE_DELTAS.value]
        texts = [item.TextValue for item in container.ContentSequence if item.ValueType == "TEXT"]
        assert any(reason in text for text in texts)
        nums = [item for item in container.ContentSequence if item.ValueType == "NUM"]
        assert feature in {item.ConceptNameCodeSequence[0].CodeValue for item in nums}
        methods = {child.ConceptCodeSequence[0].CodeValue for item in nums for child in item.ContentSequence
                   if child.ConceptNameCodeSequence[0].CodeValue == "370129005"}  # SCT Measurement Method
        assert methods == {region}


def test_a_split_lesion_gets_fragment_uids_and_changes_on_the_sum(baseline, prior) -> None:
    result, evidence = baseline
    parent = result.lesions[1]
    centre = np.asarray(parent.centroid_mm)
    big = _new_lesion(parent, "-a", centre + [4.0, 0, 0], volume_ml=0.6 * parent.volume_ml, longest_axial_diameter_mm=18.0)
    small = _new_lesion(parent, "-b", centre - [6.0, 0, 0], volume_ml=0.4 * parent.volume_ml,
                        longest_axial_diameter_mm=12.0)
    followed = follow_up(_follow_up_study(result, [result.lesions[0], big, small, result.lesions[2]]), None,
                         _acquisition(evidence), [prior])
    uids = {lesion.name: lesion.tracking_uid for lesion in followed.result.lesions}
    assert len({uids[big.name], uids[small.name], parent.tracking_uid}) == 3
    for fragment in (big, small):
        change = followed.comparison.lesions[uids[fragment.name]]
        assert change.derived_from_uid == parent.tracking_uid
        expected = 100 * (18.0 + 12.0 - parent.longest_axial_diameter_mm) / parent.longest_axial_diameter_mm
        assert change.diameter_pct_baseline.value == pytest.approx(expected)
        assert change.cd8_delta.value is None


def test_a_merge_keeps_the_uid_of_the_larger_baseline_lesion(baseline, prior) -> None:
    result, evidence = baseline
    a, b = result.lesions[1], dataclasses.replace(result.lesions[2])
    # move the third lesion next to the second at baseline: rebuild that baseline
    near = dataclasses.replace(b, centroid_mm=tuple(np.asarray(a.centroid_mm) + [12.0, 0, 0]))
    base = dataclasses.replace(result, lesions=[result.lesions[0], a, near])
    merged_prior = read_prior_report(build_measurement_report(base, evidence))
    volume = a.volume_ml + near.volume_ml
    centroid = (np.asarray(a.centroid_mm) * a.volume_ml + np.asarray(near.centroid_mm) * near.volume_ml) / volume
    merged = _new_lesion(a, "-m", centroid, volume_ml=volume, longest_axial_diameter_mm=60.0)
    followed = follow_up(_follow_up_study(base, [result.lesions[0], merged]), None, _acquisition(evidence),
                         [merged_prior])
    larger, smaller = sorted((a, near), key=lambda x: -x.longest_axial_diameter_mm)
    (kept,) = [lesion for lesion in followed.result.lesions if lesion.name == merged.name]
    assert kept.tracking_uid == larger.tracking_uid
    change = followed.comparison.lesions[kept.tracking_uid]
    assert change.merged_uids == (smaller.tracking_uid,)
    total = a.longest_axial_diameter_mm + near.longest_axial_diameter_mm
    assert change.diameter_pct_baseline.value == pytest.approx(100 * (60.0 - total) / total)
    assert f"prior lesion {smaller.tracking_id}: merged into {larger.tracking_id} (0 mm)" in followed.comparison.notes


def test_the_fhir_lesion_change_carries_each_feature_change_and_why_it_is_not_comparable(baseline, prior,
                                                                                          tmp_path: Path) -> None:
    """Every feature x1.5 under another kVp: the Bundle's change components are 0.5 x the
    baseline's value (+50 % of its magnitude), and NOTCOMPARABLE says why next to them."""
    result, evidence = baseline
    grown = dataclasses.replace(result.lesions[1], features={
        region: {tag: value * 1.5 for tag, value in values.items()} for region, values in result.lesions[1].features.items()})
    followed = follow_up(_follow_up_study(result, [result.lesions[0], grown, result.lesions[2]]), None,
                         _acquisition(evidence, kvp=100.0), [prior])
    bundle = build_bundle(followed.result, sr_sop_instance_uid="1.2.3.4", comparison=followed.comparison)
    write_bundle(bundle, tmp_path)  # validated with the session's other Bundles (tests/conftest.py)
    (change,) = [entry.resource for entry in bundle.entry if entry.resource.get_resource_type() == "Observation"
                 and entry.resource.code.coding[0].code == "LESCHG" and entry.resource.focus[0].identifier.value
                 == f"urn:oid:{grown.tracking_uid}"]
    parts = {part.code.text: part for part in change.component}
    (reason,) = [part.valueString for part in change.component if part.code.coding[0].code == "NOTCOMPARABLE"]
    assert reason.startswith("kVp differs (140 -> 100)")
    core = "Lesion core (the contoured lesion)"
    stat_min = result.lesions[1].features["core"]["stat_min"]
    absolute, relative = parts[f"Change of stat_min, {core}"], parts[f"Relative change of stat_min (%), {core}"]
    assert [c.code for c in absolute.code.coding] == ["1GSF"] and absolute.valueQuantity.code == "[hnsf'U]"
    assert float(absolute.valueQuantity.value) == pytest.approx(0.5 * stat_min)
    assert float(relative.valueQuantity.value) == pytest.approx(50.0 if stat_min > 0 else -50.0)
    assert relative.valueQuantity.code == "%"
    ring = parts["Relative change of rlm_srlge_3D_avg (%), Peritumoral ring (both sides of the lesion boundary)"]
    assert float(ring.valueQuantity.value) == pytest.approx(50.0)


def test_a_seg_segments_own_finding_site_reads_back_as_its_location_class(tmp_path: Path) -> None:
    """An SR whose SEG lesions carry their segments' codes as finding sites: the prior reader
    gives each the body structure of the class the code names (SNOMED CT: head -> head and neck,
    lymph node structure -> node), and none for a code no class names (kidney), like "other"."""
    result, evidence = make_study_result(3, "SEG")
    coded = [CodedConcept("69536005", "SCT", "Head"), CodedConcept("59441001", "SCT", "Lymph node structure"),
             CodedConcept("64033007", "SCT", "Kidney")]
    lesions = [dataclasses.replace(lesion, anatomic_region=code) for lesion, code in zip(result.lesions, coded)]
    path = write_sr(build_measurement_report(dataclasses.replace(result, lesions=lesions), evidence), tmp_path)
    read = read_prior_report(pydicom.dcmread(path))
    locations = {lesion.tracking_uid: lesion.location for lesion in read.lesions}
    assert [locations[lesion.tracking_uid] for lesion in lesions] == ["Head and Neck", "Lymph Node", None]


def test_a_baseline_at_this_study_counts_no_change_against_an_earlier_one(baseline, prior) -> None:
    """The treatment starts after this study, so it is the baseline though a report precedes
    it: its time point is T0, its lesions' change against baseline is none (not a change
    against the earlier report), and its lesions are categorised at this baseline."""
    result, evidence = baseline
    current = _follow_up_study(result, result.lesions)  # 2002-10-01
    followed = follow_up(current, None, _acquisition(evidence), [prior],
                         inputs=ResponseInputs(treatment_start=datetime.date(2002, 10, 2)))
    comparison = followed.comparison
    assert comparison.time_point.is_baseline and comparison.response is None
    for change in comparison.lesions.values():
        assert change.diameter_pct_baseline == Metric.not_computable(AT_BASELINE) == change.volume_pct_baseline
        assert change.diameter_delta_mm_baseline == Metric.not_computable(AT_BASELINE)
        assert change.category == "not_evaluable"
    assert set(comparison.baseline_categories.values()) >= {"target"}


def test_a_borderline_lesion_says_so_in_the_sr_and_the_bundle(baseline, prior, tmp_path) -> None:
    """+21 % is within 2 % of the 20 % progressing threshold (docs/method.md 5.1): the change
    carries the flag, and both outputs state it beside the lesion-wise response."""
    result, evidence = baseline
    lesion = result.lesions[1]
    grown = dataclasses.replace(lesion, longest_axial_diameter_mm=lesion.longest_axial_diameter_mm * 1.21)
    followed = follow_up(_follow_up_study(result, [result.lesions[0], grown, result.lesions[2]]), None,
                         _acquisition(evidence), [prior])
    flag = "borderline: within 2 % of the 20 % threshold"
    assert followed.comparison.lesions[grown.tracking_uid].flags == (flag,)
    sr = build_measurement_report(followed.result, evidence, comparison=followed.comparison)
    assert f"Lesion-wise flag: {flag}" in [str(e.value) for e in sr.iterall() if e.keyword == "TextValue"]
    bundle = build_bundle(followed.result, sr_sop_instance_uid="2.25.7", comparison=followed.comparison)
    notes = [note.text for entry in bundle.entry if entry.resource.get_resource_type() == "Observation"
             and entry.resource.code.coding[0].code == codes.LESION_CHANGE.value for note in entry.resource.note or []]
    assert f"Lesion-wise flag: {flag}" in notes


def test_the_sr_states_the_non_target_threshold_the_site_set(baseline, prior) -> None:
    """A site's non-target progression at +50 % volume (response settings) is what the SR's
    automated-proxy text states, not the default +73 %."""
    result, evidence = baseline
    rules = ResponseSettings(recist=RecistSettings(nontarget_pd_volume_pct=50.0))
    followed = follow_up(_follow_up_study(result, result.lesions), None, _acquisition(evidence), [prior],
                         inputs=ResponseInputs(rules=rules))
    sr = build_measurement_report(followed.result, evidence, comparison=followed.comparison)
    texts = [str(e.value) for e in sr.iterall() if e.keyword == "TextValue"]
    assert any("PD suggested at +50 %" in text for text in texts)
    assert not any("+73 %" in text for text in texts)


def test_a_lesion_merged_at_one_follow_up_stays_0_mm_at_the_next(baseline) -> None:
    """RECIST 1.1 (coalesced lesions): the mass takes the measure and the lesions it absorbed are
    recorded as 0 mm, at that time point and every later one. Two liver targets of 30 and 20 mm
    coalesce into one of 40 mm (-20 % of 50 mm: SD), and the next study shows the same mass: the
    absorbed target is still 0 mm, not a target missing (NE)."""
    result, evidence = baseline
    a = dataclasses.replace(result.lesions[1], longest_axial_diameter_mm=30.0)
    near = dataclasses.replace(result.lesions[2], longest_axial_diameter_mm=20.0,
                               centroid_mm=tuple(np.asarray(a.centroid_mm) + [12.0, 0, 0]))
    base = dataclasses.replace(result, lesions=[a, near])
    base_prior = read_prior_report(build_measurement_report(base, evidence))
    volume = a.volume_ml + near.volume_ml
    centroid = (np.asarray(a.centroid_mm) * a.volume_ml + np.asarray(near.centroid_mm) * near.volume_ml) / volume
    merged = _new_lesion(a, "-m", centroid, volume_ml=volume, longest_axial_diameter_mm=40.0)
    first = follow_up(_follow_up_study(base, [merged]), None, _acquisition(evidence), [base_prior])
    assert first.comparison.response is not None and first.comparison.response.target_response == "SD"
    first_prior = read_prior_report(build_measurement_report(first.result, evidence, comparison=first.comparison))
    later = dataclasses.replace(first.result.study, study_instance_uid=base.study.study_instance_uid + ".99",
                                study_date="20030101")
    again = _new_lesion(a, "-n", centroid, volume_ml=volume, longest_axial_diameter_mm=40.0)
    second = follow_up(dataclasses.replace(first.result, study=later, lesions=[again]), None, _acquisition(evidence),
                       [base_prior, first_prior])
    response = second.comparison.response
    assert response is not None and response.target_response == "SD" and response.overall == "SD"
    change = second.comparison.lesions[a.tracking_uid]
    assert change.merged_uids == (near.tracking_uid,)
    assert change.diameter_pct_baseline.value == pytest.approx(-20.0)  # against the sum of its sources, 50 mm
    # the mass then splits into 25 + 20 mm: 45 mm against the nadir of 40 (+12.5 %): SD, the
    # merged target still 0 mm
    second_prior = read_prior_report(build_measurement_report(second.result, evidence, comparison=second.comparison))
    last = dataclasses.replace(later, study_instance_uid=base.study.study_instance_uid + ".999", study_date="20030401")
    halves = [_new_lesion(a, suffix, centroid + offset, volume_ml=volume / 2, longest_axial_diameter_mm=d)
              for suffix, offset, d in (("-p", [4.0, 0, 0], 25.0), ("-q", [-4.0, 0, 0], 20.0))]
    third = follow_up(dataclasses.replace(first.result, study=last, lesions=halves), None, _acquisition(evidence),
                      [base_prior, first_prior, second_prior])
    response = third.comparison.response
    assert response is not None and response.target_response == "SD" and response.new_lesion_count == 0
    assert response.sod_mm.value == pytest.approx(45.0)


def test_split_fragments_followed_one_to_one_stay_summed_under_their_parent(baseline) -> None:
    """RECIST 1.1 (split lesions): the fragments' diameters are added up, at the split and at
    every later time point. A 30 mm liver target splits into 18 + 12 mm (the same 30 mm: SD) and
    the next study shows both fragments unchanged: still SD, 30 mm, and no new lesion."""
    result, evidence = baseline
    parent = dataclasses.replace(result.lesions[1], longest_axial_diameter_mm=30.0)
    base = dataclasses.replace(result, lesions=[parent])
    base_prior = read_prior_report(build_measurement_report(base, evidence))
    centre = np.asarray(parent.centroid_mm)

    def fragments(suffix: str) -> list[LesionResult]:
        return [_new_lesion(parent, suffix + "a", centre + [4.0, 0, 0], volume_ml=0.6 * parent.volume_ml,
                            longest_axial_diameter_mm=18.0),
                _new_lesion(parent, suffix + "b", centre - [6.0, 0, 0], volume_ml=0.4 * parent.volume_ml,
                            longest_axial_diameter_mm=12.0)]

    first = follow_up(_follow_up_study(base, fragments("-1")), None, _acquisition(evidence), [base_prior])
    assert first.comparison.response is not None and first.comparison.response.target_response == "SD"
    first_prior = read_prior_report(build_measurement_report(first.result, evidence, comparison=first.comparison))
    later = dataclasses.replace(first.result.study, study_instance_uid=base.study.study_instance_uid + ".99",
                                study_date="20030101")
    second = follow_up(dataclasses.replace(first.result, study=later, lesions=fragments("-2")), None,
                       _acquisition(evidence), [base_prior, first_prior])
    response = second.comparison.response
    assert response is not None and response.target_response == "SD" and response.overall == "SD"
    assert response.new_lesion_count == 0 and response.sod_mm.value == pytest.approx(30.0)
    assert {change.derived_from_uid for change in second.comparison.lesions.values()} == {parent.tracking_uid}


@pytest.mark.parametrize("with_new_lesion", [False, True])
def test_a_lesion_missed_at_one_follow_up_is_found_again_at_the_next_not_new(baseline, prior,
                                                                             with_new_lesion: bool) -> None:
    """EORTC RECIST FAQ ("Does a new lesion always result in PD?"): a lesion that disappears and
    reappears is not a new lesion (unless the patient was in complete response). Three liver
    lesions, two of them targets, unchanged; a target is not contoured at the first follow-up (a target not
    evaluable there: NE) and is contoured again at the second, under new ROI UIDs as an RTSTRUCT
    gives them. Matched with the first follow-up's report alone it would be a new lesion and the
    target sum not evaluable (PD). It is the baseline lesion again: it carries its tracking UID,
    the sum equals the baseline's (0 %: SD) and there is no new lesion. A lesion where no earlier
    report had one (40 mm off, beyond every gate) is still new."""
    result, evidence = baseline
    a, b, c = result.lesions

    def at(suffix: str, lesion: LesionResult, offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> LesionResult:
        return _new_lesion(lesion, suffix, np.asarray(lesion.centroid_mm) + offset)

    first = follow_up(_follow_up_study(result, [at("-1", a), at("-1", c)]), None, _acquisition(evidence), [prior])
    assert first.comparison.response is not None and first.comparison.response.target_response == "NE"
    first_prior = read_prior_report(build_measurement_report(first.result, evidence, comparison=first.comparison))
    later = dataclasses.replace(result.study, study_instance_uid=result.study.study_instance_uid + ".99",
                                study_date="20030101")
    lesions = [at("-2", a), at("-2", b), at("-2", c)]
    if with_new_lesion:
        lesions.append(at("-new", a, (0.0, 40.0, 0.0)))
    second = follow_up(dataclasses.replace(result, study=later, lesions=lesions), None, _acquisition(evidence),
                       [prior, first_prior])
    response = second.comparison.response
    assert response is not None
    assert response.target_response == "SD" and response.new_lesion_count == int(with_new_lesion)
    assert response.overall == ("PD" if with_new_lesion else "SD")
    categories = second.comparison.baseline_categories
    targets = [x.longest_axial_diameter_mm for x in (a, b, c) if categories[x.tracking_uid] == "target"]
    assert len(targets) == 2 and b.longest_axial_diameter_mm in targets  # two per organ (RECIST 1.1): b is one
    assert response.sod_mm.value == pytest.approx(sum(targets))
    found = next(x for x in second.result.lesions if x.name == b.name + "-2")
    assert (found.tracking_uid, found.tracking_id) == (b.tracking_uid, b.tracking_id)
    assert second.comparison.lesions[b.tracking_uid].size_sources == (prior.study_instance_uid,)
    assert any(note.startswith(f"lesion {b.tracking_id}-2: found again (geometry)")
               and "not a new lesion" in note for note in second.comparison.notes)
    against_previous = second.comparison.lesions[b.tracking_uid].diameter_pct_previous
    assert against_previous.value is None and "not in the previous report" in str(against_previous.reason)


def test_a_lesion_missed_twice_and_back_split_is_found_in_the_latest_report_that_held_it(baseline, prior) -> None:
    """The same as above over four studies: a target contoured at the first follow-up at 20 mm
    (shrinking), missed at the second (NE), back at the third as two fragments of 12 and 8 mm:
    found again in the first follow-up's report (the newest that held it, not the baseline's),
    split (the fragments summed under it: 20 mm, unchanged), and no new lesion."""
    result, evidence = baseline
    a, b, c = result.lesions

    def study(suffix: str, date: str, lesions: list[LesionResult]) -> StudyResult:
        info = dataclasses.replace(result.study, study_instance_uid=result.study.study_instance_uid + suffix,
                                   study_date=date)
        return dataclasses.replace(result, study=info, lesions=lesions)

    def at(suffix: str, lesion: LesionResult, offset: float = 0.0, **changes: object) -> LesionResult:
        return _new_lesion(lesion, suffix, np.asarray(lesion.centroid_mm) + [offset, 0.0, 0.0], **changes)

    reports = [prior]
    for suffix, date, lesions in ((".1", "20021001", [at("-1", a), at("-1", b, longest_axial_diameter_mm=20.0),
                                                       at("-1", c)]),
                                  (".2", "20030101", [at("-2", a), at("-2", c)])):
        followed = follow_up(study(suffix, date, lesions), None, _acquisition(evidence), reports)
        reports.append(read_prior_report(build_measurement_report(followed.result, evidence,
                                                                  comparison=followed.comparison)))
    halves = [at("-3a", b, 4.0, longest_axial_diameter_mm=12.0, volume_ml=0.6 * b.volume_ml),
              at("-3b", b, -6.0, longest_axial_diameter_mm=8.0, volume_ml=0.4 * b.volume_ml)]
    third = follow_up(study(".3", "20030401", [at("-3", a), *halves, at("-3", c)]), None, _acquisition(evidence),
                      reports)
    response = third.comparison.response
    assert response is not None and response.new_lesion_count == 0 and response.overall != "PD"
    assert {x.tracking_id for x in third.result.lesions} >= {f"{b.tracking_id} fragment 1", f"{b.tracking_id} fragment 2"}
    fragment = next(x for x in third.comparison.lesions.values() if x.derived_from_uid == b.tracking_uid)
    assert fragment.size_sources[-1] == reports[1].study_instance_uid  # the first follow-up's report
    assert any("found again (geometry, split in 2)" in note for note in third.comparison.notes)


KIDNEY = CodedConcept("64033007", "SCT", "Kidney structure")
ADRENAL = CodedConcept("23451007", "SCT", "Adrenal structure")
KIDNEY_SRT = CodedConcept("T-71000", "SRT", "Kidney")  # the legacy SNOMED-RT code of the same concept


@pytest.mark.parametrize(("regions", "targets"), [
    ((KIDNEY, KIDNEY_SRT, KIDNEY, ADRENAL), 3),  # 2 of the kidney, however coded (one organ), and the adrenal
    ((None, None, None, None), 2),  # all four "other": one organ as far as anyone can tell
])
def test_a_segs_anatomic_regions_are_the_organs_of_the_two_targets_per_organ_rule(baseline, regions,
                                                                                  targets: int) -> None:
    """RECIST 1.1: at most 2 targets per organ (5 in all); the EORTC RECIST FAQ "Paired organs"
    counts a kidney's left and right as one organ. Four measurable lesions of location class
    "other" (13 to 45 mm), three in a kidney and one in an adrenal as the SEG codes them: three
    targets. The class alone would make them one organ, two targets."""
    result, evidence = baseline
    lesions = [dataclasses.replace(_new_lesion(result.lesions[i % 3], f"-{i}", np.asarray(result.lesions[i % 3].centroid_mm)
                                               + [0.0, 30.0 * (i // 3), 0.0]),
                                   location_class=LocationClass.OTHER, anatomic_region=region)
               for i, region in enumerate(regions)]
    followed = follow_up(dataclasses.replace(result, lesions=lesions), None, _acquisition(evidence), [])
    categories = followed.comparison.baseline_categories
    assert list(categories.values()).count("target") == targets
    assert categories[lesions[3].tracking_uid] == ("target" if regions[3] else "non_target")
    organ = "SEG anatomic region, else location class" if regions[0] else "location class"
    assert f"2 per organ; the organ: {organ}; all nodes one organ" in "\n".join(followed.comparison.notes)


def test_a_lesion_first_seen_outside_the_prior_scan_is_never_new_later(baseline, prior) -> None:
    """followup.md 9.9 ("Partial coverage: lesions outside it are NE, never 'disappeared' or
    'new'"). The baseline's three liver lesions unchanged at two follow-ups; at the first, a
    lesion 500 mm beyond the baseline scan (not evaluable as new: SD). At the second it is there
    again, matched to itself: still not new (it was PD, with the first follow-up read back as PD
    too), and the SR says so again for the next."""
    result, evidence = baseline
    outside = _new_lesion(result.lesions[1], "-out", _grid_centre(evidence) + [0.0, 0.0, 500.0])
    first = follow_up(_follow_up_study(result, [*result.lesions, outside]), None, _acquisition(evidence), [prior])
    assert first.comparison.response is not None and first.comparison.response.overall == "SD"
    assert first.comparison.not_new == (outside.tracking_uid,)
    first_prior = read_prior_report(build_measurement_report(first.result, evidence, comparison=first.comparison))
    assert [x.not_evaluable_as_new for x in first_prior.lesions if x.tracking_uid == outside.tracking_uid] == [True]
    later = dataclasses.replace(result.study, study_instance_uid=result.study.study_instance_uid + ".99",
                                study_date="20030101")
    second = follow_up(dataclasses.replace(result, study=later, lesions=[*first.result.lesions]), None,
                       _acquisition(evidence), [prior, first_prior])
    response = second.comparison.response
    assert response is not None and response.new_lesion_count == 0 and response.overall == "SD"
    assert [p.recist_overall for p in second.comparison.series] == [None, "SD", "SD"]
    assert second.comparison.not_new == (outside.tracking_uid,)
