"""service.scoring.trilinear against SimpleITK's ResampleImageFilter with its linear interpolator
(what resampled crops before): the same values to rounding, the same voxels in and out of the
mask, the same edge rules; and a crop equal bit for bit to the whole volume."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from service.scoring.trilinear import trilinear


def _itk_linear(values_zyx: np.ndarray, start_xyz: tuple[int, int, int], positions_xyz: list[np.ndarray],
                outside: float, pixel_type: int = sitk.sitkFloat64) -> np.ndarray:
    """SimpleITK's resampling of the array (placed at `start_xyz` of a unit-spacing image) at the
    grid of the positions (evenly spaced per axis), as service.scoring.resample called it."""
    image = sitk.GetImageFromArray(values_zyx)
    image.SetOrigin(tuple(float(s) for s in start_xyz))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([len(p) for p in positions_xyz])
    resampler.SetOutputOrigin(tuple(float(p[0]) for p in positions_xyz))
    resampler.SetOutputSpacing(tuple(float(p[1] - p[0]) if len(p) > 1 else 1.0 for p in positions_xyz))
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(outside)
    resampler.SetOutputPixelType(pixel_type)
    return sitk.GetArrayFromImage(resampler.Execute(image))


def _positions(first: float, step: float, n: int) -> np.ndarray:
    return first + np.arange(n) * step


# (start, array size, first position, step, count) per axis x, y, z; positions are image indices.
# 0.7mm-to-1mm's z and one-voxel-thick's x lie on voxel centres: every weight 0, the pass that only takes.
_GRIDS = [
    pytest.param([(10, 30, 10.3, 1 / 0.7, 20), (4, 25, 4.6, 1 / 0.7, 16), (7, 12, 7.0, 1.0, 12)], id="0.7mm-to-1mm"),
    pytest.param([(0, 20, -0.45, 0.5, 40), (0, 18, -0.3, 1 / 0.9, 16), (0, 9, 0.0, 0.4, 21)], id="at-the-image-edge"),
    pytest.param([(3, 15, 2.0, 1.3, 14), (2, 14, 1.9, 0.77, 20), (1, 6, 0.2, 1.1, 7)], id="beyond-the-buffer"),
    pytest.param([(5, 1, 5.0, 1.0, 1), (0, 12, 0.25, 1.5, 7), (2, 10, 2.5, 2.0, 4)], id="one-voxel-thick"),
    pytest.param([(2, 10, 3.0, 1.0, 6), (1, 8, 2.0, 1.0, 5), (0, 5, 1.0, 1.0, 3)], id="every-axis-on-centres"),
]


@pytest.mark.parametrize("grid", _GRIDS)
def test_intensities_equal_simpleitk_linear_resampling(grid):
    rng = np.random.default_rng(7)
    shape_zyx = tuple(n for _, n, *_ in reversed(grid))
    values = (rng.normal(40.0, 200.0, size=shape_zyx)).astype(np.float32)
    start = tuple(s for s, *_ in grid)
    positions = [_positions(first, step, count) for _, _, first, step, count in grid]
    ours = trilinear(values, positions, start, outside=-1000.0)
    theirs = _itk_linear(values, start, positions, outside=-1000.0)
    assert ours.shape == theirs.shape and ours.dtype == np.float64  # float64 even when every pass only took
    np.testing.assert_array_equal(ours == -1000.0, theirs == -1000.0)  # the same points outside
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-9)


def test_a_lesion_mask_keeps_the_same_voxels_as_simpleitk_at_threshold_one_half():
    """0.7 mm voxels to 1 mm puts points at multiples of 1/14 voxel: many interpolated mask values
    are exactly 0.5, the case where rounding could move a voxel in or out of the mask."""
    z, y, x = np.indices((16, 40, 40), dtype=float)
    noise = ndimage.gaussian_filter(np.random.default_rng(3).normal(size=(16, 40, 40)), 2.0)
    mask = ((((x - 20) / 14) ** 2 + ((y - 20) / 11) ** 2 + ((z - 8) / 6) ** 2 + noise) < 1.0).astype(np.float32)
    start = (100, 200, 30)
    positions = [_positions(100 + 5 / 14, 1 / 0.7, 26), _positions(200 + 3 / 14, 1 / 0.7, 26), _positions(30.0, 1.0, 16)]
    ours = trilinear(mask, positions, start, outside=0.0).astype(np.float32)
    theirs = _itk_linear(mask, start, positions, outside=0.0, pixel_type=sitk.sitkFloat32)
    assert np.count_nonzero(ours == 0.5) > 20
    np.testing.assert_array_equal(ours >= 0.5, theirs >= 0.5)


def test_a_boolean_mask_gives_bit_for_bit_what_its_float_version_gives():
    """The first pass reads the input in its own type and converts what it takes: the same values
    as converting all of it first."""
    mask = np.random.default_rng(5).random((12, 30, 30)) < 0.4
    positions = [_positions(3 + 5 / 14, 1 / 0.7, 18), _positions(7 + 3 / 14, 1 / 0.7, 17), _positions(2.0, 1.0, 12)]
    start = (3, 7, 2)
    np.testing.assert_array_equal(trilinear(mask, positions, start, outside=0.0),
                                  trilinear(mask.astype(np.float64), positions, start, outside=0.0))
    values = np.random.default_rng(6).normal(0.0, 300.0, size=(12, 30, 30)).astype(np.float32)
    np.testing.assert_array_equal(trilinear(values, positions, start, outside=-1000.0),
                                  trilinear(values.astype(np.float64), positions, start, outside=-1000.0))


def test_a_crop_gives_bit_for_bit_what_the_whole_volume_gives():
    rng = np.random.default_rng(11)
    whole = rng.normal(0.0, 100.0, size=(30, 50, 60)).astype(np.float32)
    positions = [_positions(20.3, 1 / 0.7, 15), _positions(10.9, 1 / 0.7, 12), _positions(8.0, 1.0, 10)]
    crop_start = (19, 10, 7)  # (x, y, z): holds every point's neighbours
    crop = whole[7:19, 10:30, 19:42]
    np.testing.assert_array_equal(trilinear(crop, positions, crop_start, outside=-1000.0),
                                  trilinear(whole, positions, (0, 0, 0), outside=-1000.0))
