"""`radiomics-cds score`, the offline pipeline, on the real CT + SEG cases (5 overlapping
segments; the liver) and on a real RTSTRUCT case (STS_019) for the lesion's site."""

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pypdf
import pytest
from fhir.resources.R4B.bundle import Bundle

from tests.support.external import require_tool
from tests.support.fhir_validation import assert_valid_fhir
from tests.support import small_study
from tests.support.highdicom_seg import highdicom_seg
from tests.support.sr_groups import lesion_groups

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scored(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("score")
    seg = data_dir / "ct-seg" / "partial_overlaps.dcm"
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "score", "--ct", str(data_dir / "ct-seg" / "ct"), "--seg", str(seg),
         "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return out, run.stdout, pydicom.dcmread(seg)


def test_one_group_per_segment_with_volumes_from_the_seg_frames(scored):
    out, stdout, seg = scored
    (sr_path,) = out.glob("*.dcm")
    report = hd.sr.srread(sr_path).content
    groups = lesion_groups(report)
    assert len(groups) == len(seg.SegmentSequence) == 5
    # Independent volume: set pixels of each segment's frames x voxel volume from the SEG itself.
    frames = seg.pixel_array
    spacing = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    voxel_ml = float(spacing.PixelSpacing[0]) * float(spacing.PixelSpacing[1]) * float(spacing.SpacingBetweenSlices) / 1000
    referenced = set()
    for group in groups:
        (segment,) = group.referenced_segment.referenced_segment_numbers
        referenced.add(segment)
        volume = next(m for m in group.get_measurements() if m.name.meaning == "Volume").value
        in_segment = [i for i, f in enumerate(seg.PerFrameFunctionalGroupsSequence)
                      if f.SegmentIdentificationSequence[0].ReferencedSegmentNumber == segment]
        assert volume == pytest.approx(np.count_nonzero(frames[in_segment]) * voxel_ml, rel=1e-9)
    assert referenced == {1, 2, 3, 4, 5}
    assert "not computable" in stdout and "SR:" in stdout and "FHIR Bundle:" in stdout


@pytest.mark.external
def test_sr_from_seg_passes_dciodvfy_and_bundle_parses(scored):
    out, _, _ = scored
    (sr_path,) = out.glob("*.dcm")
    result = subprocess.run([require_tool("dciodvfy"), str(sr_path)], capture_output=True, text=True)
    assert [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")] == []
    (bundle_path,) = out.glob("*.json")
    bundle = Bundle.model_validate_json(bundle_path.read_text())
    assert bundle.type == "transaction"


def test_score_writes_the_tumour_board_page_beside_the_sr_and_bundle(scored):
    """`score --out` writes four files named after the SR: the SR, the page (one A4 PDF naming
    every segment's lesion, with a key image of each), its Encapsulated PDF in the SR's study,
    and the Bundle whose presentedForm is the page with its size and SHA-1."""
    out, stdout, seg = scored
    (sr_path,) = out.glob("*.dcm")
    uid = sr_path.name.removesuffix(".dcm")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{uid}{suffix}" for suffix in (".dcm", ".fhir.json", ".summary.pdf", ".summary.dicom"))
    pdf = (out / f"{uid}.summary.pdf").read_bytes()
    assert f"Tumour-board page:     {out / uid}.summary.pdf" in stdout
    show = subprocess.run([sys.executable, "-m", "service.cli", "show", str(sr_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert show.returncode == 0 and f"Tumour-board page: {out / uid}.summary.pdf" in show.stdout
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1 and len(reader.pages[0].images) == len(seg.SegmentSequence)
    text = " ".join(reader.pages[0].extract_text().split())
    for group in lesion_groups(hd.sr.srread(sr_path).content):
        assert str(group.tracking_identifier) in text
    assert "not a diagnosis" in text and "uncalibrated - research use only" in text
    document = pydicom.dcmread(out / f"{uid}.summary.dicom")
    assert document.EncapsulatedDocument[:document.EncapsulatedDocumentLength] == pdf
    assert document.StudyInstanceUID == pydicom.dcmread(sr_path).StudyInstanceUID
    bundle = json.loads((out / f"{uid}.fhir.json").read_text())
    [report] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    [form] = report["presentedForm"]
    assert base64.b64decode(form["data"], validate=True) == pdf and form["size"] == len(pdf)
    assert base64.b64decode(form["hash"], validate=True) == hashlib.sha1(pdf).digest()


def _region(value: str, meaning: str) -> pydicom.Dataset:
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "SCT", meaning
    return code


@pytest.mark.external  # the Bundle goes through the FHIR validator
def test_finding_site_is_the_segments_anatomic_region(data_dir, tmp_path):
    """A copy of the SEG whose segment 1 is coded "Head" (finer than its location class, head and
    neck) and segment 2 "Kidney" (no location class names it): each group's finding site is its
    segment's own code (SNOMED CT, as written into the copy), and so is the bodySite of each of
    the lesion's FHIR Observations; the uncoded segments, whose names (colours) give no
    location, have none."""
    seg = pydicom.dcmread(data_dir / "ct-seg" / "partial_overlaps.dcm")
    seg.SegmentSequence[0].AnatomicRegionSequence = [_region("69536005", "Head")]
    seg.SegmentSequence[1].AnatomicRegionSequence = [_region("64033007", "Kidney")]
    seg_path = tmp_path / "seg.dcm"
    seg.save_as(seg_path)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "score", "--ct", str(data_dir / "ct-seg" / "ct"), "--seg", str(seg_path),
         "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    (sr_path,) = out.glob("*.dcm")
    sites = {group.referenced_segment.referenced_segment_numbers[0]:
             [(site.value.value, site.value.scheme_designator) for site in group.finding_sites]
             for group in lesion_groups(hd.sr.srread(sr_path).content)}
    assert sites == {1: [("69536005", "SCT")], 2: [("64033007", "SCT")], 3: [], 4: [], 5: []}
    segments = {str(group.tracking_uid): group.referenced_segment.referenced_segment_numbers[0]
                for group in hd.sr.srread(sr_path).content.get_volumetric_roi_measurement_groups()}
    (bundle_path,) = out.glob("*.fhir.json")
    body_sites = _lesion_body_sites(json.loads(bundle_path.read_text()))
    assert {segments[uid]: codings for uid, codings in body_sites.items()} == {
        1: {((SCT, "69536005"),)}, 2: {((SCT, "64033007"),)}, 3: {()}, 4: {()}, 5: {()}}
    assert_valid_fhir(bundle_path)


SCT = "http://snomed.info/sct"
MCODE_TUMOR_SIZE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-tumor-size"


def _lesion_body_sites(bundle: dict) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Per lesion (Tracking UID, from focus), the bodySite codings of its Observations, each as
    (system, code) pairs: one set member when every Observation says the same."""
    sites: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Observation" and resource.get("focus"):
            uid = resource["focus"][0]["identifier"]["value"].removeprefix("urn:oid:")
            codings = tuple((c["system"], c["code"]) for c in resource["bodySite"].get("coding", []))
            sites.setdefault(uid, set()).add(codings)
    return sites


def _tumour_sizes(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
            and {c["code"] for c in e["resource"]["code"]["coding"]} == {"21889-1"}]


@pytest.mark.external  # the Bundle goes through the FHIR validator
def test_liver_seg_bundle_conforms_to_mcode_tumor_size(data_dir, tmp_path):
    """The real liver SEG (one segment "Liver", no anatomic region of its own): its tumour size
    declares mCODE TumorSize and the validator, checking that profile, finds nothing; the
    lesion's Observations carry the liver's SNOMED CT code (DICOM CID 4: 10200004), which its
    location class (from the segment's name) names, as does the SR's finding site."""
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "score", "--ct", str(data_dir / "ct-seg" / "ct"),
         "--seg", str(data_dir / "ct-seg" / "liver.dcm"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    (bundle_path,) = out.glob("*.fhir.json")
    bundle = json.loads(bundle_path.read_text())
    (size,) = _tumour_sizes(bundle)
    assert size["meta"]["profile"] == [MCODE_TUMOR_SIZE]
    assert list(_lesion_body_sites(bundle).values()) == [{((SCT, "10200004"),)}]
    (sr_path,) = out.glob("*.dcm")
    (group,) = lesion_groups(hd.sr.srread(sr_path).content)
    assert [(site.value.value, site.value.scheme_designator) for site in group.finding_sites] == [("10200004", "SCT")]
    assert_valid_fhir(bundle_path)


@pytest.mark.external  # the Bundle goes through the FHIR validator
def test_rtstruct_lesion_site_from_the_site_mapping_is_its_body_site(sts019, tmp_path):
    """STS_019's RTSTRUCT ROI, mapped to the lung by the site_mapping setting: every Observation
    of the lesion has bodySite SNOMED CT 39607008 (DICOM CID 4 "Lung"), the SR's finding site is
    the same code, and the Bundle passes the validator with mCODE TumorSize checked. The site
    also set fhir_result_status final: the report and every Observation say so."""
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "score", "--ct", str(sts019 / "image"),
         "--rtstruct", str(sts019 / "mask" / "RS.dcm"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "RCDS_SITE_MAPPING": json.dumps({"GTV_Mass_CT": "lung"}), "RCDS_FHIR_RESULT_STATUS": "final"},
    )
    assert run.returncode == 0, run.stderr
    (bundle_path,) = out.glob("*.fhir.json")
    bundle = json.loads(bundle_path.read_text())
    assert {entry["resource"]["status"] for entry in bundle["entry"]
            if entry["resource"]["resourceType"] in ("Observation", "DiagnosticReport")} == {"final"}
    assert [size["meta"]["profile"] for size in _tumour_sizes(bundle)] == [[MCODE_TUMOR_SIZE]]
    assert list(_lesion_body_sites(bundle).values()) == [{((SCT, "39607008"),)}]
    (sr_path,) = out.glob("*.dcm")
    (group,) = lesion_groups(hd.sr.srread(sr_path).content)
    assert [(site.value.value, site.value.scheme_designator) for site in group.finding_sites] == [("39607008", "SCT")]
    assert_valid_fhir(bundle_path)


@pytest.mark.parametrize("command", [["score", "--out", "{out}"], ["features"]], ids=["score", "features"])
def test_nan_in_contour_data_is_a_specific_error_not_a_traceback(tmp_path, command):
    """A malformed input reaches cli.main as a RadiomicsCdsError: one line naming the attribute, exit 4 (input)."""
    ct_dir = tmp_path / "ct"
    small_study.write(ct_dir, small_study.ct_slices())
    nan_square = [v if i != 2 else float("nan") for i, v in enumerate(small_study.square_contour(1))]
    (rtstruct,) = small_study.write(tmp_path / "rtstruct", [small_study.rtstruct([nan_square])])
    arguments = [part.format(out=tmp_path / "out") for part in command]
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", *arguments, "--ct", str(ct_dir), "--rtstruct", str(rtstruct)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stderr
    assert "radiomics-cds: contour 1 of ROI 1 of the RTSTRUCT: ContourData value 3 is not finite" in run.stderr
    assert "ContourData value 3 is not finite" in run.stderr


def _score(ct: Path, seg: Path, out: Path) -> list:
    """The volumetric measurement groups of the SR `score` writes for `seg` on `ct`."""
    run = subprocess.run([sys.executable, "-m", "service.cli", "score", "--ct", str(ct), "--seg", str(seg),
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (sr_path,) = out.glob("*.dcm")
    return hd.sr.srread(sr_path).content.get_volumetric_roi_measurement_groups()


def test_labelmap_seg_scores_like_the_binary_seg(data_dir, tmp_path):
    """The liver SEG rewritten as a LABELMAP SEG by highdicom (labels placed from the frames'
    referenced CT instances, not by our reader) scores to the same measurements, to the last digit."""
    binary_path = data_dir / "ct-seg" / "liver.dcm"
    binary = pydicom.dcmread(binary_path)
    slices = sorted((pydicom.dcmread(f) for f in (data_dir / "ct-seg" / "ct").glob("*.dcm")),
                    key=lambda ds: float(ds.ImagePositionPatient[2]))
    slice_of = {ds.SOPInstanceUID: k for k, ds in enumerate(slices)}
    labels = np.zeros((len(slices), binary.Rows, binary.Columns), dtype=np.uint8)
    for frame, item in zip(binary.pixel_array.reshape(-1, binary.Rows, binary.Columns),
                           binary.PerFrameFunctionalGroupsSequence):
        labels[slice_of[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]] |= frame
    label_map = highdicom_seg(slices, labels, {1: "Liver"})
    label_map.save_as(tmp_path / "labelmap.dcm", enforce_file_format=True)

    def measurements(groups: list) -> list[tuple[str, str, float]]:
        """Every measurement of the lesion's groups (core and ring), with its group's region."""
        return sorted((group.method.value, m.name.meaning, m.value) for group in groups for m in group.get_measurements())

    from_binary = measurements(_score(data_dir / "ct-seg" / "ct", binary_path, tmp_path / "binary"))
    from_label_map = measurements(_score(data_dir / "ct-seg" / "ct", tmp_path / "labelmap.dcm", tmp_path / "labelmap"))
    pixel = binary.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    voxel_ml = float(pixel.PixelSpacing[0]) * float(pixel.PixelSpacing[1]) * float(pixel.SpacingBetweenSlices) / 1000
    assert ("RGNCORE", "Volume", pytest.approx(int(labels.sum()) * voxel_ml, rel=1e-9)) in from_binary
    assert from_label_map == from_binary
