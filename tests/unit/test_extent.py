"""The bounding box from projections against the plain one from every voxel's index."""

import numpy as np
import pytest

from service.scoring.extent import box_ends


@pytest.mark.parametrize("seed", range(20))
def test_box_ends_are_the_extremes_of_the_voxel_indices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 30, size=3))
    mask = rng.random(shape) < rng.choice([0.002, 0.05, 0.5])
    if not mask.any():
        mask[tuple(int(rng.integers(n)) for n in shape)] = True
    indices = np.nonzero(mask)
    assert box_ends(mask) == [(int(axis.min()), int(axis.max())) for axis in indices]


def test_a_single_voxel_and_a_full_array() -> None:
    mask = np.zeros((4, 5, 6), dtype=bool)
    mask[3, 0, 5] = True
    assert box_ends(mask) == [(3, 3), (0, 0), (5, 5)]
    assert box_ends(np.ones((4, 5, 6), dtype=bool)) == [(0, 3), (0, 4), (0, 5)]


def test_an_empty_mask_has_no_box() -> None:
    with pytest.raises(ValueError, match="empty mask"):
        box_ends(np.zeros((3, 3, 3), dtype=bool))
