"""Plain data passed between the pipeline stages.

Every stage (imaging, scoring, outputs) speaks in these types, so that each can be tested on its
own and the gRPC boundary maps onto them one to one. Arrays are numpy in (z, y, x) order; all
geometry is in DICOM patient coordinates (LPS, mm); tuples of three are (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import DTypeLike

Vector3 = tuple[float, float, float]


# Enumerated values. They are StrEnums, equal to (and serialised as) their string values, which
# the gRPC messages, the SR and FHIR code tables and the signature files use as they are.


class LesionSource(StrEnum):
    """The kind of object a lesion was drawn in."""

    RTSTRUCT = "RTSTRUCT"
    SEG = "SEG"
    NIFTI = "NIfTI"  # the `features` command's label maps only; never scored or reported


class LocationClass(StrEnum):
    """Location classes of the CD8 score (docs/method.md section 1)."""

    ADENOPATHY = "adenopathy"
    HEAD_AND_NECK = "head_and_neck"
    LUNG = "lung"
    LIVER = "liver"
    OTHER = "other"


class LocationSource(StrEnum):
    """Which rule gave a lesion its location class (service.location gives the precedence)."""

    CONFIGURATION = "configuration"
    SEG_ANATOMIC_REGION = "seg_anatomic_region"
    ROI_NAME = "roi_name"
    DEFAULT = "default"


class ScoreClass(StrEnum):
    """A lesion's score against the applied cut-off."""

    HIGH = "high"  # at or above
    LOW = "low"


class RiskGroup(StrEnum):
    """The patient-level risk group (docs/method.md section 4)."""

    NO_LESION_OVER_1ML = "no_lesion_over_1ml"
    NOT_COMPUTABLE = "not_computable"
    HIGH_SCORE = "high_score"
    LOW_SCORE = "low_score"


class SignatureStatus(StrEnum):
    """Whether a signature's cut-offs were validated on outcome data."""

    VALIDATED = "validated"
    UNCALIBRATED = "uncalibrated"


@dataclass(frozen=True)
class ImageGeometry:
    """The voxel grid of an image, in SimpleITK's conventions.

    `origin` is the centre of voxel (0, 0, 0); `direction` is the row-major 3x3 matrix whose
    columns are the unit vectors of the x (column), y (row) and z (slice) index axes.
    """

    size: tuple[int, int, int]
    spacing: Vector3
    origin: Vector3
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def _matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3) * np.asarray(self.spacing)

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous (x, y, z) voxel indices (N x 3) -> patient coordinates (N x 3)."""
        return np.asarray(ijk, dtype=float) @ self._matrix().T + np.asarray(self.origin)

    def physical_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Patient coordinates (N x 3) -> continuous (x, y, z) voxel indices (N x 3)."""
        return (np.asarray(xyz, dtype=float) - np.asarray(self.origin)) @ np.linalg.inv(self._matrix()).T


@dataclass(frozen=True)
class CodedConcept:
    """A (value, scheme, meaning) triplet, as DICOM and FHIR both code things."""

    value: str
    scheme: str
    meaning: str


class HuRegions(Protocol):
    """A CT's Hounsfield units, (z, y, x), computed for the region a reader indexes.

    service.imaging.volume gives a loaded series' units this way: its readers (lesion crops, key
    slices) need a few percent of the voxels, and a whole float32 volume is 314 MB for 300
    slices of 512 x 512. Indexing with integers and slices gives a float32 array as numpy would;
    np.asarray gives the whole volume, for the readers that need it all (registration).
    """

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def __getitem__(self, key: int | slice | tuple[int | slice, ...]) -> np.ndarray: ...

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray: ...


@dataclass
class CtSeries:
    """One CT series as a volume in Hounsfield units."""

    hu: np.ndarray | HuRegions  # float32, (z, y, x)
    geometry: ImageGeometry
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]  # one per slice, in z order
    kvp: float | None


@dataclass
class LesionMask:
    """One ROI (RTSTRUCT) or segment (SEG), as a boolean mask on the CT grid.

    Only the bounding box is stored: `mask` is (z, y, x) and starts at voxel `offset_zyx` of the
    CT volume, so ten lesions on a 512x512x300 CT do not cost ten full-size masks.
    """

    number: int  # ROI Number, Segment Number or label value
    name: str
    source: LesionSource
    source_sop_class_uid: str
    source_sop_instance_uid: str
    offset_zyx: tuple[int, int, int]
    mask: np.ndarray
    anatomic_region: CodedConcept | None = None
    warnings: list[str] = field(default_factory=list)
    # The identity the input gives the lesion: a SEG segment's TrackingUID and TrackingID, an
    # RTSTRUCT ROI's ConceptualVolumeUID (docs/method.md section 5); None: derived by us
    tracking_uid: str | None = None
    tracking_id: str | None = None

    @property
    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass(frozen=True)
class LesionCrop:
    """What a scorer receives for one lesion (mirrors ScoreLesionRequest): imaging cuts it, the
    scorer (in process or over gRPC) scores it."""

    number: int
    name: str
    source: LesionSource
    source_sop_instance_uid: str
    tracking_id: str
    tracking_uid: str
    anatomic_region: CodedConcept | None
    volume_geometry: ImageGeometry
    crop_start_xyz: tuple[int, int, int]
    image_hu: np.ndarray  # float32 (z, y, x)
    mask: np.ndarray  # bool (z, y, x), on the CT grid
    kvp: float | None


@dataclass(frozen=True)
class StudyInfo:
    """Patient and study attributes the outputs must carry (never logged)."""

    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_date: str
    study_time: str
    accession_number: str
    referring_physician_name: str
    study_id: str
    study_description: str = ""


@dataclass(frozen=True)
class Metric:
    """A value, or the reason it could not be computed (never 0 or NaN in its place)."""

    value: float | None
    reason: str | None = None

    @classmethod
    def not_computable(cls, reason: str) -> "Metric":
        return cls(None, reason)


@dataclass(frozen=True)
class RingCut:
    """A peritumoral ring cut by the image edge (the lesion reaches the scan's first or last
    slice, or the field of view): ring features are computed on the part inside the image,
    `measured_ml`; `cut_ml` of the ring would lie beyond the image grid."""

    measured_ml: float
    cut_ml: float

    def statement(self) -> str:
        """The outputs' sentence for it (SR, FHIR, tumour-board page)."""
        return (f"Peritumoral ring cut by the image edge: {self.cut_ml:.3f} mL of it lies outside the image; "
                f"its features are computed on the {self.measured_ml:.3f} mL inside.")


@dataclass
class LesionResult:
    """Everything the scorer reports for one lesion."""

    number: int
    name: str
    source: LesionSource
    source_sop_instance_uid: str
    tracking_id: str
    tracking_uid: str
    location_class: LocationClass
    location_source: LocationSource
    voxel_count: int
    volume_ml: float
    longest_axial_diameter_mm: float
    short_axis_mm: float
    max_3d_diameter_mm: float
    centroid_mm: Vector3
    features: dict[str, dict[str, float]]  # region ("core", "ring") -> feature name -> value
    score: float | None
    score_class: ScoreClass | None
    contributions: dict[str, float]  # signature variable -> its term in the linear score
    not_computable: str | None = None  # why no radiomics/score, if so
    anatomic_region: CodedConcept | None = None  # the SEG segment's code: the SR's finding site
    ring_cut: RingCut | None = None  # None: the ring lies wholly inside the image (or has no features)


@dataclass
class PatientResult:
    """Patient-level biomarkers over the lesions of one study (docs/method.md section 4)."""

    n_lesions: int
    n_computable: int
    n_over_volume_filter: int
    volume_filter_ml: float
    total_volume_ml: float
    organs_involved: tuple[LocationClass, ...]
    score_stats: dict[str, Metric]  # min, max, mean, sd, skewness, kurtosis, entropy
    least_infiltrated_tracking_uid: str | None
    highest_score_tracking_uid: str | None
    risk_group: RiskGroup
    cutoff_name: str
    cutoff_value: float


@dataclass(frozen=True)
class Provenance:
    """What made the numbers: shown in every output (docs/method.md section 6)."""

    algorithm_name: str
    algorithm_version: str
    engine_versions: dict[str, str]
    settings: dict[str, object]
    signature_id: str
    signature_version: str
    signature_status: SignatureStatus
    signature_citation: str


@dataclass
class StudyResult:
    """The scored study, as the output builders receive it."""

    study: StudyInfo
    ct: "CtReference"
    lesions: list[LesionResult]
    patient: PatientResult
    provenance: Provenance
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CtReference:
    """The instances the results were computed from (for SR evidence and FHIR references)."""

    series_instance_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    contour_sop_class_uid: str
    contour_sop_instance_uid: str
    contour_series_instance_uid: str
