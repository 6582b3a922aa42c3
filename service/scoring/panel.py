"""Which features to compute for which region: the signature's profile or the full panel.

The service needs only what its signature uses (the CD8 profile: five features from two
classes), which is several times faster than every class; research use wants the full panel.
Shape describes the lesion itself, so it is computed for the core only.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import ConfigError
from service.scoring.ibsi_names import pyradiomics_feature
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import Signature

PANELS = ("signature", "full")
"""`signature`: only the signature's variables; `full`: every class of the settings."""

RegionClasses = dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class FeaturePanel:
    """Per region ("core", "ring"), the pyradiomics classes and features to compute."""

    name: str
    regions: dict[str, RegionClasses]


def full_panel(settings: ExtractionSettings) -> FeaturePanel:
    """Every configured class for the core; every texture class for the ring (if it has width)."""
    regions: dict[str, RegionClasses] = {"core": dict(settings.featureClasses)}
    if settings.ringWidthMm > 0:
        regions["ring"] = {name: features for name, features in settings.featureClasses.items() if name != "shape"}
    return FeaturePanel("full", regions)


def signature_panel(signature: Signature) -> FeaturePanel:
    """Exactly the features the signature's variables read."""
    regions: dict[str, dict[str, list[str]]] = {}
    for variable in signature.variables:
        try:
            feature_class, feature = pyradiomics_feature(variable.feature)
        except KeyError:
            raise ConfigError(f"signature {signature.id}: feature {variable.feature!r} is not one this engine computes") from None
        wanted = regions.setdefault(variable.region, {}).setdefault(feature_class, [])
        if feature not in wanted:
            wanted.append(feature)
    return FeaturePanel("signature", {
        region: {name: tuple(features) for name, features in classes.items()} for region, classes in regions.items()
    })


def feature_panel(name: str, settings: ExtractionSettings, signature: Signature) -> FeaturePanel:
    """The panel called `name` (one of PANELS)."""
    if name == "signature":
        return signature_panel(signature)
    if name == "full":
        return full_panel(settings)
    raise ConfigError(f"feature_panel must be one of {PANELS}, got {name!r}")
