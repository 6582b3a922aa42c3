"""The peritumoral ring's definition (docs/method.md section 2) computed the plain way, for tests
that check service.scoring.ring against it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def reference_ring(core: np.ndarray, spacing_zyx: tuple[float, float, float], width_mm: float) -> np.ndarray:
    """The definition, computed the plain way: an exact EDT of the whole grid at half spacing.

    On a grid of half the voxel spacing (2n - 1 points per axis) every boundary point (midway
    between an in and an out voxel) and every voxel centre is a grid point; the EDT of "not a
    boundary point" gives each voxel centre its exact distance to the nearest boundary point.
    """
    fine = np.zeros(tuple(2 * n - 1 for n in core.shape), dtype=bool)
    for axis in range(3):
        crossing = np.moveaxis(core, axis, 0)[1:] != np.moveaxis(core, axis, 0)[:-1]
        np.moveaxis(fine, axis, 0)[1::2, ::2, ::2] |= crossing
    if not fine.any():
        return np.zeros(core.shape, dtype=bool)
    distance = ndimage.distance_transform_edt(~fine, sampling=[s / 2 for s in spacing_zyx])[::2, ::2, ::2]
    return distance <= width_mm + 1e-9
