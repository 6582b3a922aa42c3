"""The peritumoral ring of docs/method.md section 2: voxels within w mm of the lesion boundary.

The boundary is where the lesion mask, interpolated linearly between voxel centres, crosses 0.5:
midway between each lesion voxel and each face-neighbour outside it (the same 0.5 convention as
IBSI mask resampling). A voxel is in the ring when the exact Euclidean distance from its centre to
the nearest of those boundary points is at most w, on either side.

Why not the distance between voxel centres (a plain dilation minus erosion with a ball of radius
w)? Outside a curved surface the nearest lesion centre lies on average about 0.4 voxel inside the
boundary, so that ring is about 14% thinner than the analytic shell on a sphere; measured from the
boundary points it is within about 6% (tests/unit/test_ring.py), and on a flat boundary both give
exactly w / spacing voxel layers on each side.

How: the ring is the union of the w-balls around the boundary points. A boundary point between
voxels i and i + 1 along an axis sits at a fixed sub-voxel position, so the voxels its ball covers
are a fixed set of offsets from voxel i (one set per axis, chosen by the same exact distance), and
the ring is the boundary crossings of each axis shifted by each of its offsets and OR-ed. This
touches only the shell around the boundary; an exact distance transform of the whole crop on a
half-spacing grid (the same voxels, tests/unit/test_ring.py) spent most of a large lesion's
scoring time on voxels far from it.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

_DISTANCE_EPSILON_MM = 1e-9  # distances like sqrt(4) must count as exactly 2 mm

Offset = tuple[int, int, int]


def _ball_offsets(axis: int, spacing_zyx: tuple[float, float, float], width_mm: float) -> tuple[Offset, ...]:
    """Offsets (z, y, x) from voxel i to the voxels within `width_mm` of the boundary point
    between voxels i and i + 1 along `axis` (half a voxel further along that axis)."""
    reach = width_mm + _DISTANCE_EPSILON_MM
    ranges = [range(-math.ceil(reach / s + 0.5), math.ceil(reach / s + 0.5) + 1) for s in spacing_zyx]
    offsets = []
    for offset in itertools.product(*ranges):
        along = [(d - 0.5 if b == axis else d) * s for b, (d, s) in enumerate(zip(offset, spacing_zyx))]
        if math.sqrt(sum(c * c for c in along)) <= reach:
            offsets.append((offset[0], offset[1], offset[2]))
    return tuple(offsets)


@functools.lru_cache(maxsize=64)  # bounded: a long-running scorer meets every CT's native spacing
def _ball_rows(axis: int, spacing_zyx: tuple[float, float, float],
               width_mm: float) -> tuple[tuple[tuple[int, int], tuple[int, ...]], ...]:
    """_ball_offsets by row: ((dz, dy), the dx of the offsets in that row), in their order."""
    rows: dict[tuple[int, int], list[int]] = {}
    for dz, dy, dx in _ball_offsets(axis, spacing_zyx, width_mm):
        rows.setdefault((dz, dy), []).append(dx)
    return tuple((row, tuple(dxs)) for row, dxs in rows.items())


def _or_shifted(target: np.ndarray, source: np.ndarray, offset: Offset) -> None:
    """target[i + offset] |= source[i] wherever both indices lie in their arrays."""
    source_slices, target_slices = [], []
    for d, m, n in zip(offset, source.shape, target.shape):
        low, high = max(0, -d), min(m, n - d)
        if low >= high:
            return
        source_slices.append(slice(low, high))
        target_slices.append(slice(low + d, high + d))
    target[tuple(target_slices)] |= source[tuple(source_slices)]


def ring_mask(core: np.ndarray, spacing_zyx: tuple[float, float, float], width_mm: float) -> np.ndarray:
    """Voxels whose centre lies within `width_mm` of the lesion boundary, inside or outside.

    Only face-neighbours inside the array make boundary points: a lesion cut by the array's edge
    has no boundary there, and the ring stops at the edge.
    """
    ring = np.zeros(core.shape, dtype=bool)
    spacing = (float(spacing_zyx[0]), float(spacing_zyx[1]), float(spacing_zyx[2]))
    for axis in range(3):
        crossing = np.diff(core.astype(bool, copy=False), axis=axis)  # True where neighbours differ
        if not crossing.any():
            continue
        # The ball's offsets in two steps: the crossings spread along x by each row's dx (the
        # rows share a few distinct sets), then each spread shifted by its row's (dz, dy). The
        # same union, with about half the passes over the array.
        spread: dict[tuple[int, ...], np.ndarray] = {}
        for (dz, dy), dxs in _ball_rows(axis, spacing, float(width_mm)):
            if dxs not in spread:
                along_x = np.zeros(crossing.shape[:2] + ring.shape[2:], dtype=bool)
                for dx in dxs:
                    _or_shifted(along_x, crossing, (0, 0, dx))
                spread[dxs] = along_x
            _or_shifted(ring, spread[dxs], (dz, dy, 0))
    return ring


def ring_beyond_edges(core: np.ndarray, spacing_zyx: tuple[float, float, float], width_mm: float,
                      edges: tuple[tuple[bool, bool], ...]) -> int:
    """Voxels of the ring that would lie beyond the array's faces flagged in `edges` ((first,
    last) per axis, z y x: the image's edge), had the grid gone on there.

    The lesion is taken as it is drawn, ending at the edge: the ring is computed on the array
    extended by empty planes beyond those faces (the lesion's last plane then has a boundary),
    and its voxels in the extension are counted.
    """
    pad = [tuple(math.ceil(width_mm / float(s) + 0.5) if flagged else 0 for flagged in pair)
           for pair, s in zip(edges, spacing_zyx)]
    if not any(any(pair) for pair in pad):
        return 0
    full = ring_mask(np.pad(core.astype(bool, copy=False), pad), spacing_zyx, width_mm)
    inside = tuple(slice(low, low + n) for (low, _), n in zip(pad, core.shape))
    return int(np.count_nonzero(full)) - int(np.count_nonzero(full[inside]))
