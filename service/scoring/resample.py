"""IBSI grid-aligned resampling of a lesion crop.

IBSI (reference manual, "interpolation") aligns the centres of the new grid with the centres of
the original grid, and the grid is fixed by the *whole* image. pyradiomics instead anchors its
grid at the corner of whatever it is given, so a crop shifts the grid and changes texture
features. Here the new grid is derived from the whole volume's geometry and only the part of it
around the lesion is materialised from the crop. Every point we keep has its whole interpolation
support inside the crop (or lies at the volume's own border, which the crop then shares), so the
crop gives exactly what the whole volume would.

The cubic B-spline (sitkBSpline, IBSI configuration E) needs one more voxel of support on each
side, and its pre-filter (the spline coefficients) reaches the whole input: near the crop's edge
the coefficients differ from the whole volume's by a factor of about 0.27 per voxel of distance
(the filter's pole). Its crops therefore carry 12 more voxels (service.imaging.crops), which
brings that difference below what changes a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from service.model import ImageGeometry
from service.scoring.extent import box_ends
from service.scoring.trilinear import trilinear

# SimpleITK's interpolators for the image; linear interpolation is service.scoring.trilinear's.
_INTERPOLATORS = {
    "sitkNearestNeighbor": sitk.sitkNearestNeighbor,
    "sitkBSpline": sitk.sitkBSpline,
}
# Original voxels each interpolator reads beyond the two that enclose a point, per side.
_EXTRA_SUPPORT = {"sitkLinear": 0, "sitkNearestNeighbor": 0, "sitkBSpline": 1}


@dataclass(frozen=True)
class ResampledGrid:
    """The IBSI-resampled grid of the whole image, in original continuous index units."""

    size: tuple[int, int, int]  # (x, y, z) points of the new grid
    first_index: np.ndarray  # continuous original index of new point (0, 0, 0)
    step: np.ndarray  # original index units per new voxel, per axis


def whole_image_grid(volume: ImageGeometry, new_spacing: tuple[float, float, float]) -> ResampledGrid:
    """The new grid over the whole image: ceil(extent / new spacing) points, centres aligned."""
    size = np.asarray(volume.size, dtype=float)
    spacing = np.asarray(volume.spacing, dtype=float)
    new = np.asarray(new_spacing, dtype=float)
    new_size = np.ceil(size * spacing / new).astype(int)
    step = new / spacing
    first = (size - 1.0) / 2.0 - (new_size - 1.0) / 2.0 * step
    return ResampledGrid((int(new_size[0]), int(new_size[1]), int(new_size[2])), first, step)


def resolved_spacing(new_spacing: tuple[float, float, float], volume: ImageGeometry) -> tuple[float, float, float]:
    """The new spacing with 0 replaced by the image's own spacing on that axis (pyradiomics' rule,
    e.g. [2, 2, 0] for IBSI configuration B's in-plane resampling)."""
    x, y, z = (float(new) if new > 0 else float(own) for new, own in zip(new_spacing, volume.spacing))
    return x, y, z


def _valid_point_range(
    grid: ResampledGrid, volume: ImageGeometry, crop_start: np.ndarray, crop_size: np.ndarray, extra_support: int
) -> tuple[np.ndarray, np.ndarray]:
    """New-grid index range whose interpolation support lies inside the crop.

    Where the crop touches the volume border, points up to half a voxel beyond the outermost
    centre are allowed, exactly as for the whole image.
    """
    size = np.asarray(volume.size)
    crop_end = crop_start + crop_size - 1
    low = np.where(crop_start > 0, crop_start + extra_support, -0.5)
    high = np.where(crop_start + crop_size < size, crop_end - extra_support, size - 0.5)
    first = np.ceil((low - grid.first_index) / grid.step - 1e-9).astype(int)
    last = np.floor((high - grid.first_index) / grid.step + 1e-9).astype(int)
    return np.maximum(first, 0), np.minimum(last, np.asarray(grid.size) - 1)


def _crop_image(array_zyx: np.ndarray, volume: ImageGeometry, crop_start: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(volume.spacing)
    image.SetDirection(volume.direction)
    image.SetOrigin(tuple(volume.index_to_physical(crop_start[None, :])[0]))
    return image


def _grid_image(values_zyx: np.ndarray, spacing: tuple[float, float, float], volume: ImageGeometry,
                origin: tuple[float, ...]) -> sitk.Image:
    image = sitk.GetImageFromArray(values_zyx)
    image.SetSpacing(spacing)
    image.SetDirection(volume.direction)
    image.SetOrigin(origin)
    return image


def _itk_resampled(crop: sitk.Image, interpolator: str, size: np.ndarray, spacing: tuple[float, float, float],
                   volume: ImageGeometry, origin: tuple[float, ...]) -> sitk.Image:
    """The crop resampled by SimpleITK (the interpolators other than linear), float64."""
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in size])
    resampler.SetOutputSpacing(spacing)
    resampler.SetOutputDirection(volume.direction)
    resampler.SetOutputOrigin(origin)
    resampler.SetInterpolator(_INTERPOLATORS[interpolator])
    resampler.SetDefaultPixelValue(-1000.0)
    # One thread: a lesion's box is small, and ITK's thread pool cost more than it saved on 2
    # busy cores; lesions run in parallel in scorer workers instead.
    resampler.SetNumberOfThreads(1)
    resampler.SetOutputPixelType(sitk.sitkFloat64)
    return resampler.Execute(crop)


Edges = tuple[tuple[bool, bool], tuple[bool, bool], tuple[bool, bool]]
"""Per axis (z, y, x): whether the array's (first, last) plane is the edge of the image's grid."""


def _edges_zyx(first_xyz: np.ndarray, last_xyz: np.ndarray, size_xyz: np.ndarray) -> Edges:
    z, y, x = ((bool(f <= 0), bool(last >= n - 1)) for f, last, n in reversed(list(zip(first_xyz, last_xyz, size_xyz))))
    return z, y, x


@dataclass
class ResampledLesion:
    """Image and lesion mask on the IBSI grid, restricted to the region around the lesion;
    `image_edges`: which of its faces are the edge of the whole image's grid (where the ring
    is cut, service.scoring.ring.ring_beyond_edges)."""

    image: sitk.Image  # float64 HU: float32 interpolation noise would break crop == whole
    core: np.ndarray  # bool (z, y, x)
    image_edges: Edges


def resample_lesion(
    image_zyx: np.ndarray,
    mask_zyx: np.ndarray,
    volume: ImageGeometry,
    crop_start_xyz: tuple[int, int, int],
    new_spacing: tuple[float, float, float],
    margin_mm: float,
    interpolator: str = "sitkLinear",
    mask_threshold: float = 0.5,
    round_intensities: bool = True,
) -> ResampledLesion:
    """Resample a crop's image (interpolator) and mask (linear, then >= threshold) per IBSI; any
    non-zero mask voxel is lesion (as on the native grid).

    The returned region spans the lesion's bounding box plus `margin_mm` (room for the ring),
    clipped to the points the crop can compute exactly. With `round_intensities` the
    interpolated intensities are rounded to the nearest integer (IBSI, for CT: HU are integers;
    numpy's rounding, halves to even).
    """
    crop_start = np.asarray(crop_start_xyz, dtype=int)
    crop_size = np.asarray(image_zyx.shape[::-1], dtype=int)
    new_spacing = resolved_spacing(new_spacing, volume)
    grid = whole_image_grid(volume, new_spacing)
    valid_first, valid_last = _valid_point_range(grid, volume, crop_start, crop_size, _EXTRA_SUPPORT[interpolator])

    # The lesion's bounding box (x, y, z).
    ends = box_ends(mask_zyx)[::-1]
    lesion_low = crop_start + np.array([low for low, _ in ends]) - 1
    lesion_high = crop_start + np.array([high for _, high in ends]) + 1
    margin = np.asarray([math.ceil(margin_mm / s) + 1 for s in new_spacing])
    first = np.floor((lesion_low - grid.first_index) / grid.step).astype(int) - margin
    last = np.ceil((lesion_high - grid.first_index) / grid.step).astype(int) + margin
    first, last = np.maximum(first, valid_first), np.minimum(last, valid_last)
    out_size = (last - first + 1).astype(int)

    origin_index = grid.first_index + first * grid.step
    origin = tuple(float(c) for c in volume.index_to_physical(origin_index[None, :])[0])
    # The grid's points as continuous indices of the whole image, one array per axis (x, y, z).
    positions = [grid.first_index[a] + np.arange(first[a], last[a] + 1) * grid.step[a] for a in range(3)]
    mask_values = trilinear(mask_zyx.astype(bool, copy=False), positions, crop_start_xyz, outside=0.0)
    if interpolator == "sitkLinear":
        values = trilinear(image_zyx.astype(np.float32, copy=False), positions, crop_start_xyz, outside=-1000.0)
        # Rounded before the image is made: one SimpleITK image per lesion instead of two.
        image = _grid_image(_rounded(values) if round_intensities else values, new_spacing, volume, origin)
    else:
        image = _itk_resampled(_crop_image(image_zyx.astype(np.float32, copy=False), volume, crop_start),
                               interpolator, out_size, new_spacing, volume, origin)
        if round_intensities:
            image = _grid_image(_rounded(sitk.GetArrayFromImage(image)), new_spacing, volume, origin)
    # Compared in float32, as when SimpleITK resampled the mask into a float32 image.
    core = mask_values.astype(np.float32) >= mask_threshold
    return ResampledLesion(image=image, core=core, image_edges=_edges_zyx(first, last, np.asarray(grid.size)))


# Interpolated integer HU land exactly on x.5 for about 2% of voxels; floating-point error then
# puts them a hair either side, differently on a crop and on the whole volume (their sample
# positions differ by ~1e-12), so they would round different ways. Snapping to this many
# decimals first makes a tie a tie, rounded half to even (numpy, as MIRP does) on every grid.
_TIE_DECIMALS = 6


def _rounded(values: np.ndarray) -> np.ndarray:
    """`values` (float64) rounded to integers in place (IBSI intensity rounding, for CT)."""
    np.round(values, _TIE_DECIMALS, out=values)
    return np.round(values, out=values)


def native_lesion(
    image_zyx: np.ndarray, mask_zyx: np.ndarray, volume: ImageGeometry, crop_start_xyz: tuple[int, int, int]
) -> ResampledLesion:
    """The crop on its own grid, for settings without resampling (resampledPixelSpacing null)."""
    start = np.asarray(crop_start_xyz, dtype=int)
    image = _crop_image(image_zyx.astype(np.float64), volume, start)
    last = start + np.asarray(image_zyx.shape[::-1]) - 1
    return ResampledLesion(image=image, core=np.asarray(mask_zyx, dtype=bool),
                           image_edges=_edges_zyx(start, last, np.asarray(volume.size)))
