"""The peritumoral ring on shapes whose answer is known exactly."""

import numpy as np
import pytest

from service.scoring.ring import ring_mask


def test_slab_ring_is_two_voxels_each_side_of_a_flat_boundary():
    # A flat boundary between x=9 and x=10 on a 1 mm grid: voxels within 2 mm of the boundary
    # on either side are x = 8, 9 (inside) and 10, 11 (outside): exactly 4 voxel layers.
    core = np.zeros((5, 6, 20), dtype=bool)
    core[:, :, :10] = True
    ring = ring_mask(core, (1.0, 1.0, 1.0), 2.0)
    assert np.array_equal(np.nonzero(ring.any(axis=(0, 1)))[0], [8, 9, 10, 11])
    assert ring[:, :, 8:12].all()


def test_ring_scales_with_spacing_and_width():
    core = np.zeros((4, 4, 40), dtype=bool)
    core[:, :, :20] = True
    # 0.5 mm voxels, 2 mm ring: 4 layers on each side.
    ring = ring_mask(core, (0.5, 0.5, 0.5), 2.0)
    assert np.array_equal(np.nonzero(ring.any(axis=(0, 1)))[0], np.arange(16, 24))
    # 3 mm ring on 1 mm voxels: 3 layers on each side.
    ring = ring_mask(core, (1.0, 1.0, 1.0), 3.0)
    assert np.array_equal(np.nonzero(ring.any(axis=(0, 1)))[0], np.arange(17, 23))


def test_distance_is_euclidean_from_the_boundary_not_city_block():
    # One lesion voxel: its boundary points are the six face centres, half a voxel from its centre.
    core = np.zeros((7, 7, 7), dtype=bool)
    core[3, 3, 3] = True
    ring = ring_mask(core, (1.0, 1.0, 1.0), 2.0)
    # offset (1, 1, 1): nearest boundary point (0.5, 0, 0) is sqrt(0.25 + 1 + 1) = 1.5 mm away;
    # city-block it would be 2.5 mm and outside the ring.
    assert ring[4, 4, 4]
    # offset (0, 1, 2): sqrt(1 + 1.5^2) = 1.80 mm -> inside; offset (0, 2, 2): sqrt(1.5^2 + 2^2) = 2.5 mm
    assert ring[3, 4, 5] and not ring[3, 5, 5]
    # offset (1, 1, 2): sqrt(1 + 1 + 1.5^2) = 2.06 mm -> outside; straight on, 3 voxels: 2.5 mm
    assert not ring[4, 4, 5] and not ring[3, 3, 6]
    assert ring[3, 3, 3]  # the lesion voxel is 0.5 mm from its own boundary


def _sphere_ring_error(radius: float, spacing: float, width: float = 2.0) -> tuple[float, float]:
    """(ring volume - analytic shell volume, bound) for a sphere sampled on a `spacing` grid."""
    n = int(np.ceil((radius + width) / spacing)) + 3
    axis = np.arange(-n, n + 1) * spacing + 0.17 * spacing  # the centre off the grid points
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    core = np.sqrt(x**2 + y**2 + z**2) <= radius
    ring = ring_mask(core, (spacing,) * 3, width)
    analytic = 4 / 3 * np.pi * ((radius + width) ** 3 - (radius - width) ** 3)
    # The boundary points lie within half a voxel of the true sphere (each is the midpoint of an
    # edge from a centre inside to one outside), so each of the ring's two surfaces sits within
    # spacing / 2 of where it should: the volume error is at most (outer + inner area) x spacing / 2.
    bound = 4 * np.pi * ((radius + width) ** 2 + (radius - width) ** 2) * spacing / 2
    return ring.sum() * spacing**3 - analytic, bound


@pytest.mark.parametrize("radius", [6.3, 10.0, 15.5])
def test_sphere_ring_matches_the_analytic_shell_within_the_sampling_bound(radius):
    error, bound = _sphere_ring_error(radius, 1.0)
    assert abs(error) <= bound


def test_sphere_ring_converges_to_the_analytic_shell():
    coarse, coarse_bound = _sphere_ring_error(10.0, 1.0)
    fine, fine_bound = _sphere_ring_error(10.0, 0.5)
    assert abs(fine) <= fine_bound
    assert abs(fine) < abs(coarse)


def test_empty_and_full_cores_have_no_boundary():
    assert not ring_mask(np.zeros((4, 4, 4), dtype=bool), (1.0, 1.0, 1.0), 2.0).any()
    assert not ring_mask(np.ones((4, 4, 4), dtype=bool), (1.0, 1.0, 1.0), 2.0).any()
