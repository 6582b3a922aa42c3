"""Scoring of one lesion: measures, core and ring radiomics, signature score.

This is the scorer's unit of work; it sees only a crop and the whole CT's geometry, never files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from service.model import LesionCrop, LesionResult, RingCut, ScoreClass
from service.scoring.degenerate import not_computable_reason
from service.scoring.extent import box_ends
from service.scoring.features import region_features
from service.location import LocationRules
from service.scoring.measures import measure_lesion
from service.scoring.panel import FeaturePanel
from service.scoring.resegment import intensity_mask, intensity_range
from service.scoring.resample import ResampledLesion, native_lesion, resample_lesion
from service.scoring.ring import ring_beyond_edges, ring_mask
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import Signature

# IBSI needs texture matrices with extent: fewer than this many voxels along any axis after
# resampling and the lesion is reported as not computable (docs/method.md section 1).
MIN_VOXELS_PER_AXIS = 2


@dataclass(frozen=True)
class ScoringContext:
    """Everything a scorer is configured with."""

    settings: ExtractionSettings
    signature: Signature
    location_rules: LocationRules
    panel: FeaturePanel


def _too_small(core: np.ndarray, in_plane_only: bool) -> str | None:
    try:
        extent = [high - low + 1 for low, high in box_ends(core)]
    except ValueError:  # an empty core
        extent = [0, 0, 0]
    checked = extent[1:] if in_plane_only else extent
    if min(checked) < MIN_VOXELS_PER_AXIS:
        return (
            f"lesion spans {extent[2]}x{extent[1]}x{extent[0]} voxels (x, y, z) after resampling; "
            f"texture needs at least {MIN_VOXELS_PER_AXIS} per axis"
        )
    return None


def lesion_on_feature_grid(crop: LesionCrop, settings: ExtractionSettings) -> ResampledLesion:
    """The crop on the grid features are computed on (public: tests check the ring on it)."""
    if settings.resampledPixelSpacing is None:
        return native_lesion(crop.image_hu, crop.mask, crop.volume_geometry, crop.crop_start_xyz)
    return resample_lesion(
        crop.image_hu, crop.mask, crop.volume_geometry, crop.crop_start_xyz,
        settings.resampledPixelSpacing, margin_mm=settings.ringWidthMm,
        interpolator=settings.interpolator, mask_threshold=settings.maskThreshold,
        round_intensities=settings.intensityRounding,
    )


def _spacing_zyx(lesion: ResampledLesion) -> tuple[float, float, float]:
    x, y, z = lesion.image.GetSpacing()
    return float(z), float(y), float(x)


def lesion_features(crop: LesionCrop, settings: ExtractionSettings, panel: FeaturePanel) -> tuple[dict[str, dict[str, float]], str | None]:
    """Features per region of `panel`, or (empty, reason) when the lesion is not computable."""
    features, reason, _ = _features_on_grid(lesion_on_feature_grid(crop, settings), settings, panel)
    return features, reason


def _features_on_grid(lesion: ResampledLesion, settings: ExtractionSettings, panel: FeaturePanel
                      ) -> tuple[dict[str, dict[str, float]], str | None, np.ndarray | None]:
    """lesion_features on the lesion already on the feature grid, and the ring mask when one
    was built (the ring cut measures that same ring rather than building it again)."""
    reason = _too_small(lesion.core, settings.force2D)
    if reason:
        return {}, reason, None
    regions = {"core": lesion.core}
    if "ring" in panel.regions:
        regions["ring"] = ring_mask(lesion.core, _spacing_zyx(lesion), settings.ringWidthMm)
        if not regions["ring"].any():
            return {}, "the peritumoral ring is empty", regions["ring"]
    hu = sitk.GetArrayViewFromImage(lesion.image)
    features: dict[str, dict[str, float]] = {}
    for region, classes in panel.regions.items():
        intensity = intensity_mask(regions[region], hu, settings)
        if not intensity.any():
            return {}, f"no voxel of the {region} lies within the re-segmentation range {intensity_range(regions[region], hu, settings)}", regions.get("ring")
        texture = {name: wanted for name, wanted in classes.items() if name != "shape"}
        values = region_features(lesion.image, intensity, settings, texture)
        if "shape" in classes:
            values.update(region_features(lesion.image, regions[region], settings, {"shape": classes["shape"]}))
        features[region] = values
    return features, None, regions.get("ring")


def _ring_cut(lesion: ResampledLesion, ring: np.ndarray, width_mm: float) -> RingCut | None:
    """The volume of `ring` (the lesion's ring on its grid) inside the image and beyond its edge,
    when the edge cuts it (None otherwise): its features stay computed on what the image holds,
    and the outputs say so."""
    spacing = _spacing_zyx(lesion)
    beyond = ring_beyond_edges(lesion.core, spacing, width_mm, lesion.image_edges)
    if not beyond:
        return None
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    measured = int(np.count_nonzero(ring))
    return RingCut(measured_ml=measured * voxel_ml, cut_ml=beyond * voxel_ml)


def _undefined_variable(features: dict[str, dict[str, float]], signature: Signature) -> str | None:
    """Why the score cannot be computed when a variable's feature has no value on this lesion."""
    for variable in signature.variables:
        value = features.get(variable.region, {}).get(variable.feature)
        if value is not None and not math.isfinite(value):
            return (f"signature variable {variable.name}: {variable.feature} of the {variable.region} is not "
                    f"computable ({not_computable_reason(variable.feature)})")
    return None


def score_lesion(crop: LesionCrop, context: ScoringContext) -> LesionResult:
    """Measure and score one lesion; a lesion too small for texture keeps its measures."""
    x, y, z = crop.crop_start_xyz
    offset_zyx = (int(z), int(y), int(x))
    measures = measure_lesion(crop.mask, offset_zyx, crop.volume_geometry)
    location_class, location_source = context.location_rules.classify(crop.name, crop.anatomic_region)
    lesion = lesion_on_feature_grid(crop, context.settings)
    features, reason, ring = _features_on_grid(lesion, context.settings, context.panel)
    score: float | None = None
    score_class: ScoreClass | None = None
    contributions: dict[str, float] = {}
    reason = reason or _undefined_variable(features, context.signature)
    if reason is None:
        score, contributions = context.signature.score(features, location_class, crop.kvp)
        score_class = context.signature.classify(score)
    return LesionResult(
        number=crop.number, name=crop.name, source=crop.source,
        source_sop_instance_uid=crop.source_sop_instance_uid,
        tracking_id=crop.tracking_id, tracking_uid=crop.tracking_uid,
        location_class=location_class, location_source=location_source,
        voxel_count=measures.voxel_count, volume_ml=measures.volume_ml,
        longest_axial_diameter_mm=measures.longest_axial_diameter_mm,
        short_axis_mm=measures.short_axis_mm, max_3d_diameter_mm=measures.max_3d_diameter_mm,
        centroid_mm=measures.centroid_mm, features=features,
        score=score, score_class=score_class, contributions=contributions, not_computable=reason,
        anatomic_region=crop.anatomic_region,
        ring_cut=_ring_cut(lesion, ring, context.settings.ringWidthMm) if ring is not None and "ring" in features else None,
    )
