"""pyradiomics' first-order moments and percentiles of a region, each computed once.

pyradiomics' first-order features each start again from the region's intensities:

- skewness and kurtosis each take the mean and the second central moment (`_moment`), and raise
  the deviations to the 3rd and 4th power with numpy's pow, which is slow (about 5 ms of a 20 mL
  lesion's full panel, core and ring, under cProfile);
- the 10th and 90th percentiles are sorted for twice (again for the robust mean absolute
  deviation), the 25th and 75th once more for the interquartile range.

Here the deviations from the mean are taken once, their powers by multiplication, and the four
percentiles by one `nanpercentile` call (the same order statistics and interpolation as four
calls). Every other feature is pyradiomics' own, including the robust mean absolute deviation,
which reads the percentiles through the methods below. The powers by multiplication round
differently from pow, so skewness and kurtosis agree to rounding
(tests/unit/test_firstorder_once.py holds every first-order feature to pyradiomics' class at
relative 1e-9); the percentiles are the same numbers.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

_PERCENTILES = (10, 25, 75, 90)


class FirstOrderOnce:
    """Mixin over radiomics.firstorder.RadiomicsFirstOrder (listed before it in the bases)."""

    # Set by pyradiomics' RadiomicsFirstOrder, the class this is mixed into (declared, not
    # assigned): (1, voxels) in the region-wide calculation this service runs.
    targetVoxelArray: np.ndarray

    @functools.cached_property
    def _central_moments(self) -> dict[int, np.ndarray]:
        """The 2nd, 3rd and 4th central moments of the intensities (pyradiomics' `_moment`)."""
        deviation = self.targetVoxelArray - np.nanmean(self.targetVoxelArray, 1, keepdims=True)
        squared = deviation * deviation
        return {2: np.nanmean(squared, 1), 3: np.nanmean(squared * deviation, 1), 4: np.nanmean(squared * squared, 1)}

    @functools.cached_property
    def _percentiles(self) -> dict[int, np.ndarray]:
        values = np.nanpercentile(self.targetVoxelArray, _PERCENTILES, axis=1)
        return dict(zip(_PERCENTILES, values))

    def get10PercentileFeatureValue(self) -> Any:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' 10th percentile (firstorder.RadiomicsFirstOrder.get10PercentileFeatureValue)."""
        return self._percentiles[10]

    def get90PercentileFeatureValue(self) -> Any:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' 90th percentile (firstorder.RadiomicsFirstOrder.get90PercentileFeatureValue)."""
        return self._percentiles[90]

    def getInterquartileRangeFeatureValue(self) -> Any:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' interquartile range (firstorder.RadiomicsFirstOrder.getInterquartileRangeFeatureValue)."""
        return self._percentiles[75] - self._percentiles[25]

    def _standardised_moment(self, order: int) -> Any:
        """m_order / m2^(order / 2) as pyradiomics takes it: a flat region's m2 = 0 taken as 1."""
        m2 = self._central_moments[2]
        return self._central_moments[order] / np.where(m2 == 0, 1.0, m2) ** (order / 2.0)

    def getSkewnessFeatureValue(self) -> Any:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' skewness (firstorder.RadiomicsFirstOrder.getSkewnessFeatureValue)."""
        return self._standardised_moment(3)

    def getKurtosisFeatureValue(self) -> Any:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' kurtosis (firstorder.RadiomicsFirstOrder.getKurtosisFeatureValue)."""
        return self._standardised_moment(4)
