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
from dataclasses import dataclass
from typing import Any

import numpy as np
import radiomics
import SimpleITK as sitk
from radiomics import firstorder, glcm, gldm, glrlm, glszm, ngtdm, shape

from service.scoring.degenerate import is_undefined
from service.scoring.extent import box_ends
from service.scoring.firstorder_once import FirstOrderOnce
from service.scoring.glcm_vectorised import VectorisedGlcm
from service.scoring.glrlm_chains import ChainRunLengths
from service.scoring.ibsi_names import feature_key
from service.scoring.shape_tabulated import TabulatedShape
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


@dataclass(frozen=True)
class _Discretised:
    """A region's absolute bins, computed once and shared by every feature class of the region.

    Read-only: pyradiomics' classes only read their binned matrix; a write would fail here
    rather than change another class's input.
    """

    binned: np.ndarray  # int64 (z, y, x): 1-based bin inside the region, 0 outside
    grey_levels: np.ndarray  # the bins present in the region, ascending


def _discretised(region_values: np.ndarray, region: np.ndarray, lower: float, width: float, n_bins: int) -> _Discretised:
    """The absolute bins of a region, given its voxels' values (`region_values`, in row-major
    order: the caller indexes the region once for every use)."""
    bins = absolute_bins(region_values, lower, width, n_bins)
    binned = np.zeros(region.shape, dtype=np.int64)
    binned[region] = bins
    binned.flags.writeable = False
    # The bins present, ascending: what numpy.unique gives, by counting (the bins are 1..n_bins).
    return _Discretised(binned, np.flatnonzero(np.bincount(bins, minlength=1)))


class _SharedSetup:
    """Mixin: what pyradiomics redoes in every feature class of a region, done once.

    - Feature names: pyradiomics enumerates a class's methods (inspect) in every constructor;
      they are fixed per class, so _feature_class enumerates them once.
    - Discretisation with absolute bins: pyradiomics bins the region in every class
      (`_applyBinning`, its extension point, which numbers bins from the ROI's minimum); here
      every class of a region gets the one `_Discretised` of the `sharedDiscretisation` setting.
      Without it (fixed bin number, defined on the ROI's own range) pyradiomics' binning runs.
    """

    # Set by pyradiomics' RadiomicsFeaturesBase, the class this is mixed into (declared, not assigned).
    settings: dict[str, Any]
    coefficients: dict[str, Any]
    _feature_names: dict[str, bool]  # set on each class by _feature_class

    @classmethod
    def getFeatureNames(cls) -> dict[str, bool]:  # noqa: N802 (pyradiomics' name)
        return cls._feature_names

    def _applyBinning(self, matrix: np.ndarray) -> np.ndarray:  # noqa: N802 (pyradiomics' name)
        shared: _Discretised | None = self.settings.get("sharedDiscretisation")
        if shared is None:
            binned: np.ndarray = super()._applyBinning(matrix)  # type: ignore[misc]
            return binned
        self.coefficients["grayLevels"] = shared.grey_levels
        self.coefficients["Ng"] = int(shared.grey_levels.max())
        return shared.binned


# pyradiomics' steps replaced by equivalent faster ones, per class (same formulas and values).
_VECTORISED: dict[str, tuple[type, ...]] = {
    "firstorder": (FirstOrderOnce,), "glcm": (VectorisedGlcm,), "glrlm": (ChainRunLengths,),
    "shape": (TabulatedShape,),
}


@functools.cache
def _feature_class(name: str) -> type:
    base = _FEATURE_CLASSES[name]
    # pyradiomics names each class's logger after its module; keep it under "radiomics".
    return type(f"Shared{base.__name__}", (_SharedSetup, *_VECTORISED.get(name, ()), base),
                {"__module__": base.__module__, "_feature_names": base.getFeatureNames()})


def _pyradiomics_kwargs(settings: ExtractionSettings) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "label": 1,
        "force2D": settings.force2D,
        "force2Ddimension": 0,
        # The image arrives already resampled and cropped: pyradiomics must not touch geometry.
        "resampledPixelSpacing": None,
        "voxelArrayShift": 0,
    }
    if settings.binCount is not None:
        # IBSI "fixed bin number" is defined on the ROI's own range: pyradiomics' binning is right.
        kwargs["binCount"] = settings.binCount
    else:
        kwargs["binWidth"] = settings.binWidth
    return kwargs


def _bounding_box(region: np.ndarray) -> tuple[slice, slice, slice]:
    """The region's bounding box (z, y, x); the whole array for an empty region."""
    try:
        z, y, x = (slice(low, high + 1) for low, high in box_ends(region))
    except ValueError:  # an empty region
        return slice(None), slice(None), slice(None)
    return z, y, x


def _cropped(image: sitk.Image, region: np.ndarray) -> tuple[sitk.Image, sitk.Image, np.ndarray]:
    """Image, mask image and mask cut to the region's bounding box, as pyradiomics' own extractor
    does (cropToTumorMask) before its feature classes: no texture matrix, statistic or shape
    reads a voxel outside the region, and every array and matrix pass shrinks to the box.

    Cut with numpy, not SimpleITK's slicing: that is an ITK filter, whose thread pool costs more
    than the copy of a lesion's box (and waits for every thread on a busy machine)."""
    box = _bounding_box(region)
    cropped = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(image)[box])
    cropped.SetSpacing(image.GetSpacing())
    cropped.SetDirection(image.GetDirection())
    cropped.SetOrigin(image.TransformIndexToPhysicalPoint([s.start or 0 for s in reversed(box)]))
    mask = np.ascontiguousarray(region[box])
    mask_image = sitk.GetImageFromArray(mask.view(np.uint8))
    mask_image.CopyInformation(cropped)
    return cropped, mask_image, mask


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
    image, mask, region = _cropped(image, region)
    values = sitk.GetArrayViewFromImage(image)
    kwargs = _pyradiomics_kwargs(settings)
    region_values = values[region]
    n_voxels = region_values.size
    shared = None
    if settings.binWidth is not None and settings.binCount is None and n_voxels:
        lower, _ = settings.discretisation_bounds
        shared = _discretised(region_values, region, lower, settings.binWidth, settings.fixed_bin_count)
        kwargs["sharedDiscretisation"] = shared
    constant, one_level = _degeneracy(region_values, None if shared is None else shared.grey_levels)
    features: dict[str, float] = {}
    for name, wanted in classes.items():
        extractor = _feature_class(name)(image, mask, **kwargs)
        for feature in wanted or current_feature_names(name):
            extractor.enableFeatureByName(feature, True)
        for feature, value in extractor.execute().items():
            key = feature_key(name, feature, settings.force2D)
            if is_undefined(name, feature, constant, one_level):
                features[key] = math.nan  # not pyradiomics' placeholder (service.scoring.degenerate)
            else:
                features[key] = _ibsi_adjustments(name, feature, float(value), n_voxels)
    return features


def _degeneracy(values: np.ndarray, grey_levels: np.ndarray | None) -> tuple[bool, bool]:
    """(constant intensity, a single grey level after discretisation) of a region's intensities,
    given the absolute bins present if any (fixed bin number spreads any two distinct
    intensities over two levels, so there only a constant region has one level)."""
    constant = values.size == 0 or bool(values.min() == values.max())
    if constant or grey_levels is None:
        return constant, constant
    return constant, grey_levels.size == 1


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
