"""The tabulated shape set-up (service.scoring.shape_tabulated) against pyradiomics' own shape class.

Every shape feature (mesh area and volume and what derives from them, the four maximum diameters,
the axis lengths) must agree to relative 1e-9, on regions that exercise every cube pattern and
the diameter search's pruning: a lumpy blob at isotropic and anisotropic spacings and far from
the array's origin (the volume's position terms grow with it), speckle and a half-filled random
block (all 256 patterns, many apart), the degenerate regions (one voxel, a thin plane, a line), a
region filling its whole array (pyradiomics pads it), and the shared STS lesions on the scorer's
1 mm grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from radiomics import shape

from service.scoring.shape_tabulated import TabulatedShape, _largest_in_planes, cube_patterns
from tests.support import pyradiomics_reference as reference


def _assert_same_as_pyradiomics(region: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """Shape reads only the mask: the intensities are zeros."""
    reference.assert_same_as_pyradiomics(TabulatedShape, shape.RadiomicsShape, np.zeros(region.shape), region, spacing)


BLOB = reference.blob((18, 22, 20), 1)[1]
HALF_FILLED = np.random.default_rng(2).random((9, 11, 10)) > 0.5
CASES = [
    pytest.param(BLOB, (1.0, 1.0, 1.0), id="blob"),
    pytest.param(BLOB, (0.7, 0.8, 2.5), id="blob-anisotropic"),
    pytest.param(np.pad(BLOB, ((40, 0), (70, 0), (55, 0))), (0.7, 0.8, 2.5), id="blob-far-from-the-origin"),
    pytest.param(np.random.default_rng(3).random((16, 15, 14)) > 0.85, (0.9, 0.9, 1.5), id="speckle"),
    pytest.param(HALF_FILLED, (1.3, 0.7, 0.9), id="half-filled"),
    pytest.param(reference.single_voxel(), (1.0, 1.0, 1.0), id="single-voxel"),
    pytest.param(reference.plane(), (0.8, 0.8, 3.0), id="thin-plane"),
    pytest.param(reference.line(), (1.0, 1.0, 1.0), id="line"),
    pytest.param(np.ones((4, 6, 5), dtype=bool), (1.0, 2.0, 0.5), id="whole-array"),
]


def test_the_cases_hold_every_cube_pattern():
    """The per-pattern tables are all exercised (else a wrong entry could go unnoticed)."""
    seen = np.unique(np.concatenate([cube_patterns(np.pad(case.values[0], 1)).ravel() for case in CASES]))
    assert len(seen) == 256


@pytest.mark.parametrize(("region", "spacing"), CASES)
def test_tabulated_shape_equals_pyradiomics(region, spacing):
    _assert_same_as_pyradiomics(region, spacing)


@pytest.mark.parametrize("patient", reference.STS_PATIENTS)
def test_tabulated_shape_equals_pyradiomics_on_the_shared_sts_lesions(patient):
    """The real lesions as the scorer sees them: cropped and resampled to its 1 mm grid."""
    _, core, spacing = reference.sts_lesion_on_feature_grid(patient)
    _assert_same_as_pyradiomics(core, spacing)


def _every_pair_in_planes(points: np.ndarray, planes: np.ndarray) -> float:
    largest = 0.0
    for key in np.unique(planes):
        group = points[planes == key]
        largest = max(largest, float(np.linalg.norm(group[:, None, :] - group[None, :, :], axis=2).max()))
    return largest


def _discs(radii: list[float], points_per_disc: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points on circles of the given radii, one circle per plane (z): the round case, where the
    pruning keeps the most points."""
    angles = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=(len(radii), points_per_disc))
    radius = np.asarray(radii)[:, None]
    z = np.broadcast_to(np.arange(len(radii), dtype=float)[:, None], angles.shape)
    points = np.stack([z, radius * np.sin(angles) + 3.0, radius * np.cos(angles) - 2.0], axis=-1).reshape(-1, 3)
    return points, points[:, 0].copy()


@pytest.mark.parametrize(("points", "planes"), [
    pytest.param(*_discs([3.0, 8.0, 8.0 - 1e-9, 7.5, 1.0], 200, 4), id="round-planes"),
    pytest.param(np.random.default_rng(5).normal(size=(600, 3)), np.random.default_rng(6).integers(0, 9, 600), id="cloud"),
    pytest.param(np.array([[0.0, 1.0, 2.0], [5.0, 1.0, 2.0]]), np.array([0, 1]), id="one-point-per-plane"),
])
def test_largest_in_planes_equals_every_pair(points, planes):
    """The pruned search gives the maximum over every pair within each plane."""
    assert _largest_in_planes(points, planes) == pytest.approx(_every_pair_in_planes(points, planes), rel=1e-12, abs=0.0)
