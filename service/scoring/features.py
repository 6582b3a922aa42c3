"""Radiomics of one region with pyradiomics, discretised on an absolute grey-level scale.

pyradiomics numbers grey levels from the ROI's own minimum (its getBinEdges), so two lesions
with the same HU texture but different minima get different LGRE/SRHGE values. The CD8 score
(method.md section 2) needs absolute bins: bin = floor((HU - lower) / width) + 1, with HU clipped
into [lower, upper). We keep pyradiomics' feature code and replace only its binning step, by
subclassing each feature class (pyradiomics' own extension point, `_applyBinning`).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import radiomics
import SimpleITK as sitk
from radiomics import firstorder, glcm, gldm, glrlm, glszm, ngtdm, shape

from service.scoring.settings import ExtractionSettings

# pyradiomics logs per-call notes at WARNING (e.g. "GLCM is symmetrical"); keep them out of the
# service log, where they would drown real problems.
logging.getLogger("radiomics").setLevel(logging.ERROR)

_FEATURE_CLASSES = {
    "firstorder": firstorder.RadiomicsFirstOrder,
    "glcm": glcm.RadiomicsGLCM,
    "glrlm": glrlm.RadiomicsGLRLM,
    "glszm": glszm.RadiomicsGLSZM,
    "gldm": gldm.RadiomicsGLDM,
    "ngtdm": ngtdm.RadiomicsNGTDM,
}


def absolute_bins(values: np.ndarray, lower: float, upper: float, width: float) -> np.ndarray:
    """IBSI fixed bin size with a fixed lower bound: 1-based bin index of every value."""
    n_bins = int(round((upper - lower) / width))
    bins = np.floor((np.asarray(values, dtype=float) - lower) / width).astype(np.int64) + 1
    return np.clip(bins, 1, n_bins)


class _AbsoluteBinning:
    """Mixin replacing pyradiomics' ROI-relative binning with absolute bins."""

    def _applyBinning(self, matrix: np.ndarray) -> np.ndarray:  # noqa: N802 (pyradiomics' name)
        binned = np.zeros(matrix.shape, dtype=np.int64)
        binned[self.maskArray] = absolute_bins(
            matrix[self.maskArray],
            self.settings["binLowerBound"],
            self.settings["binUpperBound"],
            self.settings["binWidth"],
        )
        self.coefficients["grayLevels"] = np.unique(binned[self.maskArray])
        self.coefficients["Ng"] = int(self.coefficients["grayLevels"].max())
        return binned


@functools.cache
def _absolute_class(name: str) -> type:
    base = _FEATURE_CLASSES[name]
    # pyradiomics names each class's logger after its module; keep it under "radiomics".
    return type(f"Absolute{base.__name__}", (_AbsoluteBinning, base), {"__module__": base.__module__})


def _pyradiomics_kwargs(settings: ExtractionSettings) -> dict[str, object]:
    return {
        "binWidth": settings.binWidth,
        "binLowerBound": settings.binLowerBound,
        "binUpperBound": settings.binUpperBound,
        "label": 1,
        "force2D": False,
        # The image arrives already resampled and cropped: pyradiomics must not touch geometry.
        "resampledPixelSpacing": None,
        "voxelArrayShift": 0,
    }


def _mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(like)
    return image


def _enable_current_features(extractor):
    """Enable every feature pyradiomics has not deprecated (deprecated ones duplicate others)."""
    for feature, deprecated in extractor.getFeatureNames().items():
        extractor.enableFeatureByName(feature, not deprecated)
    return extractor


def _ibsi_adjustments(name: str, value: float) -> float:
    """pyradiomics reports kurtosis as m4/m2^2; IBSI defines excess kurtosis (minus 3)."""
    return value - 3.0 if name == "firstorder_Kurtosis" else value


def region_features(
    image: sitk.Image,
    region: np.ndarray,
    settings: ExtractionSettings,
    classes: tuple[str, ...] | None = None,
    with_shape: bool = False,
) -> dict[str, float]:
    """Features of one region (boolean mask on `image`'s grid), named `<class>_<feature>`."""
    mask = _mask_image(region, image)
    kwargs = _pyradiomics_kwargs(settings)
    features: dict[str, float] = {}
    for name in classes if classes is not None else settings.featureClasses:
        extractor = _enable_current_features(_absolute_class(name)(image, mask, **kwargs))
        for feature, value in extractor.execute().items():
            key = f"{name}_{feature}"
            features[key] = _ibsi_adjustments(key, float(value))
    if with_shape:
        extractor = _enable_current_features(shape.RadiomicsShape(image, mask, **kwargs))
        features.update({f"shape_{k}": float(v) for k, v in extractor.execute().items()})
    return features


def engine_versions() -> dict[str, str]:
    """Versions of the engines behind the numbers, for every output."""
    return {
        "pyradiomics": str(radiomics.__version__),
        "SimpleITK": sitk.Version_VersionString(),
        "numpy": np.__version__,
    }
