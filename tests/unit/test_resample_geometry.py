"""resample_lesion's grid positions against SimpleITK resampling the whole image in physical
space: oblique and flipped direction matrices, anisotropic voxels, crops that touch the image's
edge. SimpleITK maps each output point through the image's origin, spacing and direction itself,
so a wrong index computation in our numpy path (service.scoring.trilinear) shows as different
values or mask voxels (test_trilinear covers the interpolation kernel on unit grids)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from service.model import ImageGeometry
from service.scoring.resample import resample_lesion

_DIRECTIONS = {
    "oblique": Rotation.from_euler("xyz", [17.0, -9.0, 31.0], degrees=True).as_matrix(),
    "feet-first-flipped": np.diag([1.0, -1.0, -1.0]),
    "axes-permuted": np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]),
}


def _itk_reference(values_zyx: np.ndarray, volume: ImageGeometry, grid: sitk.Image, outside: float) -> np.ndarray:
    whole = sitk.GetImageFromArray(values_zyx)
    whole.SetSpacing(volume.spacing)
    whole.SetOrigin(volume.origin)
    whole.SetDirection(volume.direction)
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(grid)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(outside)
    resampler.SetOutputPixelType(sitk.sitkFloat64)
    return sitk.GetArrayFromImage(resampler.Execute(whole))


@pytest.mark.parametrize("direction", _DIRECTIONS, ids=list(_DIRECTIONS))
@pytest.mark.parametrize("at_edge", [False, True], ids=["inside", "at-the-edge"])
def test_resampled_values_and_mask_equal_simpleitk_in_physical_space(direction, at_edge):
    rng = np.random.default_rng(7)
    size_xyz, spacing = (48, 44, 18), (0.703125, 0.703125, 2.5)
    volume = ImageGeometry(size_xyz, spacing, (-120.5, 33.25, -402.0), tuple(_DIRECTIONS[direction].ravel()))
    hu = rng.integers(-1000, 1500, size=size_xyz[::-1]).astype(np.int16)
    z, y, x = np.indices(size_xyz[::-1])
    centre = (4, 22, 3) if at_edge else (24, 22, 9)  # x, y, z: near the first x and z planes
    mask = ((x - centre[0]) * spacing[0]) ** 2 + ((y - centre[1]) * spacing[1]) ** 2 \
        + ((z - centre[2]) * spacing[2]) ** 2 < 7.0 ** 2
    low = np.maximum(np.argwhere(mask).min(axis=0) - 6, 0)  # z, y, x
    high = np.minimum(np.argwhere(mask).max(axis=0) + 6, np.array(size_xyz[::-1]) - 1)
    crop = tuple(slice(a, b + 1) for a, b in zip(low, high))

    result = resample_lesion(hu[crop], mask[crop], volume, tuple(int(v) for v in low[::-1]), (1.0, 1.0, 1.0),
                             margin_mm=3.0, round_intensities=False)

    expected_hu = _itk_reference(hu.astype(np.float32), volume, result.image, outside=-1000.0)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.image), expected_hu, rtol=1e-9, atol=1e-9)
    expected_core = _itk_reference(mask.astype(np.float32), volume, result.image, outside=0.0).astype(np.float32) >= 0.5
    assert result.core.any() and np.array_equal(result.core, expected_core)
    (z_first, _), y_edges, (x_first, _) = result.image_edges
    assert (z_first, x_first) == (at_edge, at_edge) and y_edges == (False, False)
