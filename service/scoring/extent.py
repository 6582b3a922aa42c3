"""The bounding box of a 3D mask, shared by the steps that trim a lesion's arrays to it.

Taken from the mask's projections on the axes (two whole-array passes): an index array of every
voxel (numpy.nonzero, argwhere) costs ten times as much on a large lesion, more than the step the
box is for.
"""

from __future__ import annotations

import numpy as np


def box_ends(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of the mask's voxels along z, y and x (inclusive). The mask must not
    be empty."""
    rows = np.any(mask, axis=2)  # (z, y)
    projections = (np.any(rows, axis=1), np.any(rows, axis=0), np.any(np.any(mask, axis=0), axis=0))
    ends = [np.flatnonzero(projection) for projection in projections]
    if not ends[0].size:
        raise ValueError("empty mask: no bounding box")
    return [(int(indices[0]), int(indices[-1])) for indices in ends]
