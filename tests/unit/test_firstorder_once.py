"""The first-order moments and percentiles taken once (service.scoring.firstorder_once) against
pyradiomics' own first-order class.

Every first-order feature must agree to relative 1e-9 (NaN where pyradiomics gives NaN), on a
textured blob (its own bins and absolute-looking wide ones), skewed intensities, the degenerate
regions (one voxel, a constant region, a thin plane, a line, two intensities) and the shared STS
lesions on the scorer's 1 mm grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from radiomics import firstorder

from service.scoring.firstorder_once import FirstOrderOnce
from tests.support import pyradiomics_reference as reference


BLOB_HU, BLOB = reference.blob((18, 22, 20), 1)
CASES = [
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10}, id="textured-blob"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 25, "voxelArrayShift": 1000}, id="textured-blob-shifted"),
    pytest.param(np.random.default_rng(2).lognormal(3.0, 1.0, size=(12, 14, 13)), reference.blob((12, 14, 13), 2)[1],
                 {"binWidth": 5}, id="skewed"),
    pytest.param(BLOB_HU[:5, :5, :5], reference.single_voxel(), {"binWidth": 10}, id="single-voxel"),
    pytest.param(np.full((8, 9, 10), 0.1), reference.blob((8, 9, 10), 4)[1], {"binWidth": 10}, id="constant"),
    pytest.param(BLOB_HU[:5, :9, :8], reference.plane(), {"binWidth": 10}, id="thin-plane"),
    pytest.param(BLOB_HU[:6, :6, :9], reference.line(), {"binWidth": 10}, id="line"),
    pytest.param(*reference.two_levels(), {"binWidth": 10}, id="two-levels"),
]


@pytest.mark.parametrize(("hu", "region", "settings"), CASES)
def test_firstorder_once_equals_pyradiomics(hu, region, settings):
    reference.assert_same_as_pyradiomics(FirstOrderOnce, firstorder.RadiomicsFirstOrder, hu, region, **settings)


@pytest.mark.parametrize("patient", reference.STS_PATIENTS)
def test_firstorder_once_equals_pyradiomics_on_the_shared_sts_lesions(patient):
    """The real lesions as the scorer sees them: cropped and resampled to its 1 mm grid."""
    hu, core, spacing = reference.sts_lesion_on_feature_grid(patient)
    reference.assert_same_as_pyradiomics(FirstOrderOnce, firstorder.RadiomicsFirstOrder, hu, core, spacing, binWidth=10)
