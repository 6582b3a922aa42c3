"""Lesion measures against analytic shapes (the expected values are geometry, not our output) and
against brute force over every boundary point (every pair, no hull: the definitions themselves)."""

import math

import numpy as np
import pydicom
import pytest
from scipy import ndimage
from scipy.spatial.distance import pdist, squareform

from service.imaging.contours import rtstruct_to_masks
from service.imaging.volume import read_ct_directory
from service.model import ImageGeometry
from service.scoring.measures import _FEW_POINTS, _axial_diameters, _longest_chords, longest_chord, measure_lesion
from tests.support.external import DATA_DIR, require_data


def _ellipsoid(a: float, b: float, c: float, spacing: tuple[float, float, float]) -> tuple[np.ndarray, ImageGeometry]:
    """Voxelised ellipsoid with semi-axes a (x), b (y), c (z) in mm, centred off-grid."""
    sx, sy, sz = spacing
    n = [int(2 * r / s) + 6 for r, s in zip((a, b, c), spacing)]
    z, y, x = np.mgrid[: n[2], : n[1], : n[0]]
    cx, cy, cz = (n[0] - 1) / 2 + 0.3, (n[1] - 1) / 2 - 0.2, (n[2] - 1) / 2 + 0.1
    inside = ((x - cx) * sx / a) ** 2 + ((y - cy) * sy / b) ** 2 + ((z - cz) * sz / c) ** 2 <= 1
    return inside, ImageGeometry(size=(n[0], n[1], n[2]), spacing=spacing, origin=(10.0, -20.0, 5.0))


def test_sphere_volume_and_diameters_match_geometry():
    radius = 10.0
    mask, geometry = _ellipsoid(radius, radius, radius, (0.5, 0.5, 0.5))
    m = measure_lesion(mask, (0, 0, 0), geometry)
    # Voxelisation error of a sphere's volume on a 0.5 mm grid is well under 1 % at r = 10 mm.
    assert m.volume_ml == pytest.approx(4 / 3 * math.pi * radius**3 / 1000, rel=0.01)
    # Boundary midpoints lie within half a voxel of the surface: diameters within one voxel.
    for value in (m.longest_axial_diameter_mm, m.short_axis_mm, m.max_3d_diameter_mm):
        assert value == pytest.approx(2 * radius, abs=0.5)


def test_ellipsoid_long_and_short_axis_and_anisotropic_voxels():
    mask, geometry = _ellipsoid(20.0, 8.0, 12.0, (0.7, 0.7, 2.0))
    m = measure_lesion(mask, (0, 0, 0), geometry)
    assert m.longest_axial_diameter_mm == pytest.approx(40.0, abs=0.7)
    assert m.short_axis_mm == pytest.approx(16.0, abs=0.7)
    assert m.max_3d_diameter_mm == pytest.approx(40.0, abs=0.7)
    assert m.voxel_count == int(mask.sum())


def test_centroid_and_offset_are_in_patient_coordinates():
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[1, 2, 3] = True
    geometry = ImageGeometry(size=(50, 40, 30), spacing=(1.0, 2.0, 3.0), origin=(-5.0, 0.0, 100.0))
    m = measure_lesion(mask, (10, 20, 30), geometry)
    # voxel (x=33, y=22, z=11) -> origin + index * spacing
    assert m.centroid_mm == pytest.approx((-5.0 + 33, 0.0 + 44, 100.0 + 33))
    assert m.volume_ml == pytest.approx(6.0 / 1000)


def test_a_0_1_integer_mask_measures_as_its_boolean_mask():
    """The boundary steps negate the mask: an integer mask is read as a boolean one, not
    bitwise-inverted (~1 == 254 for uint8)."""
    z, y, x = np.indices((9, 11, 10))
    mask = (z - 4) ** 2 + (y - 5) ** 2 / 2 + (x - 4) ** 2 < 12
    geometry = ImageGeometry(size=(10, 11, 9), spacing=(0.8, 0.8, 1.5), origin=(0.0, 0.0, 0.0))
    assert measure_lesion(mask.astype(np.uint8), (0, 0, 0), geometry) == measure_lesion(mask, (0, 0, 0), geometry)


def test_empty_mask_is_refused():
    with pytest.raises(ValueError):
        measure_lesion(np.zeros((2, 2, 2), bool), (0, 0, 0), ImageGeometry((2, 2, 2), (1, 1, 1), (0, 0, 0)))


# --- against brute force over every boundary point -------------------------------------------------


def _reference_measures(mask: np.ndarray, offset_zyx: tuple[int, int, int], geometry: ImageGeometry) -> dict[str, float]:
    """The definitions of the module docstring, computed the plain way: every voxel face on the
    boundary, every pair of points, no convex hull, no reduction."""
    matrix = np.asarray(geometry.direction, dtype=float).reshape(3, 3) * np.asarray(geometry.spacing)

    def to_mm(zyx: np.ndarray) -> np.ndarray:
        return (zyx + np.asarray(offset_zyx))[:, ::-1] @ matrix.T + np.asarray(geometry.origin)

    def face_points(offsets: list[tuple[int, int, int]]) -> np.ndarray:
        padded = np.pad(mask, 1)
        points = []
        for z, y, x in np.argwhere(mask):
            for dz, dy, dx in offsets:
                if not padded[z + 1 + dz, y + 1 + dy, x + 1 + dx]:
                    points.append((z + dz / 2, y + dy / 2, x + dx / 2))
        return np.asarray(points, dtype=float)

    in_plane = [(0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    axial = face_points(in_plane)
    # In-plane coordinates in the slice's own frame (direction cosines as rows).
    axial_mm = to_mm(axial) @ np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    planes = [axial_mm[axial[:, 0] == z][:, :2] for z in np.unique(axial[:, 0])]
    lengths = [squareform(pdist(plane)) for plane in planes]
    longest = max(float(chords.max()) for chords in lengths)
    # Every longest chord, on any slice (ties within 1e-9): the short axis is the widest across any of them.
    widths = []
    for plane, chords in zip(planes, lengths):
        for i, j in zip(*np.nonzero(chords >= longest * (1 - 1e-9))):
            direction = (plane[i] - plane[j]) / chords[i, j]
            width = plane @ np.array([-direction[1], direction[0]])
            widths.append(float(width.max() - width.min()))
    best = (longest, max(widths))
    everywhere = to_mm(face_points(in_plane + [(1, 0, 0), (-1, 0, 0)]))
    return {
        "longest_axial_diameter_mm": best[0],
        "short_axis_mm": best[1],
        "max_3d_diameter_mm": float(pdist(everywhere).max()),
        "centroid": to_mm(np.argwhere(mask).astype(float)).mean(axis=0),
    }


def _lumpy(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A non-convex lesion: smoothed noise above a threshold inside an ellipsoid."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    z, y, x = np.indices(shape, dtype=float)
    radial = sum(((a - (n - 1) / 2) / (n / 2.2)) ** 2 for a, n in zip((z, y, x), shape))
    return (noise - 0.2 * radial > -0.05) & (radial < 1.0)


_TILTED_IN_PLANE = (math.cos(0.4), math.sin(0.4), 0.0, -math.sin(0.4), math.cos(0.4), 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(("mask", "geometry"), [
    pytest.param(_lumpy((14, 30, 26), 1), ImageGeometry((400, 300, 80), (0.7, 0.7, 2.5), (-120.3, 40.1, -300.0)), id="lumpy"),
    pytest.param(_lumpy((20, 22, 24), 2), ImageGeometry((400, 300, 80), (0.9, 1.1, 1.0), (3.0, -2.0, 7.5), _TILTED_IN_PLANE), id="rotated-in-plane"),
    pytest.param(_lumpy((8, 40, 12), 3), ImageGeometry((400, 300, 80), (0.6, 0.8, 3.0), (0.0, 0.0, 0.0)), id="elongated"),
])
def test_measures_equal_brute_force_over_every_boundary_point(mask, geometry):
    offset = (5, 17, 23)
    expected = _reference_measures(mask, offset, geometry)
    m = measure_lesion(mask, offset, geometry)
    assert m.longest_axial_diameter_mm == pytest.approx(expected["longest_axial_diameter_mm"], rel=1e-9)
    assert m.short_axis_mm == pytest.approx(expected["short_axis_mm"], rel=1e-9)
    assert m.max_3d_diameter_mm == pytest.approx(expected["max_3d_diameter_mm"], rel=1e-9)
    assert m.centroid_mm == pytest.approx(tuple(expected["centroid"]), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("patient", ["STS_019", "STS_025", "STS_002"])
def test_measures_of_the_shared_sts_lesions_equal_brute_force(patient):
    folder = require_data(DATA_DIR / "ct-rtstruct" / patient)
    ct = read_ct_directory(folder / "image")
    (lesion,) = rtstruct_to_masks(pydicom.dcmread(folder / "mask" / "RS.dcm"), ct)
    expected = _reference_measures(lesion.mask, lesion.offset_zyx, ct.geometry)
    m = measure_lesion(lesion.mask, lesion.offset_zyx, ct.geometry)
    assert m.longest_axial_diameter_mm == pytest.approx(expected["longest_axial_diameter_mm"], rel=1e-9)
    assert m.short_axis_mm == pytest.approx(expected["short_axis_mm"], rel=1e-9)
    assert m.max_3d_diameter_mm == pytest.approx(expected["max_3d_diameter_mm"], rel=1e-9)
    assert m.centroid_mm == pytest.approx(tuple(expected["centroid"]), rel=1e-9, abs=1e-9)


def _on_a_sphere(n: int, seed: int) -> np.ndarray:
    """Points on a sphere: all at the same distance from the centre, the case where the pruning
    keeps almost every point (and takes their convex hull)."""
    directions = np.random.default_rng(seed).normal(size=(n, 3))
    return 12.5 * directions / np.linalg.norm(directions, axis=1, keepdims=True) + [3.0, -40.0, 7.0]


@pytest.mark.parametrize("points", [
    pytest.param(_on_a_sphere(2000, 3), id="round"),
    pytest.param(np.random.default_rng(4).normal(size=(3000, 3)) * [1.0, 5.0, 0.5], id="elongated-cloud"),
    pytest.param(np.column_stack([np.arange(40.0), 2 * np.arange(40.0), np.zeros(40)]), id="collinear"),
    pytest.param(np.random.default_rng(5).integers(0, 3, size=(500, 3)).astype(float), id="coplanar-duplicates"),
    pytest.param(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]), id="one-point-twice"),
    pytest.param(np.array([[1.0, 2.0, 3.0]]), id="single-point"),
])
def test_longest_chord_equals_every_pair(points):
    """The pruned search gives the maximum over every pair, whether it compares the candidates
    directly or through their convex hull."""
    expected = float(pdist(points).max()) if len(points) > 1 else 0.0
    assert longest_chord(points) == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_longest_chord_takes_the_hull_path_on_a_round_lesion():
    """The round case above is one where more than _FEW_POINTS candidates survive the pruning
    (else it would not test the convex-hull path)."""
    points = _on_a_sphere(2000, 3)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    reach = np.linalg.norm(points - centre, axis=1)
    longest = pdist(points).max()
    assert np.count_nonzero(reach + reach.max() >= longest) > _FEW_POINTS


def test_a_slice_of_more_than_few_points_gives_the_longest_distance_through_its_hull():
    """Beyond _FEW_POINTS points a slice's longest chord is sought among its convex hull's
    vertices (the path no slice of the lesions above reaches): the same length as over every
    pair, and its direction is that of a longest pair (the points' extent along it is its length)."""
    points = np.random.default_rng(6).normal(size=(1500, 2)) * [20.0, 11.0]
    assert len(points) > _FEW_POINTS
    longest, directions = _longest_chords(points)
    assert longest == pytest.approx(float(pdist(points).max()), rel=1e-12, abs=0.0)
    (direction,) = directions
    extent = points @ direction
    assert float(extent.max() - extent.min()) == pytest.approx(longest, rel=1e-12)


# Two chords of length 10 in different directions, (0, 0)-(10, 0) and (0, 0)-(6, 8), and no
# longer one: across the first the points span y -1 to 8 (9 mm), across the second 8 mm
# (perpendicular (-0.8, 0.6): projections 0, -8, 0 and -3).
_TIED = np.array([[0.0, 0.0], [10.0, 0.0], [6.0, 8.0], [3.0, -1.0]])


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [0, 2, 1, 3], [2, 3, 0, 1], [3, 2, 1, 0]])
def test_tied_longest_chords_give_the_larger_short_axis_whatever_the_points_order(order):
    points = _TIED[order]
    assert pdist(points).max() == 10.0
    longest, short = _axial_diameters(points, np.zeros(len(points), dtype=int))
    assert (longest, short) == (10.0, pytest.approx(9.0, rel=1e-12))


# One slice whose longest chords tie in two directions with different widths across them (7.04
# and 7.17 mm, found by a search over random 6 x 6 masks): the code before this rule gave 7.04 in
# four of the mask's eight orientations and 7.17 in the others.
_TIED_SLICE = np.array([
    [1, 1, 1, 1, 1, 1],
    [1, 0, 1, 1, 0, 0],
    [0, 1, 1, 0, 1, 1],
    [1, 1, 1, 1, 1, 0],
    [0, 1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1, 1],
], dtype=bool)


def test_a_lesion_with_tied_longest_chords_has_one_short_axis_in_every_orientation():
    geometry = ImageGeometry((9, 9, 1), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    orientations = [np.rot90(flipped, turns) for flipped in (_TIED_SLICE, _TIED_SLICE.T) for turns in range(4)]
    expected = _reference_measures(_TIED_SLICE[None], (0, 0, 0), geometry)["short_axis_mm"]
    assert expected == pytest.approx(7.170065276, abs=1e-9)
    for mask in orientations:
        m = measure_lesion(np.ascontiguousarray(mask)[None], (0, 0, 0), geometry)
        assert m.short_axis_mm == pytest.approx(expected, rel=1e-12)


def test_slices_tied_for_the_longest_diameter_give_one_short_axis_however_the_lesion_lies():
    """A 1 x 5 voxel bar on one slice and a 4 x 4 block on the next: both longest chords are 5
    voxels (the bar's length; the block's (4, 3) diagonal between face midpoints), across which
    the bar is 1 voxel wide and the block 5 (its face midpoints' extent across that diagonal).
    On a grid of 0.7 mm voxels with a non-round origin the two lengths differ by rounding only
    (the code before this rule gave the bar's 0.7 mm in one of the eight placements below); the
    short axis is the block's 3.5 mm in every in-plane orientation and in both slice orders."""
    lesion = np.zeros((2, 6, 6), bool)
    lesion[0, 2, 0:5] = True
    lesion[1, 1:5, 1:5] = True
    geometry = ImageGeometry((9, 9, 4), (0.7, 0.7, 0.7), (-31.37, 12.913, 5.0071))
    expected = _reference_measures(lesion, (0, 0, 0), geometry)
    assert expected["longest_axial_diameter_mm"] == pytest.approx(3.5, rel=1e-12)
    assert expected["short_axis_mm"] == pytest.approx(3.5, rel=1e-12)  # the block's, not the bar's 0.7 mm
    for flipped in (lesion, lesion[::-1]):
        for turns in range(4):
            mask = np.ascontiguousarray(np.rot90(flipped, turns, axes=(1, 2)))
            m = measure_lesion(mask, (0, 0, 0), geometry)
            assert m.longest_axial_diameter_mm == pytest.approx(3.5, rel=1e-12)
            assert m.short_axis_mm == pytest.approx(expected["short_axis_mm"], rel=1e-9)
