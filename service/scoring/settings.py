"""Feature-extraction settings: method.md section 2's defaults, as one typed object.

The service runs with these defaults (the scorer's Describe call reports them in every
output); the settings-file interface for other values is the `features` command's work.

The names follow pyradiomics' parameter file (resampledPixelSpacing, interpolator, binWidth, ...)
so pyradiomics users recognise them; keys pyradiomics lacks are our documented extensions:
`maskThreshold` (IBSI: mask resampled trilinearly, then thresholded), `binLowerBound` (absolute
discretisation: bins counted from a fixed HU, not from the ROI minimum), `binUpperBound`
(intensities are clipped into [binLowerBound, binUpperBound) before binning) and `ringWidthMm`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from service.errors import ConfigError

DEFAULT_FEATURE_CLASSES: tuple[str, ...] = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


@dataclass(frozen=True)
class ExtractionSettings:
    """How images become features; carried into every output."""

    resampledPixelSpacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolator: str = "sitkLinear"
    maskThreshold: float = 0.5
    binWidth: float = 10.0
    binLowerBound: float = -1000.0
    binUpperBound: float = 3000.0
    ringWidthMm: float = 2.0
    featureClasses: tuple[str, ...] = DEFAULT_FEATURE_CLASSES
    # pyradiomics' default: 3D texture over 13 directions, features averaged over directions.
    textureAggregation: str = "3D, 13 directions, averaged over directions"
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.resampledPixelSpacing):
            raise ConfigError("resampledPixelSpacing must be positive in every axis")
        if self.binWidth <= 0:
            raise ConfigError("binWidth must be positive")
        if self.binUpperBound <= self.binLowerBound:
            raise ConfigError("binUpperBound must be above binLowerBound")
        if not 0.0 < self.maskThreshold < 1.0:
            raise ConfigError("maskThreshold must lie strictly between 0 and 1")
        if self.ringWidthMm <= 0:
            raise ConfigError("ringWidthMm must be positive")
        # B-spline is not offered: its pre-filter depends on the whole image, so a crop could not
        # give the whole volume's numbers.
        if self.interpolator not in ("sitkLinear", "sitkNearestNeighbor"):
            raise ConfigError(f"interpolator {self.interpolator!r} is not supported (sitkLinear, sitkNearestNeighbor)")

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> "ExtractionSettings":
        """Inverse of as_dict (unknown keys are kept in `extra`), e.g. from a scorer's Describe."""
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in values.items() if k in known}
        for key in ("resampledPixelSpacing", "featureClasses"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])  # type: ignore[arg-type]
        return cls(**kwargs, extra={k: v for k, v in values.items() if k not in known})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly view, for outputs and the gRPC Describe call."""
        values = asdict(self)
        values.pop("extra")
        values.update(self.extra)
        values["resampledPixelSpacing"] = list(self.resampledPixelSpacing)
        values["featureClasses"] = list(self.featureClasses)
        return values
