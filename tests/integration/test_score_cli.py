"""`radiomics-cds score`, the offline pipeline, on the real CT + SEG case (5 overlapping segments)."""

import base64
import hashlib
import io
import json
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
from tests.support import small_study
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


def test_finding_site_is_the_segments_anatomic_region(data_dir, tmp_path):
    """A copy of the SEG whose segment 1 is coded "Head" (finer than its location class, head and
    neck) and segment 2 "Kidney" (no location class names it): each group's finding site is its
    segment's own code (SNOMED CT, as written into the copy); the uncoded segments, whose names
    (colours) give no location, have none."""
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
    assert "radiomics-cds: contour 1 of ROI 1 of RTSTRUCT" in run.stderr
    assert "ContourData value 3 is not finite" in run.stderr
