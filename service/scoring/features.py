"""Radiomics of one region with pyradiomics, discretised on an absolute grey-level scale.

pyradiomics numbers grey levels from the ROI's own minimum (its getBinEdges), so two lesions
with the same HU texture but different minima get different LGRE/SRHGE values. The CD8 score
(docs/method.md section 2) needs absolute bins: bin = floor((HU - lower) / width) + 1, clipped
into the settings' bins (ExtractionSettings.fixed_bin_count: [lower, upper) by default, the closed
resegmentRange when one is set). We keep pyradiomics' feature code and replace only its binning step, by
subclassing each feature class (pyradiomics' own extension point, `_applyBinning`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import radiomics
import SimpleITK as sitk
from radiomics import firstorder, glcm, gldm, glrlm, glszm, ngtdm, shape

from service.scoring.degenerate import is_undefined
from service.scoring.ibsi_names import feature_key
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
    "shape": shape.RadiomicsShape,
}


@functools.cache
def current_feature_names(feature_class: str) -> tuple[str, ...]:
    """Features of a class that pyradiomics has not deprecated (deprecated ones duplicate others).

    Raises KeyError for a class we do not compute.
    """
    names = _FEATURE_CLASSES[feature_class].getFeatureNames()
    return tuple(sorted(name for name, deprecated in names.items() if not deprecated))


def absolute_bins(values: np.ndarray, lower: float, width: float, n_bins: int) -> np.ndarray:
    """IBSI fixed bin size with a fixed lower bound: 1-based bin index of every value, clipped
    into 1..n_bins (ExtractionSettings.fixed_bin_count)."""
    bins = np.floor((np.asarray(values, dtype=float) - lower) / width).astype(np.int64) + 1
    return np.clip(bins, 1, n_bins)


class _AbsoluteBinning:
    """Mixin replacing pyradiomics' ROI-relative binning with absolute bins."""

    # Set by pyradiomics' RadiomicsFeaturesBase, the class this is mixed into (declared, not assigned).
    maskArray: np.ndarray  # noqa: N815 (pyradiomics' name)
    settings: dict[str, Any]
    coefficients: dict[str, Any]

    def _applyBinning(self, matrix: np.ndarray) -> np.ndarray:  # noqa: N802 (pyradiomics' name)
        binned = np.zeros(matrix.shape, dtype=np.int64)
        binned[self.maskArray] = absolute_bins(
            matrix[self.maskArray],
            self.settings["discretisationLowerBound"],
            self.settings["binWidth"],
            self.settings["discretisationBinCount"],
        )
        self.coefficients["grayLevels"] = np.unique(binned[self.maskArray])
        self.coefficients["Ng"] = int(self.coefficients["grayLevels"].max())
        return binned


@functools.cache
def _feature_class(name: str, absolute: bool) -> type:
    base = _FEATURE_CLASSES[name]
    if not absolute or name == "shape":
        return base
    # pyradiomics names each class's logger after its module; keep it under "radiomics".
    return type(f"Absolute{base.__name__}", (_AbsoluteBinning, base), {"__module__": base.__module__})


def _pyradiomics_kwargs(settings: ExtractionSettings) -> dict[str, object]:
    lower, _ = settings.discretisation_bounds
    kwargs: dict[str, object] = {
        "label": 1,
        "force2D": settings.force2D,
        "force2Ddimension": 0,
        # The image arrives already resampled and cropped: pyradiomics must not touch geometry.
        "resampledPixelSpacing": None,
        "voxelArrayShift": 0,
        "discretisationLowerBound": lower,
        "discretisationBinCount": settings.fixed_bin_count,
    }
    if settings.binCount is not None:
        # IBSI "fixed bin number" is defined on the ROI's own range: pyradiomics' binning is right.
        kwargs["binCount"] = settings.binCount
    else:
        kwargs["binWidth"] = settings.binWidth
    return kwargs


def _mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(like)
    return image


_PCA_AXES = ("MajorAxisLength", "MinorAxisLength", "LeastAxisLength")


def _ibsi_adjustments(feature_class: str, feature: str, value: float, n_voxels: int) -> float:
    """Where pyradiomics' definition differs from IBSI's by a known factor, report IBSI's.

    - Kurtosis: pyradiomics reports m4 / m2^2; IBSI defines excess kurtosis (minus 3).
    - PCA axis lengths (4 sqrt(eigenvalue)): pyradiomics takes the eigenvalues of the voxel
      coordinates' covariance normalised by N, IBSI's reference values those normalised by N - 1
      (on the digital phantom, N = 74, pyradiomics' minor axis 9.24 mm against IBSI's 9.31 ± 0.06).
      Elongation and flatness are ratios, so the factor cancels there.
    """
    if (feature_class, feature) == ("firstorder", "Kurtosis"):
        return value - 3.0
    if feature_class == "shape" and feature in _PCA_AXES and n_voxels > 1:
        return value * math.sqrt(n_voxels / (n_voxels - 1))
    return value


def region_features(
    image: sitk.Image,
    region: np.ndarray,
    settings: ExtractionSettings,
    classes: Mapping[str, tuple[str, ...]],
) -> dict[str, float]:
    """Features of one region (boolean mask on `image`'s grid), named by service.scoring.ibsi_names.

    `classes` maps a pyradiomics class to the features wanted (empty: every current feature).
    """
    mask = _mask_image(region, image)
    kwargs = _pyradiomics_kwargs(settings)
    absolute = settings.binCount is None
    n_voxels = int(np.count_nonzero(region))
    constant, one_level = _degeneracy(sitk.GetArrayViewFromImage(image)[region], settings)
    features: dict[str, float] = {}
    for name, wanted in classes.items():
        extractor = _feature_class(name, absolute)(image, mask, **kwargs)
        for feature in wanted or current_feature_names(name):
            extractor.enableFeatureByName(feature, True)
        for feature, value in extractor.execute().items():
            key = feature_key(name, feature, settings.force2D)
            if is_undefined(name, feature, constant, one_level):
                features[key] = math.nan  # not pyradiomics' placeholder (service.scoring.degenerate)
            else:
                features[key] = _ibsi_adjustments(name, feature, float(value), n_voxels)
    return features


def _degeneracy(values: np.ndarray, settings: ExtractionSettings) -> tuple[bool, bool]:
    """(constant intensity, a single grey level after discretisation) of a region's intensities."""
    constant = values.size == 0 or bool(values.min() == values.max())
    if constant or settings.binWidth is None:
        return constant, constant  # fixed bin number spreads any two intensities over two levels
    lower, _ = settings.discretisation_bounds
    bins = absolute_bins(values, lower, settings.binWidth, settings.fixed_bin_count)
    return constant, bool(bins.min() == bins.max())


@functools.cache
def _distribution(package: str) -> str:
    """The installed distribution that provides an import package: `radiomics` comes from several
    (pyradiomics, pyradiomics-bhklab), which differ, so outputs name the one that ran."""
    names = importlib.metadata.packages_distributions().get(package, [])
    return names[0] if names else package


def engine_versions() -> dict[str, str]:
    """Versions of the engines behind the numbers, for every output, by distribution name."""
    return {
        _distribution("radiomics"): str(radiomics.__version__),
        "SimpleITK": sitk.Version_VersionString(),
        "numpy": np.__version__,
    }
