"""Lesion crops: the part of the CT a scorer needs for one lesion, and the lesion's identity.

The crop spans the lesion's bounding box plus a margin that covers the ring, the resampling
grid's step and the interpolation support, so the scorer computes exactly what it would on the
whole volume (service.scoring.resample explains the grid).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from service.model import CtSeries, ImageGeometry, LesionCrop, LesionMask, LesionSource, Vector3
from service.uids import derived_uid


class FeatureGrid(Protocol):
    """The extraction settings a crop's margin depends on (service.scoring.settings'
    ExtractionSettings has them): named here so that imaging does not import the scoring layer."""

    @property
    def ringWidthMm(self) -> float: ...

    @property
    def resampledPixelSpacing(self) -> Vector3 | None: ...

    @property
    def interpolator(self) -> str: ...


BSPLINE_PREFILTER_VOXELS = 12
"""Extra margin for the cubic B-spline, whose pre-filter reaches the whole input: a crop edge
changes the spline coefficients by a factor of about 0.268 (the filter's pole) per voxel of
distance, so 12 more voxels bring that below 2e-7 of the intensity step at the edge."""


def tracking_identity(study_instance_uid: str, frame_of_reference_uid: str, lesion: LesionMask) -> tuple[str, str]:
    """(tracking identifier, tracking UID), stable across re-sends of the same contours.

    The input's own identity when it gives one (a SEG segment's TrackingUID, an RTSTRUCT ROI's
    ConceptualVolumeUID): the contouring system, or a reader following the lesion, already
    named it across studies. Otherwise derived from what identifies the lesion clinically
    (study, frame of reference, ROI/segment number and name), not from the RTSTRUCT's SOP
    Instance UID, which a re-export changes.
    """
    kind = "ROI" if lesion.source == LesionSource.RTSTRUCT else "Segment"
    tracking_id = lesion.tracking_id or f"{lesion.name} ({kind} {lesion.number})"
    if lesion.tracking_uid:
        return tracking_id, lesion.tracking_uid
    uid = derived_uid("tracking", [study_instance_uid, frame_of_reference_uid, lesion.source,
                                   str(lesion.number), lesion.name])
    return tracking_id, uid


def crop_margin_voxels(geometry: ImageGeometry, settings: FeatureGrid) -> np.ndarray:
    """Margin (z, y, x voxels) around the lesion: ring + two new voxels + interpolation support
    (+ the B-spline pre-filter's reach)."""
    spacing_zyx = np.asarray(geometry.spacing[::-1])
    new_zyx = spacing_zyx if settings.resampledPixelSpacing is None else np.asarray(settings.resampledPixelSpacing[::-1])
    new_zyx = np.where(new_zyx > 0, new_zyx, spacing_zyx)  # 0: that axis keeps its spacing
    margin_mm = settings.ringWidthMm + 2.0 * new_zyx
    prefilter = BSPLINE_PREFILTER_VOXELS if settings.interpolator == "sitkBSpline" else 0
    return np.asarray([math.ceil(m / s) + 2 + prefilter for m, s in zip(margin_mm, spacing_zyx)])


def lesion_crop(ct: CtSeries, lesion: LesionMask, settings: FeatureGrid) -> LesionCrop:
    """Cut the CT and the lesion mask around one lesion, clipped to the volume."""
    shape = np.asarray(ct.hu.shape)
    margin = crop_margin_voxels(ct.geometry, settings)
    offset = np.asarray(lesion.offset_zyx)
    start = np.maximum(offset - margin, 0)
    stop = np.minimum(offset + np.asarray(lesion.mask.shape) + margin, shape)
    region = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    mask = np.zeros(tuple(int(n) for n in stop - start), dtype=bool)
    inner = tuple(slice(int(o - a), int(o - a + n)) for o, a, n in zip(offset, start, lesion.mask.shape))
    mask[inner] = lesion.mask
    tracking_id, tracking_uid = tracking_identity(ct.study_instance_uid, ct.frame_of_reference_uid, lesion)
    return LesionCrop(
        number=lesion.number, name=lesion.name, source=lesion.source,
        source_sop_instance_uid=lesion.source_sop_instance_uid,
        tracking_id=tracking_id, tracking_uid=tracking_uid, anatomic_region=lesion.anatomic_region,
        volume_geometry=ct.geometry, crop_start_xyz=(int(start[2]), int(start[1]), int(start[0])),
        image_hu=np.ascontiguousarray(ct.hu[region], dtype=np.float32), mask=mask, kvp=ct.kvp,
    )
