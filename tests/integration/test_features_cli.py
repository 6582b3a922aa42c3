"""`radiomics-cds features` on real DICOM (CT + RTSTRUCT, CT + SEG): the service's own engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.feature_report import features_from_dicom
from service.imaging.crops import lesion_crop
from service.imaging.contours import rtstruct_to_masks
from service.imaging.selection import read_instance, select_inputs
from service.scoring.lesion import ScoringContext, score_lesion
from service.location import LocationRules
from service.scoring.panel import signature_panel
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature

REPO = Path(__file__).resolve().parents[2]
CD8_PARAMETERS = REPO / "examples" / "parameters" / "cd8-sun2018.yaml"


def _features(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", "features", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_rtstruct_features_equal_what_the_service_scores_with(sts019):
    run = _features("--ct", str(sts019 / "image"), "--rtstruct", str(sts019 / "mask" / "RS.dcm"),
                    "--settings", str(CD8_PARAMETERS), "--json")
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["settings"]["binLowerBound"] == -1000.0 and document["engine"]["pyradiomics"]
    computable = [roi for roi in document["rois"] if roi["not_computable"] is None]
    assert computable, document["rois"]

    # The service path: the same ROIs scored with the signature's panel, in process.
    headers = [read_instance(p, header_only=True) for p in sorted((sts019 / "image").iterdir())]
    inputs, _ = select_inputs(headers + [read_instance(sts019 / "mask" / "RS.dcm", header_only=True)])
    signature = load_signature()
    context = ScoringContext(ExtractionSettings(), signature, LocationRules(), signature_panel(signature))
    masks = {m.number: m for m in rtstruct_to_masks(inputs.contours, inputs.ct)}
    for roi in computable:
        scored = score_lesion(lesion_crop(inputs.ct, masks[roi["number"]], context.settings), context)
        assert roi["voxel_count"] == masks[roi["number"]].voxel_count
        for variable in signature.variables:
            ours = roi["regions"][variable.region][variable.feature]
            assert ours == pytest.approx(scored.features[variable.region][variable.feature], rel=1e-12)
        # The full panel has every class, the ring no shape.
        assert "morph_volume" in roi["regions"]["core"] and "morph_volume" not in roi["regions"]["ring"]
        assert "cm_joint_max_3D_avg" in roi["regions"]["ring"]


def test_seg_roi_selection_and_text_output(data_dir):
    ct, seg = data_dir / "ct-seg" / "ct", data_dir / "ct-seg" / "partial_overlaps.dcm"
    report = features_from_dicom(ct, seg, ExtractionSettings(featureClasses={"firstorder": ("Mean",)}),
                                 rois=["3", "ORANGE"])
    assert [roi.number for roi in report.rois] == [2, 3]
    # Segment 2 lies in one slice: no 3D texture, and the report says so instead of a number.
    assert report.rois[0].features == {} and "at least 2 per axis" in report.rois[0].not_computable
    run = _features("--ct", str(ct), "--seg", str(seg), "--roi", "3")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("SEG 3 (PURPLE), 10743 voxels") and "stat_mean" in run.stdout


def test_unknown_roi_and_missing_contours_are_clear_errors(data_dir):
    ct, seg = data_dir / "ct-seg" / "ct", data_dir / "ct-seg" / "partial_overlaps.dcm"
    run = _features("--ct", str(ct), "--seg", str(seg), "--roi", "no such lesion")
    assert run.returncode == 4 and "no ROI with contours named or numbered ['no such lesion']" in run.stderr
    run = _features("--ct", str(ct))
    assert run.returncode == 2 and "exactly one of --rtstruct and --seg" in run.stderr
