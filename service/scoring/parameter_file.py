"""pyradiomics parameter files (YAML: setting, imageType, featureClass) as ExtractionSettings.

A pyradiomics user can hand us the file they already have. Settings that change numbers and that
we implement are applied; pyradiomics settings that only tune its own pipeline (preCrop,
padDistance, ...) are accepted and have no effect here; anything else is refused by name, so a
setting is never silently dropped. Our extension keys are documented in
service.scoring.settings and docs/features.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from service.errors import ConfigError
from service.scoring.features import current_feature_names
from service.scoring.settings import ALL_FEATURES, INTERPOLATORS, ExtractionSettings

_APPLIED = (
    "resampledPixelSpacing", "interpolator", "binWidth", "binCount", "resegmentRange", "force2D", "label",
    "maskThreshold", "binLowerBound", "binUpperBound", "ringWidthMm", "intensityRounding", "outlierFilterSigma",
)
# pyradiomics settings about its own pipeline, which ours replaces (crop geometry, logging, checks).
_NO_EFFECT = (
    "preCrop", "padDistance", "additionalInfo", "enableCExtensions", "correctMask", "geometryTolerance",
    "minimumROIDimensions", "minimumROISize",
)
# pyradiomics settings accepted only at the value that matches IBSI's CT definitions.
_FIXED = {"normalize": False, "voxelArrayShift": 0, "distances": [1], "symmetricalGLCM": True, "gldm_a": 0}
# SimpleITK interpolator enum values pyradiomics also accepts.
_INTERPOLATOR_CODES = {1: "sitkNearestNeighbor", 2: "sitkLinear", 23: "sitkBSpline"}


def _setting_values(section: Mapping[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key in _APPLIED:
            values[key] = value
        elif key in _FIXED:
            if value != _FIXED[key]:
                raise ConfigError(f"{where}: setting {key}={value!r} is not supported (only {_FIXED[key]!r})")
        elif key not in _NO_EFFECT:
            raise ConfigError(f"{where}: unknown setting {key!r}; supported: {', '.join(_APPLIED + tuple(_FIXED))}")
    interpolator = values.get("interpolator")
    if isinstance(interpolator, int):
        values["interpolator"] = _INTERPOLATOR_CODES.get(interpolator, f"SimpleITK interpolator {interpolator}")
    if values.get("interpolator") not in (None, *INTERPOLATORS):
        raise ConfigError(f"{where}: interpolator {values['interpolator']!r} is not supported {INTERPOLATORS}")
    if "binCount" in values and "binWidth" not in values:
        values["binWidth"] = None  # the file chose a fixed bin number instead of our default width
    for key in ("resampledPixelSpacing", "resegmentRange"):
        if values.get(key) is not None:
            values[key] = tuple(float(v) for v in values[key])
    if values.get("resampledPixelSpacing") == (0.0, 0.0, 0.0):
        values["resampledPixelSpacing"] = None  # pyradiomics: 0 keeps the original spacing
    return values


def _feature_classes(section: Mapping[str, Any] | None, where: str) -> dict[str, tuple[str, ...]] | None:
    if section is None:
        return None
    classes: dict[str, tuple[str, ...]] = {}
    for name, features in section.items():
        try:
            known = current_feature_names(name)
        except KeyError:
            raise ConfigError(f"{where}: featureClass {name!r} is not supported") from None
        requested = tuple(features or ())
        unknown = sorted(set(requested) - set(known))
        if unknown:
            raise ConfigError(f"{where}: featureClass {name}: unknown or deprecated features {unknown}")
        classes[name] = requested or ALL_FEATURES
    return classes


def _image_types(section: Mapping[str, Any] | None, where: str) -> None:
    other = sorted(set(section or {"Original": {}}) - {"Original"})
    if other:
        raise ConfigError(f"{where}: imageType {other} not supported; only Original (no filters) is computed")


def settings_from_parameters(document: Any, where: str = "parameter file") -> ExtractionSettings:
    """ExtractionSettings from a parsed pyradiomics parameter document; errors name the key."""
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ConfigError(f"{where}: must be a mapping with setting, imageType and featureClass")
    unknown = sorted(set(document) - {"setting", "imageType", "featureClass", "voxelSetting"})
    if unknown:
        raise ConfigError(f"{where}: unknown sections {unknown}; expected setting, imageType, featureClass")
    if "voxelSetting" in document:
        raise ConfigError(f"{where}: voxelSetting (voxel-based feature maps) is not supported")
    _image_types(document.get("imageType"), where)
    values = _setting_values(document.get("setting") or {}, where)
    classes = _feature_classes(document.get("featureClass"), where)
    if classes is not None:
        values["featureClasses"] = classes
    try:
        return ExtractionSettings(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from error
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error


def load_parameter_file(path: Path) -> ExtractionSettings:
    """Read a pyradiomics parameter file (YAML or JSON)."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"cannot read parameter file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"parameter file {Path(path).name} is not valid YAML: {error}") from error
    return settings_from_parameters(document, Path(path).name)
