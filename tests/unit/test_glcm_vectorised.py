"""The vectorised GLCM coefficients and MCC against pyradiomics' own GLCM class, run the plain way.

Both classes get the same image, mask and pyradiomics settings (pyradiomics' own binning), so the
only difference is service.scoring.glcm_vectorised; every GLCM feature must agree to relative
1e-9 (NaN where pyradiomics gives NaN). Shapes: textured blobs in all 13 directions and in 2D,
grey levels with wide gaps (large Ng, few levels present: what absolute bins give), and the
degenerate regions (one voxel, a constant region, a one-voxel-thin plane, a line, speckle), plus
the shared STS lesions on the scorer's 1 mm grid.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from radiomics import glcm

from service.imaging.crops import lesion_crop
from service.imaging.contours import rtstruct_to_masks
from service.imaging.volume import read_ct_directory
from service.scoring.glcm_vectorised import VectorisedGlcm
from service.scoring.lesion import lesion_on_feature_grid
from service.scoring.settings import ExtractionSettings
from tests.support.external import DATA_DIR, require_data

VectorisedGLCM = type("VectorisedGLCM", (VectorisedGlcm, glcm.RadiomicsGLCM), {})


def _features(cls: type, image: sitk.Image, mask: sitk.Image, **settings: object) -> dict[str, float]:
    extractor = cls(image, mask, label=1, **settings)
    extractor.enableAllFeatures()
    return {name: float(value) for name, value in extractor.execute().items()}


def _assert_same_as_pyradiomics(hu: np.ndarray, region: np.ndarray, spacing=(1.0, 1.0, 1.0), **settings: object) -> None:
    image = sitk.GetImageFromArray(hu.astype(np.float64))
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(region.astype(np.uint8))
    mask.CopyInformation(image)
    expected = _features(glcm.RadiomicsGLCM, image, mask, **settings)
    ours = _features(VectorisedGLCM, image, mask, **settings)
    assert ours.keys() == expected.keys()
    for name, value in expected.items():
        if math.isnan(value):
            assert math.isnan(ours[name]), name
        else:
            assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-300), name


def _blob(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    centre = (np.array(shape) - 1) / 2
    radius = np.sqrt(((z - centre[0]) / shape[0]) ** 2 + ((y - centre[1]) / shape[1]) ** 2 + ((x - centre[2]) / shape[2]) ** 2)
    region = radius + 0.05 * rng.standard_normal(shape) < 0.42
    hu = 40 + 30 * rng.standard_normal(shape) + 20 * np.sin(x / 3.0)
    return hu, region


def _gapped_levels(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Four intensities far apart: with bin width 1, levels 1, 6, 51 and 121 of Ng = 121."""
    return np.random.default_rng(seed).choice([0.0, 5.0, 50.0, 120.0], size=shape)


def _single_voxel() -> np.ndarray:
    region = np.zeros((5, 5, 5), dtype=bool)
    region[2, 2, 2] = True
    return region


def _plane() -> np.ndarray:
    region = np.zeros((5, 9, 8), dtype=bool)
    region[2, 1:8, 1:7] = True
    return region


def _line() -> np.ndarray:
    region = np.zeros((6, 6, 9), dtype=bool)
    region[3, 2, 1:8] = True
    return region


BLOB_HU, BLOB = _blob((18, 22, 20), 1)
CASES = [
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10}, id="textured-blob"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 25}, id="textured-blob-coarse"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10, "force2D": True, "force2Ddimension": 0}, id="textured-blob-2D"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10, "symmetricalGLCM": False}, id="asymmetric-glcm"),
    pytest.param(_gapped_levels((12, 14, 13), 2), np.ones((12, 14, 13), dtype=bool), {"binWidth": 1}, id="gapped-levels"),
    pytest.param(_gapped_levels((12, 14, 13), 3), _blob((12, 14, 13), 3)[1], {"binWidth": 1}, id="gapped-levels-blob"),
    pytest.param(BLOB_HU[:5, :5, :5], _single_voxel(), {"binWidth": 10}, id="single-voxel"),
    pytest.param(np.full((8, 9, 10), 37.0), _blob((8, 9, 10), 4)[1], {"binWidth": 10}, id="constant"),
    pytest.param(_gapped_levels((5, 9, 8), 5), _plane(), {"binWidth": 1}, id="thin-plane"),
    pytest.param(_gapped_levels((6, 6, 9), 6), _line(), {"binWidth": 1}, id="line"),
    pytest.param(BLOB_HU, np.random.default_rng(7).random(BLOB_HU.shape) > 0.9, {"binWidth": 10}, id="speckle"),
    pytest.param(np.random.default_rng(8).choice([10.0, 30.0], size=(7, 8, 9)), np.ones((7, 8, 9), dtype=bool),
                 {"binWidth": 10}, id="two-levels"),
]


@pytest.mark.parametrize(("hu", "region", "settings"), CASES)
def test_vectorised_glcm_equals_pyradiomics(hu, region, settings):
    _assert_same_as_pyradiomics(hu, region, **settings)


@pytest.mark.parametrize("patient", ["STS_019", "STS_025", "STS_002"])
@pytest.mark.parametrize("bin_width", [10, 25])
def test_vectorised_glcm_equals_pyradiomics_on_the_shared_sts_lesions(patient, bin_width):
    """The real lesions as the scorer sees them: cropped and resampled to its 1 mm grid."""
    folder = require_data(DATA_DIR / "ct-rtstruct" / patient)
    ct = read_ct_directory(folder / "image")
    (lesion,) = rtstruct_to_masks(pydicom.dcmread(folder / "mask" / "RS.dcm"), ct)
    settings = ExtractionSettings()
    resampled = lesion_on_feature_grid(lesion_crop(ct, lesion, settings), settings)
    hu = sitk.GetArrayFromImage(resampled.image)
    _assert_same_as_pyradiomics(hu, resampled.core, resampled.image.GetSpacing(), binWidth=bin_width)
