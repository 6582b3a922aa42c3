"""IBSI re-segmentation: which voxels of a region the intensity features use.

Two IBSI methods, combinable (IBSI reference manual, "re-segmentation"):
- range: voxels with intensity in the closed interval resegmentRange = [lower, upper];
- outlier filtering: voxels within mean +/- k SD of the region's intensities (k =
  outlierFilterSigma; SD is the population SD, over the whole region as segmented).
With both, the kept interval is the intersection of the two. Shape always keeps the whole mask.
"""

from __future__ import annotations

import numpy as np

from service.scoring.settings import ExtractionSettings


def intensity_range(region: np.ndarray, hu: np.ndarray, settings: ExtractionSettings) -> tuple[float, float] | None:
    """The closed interval of intensities kept, or None when no re-segmentation applies."""
    lower, upper = -np.inf, np.inf
    if settings.resegmentRange is not None:
        lower, upper = settings.resegmentRange
    if settings.outlierFilterSigma is not None and region.any():
        values = hu[region]
        mean, sd = float(values.mean()), float(values.std())
        lower = max(lower, mean - settings.outlierFilterSigma * sd)
        upper = min(upper, mean + settings.outlierFilterSigma * sd)
    if (lower, upper) == (-np.inf, np.inf):
        return None
    return float(lower), float(upper)


def intensity_mask(region: np.ndarray, hu: np.ndarray, settings: ExtractionSettings) -> np.ndarray:
    """The region's voxels whose intensity lies in intensity_range (the region itself if none)."""
    kept = intensity_range(region, hu, settings)
    if kept is None:
        return region
    lower, upper = kept
    return region & (hu >= lower) & (hu <= upper)
