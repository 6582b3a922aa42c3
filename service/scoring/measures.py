"""Size measures of a lesion on the original CT grid (no resampling: what a radiologist measures).

Diameters are measured on the lesion's boundary points: the midpoints between every lesion voxel
and each background neighbour (the points a marching-squares contour of the binary mask passes
through). They lie within half a voxel of the true boundary along each axis, so a diameter is
within about one voxel diagonal of the continuous shape's.
- Longest axial diameter: the largest in-plane distance on any single axial slice (RECIST).
- Short axis: on that same slice, the lesion's width perpendicular to the long axis (the caliper
  width, equal to the longest perpendicular chord for convex lesions). Where chords in different
  directions, or on different slices, tie for the longest, the largest of their widths.
- 3D maximum diameter: the largest distance between any two boundary points in 3D (computed on
  the points that can end a chord as long as one already found: the same maximum,
  tests/unit/test_measures.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from service.model import ImageGeometry, Vector3
from service.scoring.extent import box_ends

_NEIGHBOURS_2D = ((0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
_NEIGHBOURS_3D = _NEIGHBOURS_2D + ((1, 0, 0), (-1, 0, 0))


@dataclass(frozen=True)
class LesionMeasures:
    voxel_count: int
    volume_ml: float
    longest_axial_diameter_mm: float
    short_axis_mm: float
    max_3d_diameter_mm: float
    centroid_mm: Vector3


def _boundary_points(mask: np.ndarray, neighbours: tuple[tuple[int, int, int], ...]) -> list[np.ndarray]:
    """(z, y, x) index midpoints between lesion voxels and their background neighbours, one array
    per neighbour direction, each in the array's row-major order.

    A neighbour outside the array counts as background. The voxels with any background neighbour
    are listed once (a few whole-array boolean passes, one argwhere); each direction then looks up
    its neighbour of only those voxels, in their order.
    """
    padded = np.pad(mask, 1)
    shifts = [padded[tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, mask.shape))] for offset in neighbours]
    on_boundary = ~mask
    for neighbour in shifts:
        on_boundary |= ~neighbour
    voxels = np.argwhere(mask & on_boundary)
    flat = np.ravel_multi_index(tuple((voxels + 1).T), padded.shape)
    padded_flat = padded.ravel()
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1])
    return [voxels[~padded_flat[flat + int(np.dot(offset, strides))]] + 0.5 * np.asarray(offset) for offset in neighbours]


def _row_ends(block: np.ndarray) -> np.ndarray:
    """The first and last point of every row (same z and y) of a row-major block.

    Each row's points lie on one line, and a point between two others on a line is not a vertex
    of their convex hull, where the largest distances are attained: the row ends keep every
    vertex, and the points (or the points farthest from a given one) that decide a maximum.
    """
    if len(block) < 3:
        return block
    new_row = np.any(block[1:, :2] != block[:-1, :2], axis=1)
    keep = np.ones(len(block), dtype=bool)
    keep[1:-1] = new_row[:-1] | new_row[1:]
    return block[keep]


# Up to this many points every pair is compared; beyond, their convex hull is taken first. Qhull
# costs about 0.3 ms before its first point and more per point on grid data (coplanar facets to
# merge) than pdist does per pair up to here: on the benchmark's lesions' candidate sets, in 3D
# the two cross at about 1000 points (922: 2.3 ms either way; 507: hull 1.4 ms, pairs 0.7 ms),
# and in 2D pairs stay ahead beyond 1000 points, where an axial slice of a large lesion has 330.
_FEW_POINTS = 1024


def _diameter_candidates(points: np.ndarray) -> np.ndarray:
    """The points a diameter is sought among: beyond _FEW_POINTS, their convex hull's vertices
    (diameters are attained there; all points when the hull is degenerate), else every point."""
    if len(points) <= _FEW_POINTS:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        return points


def _condensed_pairs(n: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i, j), i < j, at `positions` of pdist's condensed order for n points.

    Row i holds n - 1 - i pairs; locating each position among the rows' starts avoids building
    all n(n-1)/2 index pairs (np.triu_indices) for a few of them.
    """
    row_ends = np.cumsum(np.arange(n - 1, 0, -1))
    rows = np.searchsorted(row_ends, positions, side="right")
    row_starts = np.where(rows > 0, row_ends[rows - 1], 0)
    return rows, rows + 1 + positions - row_starts


_TIE = 1e-9
"""Chords within this relative difference of the longest are its ties: grid points give exactly
equal chords in different directions (a square's diagonals), which coordinates' rounding can set
an ulp apart."""


def _longest_chords(points: np.ndarray) -> tuple[float, np.ndarray]:
    """The largest pairwise distance, and the unit vectors along every chord tied with it (one
    row each; none for fewer than two distinct points)."""
    vertices = _diameter_candidates(points)
    if len(vertices) < 2:
        return 0.0, np.zeros((0, points.shape[1]))
    lengths = pdist(vertices)  # condensed: n(n-1)/2 distances, no n x n x 3 array
    longest = float(lengths.max())
    if longest == 0.0:
        return 0.0, np.zeros((0, points.shape[1]))
    tied = np.flatnonzero(lengths >= longest * (1.0 - _TIE))
    first, second = _condensed_pairs(len(vertices), tied)
    return longest, (vertices[first] - vertices[second]) / lengths[tied][:, None]


def longest_chord(points: np.ndarray) -> float:
    """The largest distance between any two of `points`.

    Only points that can end a chord at least as long as one already found are compared: every
    point lies within `radius` of `centre`, so a chord from p is at most |p - centre| + radius,
    and a point where that is shorter than a chord found between two points cannot end the
    longest one (kept with a margin for rounding). On an elongated lesion that leaves the points
    near the ends of its long axis; on a round one a few hundred of thousands, of which, beyond
    _FEW_POINTS, the convex hull's vertices (the longest chord joins two of them) are compared.
    Qhull on every boundary point of a large lesion (grid points, merged coplanar facets) took
    longer than the lesion's features.
    """
    centre = (points.min(axis=0) + points.max(axis=0)) / 2.0
    reach = np.linalg.norm(points - centre, axis=1)
    # A long chord: from the point farthest from the centre to the point farthest from it, and on
    # from there (each step a chord between two of the points, no shorter than the one before).
    end = points[int(np.argmax(reach))]
    found = 0.0
    for _ in range(2):
        distances = np.linalg.norm(points - end, axis=1)
        end = points[int(np.argmax(distances))]
        found = max(found, float(distances.max()))
    candidates = points[reach + float(reach.max()) >= found * (1.0 - 1e-9)]
    candidates = _diameter_candidates(candidates)
    return float(pdist(candidates).max()) if len(candidates) > 1 else 0.0


# The diameter's direction lies within pi/32 of one of these 16, so the widest projection on them,
# divided by cos(pi/32), bounds a slice's diameter from above (with room for rounding).
_DIRECTIONS = np.array([(np.cos(k * np.pi / 16), np.sin(k * np.pi / 16)) for k in range(16)])
_DIAMETER_BOUND_FACTOR = (1.0 + 1e-9) / np.cos(np.pi / 32)


def _axial_diameters(points_mm: np.ndarray, slice_of_point: np.ndarray) -> tuple[float, float]:
    """(longest axial diameter, short axis on that slice) over all slices.

    Where several slices tie for the longest diameter (within _TIE), the short axis is the
    largest width across any of their longest chords, as within one slice (_widest_across): the
    result is then the same whichever way the lesion lies in the plane or along the slices.
    Slices are examined widest first, and a slice whose diameter bound is below the longest
    found so far cannot attain it, so most slices of a large lesion need no pairwise search.
    """
    order = np.argsort(slice_of_point, kind="stable")  # keeps each slice's points in their order
    sorted_slices = slice_of_point[order]
    starts = np.flatnonzero(np.r_[True, sorted_slices[1:] != sorted_slices[:-1]])
    in_plane = np.ascontiguousarray(points_mm[order][:, :2])
    slices = np.split(in_plane, starts[1:])
    projections = in_plane @ _DIRECTIONS.T  # every slice's widths along the directions, at once
    widths = np.maximum.reduceat(projections, starts) - np.minimum.reduceat(projections, starts)
    bounds = (widths.max(axis=1) * _DIAMETER_BOUND_FACTOR).tolist()
    best_long, best_short = 0.0, 0.0
    for index in sorted(range(len(slices)), key=lambda i: -bounds[i]):
        if bounds[index] < best_long * (1.0 - _TIE):
            break  # and so are all the slices after it
        longest, directions = _longest_chords(slices[index])
        if longest == 0.0 or longest < best_long * (1.0 - _TIE):
            continue
        width = _widest_across(slices[index], directions)
        if longest > best_long * (1.0 + _TIE):
            best_long, best_short = longest, width
        else:  # tied with the longest so far
            best_long, best_short = max(best_long, longest), max(best_short, width)
    return best_long, best_short


def _widest_across(points: np.ndarray, directions: np.ndarray) -> float:
    """The points' largest width perpendicular to any of `directions` (in-plane unit vectors).

    With one longest chord, the short axis is the width across it; with ties (chords equally
    long in different directions), the largest of their widths: the short axis then follows a
    stated rule, not the order in which the points happen to be listed; the larger width is the
    cautious reading for RECIST's short-axis thresholds of lymph nodes (10 and 15 mm).
    """
    perpendiculars = np.column_stack([-directions[:, 1], directions[:, 0]])
    projections = points @ perpendiculars.T
    return float((projections.max(axis=0) - projections.min(axis=0)).max())


def measure_lesion(mask: np.ndarray, offset_zyx: tuple[int, int, int], geometry: ImageGeometry) -> LesionMeasures:
    """Measures of a (cropped) lesion mask lying at `offset_zyx` of a volume with `geometry`.

    The in-plane diameters assume axial slices (the CT loader rejects tilted stacks), and use
    the in-plane spacing; patient coordinates handle any in-plane orientation.
    """
    mask = np.asarray(mask, dtype=bool)  # a 0/1 integer mask too: the boundary steps negate it
    voxel_count = int(np.count_nonzero(mask))
    if voxel_count == 0:
        raise ValueError("empty lesion mask")
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    # Trimmed to the lesion's bounding box: a crop's empty margin only costs array work.
    box = box_ends(mask)
    mask = mask[tuple(slice(low, high + 1) for low, high in box)]
    offset = np.asarray(offset_zyx, dtype=float) + [float(low) for low, _ in box]

    def to_mm(points_zyx: np.ndarray) -> np.ndarray:
        return geometry.index_to_physical((points_zyx + offset)[:, ::-1])

    blocks = _boundary_points(mask, _NEIGHBOURS_3D)
    axial = np.concatenate(blocks[:len(_NEIGHBOURS_2D)])
    # Rotate into the slice's own frame so "in-plane" is the first two coordinates.
    axes = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    longest_axial, short_axis = _axial_diameters(to_mm(axial) @ axes, axial[:, 0])
    # The 3D boundary: the in-plane points and those towards the slices above and below, of each
    # row only its ends (the same longest chord, among far fewer points).
    max_3d = longest_chord(to_mm(np.concatenate([_row_ends(block) for block in blocks])))
    # The mean voxel index (from the per-slice, per-row and per-column counts: exact integer sums),
    # then mapped: the mapping is affine, so it commutes with the mean.
    mean_index = [
        float(np.dot(np.arange(n), np.count_nonzero(mask, axis=tuple(a for a in range(3) if a != axis)))) / voxel_count
        for axis, n in enumerate(mask.shape)
    ]
    centroid = to_mm(np.asarray([mean_index]))[0]
    return LesionMeasures(
        voxel_count=voxel_count,
        volume_ml=voxel_count * voxel_ml,
        longest_axial_diameter_mm=longest_axial,
        short_axis_mm=short_axis,
        max_3d_diameter_mm=max_3d,
        centroid_mm=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
    )
