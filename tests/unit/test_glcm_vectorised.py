"""The vectorised GLCM coefficients and MCC against pyradiomics' own GLCM class, run the plain way.

Both classes get the same image, mask and pyradiomics settings (pyradiomics' own binning), so the
only difference is service.scoring.glcm_vectorised; every GLCM feature must agree to relative
1e-9 (NaN where pyradiomics gives NaN). Shapes: textured blobs in all 13 directions and in 2D,
grey levels with wide gaps (large Ng, few levels present: what absolute bins give), and the
degenerate regions (one voxel, a constant region, a one-voxel-thin plane, a line, speckle), plus
the shared STS lesions on the scorer's 1 mm grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from radiomics import glcm

from service.scoring.glcm_vectorised import VectorisedGlcm
from tests.support import pyradiomics_reference as reference


def _gapped_levels(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Four intensities far apart: with bin width 1, levels 1, 6, 51 and 121 of Ng = 121."""
    return np.random.default_rng(seed).choice([0.0, 5.0, 50.0, 120.0], size=shape)


BLOB_HU, BLOB = reference.blob((18, 22, 20), 1)
CASES = [
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10}, id="textured-blob"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 25}, id="textured-blob-coarse"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10, "force2D": True, "force2Ddimension": 0}, id="textured-blob-2D"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10, "symmetricalGLCM": False}, id="asymmetric-glcm"),
    pytest.param(_gapped_levels((12, 14, 13), 2), np.ones((12, 14, 13), dtype=bool), {"binWidth": 1}, id="gapped-levels"),
    pytest.param(_gapped_levels((12, 14, 13), 3), reference.blob((12, 14, 13), 3)[1], {"binWidth": 1}, id="gapped-levels-blob"),
    pytest.param(BLOB_HU[:5, :5, :5], reference.single_voxel(), {"binWidth": 10}, id="single-voxel"),
    pytest.param(np.full((8, 9, 10), 37.0), reference.blob((8, 9, 10), 4)[1], {"binWidth": 10}, id="constant"),
    pytest.param(_gapped_levels((5, 9, 8), 5), reference.plane(), {"binWidth": 1}, id="thin-plane"),
    pytest.param(_gapped_levels((6, 6, 9), 6), reference.line(), {"binWidth": 1}, id="line"),
    pytest.param(BLOB_HU, np.random.default_rng(7).random(BLOB_HU.shape) > 0.9, {"binWidth": 10}, id="speckle"),
    pytest.param(*reference.two_levels(), {"binWidth": 10}, id="two-levels"),
]


@pytest.mark.parametrize(("hu", "region", "settings"), CASES)
def test_vectorised_glcm_equals_pyradiomics(hu, region, settings):
    reference.assert_same_as_pyradiomics(VectorisedGlcm, glcm.RadiomicsGLCM, hu, region, **settings)


@pytest.mark.parametrize("patient", reference.STS_PATIENTS)
@pytest.mark.parametrize("bin_width", [10, 25])
def test_vectorised_glcm_equals_pyradiomics_on_the_shared_sts_lesions(patient, bin_width):
    """The real lesions as the scorer sees them: cropped and resampled to its 1 mm grid."""
    hu, core, spacing = reference.sts_lesion_on_feature_grid(patient)
    reference.assert_same_as_pyradiomics(VectorisedGlcm, glcm.RadiomicsGLCM, hu, core, spacing, binWidth=bin_width)
