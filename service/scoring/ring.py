"""The peritumoral ring of docs/method.md section 2: voxels within w mm of the lesion boundary.

The boundary is where the lesion mask, interpolated linearly between voxel centres, crosses 0.5:
midway between each lesion voxel and each face-neighbour outside it (the same 0.5 convention as
IBSI mask resampling). A voxel is in the ring when the exact Euclidean distance from its centre to
the nearest of those boundary points is at most w, on either side. The distances come from an
exact EDT on a grid of half the voxel spacing, on which the boundary points are grid points.

Why not the distance between voxel centres (a plain dilation minus erosion with a ball of radius
w)? Outside a curved surface the nearest lesion centre lies on average about 0.4 voxel inside the
boundary, so that ring is about 14% thinner than the analytic shell on a sphere; measured from the
boundary points it is within about 6% (tests/unit/test_ring.py), and on a flat boundary both give
exactly w / spacing voxel layers on each side.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_DISTANCE_EPSILON_MM = 1e-9  # distances like sqrt(4) must count as exactly 2 mm


def boundary_points(core: np.ndarray) -> np.ndarray:
    """Boolean grid of twice the resolution (2n - 1 per axis): True midway between in and out voxels."""
    fine = np.zeros(tuple(2 * n - 1 for n in core.shape), dtype=bool)
    for axis in range(3):
        moved = np.moveaxis(core, axis, 0)
        crossing = moved[1:] != moved[:-1]
        target = np.moveaxis(fine, axis, 0)
        target[1::2, ::2, ::2] |= crossing
    return fine


def ring_mask(core: np.ndarray, spacing_zyx: tuple[float, float, float], width_mm: float) -> np.ndarray:
    """Voxels whose centre lies within `width_mm` of the lesion boundary, inside or outside."""
    points = boundary_points(core)
    if not points.any():
        return np.zeros(core.shape, dtype=bool)
    half_spacing = tuple(s / 2.0 for s in spacing_zyx)
    distance = ndimage.distance_transform_edt(~points, sampling=half_spacing)[::2, ::2, ::2]
    return distance <= width_mm + _DISTANCE_EPSILON_MM
