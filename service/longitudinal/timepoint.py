"""What the longitudinal rules need to know of one study and of its lesions.

Built by the pipeline from a scored study (the current one) or from one of our earlier SRs (a
prior), so that matching and change never see DICOM, SR content items or FHIR resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from service.model import ImageGeometry, Vector3

NODE_LOCATION_CLASS = "adenopathy"
"""The location class of lymph nodes: their size is the short axis, not the longest diameter."""


class UidSource(StrEnum):
    """Where a lesion's tracking UID came from (docs/method.md section 5); it names the match method."""

    SEG_TRACKING_UID = "seg_tracking_uid"
    CONCEPTUAL_VOLUME_UID = "conceptual_volume_uid"
    DERIVED = "derived"
    CARRIED = "carried"  # read back from one of our SRs: already longitudinal


@dataclass(frozen=True)
class TimepointLesion:
    """One lesion at one time point: its identity, position and size, and its radiomics.

    `number` is the ROI Number or Segment Number in that study's contours (reader notes).
    `features` is region ("core", "ring") -> feature name -> value, as in LesionResult.
    """

    tracking_uid: str
    tracking_id: str
    uid_source: UidSource
    name: str
    number: int
    location_class: str
    centroid_mm: Vector3
    longest_axial_diameter_mm: float
    short_axis_mm: float
    volume_ml: float
    score: float | None = None
    features: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def is_node(self) -> bool:
        return self.location_class == NODE_LOCATION_CLASS

    @property
    def diameter_mm(self) -> float:
        """D of docs/method.md 5.1: the short axis for a lymph node, else the longest axial diameter."""
        return self.short_axis_mm if self.is_node else self.longest_axial_diameter_mm


@dataclass(frozen=True)
class Acquisition:
    """Per-series acquisition attributes that change radiomic values (None: not recorded).

    `convolution_kernel` is ConvolutionKernel with multiple values joined by a backslash.
    """

    kvp: float | None
    convolution_kernel: str | None
    slice_thickness_mm: float | None


@dataclass(frozen=True)
class ExtractionContext:
    """What must be equal for a feature or score delta to mean anything."""

    settings: Mapping[str, object]
    signature_id: str
    signature_version: str
    acquisition: Acquisition


@dataclass(frozen=True)
class TimePoint:
    """One study as the matcher sees it.

    `extent` is the CT's voxel grid in this study's frame of reference; it decides coverage
    ("not evaluable", never "new" or "disappeared", outside it). None: unknown, so nothing
    can be said to have appeared or disappeared.
    """

    study_instance_uid: str
    frame_of_reference_uid: str
    extent: ImageGeometry | None
    lesions: tuple[TimepointLesion, ...]
    context: ExtractionContext
