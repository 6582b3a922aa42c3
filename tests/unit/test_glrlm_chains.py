"""The run length matrix counted with array operations, against pyradiomics' C and its GLRLM class.

The matrix is integer counts, so it must equal pyradiomics' C matrix (`cMatrices.calculate_glrlm`)
element for element, for the grey levels present: on random regions of every shape from one voxel
up, sparse ones (whose lines may hold no two region voxels, pyradiomics' rule for dropping a
direction), in 3D and in 2D along each axis, with bins outside the region that are not 0 (what
pyradiomics' own binning leaves there), with more than 255 and more than 65 535 grey levels, and
laid out a few directions at a time. The features then go through pyradiomics' own code, held to
its plain class bit for bit on the regions the other replacements are checked on and on the
shared STS lesions on the scorer's grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from radiomics import cMatrices, glrlm

from service.scoring import glrlm_chains
from service.scoring.glrlm_chains import ChainRunLengths, direction_steps, run_length_counts
from tests.support import pyradiomics_reference as reference


def _random_case(seed: int, smallest: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Bins 1..n anywhere (also outside the region) and a region of random density."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(smallest, 13, 3))
    bins = rng.integers(1, int(rng.integers(2, 7)), size=shape)
    region = rng.random(shape) < rng.choice([0.05, 0.3, 0.7, 1.0])
    return bins, region


def _assert_matrix_equals_pyradiomics_c(bins: np.ndarray, region: np.ndarray, force_2d: bool = False,
                                        force_2d_dimension: int = 0) -> None:
    n_levels = int(bins.max())
    max_length = int(max(bins.shape))
    expected, c_directions = cMatrices.calculate_glrlm(bins.astype(np.int32), region, n_levels, max_length,
                                                       force_2d, force_2d_dimension)
    directions = direction_steps(bins.shape, force_2d, force_2d_dimension)
    np.testing.assert_array_equal(directions, c_directions)
    present = np.unique(bins[region])
    ranks = np.zeros(bins.shape, dtype=np.intp)
    ranks[region] = np.searchsorted(present, bins[region]) + 1
    got = run_length_counts(ranks, len(present), max_length, directions)
    np.testing.assert_array_equal(got, expected[0, present - 1])
    absent = np.setdiff1d(np.arange(1, n_levels + 1), present)
    assert not expected[0, absent - 1].any()


@pytest.mark.parametrize("seed", range(200))
def test_matrix_equals_pyradiomics_c_on_random_regions(seed):
    _assert_matrix_equals_pyradiomics_c(*_random_case(seed))


@pytest.mark.parametrize("dimension", [0, 1, 2])
@pytest.mark.parametrize("seed", range(20))
def test_matrix_equals_pyradiomics_c_in_2d(seed, dimension):
    """Sides of 2 voxels and more: pyradiomics' C has no direction to count in a 1 x 1 slice."""
    _assert_matrix_equals_pyradiomics_c(*_random_case(1000 + seed, smallest=2), force_2d=True, force_2d_dimension=dimension)


@pytest.mark.parametrize("region", [
    pytest.param(reference.single_voxel(), id="single-voxel"),
    pytest.param(reference.plane(), id="thin-plane"),
    pytest.param(reference.line(), id="line"),
    pytest.param(np.indices((6, 7, 8)).sum(axis=0) % 2 == 0, id="checkerboard"),  # no two voxels adjacent, many on a line
    pytest.param(np.eye(7, dtype=bool)[None].repeat(1, axis=0), id="diagonal-in-one-slice"),
])
def test_matrix_equals_pyradiomics_c_on_degenerate_regions(region):
    bins = np.random.default_rng(9).integers(1, 4, size=region.shape)
    _assert_matrix_equals_pyradiomics_c(bins, region)


def test_matrix_equals_pyradiomics_c_with_more_than_255_levels():
    """Levels counted as 16-bit values."""
    rng = np.random.default_rng(10)
    bins = rng.integers(1, 400, size=(9, 30, 31))
    bins[::2] = bins[::2] // 50 + 1  # runs as well as the many levels
    _assert_matrix_equals_pyradiomics_c(bins, rng.random(bins.shape) < 0.9)


def test_matrix_equals_pyradiomics_c_with_more_than_65535_levels():
    """Levels counted as 32-bit values: level 65 537 is not level 1 (a fixed bin number has no
    upper limit); both present, next to each other, and in runs."""
    bins = np.array([[[65537, 1, 65537, 65537, 1, 1, 2]]])
    _assert_matrix_equals_pyradiomics_c(bins, np.ones(bins.shape, dtype=bool))


def test_matrix_equals_pyradiomics_c_when_laid_out_a_few_directions_at_a_time(monkeypatch):
    """A box too large for all directions' layouts at once (here: more than 5 000 elements)."""
    monkeypatch.setattr(glrlm_chains, "_LAYOUT_ELEMENTS", 5000)
    for seed in range(20):
        _assert_matrix_equals_pyradiomics_c(*_random_case(2000 + seed, smallest=6))


BLOB_HU, BLOB = reference.blob((18, 22, 20), 1)
CASES = [
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10}, id="textured-blob"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 25}, id="textured-blob-coarse"),
    pytest.param(BLOB_HU, BLOB, {"binWidth": 10, "force2D": True, "force2Ddimension": 0}, id="textured-blob-2D"),
    pytest.param(BLOB_HU, BLOB, {"binCount": 16}, id="fixed-bin-number"),
    pytest.param(BLOB_HU[:5, :5, :5], reference.single_voxel(), {"binWidth": 10}, id="single-voxel"),
    pytest.param(np.full((8, 9, 10), 37.0), reference.blob((8, 9, 10), 4)[1], {"binWidth": 10}, id="constant"),
    pytest.param(BLOB_HU[:5, :9, :8], reference.plane(), {"binWidth": 10}, id="thin-plane"),
    pytest.param(BLOB_HU[:6, :6, :9], reference.line(), {"binWidth": 10}, id="line"),
    pytest.param(BLOB_HU, np.random.default_rng(7).random(BLOB_HU.shape) > 0.9, {"binWidth": 10}, id="speckle"),
    pytest.param(*reference.two_levels(), {"binWidth": 10}, id="two-levels"),
]


@pytest.mark.parametrize(("hu", "region", "settings"), CASES)
def test_glrlm_features_equal_pyradiomics(hu, region, settings):
    """Bit for bit: the same matrix, laid out in memory as pyradiomics leaves it."""
    reference.assert_same_as_pyradiomics(ChainRunLengths, glrlm.RadiomicsGLRLM, hu, region, exact=True, **settings)


@pytest.mark.parametrize("norm", ["manhattan", "euclidean", "infinity", "no_weighting"])
def test_distance_weighting_is_left_to_pyradiomics(norm):
    """Weighted matrices (a setting this service does not use) are pyradiomics' own."""
    reference.assert_same_as_pyradiomics(ChainRunLengths, glrlm.RadiomicsGLRLM, BLOB_HU, BLOB, exact=True,
                                         binWidth=10, weightingNorm=norm)


@pytest.mark.parametrize("patient", reference.STS_PATIENTS)
def test_glrlm_features_equal_pyradiomics_on_the_shared_sts_lesions(patient):
    hu, core, spacing = reference.sts_lesion_on_feature_grid(patient)
    reference.assert_same_as_pyradiomics(ChainRunLengths, glrlm.RadiomicsGLRLM, hu, core, spacing, exact=True,
                                         binWidth=10)
