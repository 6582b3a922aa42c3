"""Distances, gates and costs between current and prior lesions (docs/method.md 5.1).

cost c_ij = d_ij / (r_i + r_j) with r the equivalent-sphere radius, so a large lesion may move
further than a small one; a pair is allowed only within the same location class and within the
gate clamp(k (r_i + r_j), tau_min, tau_max).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service.longitudinal.frames import FrameMapping
from service.longitudinal.settings import MatchSettings
from service.longitudinal.timepoint import TimepointLesion

_MIN_RADIUS_SUM_MM = 1e-6  # two empty contours: a finite cost


def equivalent_radius_mm(volume_ml: float) -> float:
    """Radius of the sphere of the same volume: (3V / 4 pi)^(1/3), V in mm^3."""
    return float((3.0 * max(volume_ml, 0.0) * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0))


def volume_weighted_centroid(lesions: Sequence[TimepointLesion]) -> np.ndarray:
    """Centroid of a group (split fragments, merged lesions); plain mean if all volumes are 0."""
    points = np.asarray([lesion.centroid_mm for lesion in lesions], dtype=float)
    weights = np.asarray([max(lesion.volume_ml, 0.0) for lesion in lesions])
    return np.average(points, axis=0, weights=weights if weights.sum() > 0 else None)


class Space:
    """Current and prior lesions in one frame: the prior centroids mapped into the current one."""

    def __init__(self, mapping: FrameMapping, settings: MatchSettings) -> None:
        self.mapping = mapping
        self.settings = settings

    def distance_mm(self, current: Sequence[TimepointLesion], prior: Sequence[TimepointLesion]) -> float:
        """Between the (volume-weighted) centroids of two groups, prior mapped into current."""
        mapped = self.mapping.apply(volume_weighted_centroid(prior))
        return float(np.linalg.norm(volume_weighted_centroid(current) - mapped))

    def gate_mm(self, current: TimepointLesion, prior: TimepointLesion) -> float:
        s = self.settings
        radii = equivalent_radius_mm(current.volume_ml) + equivalent_radius_mm(prior.volume_ml)
        return min(max(s.k * radii, s.tau_min_mm), s.tau_max_mm)

    def feasible(self, current: TimepointLesion, prior: TimepointLesion) -> bool:
        return (current.location_class == prior.location_class
                and self.distance_mm([current], [prior]) <= self.gate_mm(current, prior))

    def cost(self, current: TimepointLesion, prior: TimepointLesion) -> float:
        radii = equivalent_radius_mm(current.volume_ml) + equivalent_radius_mm(prior.volume_ml)
        return self.distance_mm([current], [prior]) / max(radii, _MIN_RADIUS_SUM_MM)
