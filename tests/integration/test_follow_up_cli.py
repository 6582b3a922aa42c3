"""`radiomics-cds score --prior`: a synthetic follow-up of STS_019 against the baseline SR the
same command wrote first (docs/method.md 5 and 5.1; docs/fhir.md, "lesion change").

The follow-up is the same CT (same Frame of Reference) under a new study, 94 days later, with
the RTSTRUCT contour scaled in-plane by S about its centroid (tests/support/follow_up_study.py):
the expected change is measured here on the polygons, not taken from the service.
"""

import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from tests.support.external import require_tool
from tests.support.fhir_validation import assert_valid_fhir
from tests.support.follow_up_study import (diameter_percent_bounds, longest_chord_mm, percent_bounds, pixel_diagonal_mm,
                                          write_follow_up, write_split)
from tests.support.sr_groups import lesion_groups

REPO = Path(__file__).resolve().parents[2]
S = 1.3
RCDS = "https://radiomics-cds.org/fhir/CodeSystem/rcds"
IMR = "https://profiles.ihe.net/RAD/IMR/StructureDefinition/associatedStudy"


def _score(ct: Path, rtstruct: Path, out: Path, *priors: Path) -> subprocess.CompletedProcess:
    arguments = [arg for prior in priors for arg in ("--prior", str(prior))]
    run = subprocess.run([sys.executable, "-m", "service.cli", "score", "--ct", str(ct), "--rtstruct", str(rtstruct),
                          "--out", str(out), *arguments], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def studies(sts019, tmp_path_factory):
    root = tmp_path_factory.mktemp("follow-up")
    baseline_rs = sts019 / "mask" / "RS.dcm"
    _score(sts019 / "image", baseline_rs, root / "baseline")
    ct, rtstruct = write_follow_up(sts019 / "image", baseline_rs, root / "study", scale=S, study_date="20020301")
    run = _score(ct, rtstruct, root / "follow-up", root / "baseline")
    return root, baseline_rs, rtstruct, run


@pytest.fixture(scope="module")
def split_and_merge(studies, sts019):
    """A split: the baseline's ROI cut in two at follow-up; a merge: the baseline's ROI cut in
    two, whole again at follow-up. The follow-up CT is the baseline's, unscaled, as a new study."""
    root, baseline_rs, _, _ = studies
    later_ct, later_rs = write_follow_up(sts019 / "image", baseline_rs, root / "unchanged", scale=1.0,
                                         study_date="20020301")
    split_rs = write_split(later_rs, root / "split-rs" / "RS.dcm")
    _score(later_ct, split_rs, root / "split", root / "baseline")
    baseline_split_rs = write_split(baseline_rs, root / "baseline-split-rs" / "RS.dcm")
    _score(sts019 / "image", baseline_split_rs, root / "baseline-split")
    _score(later_ct, later_rs, root / "merge", root / "baseline-split")
    return root, split_rs, baseline_split_rs, later_rs


def _outputs(directory: Path) -> tuple[Path, dict]:
    (sr,) = directory.glob("*.dcm")
    (bundle,) = directory.glob("*.fhir.json")
    return sr, json.loads(bundle.read_text())


def _group(sr: Path) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    (group,) = lesion_groups(hd.sr.srread(sr).content)
    return group


def _num(group, value: str) -> float:
    return next(m.value for m in group.get_measurements() if m.name.value == value)


def test_the_follow_up_carries_the_baseline_tracking_uid(studies):
    root, *_ = studies
    baseline, follow_up = _group(_outputs(root / "baseline")[0]), _group(_outputs(root / "follow-up")[0])
    assert str(follow_up.tracking_uid) == str(baseline.tracking_uid)
    assert str(follow_up.tracking_identifier) == str(baseline.tracking_identifier)


def test_diameter_change_matches_the_scaled_polygons(studies, sts019):
    """Expected % from the polygons' longest in-plane chords (exactly S apart). The rasterised
    mask's longest diameter is between voxel centres inside the polygon, so it lies within one
    in-plane voxel diagonal e of the chord; the measured % must lie in the range those bounds give."""
    root, baseline_rs, rtstruct, _ = studies
    assert longest_chord_mm(rtstruct) / longest_chord_mm(baseline_rs) == pytest.approx(S, rel=1e-6)
    low, high = diameter_percent_bounds(baseline_rs, rtstruct, sts019 / "image")
    group = _group(_outputs(root / "follow-up")[0])
    assert low <= _num(group, "LDPCTBL") <= high
    assert _num(group, "LDPCTPREV") == _num(group, "LDPCTBL")  # the baseline is the previous time point
    baseline = _group(_outputs(root / "baseline")[0])
    long_axis = "103339001"
    assert _num(group, "LDMMBL") == pytest.approx(_num(group, long_axis) - _num(baseline, long_axis), abs=1e-9)
    # in-plane scaling: the area, hence the volume, by about S**2 (same voxelisation bounds apply loosely)
    assert _num(group, "VOLPCTBL") == pytest.approx(100 * (S**2 - 1), abs=10)
    evaluations = {e.name.value: e.value.value for e in group.get_qualitative_evaluations()}
    assert evaluations["LESRESP"] == "LESPROG"  # >= +20 %: progressing (Sun 2022)
    comments = [item.TextValue for item in group[0].ContentSequence
                if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert "Lesion-wise response (Sun 2022): algorithmic, requires radiologist confirmation." in comments


def test_time_points_and_the_prior_report_item(studies):
    root, *_ = studies
    baseline_sr, _ = _outputs(root / "baseline")
    follow_up_sr, _ = _outputs(root / "follow-up")

    def time_point(sr: Path) -> dict[str, str]:
        group = lesion_groups(hd.sr.srread(sr).content)[0]
        return {item.ConceptNameCodeSequence[0].CodeMeaning: str(item.get("TextValue", "")) for item in
                group[0].ContentSequence if item.RelationshipType == "HAS OBS CONTEXT"}
    assert time_point(baseline_sr)["Subject Time Point Identifier"] == "T0"
    assert time_point(follow_up_sr)["Time Point"] == "T1 (day 94)"
    report = hd.sr.srread(follow_up_sr)
    prior_uid = str(pydicom.dcmread(baseline_sr).SOPInstanceUID)
    (item,) = [i for i in report.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "122075"]
    assert item.ValueType == "COMPOSITE"
    assert item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == prior_uid
    evidence = [sop.ReferencedSOPInstanceUID for study in report.PertinentOtherEvidenceSequence
                for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence]
    assert evidence == [prior_uid]
    assert "PredecessorDocumentsSequence" not in report


def test_fhir_focus_and_derived_from_follow_the_lesion(studies):
    root, *_ = studies
    _, baseline = _outputs(root / "baseline")
    _, follow_up = _outputs(root / "follow-up")

    def resources(bundle: dict, kind: str) -> list[dict]:
        return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]

    def size(bundle: dict) -> dict:
        (found,) = [o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "21889-1"]
        return found
    assert size(follow_up)["focus"] == size(baseline)["focus"]
    (change,) = [o for o in resources(follow_up, "Observation") if o["code"]["coding"][0]["code"] == "LESCHG"]
    assert change["focus"] == size(baseline)["focus"]
    prior_size_identifier = size(baseline)["identifier"][0]  # read from the prior's own Bundle
    assert {"type": "Observation", "identifier": prior_size_identifier} in change["derivedFrom"]
    (report,) = resources(follow_up, "DiagnosticReport")
    (baseline_report,) = resources(baseline, "DiagnosticReport")
    associated = [x["valueReference"] for x in report["extension"] if x["url"] == IMR]
    assert {"type": "DiagnosticReport", "identifier": baseline_report["identifier"][0]} in associated
    assert any(ref["type"] == "ImagingStudy" for ref in associated)
    codes = {c["code"]["coding"][0]["code"] for c in change["component"]}
    assert {"LDPCTBL", "LDPCTPREV", "LDMMBL", "VOLPCTBL", "CD8RSDELTA", "LESRESP", "MATCHMETH", "MATCHCONF",
            "MATCHDIST"} <= codes
    assert "Lesion-wise response (Sun 2022): algorithmic, requires radiologist confirmation." in [
        note["text"] for note in change["note"]]


def _features(bundle: dict) -> dict[tuple[str, str], dict]:
    """(IBSI tag, region) -> the feature's component, from the Bundle's radiomics-features Observations."""
    return {(part["code"]["text"], found["method"]["coding"][0]["display"]): part
            for found in (e["resource"] for e in bundle["entry"]) if found["resourceType"] == "Observation"
            and found["code"]["coding"][0]["code"] == "RADFEAT" for part in found.get("component", [])}


def test_fhir_lesion_change_has_every_feature_change_computed_from_both_bundles(studies):
    """Each IBSI-coded feature of both studies' Bundles has its change (follow-up minus baseline)
    and its relative change (% of the baseline's magnitude), coded like the feature."""
    root, *_ = studies
    _, baseline = _outputs(root / "baseline")
    _, follow_up = _outputs(root / "follow-up")
    before, after = _features(baseline), _features(follow_up)
    assert before.keys() == after.keys() and before
    (change,) = [e["resource"] for e in follow_up["entry"] if e["resource"]["resourceType"] == "Observation"
                 and e["resource"]["code"]["coding"][0]["code"] == "LESCHG"]
    deltas = {part["code"]["text"]: part for part in change["component"]
              if part["code"]["coding"][0]["system"] == "https://theibsi.github.io/ibsi/"}
    assert len(deltas) == 2 * len(before)
    assert "NOTCOMPARABLE" not in {part["code"]["coding"][0]["code"] for part in change["component"]}
    for (tag, region), old in before.items():
        b, f = old["valueQuantity"]["value"], after[(tag, region)]["valueQuantity"]["value"]
        absolute, relative = deltas[f"Change of {tag}, {region}"], deltas[f"Relative change of {tag} (%), {region}"]
        assert absolute["code"]["coding"] == relative["code"]["coding"] == old["code"]["coding"]
        assert absolute["valueQuantity"]["code"] == old["valueQuantity"]["code"]
        assert absolute["valueQuantity"]["value"] == pytest.approx(f - b, rel=1e-6, abs=1e-9 * max(1, abs(b), abs(f)))
        if b == 0:
            assert "valueQuantity" not in relative and relative["dataAbsentReason"]
        else:
            assert relative["valueQuantity"]["code"] == "%"
            assert relative["valueQuantity"]["value"] == pytest.approx(100 * (f - b) / abs(b), rel=1e-6, abs=1e-7)


@pytest.mark.external
def test_follow_up_outputs_pass_dciodvfy_and_the_fhir_validator(studies):
    root, *_ = studies
    sr, _ = _outputs(root / "follow-up")
    result = subprocess.run([require_tool("dciodvfy"), str(sr)], capture_output=True, text=True)
    assert [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")] == []
    assert_valid_fhir(*(root / "follow-up").glob("*.fhir.json"))


def test_a_prior_of_another_patient_is_ignored_with_a_note(studies, tmp_path):
    root, _, rtstruct, _ = studies
    (baseline_sr,) = (root / "baseline").glob("*.dcm")
    other = pydicom.dcmread(baseline_sr)
    other.PatientID = "SOMEONE_ELSE"
    other.save_as(tmp_path / "other.dcm")
    run = _score(root / "study" / "ct", rtstruct, tmp_path / "out", tmp_path / "other.dcm")
    sr, bundle = _outputs(tmp_path / "out")
    group = _group(sr)
    assert "LDPCTBL" not in {m.name.value for m in group.get_measurements()}
    notes = [str(i.TextValue) for i in pydicom.dcmread(sr).ContentSequence[-1].ContentSequence]
    assert "prior SR ignored: patient ID differs" in notes
    (report,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert "prior SR ignored: patient ID differs" in report["conclusion"]
    assert "extension" not in report
    assert run.returncode == 0


def test_the_follow_up_is_labelled_synthetic_under_new_uids(studies, sts019):
    root, baseline_rs, rtstruct, _ = studies
    baseline_ct = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((sts019 / "image").iterdir())]
    follow_up_ct = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((root / "study" / "ct").iterdir())]
    rs = pydicom.dcmread(rtstruct)
    for ds in [*follow_up_ct, rs]:
        assert ds.StudyDescription == ds.SeriesDescription == "SYNTHETIC follow-up (contour scaled x1.3)"
        assert ds.StudyDate == "20020301"
    old = {str(ds.SOPInstanceUID) for ds in baseline_ct} | {str(baseline_ct[0].SeriesInstanceUID),
                                                               str(baseline_ct[0].StudyInstanceUID)}
    new = {str(ds.SOPInstanceUID) for ds in follow_up_ct}
    assert not new & old and str(follow_up_ct[0].SeriesInstanceUID) not in old
    assert {str(ds.FrameOfReferenceUID) for ds in follow_up_ct} == {str(baseline_ct[0].FrameOfReferenceUID)}
    referenced = {str(image.ReferencedSOPInstanceUID) for roi in rs.ROIContourSequence
                  for contour in roi.ContourSequence for image in contour.get("ContourImageSequence", [])}
    assert not referenced & old  # (the sample's RTSTRUCT names CT images the sample does not ship)
    (study,) = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence
    assert study.ReferencedSOPInstanceUID == follow_up_ct[0].StudyInstanceUID == rs.StudyInstanceUID
    assert study.RTReferencedSeriesSequence[0].SeriesInstanceUID == follow_up_ct[0].SeriesInstanceUID


def _show(sr: Path) -> list[str]:
    run = subprocess.run([sys.executable, "-m", "service.cli", "show", str(sr)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_show_prints_the_change_table_of_a_follow_up(studies, sts019):
    """`show` reads the change back from the follow-up SR; each cell is checked against the
    polygons (D %, volume %) or against the two SRs' own measurements read with highdicom."""
    root, baseline_rs, rtstruct, _ = studies
    baseline_sr, follow_up_sr = _outputs(root / "baseline")[0], _outputs(root / "follow-up")[0]
    assert "Change against the earlier studies:" not in _show(baseline_sr)
    lines = _show(follow_up_sr)
    header = lines.index("Change against the earlier studies:")
    assert [cell.strip() for cell in lines[header + 1].split("  ") if cell.strip()] == [
        "lesion", "D baseline mm", "D follow-up mm", "D % vs baseline", "volume % vs baseline", "category",
        "CD8 score delta"]
    baseline, follow_up = _group(baseline_sr), _group(follow_up_sr)
    (row,) = [line for line in lines[header + 3:] if line.startswith(str(follow_up.tracking_identifier))]
    cells = [cell.strip() for cell in row.split("  ") if cell.strip()]
    name, before, after, diameter_pct, volume_pct, category, cd8_delta = cells
    long_axis, score = "103339001", "CD8RS"
    assert name == str(baseline.tracking_identifier)
    assert float(before) == pytest.approx(_num(baseline, long_axis), abs=0.05)
    assert float(after) == pytest.approx(_num(follow_up, long_axis), abs=0.05)
    low, high = diameter_percent_bounds(baseline_rs, rtstruct, sts019 / "image")
    assert low - 0.05 <= float(diameter_pct) <= high + 0.05
    assert float(volume_pct) == pytest.approx(100 * (S**2 - 1), abs=10)
    assert category == "progressing"  # D >= +20 %
    assert float(cd8_delta) == pytest.approx(_num(follow_up, score) - _num(baseline, score), abs=0.0005)


def _groups(sr: Path) -> list:
    return lesion_groups(hd.sr.srread(sr).content)


def _uid_refs(group, code: str) -> list[str]:
    return [str(item.UID) for item in group[0].ContentSequence
            if item.ValueType == "UIDREF" and item.ConceptNameCodeSequence[0].CodeValue == code]


def test_a_split_gives_fragment_uids_derived_from_the_parent_and_changes_on_the_sum(studies, split_and_merge, sts019):
    root, split_rs, _, _ = split_and_merge
    (parent,) = _groups(_outputs(root / "baseline")[0])
    fragments = _groups(_outputs(root / "split")[0])
    assert len(fragments) == 2
    uids = {str(group.tracking_uid) for group in fragments}
    assert len(uids) == 2 and str(parent.tracking_uid) not in uids
    e = pixel_diagonal_mm(sts019 / "image")
    low, high = percent_bounds(longest_chord_mm(split_rs, 1) + longest_chord_mm(split_rs, 2),
                                longest_chord_mm(studies[1]), 2 * e, e)
    for group in fragments:
        assert _uid_refs(group, "DERIVEDUID") == [str(parent.tracking_uid)]
        assert low <= _num(group, "LDPCTBL") <= high
        assert "CD8RSDELTA" not in {m.name.value for m in group.get_measurements()}


def test_a_merge_keeps_the_uid_of_the_larger_baseline_lesion(studies, split_and_merge, sts019):
    root, _, baseline_split_rs, later_rs = split_and_merge
    halves = _groups(_outputs(root / "baseline-split")[0])
    larger = max(halves, key=lambda group: _num(group, "103339001"))
    smaller = next(group for group in halves if group is not larger)
    merge_sr, merge_bundle = _outputs(root / "merge")
    (merged,) = _groups(merge_sr)
    assert str(merged.tracking_uid) == str(larger.tracking_uid)
    assert _uid_refs(merged, "MERGEDUID") == [str(smaller.tracking_uid)]  # 0 mm from now on, in later reports too
    e = pixel_diagonal_mm(sts019 / "image")
    low, high = percent_bounds(longest_chord_mm(later_rs),
                                longest_chord_mm(baseline_split_rs, 1) + longest_chord_mm(baseline_split_rs, 2),
                                e, 2 * e)
    assert low <= _num(merged, "LDPCTBL") <= high
    notes = [str(i.TextValue) for i in pydicom.dcmread(merge_sr).ContentSequence[-1].ContentSequence]
    assert f"prior lesion {smaller.tracking_identifier}: merged into {larger.tracking_identifier} (0 mm)" in notes
    _, baseline_bundle = _outputs(root / "baseline-split")
    sizes = [e["resource"]["identifier"][0] for e in baseline_bundle["entry"]
             if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["coding"][0]["code"] == "21889-1"]
    (change,) = [e["resource"] for e in merge_bundle["entry"] if e["resource"]["resourceType"] == "Observation"
                 and e["resource"]["code"]["coding"][0]["code"] == "LESCHG"]
    assert all({"type": "Observation", "identifier": size} in change["derivedFrom"] for size in sizes)


def test_the_prior_extent_and_acquisition_are_read_back(studies, sts019):
    """The baseline SR states its CT: the follow-up compares like with like (same CT), so every
    feature delta is comparable and each has a NUM in the LESCHG container of its region's group."""
    root, *_ = studies
    groups = hd.sr.srread(_outputs(root / "follow-up")[0]).content.get_volumetric_roi_measurement_groups()
    assert sorted(g.method.value for g in groups) == ["RGNCORE", "RGNRING"]  # the lesion's core and ring
    for group in groups:
        texts = [item.TextValue for item in group[0].ContentSequence if item.ValueType == "TEXT"
                 and item.ConceptNameCodeSequence[0].CodeValue == "NOTCOMPARABLE"]
        assert texts == []
        (container,) = [item for item in group[0].ContentSequence if item.ValueType == "CONTAINER"
                        and item.ConceptNameCodeSequence[0].CodeValue == "LESCHG"]
        features = {(m.name.value, m.method.value) for m in group.get_measurements() if m.method}
        deltas = {(item.ConceptNameCodeSequence[0].CodeValue,
                   next(c.ConceptCodeSequence[0].CodeValue for c in item.ContentSequence
                        if c.ConceptNameCodeSequence[0].CodeValue == "370129005"))
                  for item in container.ContentSequence if item.ValueType == "NUM"}
        assert deltas == features and {region for _, region in features} == {group.method.value}


@pytest.mark.external
def test_split_and_merge_outputs_pass_dciodvfy_and_the_fhir_validator(split_and_merge):
    root, *_ = split_and_merge
    for name in ("split", "baseline-split", "merge"):
        sr, _ = _outputs(root / name)
        result = subprocess.run([require_tool("dciodvfy"), str(sr)], capture_output=True, text=True)
        assert [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")] == [], name
    assert_valid_fhir(*(root / "split").glob("*.fhir.json"), *(root / "merge").glob("*.fhir.json"))
