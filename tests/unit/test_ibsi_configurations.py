"""The IBSI CT configurations A-E as parameter files: each parses to IBSI's settings, docs/features.md
shows each file's settings as they are, and configuration B's in-plane resampling keeps the slices."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from service.imaging.crops import lesion_crop
from service.scoring.parameter_file import load_parameter_file
from service.scoring.resample import resample_lesion
from service.scoring.settings import FEATURE_CLASSES
from tests.support.synthetic_lesion import synthetic_lesion_ct

REPO = Path(__file__).resolve().parents[2]
PARAMETERS = REPO / "examples" / "parameters"

# IBSI reference manual, CT phantom configurations (chapter 5):
# (spacing, interpolator, 2D, re-segmentation range, outlier sigma, bin width, bin count)
IBSI_CT = {
    "A": (None, "sitkLinear", True, (-500.0, 400.0), None, 25.0, None),
    "B": ((2.0, 2.0, 0.0), "sitkLinear", True, (-500.0, 400.0), None, None, 32),
    "C": ((2.0, 2.0, 2.0), "sitkLinear", False, (-1000.0, 400.0), None, 25.0, None),
    "D": ((2.0, 2.0, 2.0), "sitkLinear", False, None, 3.0, None, 32),
    "E": ((2.0, 2.0, 2.0), "sitkBSpline", False, (-1000.0, 400.0), 3.0, None, 32),
}


@pytest.mark.parametrize("name", sorted(IBSI_CT))
def test_each_configuration_file_parses_to_ibsis_settings(name):
    settings = load_parameter_file(PARAMETERS / f"ibsi-ct-{name}.yaml")
    spacing, interpolator, two_d, reseg, sigma, width, count = IBSI_CT[name]
    assert (settings.resampledPixelSpacing, settings.interpolator, settings.force2D) == (spacing, interpolator, two_d)
    assert (settings.resegmentRange, settings.outlierFilterSigma) == (reseg, sigma)
    assert (settings.binWidth, settings.binCount) == (width, count)
    assert settings.intensityRounding and settings.maskThreshold == 0.5 and settings.ringWidthMm == 0
    assert set(settings.featureClasses) == set(FEATURE_CLASSES)


def test_the_docs_show_each_files_settings_as_they_are():
    docs = (REPO / "docs" / "features.md").read_text()
    for name in IBSI_CT:
        match = re.search(rf"Configuration {name} \(`examples/parameters/ibsi-ct-{name}.yaml`\):\n\n```yaml\n(.*?)```",
                          docs, re.DOTALL)
        assert match, name
        in_file = yaml.safe_load((PARAMETERS / f"ibsi-ct-{name}.yaml").read_text())
        assert yaml.safe_load(match.group(1)) == {"setting": in_file["setting"]}, name


def test_zero_spacing_keeps_that_axis_grid():
    # Configuration B: 2 x 2 mm in-plane; the slices (2.5 mm here) stay where they are.
    ct, mask = synthetic_lesion_ct((0.0, 0.0, 0.0))
    settings = load_parameter_file(PARAMETERS / "ibsi-ct-B.yaml")
    crop = lesion_crop(ct, mask, settings)
    lesion = resample_lesion(crop.image_hu, crop.mask, crop.volume_geometry, crop.crop_start_xyz,
                             settings.resampledPixelSpacing, margin_mm=0.0, round_intensities=False)
    assert lesion.image.GetSpacing() == pytest.approx((2.0, 2.0, 2.5))
    slices = (lesion.image.GetOrigin()[2] - ct.geometry.origin[2]) / 2.5 + np.arange(lesion.image.GetSize()[2])
    assert slices == pytest.approx(np.round(slices), abs=1e-9)
    # Each resampled voxel is the bilinear in-plane interpolation of its original slice (by hand).
    resampled = sitk.GetArrayFromImage(lesion.image)
    rng = np.random.default_rng(5)
    for k, j, i in zip(*(rng.integers(0, n, 20) for n in resampled.shape)):
        x, y, z = lesion.image.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
        cx, cy, cz = ((np.asarray((x, y, z)) - np.asarray(ct.geometry.origin)) / np.asarray(ct.geometry.spacing))
        assert cz == pytest.approx(round(cz), abs=1e-9)
        x0, y0 = int(np.floor(cx)), int(np.floor(cy))
        fx, fy = cx - x0, cy - y0
        plane = ct.hu[int(round(cz))].astype(float)
        expected = ((1 - fx) * (1 - fy) * plane[y0, x0] + fx * (1 - fy) * plane[y0, x0 + 1]
                    + (1 - fx) * fy * plane[y0 + 1, x0] + fx * fy * plane[y0 + 1, x0 + 1])
        assert resampled[k, j, i] == pytest.approx(expected, rel=1e-5, abs=1e-4)
