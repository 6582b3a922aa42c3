"""The peritumoral ring on shapes whose answer is known exactly."""

import numpy as np

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


def test_diagonal_distance_is_euclidean_not_city_block():
    # One lesion voxel: a voxel at offset (1, 1, 1) is sqrt(3) = 1.73 mm away (inside a 2 mm
    # ring); (2, 1, 0) is sqrt(5) = 2.24 mm away (outside). City-block distance would give 3.
    core = np.zeros((7, 7, 7), dtype=bool)
    core[3, 3, 3] = True
    ring = ring_mask(core, (1.0, 1.0, 1.0), 2.0)
    assert ring[4, 4, 4] and ring[3, 3, 5]
    assert not ring[3, 4, 5]
    assert ring[3, 3, 3]  # the lesion voxel itself is within 2 mm of background
