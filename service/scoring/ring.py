"""The peritumoral ring of method.md section 2.

ring = dilate(core, w) minus erode(core, w), 3D, with exact Euclidean distances between voxel
centres (scipy's EDT), so a voxel is in the ring when it is outside the lesion but within w mm of
a lesion voxel, or inside the lesion but within w mm of a background voxel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def ring_mask(core: np.ndarray, spacing_zyx: tuple[float, float, float], width_mm: float) -> np.ndarray:
    """Voxels within `width_mm` of the lesion boundary, on both sides."""
    outside_distance = ndimage.distance_transform_edt(~core, sampling=spacing_zyx)
    inside_distance = ndimage.distance_transform_edt(core, sampling=spacing_zyx)
    dilated_shell = ~core & (outside_distance <= width_mm)
    eroded_away = core & (inside_distance <= width_mm)
    return dilated_shell | eroded_away
