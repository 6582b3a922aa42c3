"""pyradiomics' 3D shape coefficients (mesh area, mesh volume, maximum diameters) without its
all-pairs diameter search.

pyradiomics' C `calculate_coefficients` marches cubes over the padded mask, adding each cube's
triangles to the surface area and the signed volume, and keeps the mesh's vertices (midpoints of
the grid edges whose two voxels differ); it then compares every pair of vertices for the maximum
3D diameter and the largest in-plane ones. On a 20 mL lesion at 1 mm that is about 5,400
vertices, 15 million pairs: over a third of the full panel's time, against well under a
millisecond for the marching itself. Here:

- Area and volume: a cube's triangles depend only on which of its 8 corners are in the mask (its
  pattern, 256 of them), so its area is a per-pattern constant, and its signed volume (a sum of
  determinants of the triangles' corners) is a per-pattern constant plus a per-pattern linear
  term in the cube's position. The constants are measured with pyradiomics' own C function on
  each pattern alone (a 2 x 2 x 2 mask is one cube) and on each pattern one step along each axis
  (a 3 x 2 x 2 mask is two cubes, the first already measured), once per spacing; a mask's area
  and volume are then sums over its cubes' patterns and positions (`bincount`). Same triangles,
  same formulas, added in another order.
- Diameters: the same vertices with the same coordinates, but only the pairs that can be the
  farthest apart are compared: for the 3D diameter service.scoring.measures.longest_chord (a
  chord from p is at most |p - centre| + radius, so points for which that is shorter than a chord
  already found are dropped, and the convex hull taken of many), for the in-plane ones the same
  bound within each plane, keeping the largest over the planes.

tests/unit/test_shape_tabulated.py holds every shape feature to pyradiomics' own class at relative
1e-9.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import SimpleITK as sitk
from radiomics import cShape
from scipy.spatial.distance import pdist

from service.scoring.measures import longest_chord

# Bit k of a cube's pattern is its corner (dz, dy, dx) = the bits of k (z highest).
_CORNERS = tuple((k >> 2 & 1, k >> 1 & 1, k & 1) for k in range(8))


def cube_patterns(mask: np.ndarray) -> np.ndarray:
    """Pattern (0-255) of every cube of 2 x 2 x 2 neighbouring voxels, indexed by its lowest corner."""
    inside = mask.astype(np.uint8)
    nz, ny, nx = (n - 1 for n in mask.shape)
    patterns = np.zeros((nz, ny, nx), dtype=np.uint8)
    for bit, (dz, dy, dx) in enumerate(_CORNERS):
        patterns |= inside[dz:dz + nz, dy:dy + ny, dx:dx + nx] << bit
    return patterns


def _cube(pattern: int, axis: int | None = None) -> np.ndarray:
    """The pattern alone (2 x 2 x 2), or, along `axis`, one step from the origin (3 long there)."""
    shape = [2, 2, 2]
    start = [0, 0, 0]
    if axis is not None:
        shape[axis] = 3
        start[axis] = 1
    mask = np.zeros(shape, dtype=bool)
    for bit, corner in enumerate(_CORNERS):
        if pattern >> bit & 1:
            mask[tuple(s + c for s, c in zip(start, corner))] = True
    return mask


@functools.lru_cache(maxsize=16)
def _cube_tables(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pattern: its mesh area, its signed volume term at the origin, and that term's change per
    cube step along z, y and x (shape (256, 3)), from pyradiomics' C function."""
    spacing_array = np.asarray(spacing, dtype=float)
    area = np.zeros(256)
    volume = np.zeros(256)
    for pattern in range(256):
        area[pattern], volume[pattern], _ = cShape.calculate_coefficients(_cube(pattern), spacing_array)
    step = np.zeros((256, 3))
    for pattern in range(256):
        for axis in range(3):
            pair = _cube(pattern, axis)
            _, both, _ = cShape.calculate_coefficients(pair, spacing_array)
            # Two cubes: the one at the origin (already measured) and this pattern one step along.
            step[pattern, axis] = both - volume[cube_patterns(pair)].sum()
    return area, volume, step


def area_and_volume(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float]:
    """pyradiomics' mesh surface area and volume of a mask (padded with background, as its shape
    class pads it)."""
    area, volume, step = _cube_tables(spacing)
    patterns = cube_patterns(mask)
    surface = (patterns != 0) & (patterns != 255)  # cubes wholly in or out have no triangles
    where = np.nonzero(surface)
    present = patterns[where]
    counts = np.bincount(present, minlength=256)
    total_volume = float(counts @ volume)
    for axis in range(3):
        total_volume += float(np.bincount(present, weights=where[axis], minlength=256) @ step[:, axis])
    return float(counts @ area), total_volume


def _mesh_vertices(mask: np.ndarray) -> np.ndarray:
    """The mesh's vertices in doubled voxel indices (z, y, x): midpoints of the grid edges whose two
    voxels differ (odd along the edge's axis)."""
    vertices = []
    for axis in range(3):
        doubled = 2 * np.argwhere(np.diff(mask, axis=axis))
        doubled[:, axis] += 1
        vertices.append(doubled)
    return np.concatenate(vertices)


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start of each run of equal keys (keys sorted) and each element's run number."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return starts, np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(keys)]))


def _largest_in_planes(points: np.ndarray, plane: np.ndarray) -> float:
    """The largest distance between two of `points` (mm) with equal `plane` keys, over all planes.

    Only points that can end a chord at least as long as one already found are compared (the
    bound of service.scoring.measures.longest_chord, per plane): within a plane every point lies
    within its radius of its centre, so a chord from p is at most |p - centre| + radius.
    """
    if len(points) < 2:
        return 0.0
    order = np.argsort(plane, kind="stable")
    points = points[order]
    starts, group = _groups(plane[order])
    centre = (np.minimum.reduceat(points, starts) + np.maximum.reduceat(points, starts)) / 2.0
    reach = np.linalg.norm(points - centre[group], axis=1)
    radius = np.maximum.reduceat(reach, starts)
    # A chord in each plane: from its point farthest from its centre to the point farthest from that.
    by_reach = np.lexsort((reach, group))
    farthest = by_reach[np.r_[starts[1:], len(points)] - 1]
    found = float(np.linalg.norm(points - points[farthest][group], axis=1).max())
    # What is left: the points near the rim of the planes as wide as the chord found (reach <= radius,
    # so a plane narrower than it keeps none), compared pair by pair.
    kept = reach + radius[group] >= found * (1.0 - 1e-9)
    points, group = points[kept], group[kept]
    starts, _ = _groups(group)
    ends = np.r_[starts[1:], len(group)]
    squared = (float(pdist(points[start:end], "sqeuclidean").max()) for start, end in zip(starts, ends) if end - start > 1)
    return float(np.sqrt(max(squared, default=0.0)))


def mesh_diameters(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float, float, float]:
    """pyradiomics' (slice, column, row, 3D) maximum diameters of a mask padded with background:
    the largest distance between mesh vertices of equal z, equal y, equal x, and any two."""
    doubled = _mesh_vertices(mask)
    points = doubled * 0.5 * np.asarray(spacing)  # as pyradiomics: (index + 0.5 or 1) * spacing
    slice_, column, row = (_largest_in_planes(points, doubled[:, axis]) for axis in range(3))
    return slice_, column, row, longest_chord(points)


class TabulatedShape:
    """Mixin over radiomics.shape.RadiomicsShape (listed before it in the bases)."""

    # Set by pyradiomics' RadiomicsShape, the class this is mixed into (declared, not assigned).
    inputMask: Any
    label: int
    maskArray: np.ndarray
    labelledVoxelCoordinates: tuple[np.ndarray, ...]
    pixelSpacing: np.ndarray
    SurfaceArea: float
    Volume: float
    diameters: tuple[float, float, float, float]
    eigenValues: np.ndarray

    def _initSegmentBasedCalculation(self) -> None:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' shape set-up (shape.RadiomicsShape._initSegmentBasedCalculation): the mask
        padded by one background voxel on every side, area, volume and diameters from it (here
        by tables and candidate pairs), and the eigenvalues of the voxel coordinates' covariance."""
        self.pixelSpacing = np.array(self.inputMask.GetSpacing()[::-1])
        self.maskArray = np.pad(sitk.GetArrayViewFromImage(self.inputMask) == self.label, 1)
        self.labelledVoxelCoordinates = np.where(self.maskArray != 0)
        spacing = (float(self.pixelSpacing[0]), float(self.pixelSpacing[1]), float(self.pixelSpacing[2]))
        self.SurfaceArea, self.Volume = area_and_volume(self.maskArray, spacing)
        self.diameters = mesh_diameters(self.maskArray, spacing)
        # The principal axes, as pyradiomics takes them (eigenvalues of the covariance normalised by
        # N; rounding's tiny negative eigenvalues of flat regions set to 0).
        n_voxels = len(self.labelledVoxelCoordinates[0])
        coordinates = np.array(self.labelledVoxelCoordinates, dtype="int").transpose((1, 0))
        physical = coordinates * self.pixelSpacing[None, :]
        physical -= np.mean(physical, axis=0)
        physical /= np.sqrt(n_voxels)
        covariance = np.dot(physical.T.copy(), physical)
        self.eigenValues = np.linalg.eigvals(covariance)
        machine_errors = np.bitwise_and(self.eigenValues < 0, self.eigenValues > -1e-10)
        self.eigenValues[machine_errors] = 0
        self.eigenValues.sort()
