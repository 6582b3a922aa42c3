"""Feature-extraction settings: docs/method.md section 2's defaults, as one typed object.

The names are pyradiomics' parameter-file settings (resampledPixelSpacing, interpolator,
resegmentRange, binWidth, binCount, force2D, label), so pyradiomics users recognise them; the
file format itself is read by service.scoring.parameter_file. Keys pyradiomics lacks are our
documented extensions:

- `maskThreshold`: IBSI resamples the mask trilinearly, then keeps voxels at or above this.
- `binLowerBound`: absolute discretisation: with a fixed bin width, bins are counted from this
  value (not from the ROI minimum, as pyradiomics does), unless a resegmentRange is set, whose
  lower bound then starts the bins (the IBSI rule).
- `binUpperBound`: intensities are clipped into [lower bound, binUpperBound) before binning, so
  the default gives 400 bins of 10 HU over [-1000, 3000).
- `ringWidthMm`: the peritumoral ring's half-width (0: no ring).
- `intensityRounding`: interpolated intensities are rounded to integers before re-segmentation
  and discretisation (IBSI: CT intensities are integer HU; without it MIRP, an IBSI reference
  engine, and we differ by up to 12% on real lesions).
- `outlierFilterSigma`: IBSI intensity outlier re-segmentation: only voxels within mean +/- k SD
  of the region's intensities; with resegmentRange the two ranges intersect (IBSI).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np

from service.errors import ConfigError

TEXTURE_CLASSES: tuple[str, ...] = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
"""Classes computed on intensities, for both regions."""

FEATURE_CLASSES: tuple[str, ...] = TEXTURE_CLASSES + ("shape",)
"""Every class we compute; shape describes the lesion's morphology, so only the core has it."""

INTERPOLATORS: tuple[str, ...] = ("sitkLinear", "sitkNearestNeighbor", "sitkBSpline")
"""sitkBSpline is cubic (IBSI configuration E). Its pre-filter reaches the whole image, so its
crops get a wider margin (service.imaging.crops) to give the whole volume's numbers."""

ALL_FEATURES: tuple[str, ...] = ()
"""A class's feature list meaning "every feature pyradiomics has not deprecated"."""


def _all_classes() -> dict[str, tuple[str, ...]]:
    return {name: ALL_FEATURES for name in FEATURE_CLASSES}


@dataclass(frozen=True)
class ExtractionSettings:
    """How images become features; carried into every output."""

    resampledPixelSpacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    interpolator: str = "sitkLinear"
    maskThreshold: float = 0.5
    binWidth: float | None = 10.0
    binCount: int | None = None
    binLowerBound: float = -1000.0
    binUpperBound: float = 3000.0
    resegmentRange: tuple[float, float] | None = None
    force2D: bool = False
    ringWidthMm: float = 2.0
    intensityRounding: bool = True
    outlierFilterSigma: float | None = None
    label: int | None = None  # NIfTI masks: the label value to use (None: every label present)
    featureClasses: dict[str, tuple[str, ...]] = field(default_factory=_all_classes)

    def __post_init__(self) -> None:
        if self.resampledPixelSpacing is not None and (
            len(self.resampledPixelSpacing) != 3 or any(s < 0 for s in self.resampledPixelSpacing)
            or not any(self.resampledPixelSpacing)
        ):
            raise ConfigError("resampledPixelSpacing must be three spacings (x, y, z) in mm, each positive or 0 "
                              "(keep that axis' spacing, e.g. [2, 2, 0] in-plane only), or null")
        if (self.binWidth is None) == (self.binCount is None):
            raise ConfigError("set exactly one of binWidth (fixed bin size) and binCount (fixed bin number)")
        if self.binWidth is not None and self.binWidth <= 0:
            raise ConfigError("binWidth must be positive")
        if self.binCount is not None and self.binCount < 1:
            raise ConfigError("binCount must be at least 1")
        if self.binUpperBound <= self.binLowerBound:
            raise ConfigError("binUpperBound must be above binLowerBound")
        if self.resegmentRange is not None and (
            len(self.resegmentRange) != 2 or self.resegmentRange[1] <= self.resegmentRange[0]
        ):
            raise ConfigError("resegmentRange must be [lower, upper] with upper above lower")
        if not 0.0 < self.maskThreshold < 1.0:
            raise ConfigError("maskThreshold must lie strictly between 0 and 1")
        if self.outlierFilterSigma is not None and not self.outlierFilterSigma > 0:
            raise ConfigError("outlierFilterSigma must be positive (e.g. 3), or null for no outlier filter")
        if self.ringWidthMm < 0:
            raise ConfigError("ringWidthMm must be zero (no ring) or positive")
        if self.interpolator not in INTERPOLATORS:
            raise ConfigError(f"interpolator {self.interpolator!r} is not supported {INTERPOLATORS}")
        unknown = sorted(set(self.featureClasses) - set(FEATURE_CLASSES))
        if unknown:
            raise ConfigError(f"featureClass {unknown} not supported; choose from {list(FEATURE_CLASSES)}")

    @property
    def discretisation_bounds(self) -> tuple[float, float]:
        """Bounds of the fixed-bin-size grid: the resegmentation range (closed) wins over
        [binLowerBound, binUpperBound) (IBSI); fixed_bin_count says how many bins they hold."""
        if self.resegmentRange is not None:
            return float(self.resegmentRange[0]), float(self.resegmentRange[1])
        return self.binLowerBound, self.binUpperBound

    @property
    def fixed_bin_count(self) -> int:
        """Bins of the fixed-bin-size grid.

        A resegmentRange is closed (IBSI keeps voxels at its upper bound), so a voxel exactly at
        the upper bound gets bin floor((upper - lower) / width) + 1, the IBSI formula, and that is
        the last bin. binUpperBound is open: [lower, upper) holds ceil((upper - lower) / width) bins.
        """
        lower, upper = self.discretisation_bounds
        width = self.binWidth if self.binWidth is not None else 1.0
        if self.resegmentRange is not None:
            return int(np.floor((upper - lower) / width + 1e-9)) + 1
        return int(np.ceil((upper - lower) / width - 1e-9))

    @property
    def texture_aggregation(self) -> str:
        """How texture matrices were aggregated (pyradiomics' behaviour, stated for readers)."""
        if self.force2D:
            return "2.5D: in-plane directions, matrices merged over slices, features averaged over directions"
        return "3D: 13 directions, features averaged over directions"

    @property
    def grid_alignment(self) -> str:
        """Where the resampled grid lies (IBSI asks for it to be reported)."""
        if self.resampledPixelSpacing is None:
            return "no resampling: the image's own grid"
        return ("IBSI: grid centres aligned with the original grid's centres, grid fixed by the whole "
                "image (a crop gives the whole volume's grid)")

    @property
    def discretisation(self) -> str:
        """The discretisation method in IBSI's terms."""
        if self.binWidth is None:
            return f"fixed bin number: {self.binCount} bins over the region's own intensity range"
        lower, _ = self.discretisation_bounds
        return (f"fixed bin size: width {self.binWidth:g} from {lower:g} (bin = floor((x - lower) / width) + 1), "
                f"{self.fixed_bin_count} bins, intensities beyond them clipped into the first or last")

    @property
    def resegmentation(self) -> str:
        """IBSI re-segmentation of the intensity mask, in words."""
        parts = []
        if self.resegmentRange is not None:
            parts.append(f"range [{self.resegmentRange[0]:g}, {self.resegmentRange[1]:g}] (closed)")
        if self.outlierFilterSigma is not None:
            parts.append(f"outliers: mean +/- {self.outlierFilterSigma:g} SD of the region")
        return " intersected with ".join(parts) if parts else "none"

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> "ExtractionSettings":
        """Inverse of as_dict, e.g. from a scorer's Describe call."""
        known = set(cls.__dataclass_fields__)
        kwargs: dict[str, object] = {k: v for k, v in values.items() if k in known}
        for key in ("resampledPixelSpacing", "resegmentRange"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(float(v) for v in kwargs[key])  # type: ignore[attr-defined]
        if "featureClasses" in kwargs:
            classes = dict(kwargs["featureClasses"])  # type: ignore[call-overload]
            kwargs["featureClasses"] = {str(k): tuple(v) for k, v in classes.items()}
        return cls(**kwargs)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly view, for outputs and the gRPC Describe call."""
        values = asdict(self)  # copies featureClasses, so outputs cannot alter the settings
        for key in ("resampledPixelSpacing", "resegmentRange"):
            if values[key] is not None:
                values[key] = list(values[key])
        values["featureClasses"] = {name: list(features) for name, features in self.featureClasses.items()}
        values["discretisationBounds"] = list(self.discretisation_bounds)
        values["textureAggregation"] = self.texture_aggregation
        values["gridAlignment"] = self.grid_alignment
        values["discretisation"] = self.discretisation
        values["resegmentation"] = self.resegmentation
        return values
