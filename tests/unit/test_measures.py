"""Lesion measures against analytic shapes (the expected values are geometry, not our output)."""

import math

import numpy as np
import pytest

from service.model import ImageGeometry
from service.scoring.measures import measure_lesion


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


def test_empty_mask_is_refused():
    with pytest.raises(ValueError):
        measure_lesion(np.zeros((2, 2, 2), bool), (0, 0, 0), ImageGeometry((2, 2, 2), (1, 1, 1), (0, 0, 0)))
