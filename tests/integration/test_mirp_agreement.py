"""An independent IBSI engine agrees with ours: MIRP (PyPI `mirp`, pinned by scripts/install-mirp,
run in its own virtualenv) on the shared STS lesions under IBSI CT configuration C
(examples/parameters/ibsi-ct-C.yaml: 2 mm trilinear, integer HU, [-1000, 400] HU, 25 HU bins).

Both engines get the same CT and the same lesion mask (ours, rasterised from the RTSTRUCT and
written as NIfTI), so the comparison is of everything after: grid, interpolation, rounding,
re-segmentation, discretisation and the features. Every feature both compute agrees to relative
1e-4 (MIRP keeps intensity statistics in float32, hence not tighter)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from service.feature_report import features_from_nifti
from service.imaging.contours import rtstruct_to_masks
from service.imaging.selection import read_study_headers, select_inputs
from service.scoring.parameter_file import load_parameter_file
from tests.support.external import DATA_DIR, missing_dependency, require_data, require_external
from tests.support.mirp_names import our_name

pytestmark = pytest.mark.external

REPO = Path(__file__).resolve().parents[2]
CASES = ("STS_019", "STS_025", "STS_002")
# Configuration C in MIRP's terms. MIRP anti-aliases before downsampling by default; IBSI's
# configurations do not. MIRP rounds CT intensities after interpolation (its CT image class).
MIRP_CONFIGURATION_C = {
    "image_modality": "CT", "by_slice": False, "new_spacing": 2.0, "spline_order": 1, "anti_aliasing": False,
    "roi_spline_order": 1, "roi_interpolation_mask_inclusion_threshold": 0.5,
    "resegmentation_intensity_range": [-1000.0, 400.0],
    "base_feature_families": "all", "base_discretisation_method": "fixed_bin_size",
    "base_discretisation_bin_width": 25.0,
    "glcm_spatial_method": "3d_average", "glrlm_spatial_method": "3d_average", "glszm_spatial_method": "3d",
    "ngldm_spatial_method": "3d", "ngtdm_spatial_method": "3d", "ivh_discretisation_method": "none",
}


def _mirp_python() -> str:
    require_external("MIRP")
    candidates = [os.environ.get("RCDS_MIRP_PYTHON"), str(REPO / ".venv-mirp" / "bin" / "python")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    missing_dependency("MIRP is not installed (scripts/install-mirp, or RCDS_MIRP_PYTHON)")
    raise AssertionError("unreachable")


def _as_nifti(case: str, out: Path) -> tuple[Path, Path]:
    """The case's CT (integer HU) and our lesion mask, on the CT grid, as NIfTI files."""
    root = require_data(DATA_DIR / "ct-rtstruct" / case)
    (contours,) = (root / "mask").iterdir()
    inputs, _ = select_inputs(read_study_headers(root / "image", contours))
    (lesion,) = rtstruct_to_masks(inputs.contours, inputs.ct)
    geometry = inputs.ct.geometry
    image = sitk.GetImageFromArray(np.asarray(inputs.ct.hu).astype(np.int16))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    labels = np.zeros(inputs.ct.hu.shape, dtype=np.uint8)
    box = tuple(slice(start, start + size) for start, size in zip(lesion.offset_zyx, lesion.mask.shape))
    labels[box] = lesion.mask
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    paths = out / f"{case}_image.nii.gz", out / f"{case}_mask.nii.gz"
    sitk.WriteImage(image, str(paths[0]))
    sitk.WriteImage(mask, str(paths[1]))
    return paths


def test_mirp_agrees_with_us_on_every_shared_feature_of_the_sts_lesions(tmp_path):
    python = _mirp_python()
    pairs = [_as_nifti(case, tmp_path) for case in CASES]
    output = tmp_path / "mirp.json"
    request = {"cases": [[str(image), str(mask)] for image, mask in pairs], "settings": MIRP_CONFIGURATION_C,
               "output": str(output)}
    run = subprocess.run([python, str(REPO / "tests" / "support" / "mirp_features.py")], input=json.dumps(request),
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    theirs_per_case = json.loads(output.read_text())

    settings = load_parameter_file(REPO / "examples" / "parameters" / "ibsi-ct-C.yaml")
    for case, (image, mask), theirs in zip(CASES, pairs, theirs_per_case):
        (roi,) = features_from_nifti(image, mask, settings).rois
        ours = roi.features["core"]
        shared = {our_name(name): value for name, value in theirs.items() if our_name(name) in ours}
        assert len(shared) >= 100, (case, sorted(shared))  # morphology, statistics, histogram, texture
        for name, value in shared.items():
            assert ours[name] == pytest.approx(value, rel=1e-4, abs=1e-9), (case, name)
