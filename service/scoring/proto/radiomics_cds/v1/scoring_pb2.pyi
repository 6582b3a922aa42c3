from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Geometry(_message.Message):
    __slots__ = ("size", "spacing", "origin", "direction")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SPACING_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    spacing: _containers.RepeatedScalarFieldContainer[float]
    origin: _containers.RepeatedScalarFieldContainer[float]
    direction: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, size: _Optional[_Iterable[int]] = ..., spacing: _Optional[_Iterable[float]] = ..., origin: _Optional[_Iterable[float]] = ..., direction: _Optional[_Iterable[float]] = ...) -> None: ...

class CodedConcept(_message.Message):
    __slots__ = ("value", "scheme", "meaning")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    MEANING_FIELD_NUMBER: _ClassVar[int]
    value: str
    scheme: str
    meaning: str
    def __init__(self, value: _Optional[str] = ..., scheme: _Optional[str] = ..., meaning: _Optional[str] = ...) -> None: ...

class ScoreLesionRequest(_message.Message):
    __slots__ = ("number", "name", "source", "source_sop_instance_uid", "tracking_id", "tracking_uid", "anatomic_region", "volume_geometry", "crop_start", "crop_size", "image_hu", "mask", "kvp")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_UID_FIELD_NUMBER: _ClassVar[int]
    ANATOMIC_REGION_FIELD_NUMBER: _ClassVar[int]
    VOLUME_GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    CROP_START_FIELD_NUMBER: _ClassVar[int]
    CROP_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HU_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    KVP_FIELD_NUMBER: _ClassVar[int]
    number: int
    name: str
    source: str
    source_sop_instance_uid: str
    tracking_id: str
    tracking_uid: str
    anatomic_region: CodedConcept
    volume_geometry: Geometry
    crop_start: _containers.RepeatedScalarFieldContainer[int]
    crop_size: _containers.RepeatedScalarFieldContainer[int]
    image_hu: bytes
    mask: bytes
    kvp: float
    def __init__(self, number: _Optional[int] = ..., name: _Optional[str] = ..., source: _Optional[str] = ..., source_sop_instance_uid: _Optional[str] = ..., tracking_id: _Optional[str] = ..., tracking_uid: _Optional[str] = ..., anatomic_region: _Optional[_Union[CodedConcept, _Mapping]] = ..., volume_geometry: _Optional[_Union[Geometry, _Mapping]] = ..., crop_start: _Optional[_Iterable[int]] = ..., crop_size: _Optional[_Iterable[int]] = ..., image_hu: _Optional[bytes] = ..., mask: _Optional[bytes] = ..., kvp: _Optional[float] = ...) -> None: ...

class Feature(_message.Message):
    __slots__ = ("region", "name", "value")
    REGION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    region: str
    name: str
    value: float
    def __init__(self, region: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("variable", "value")
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    variable: str
    value: float
    def __init__(self, variable: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class LesionScore(_message.Message):
    __slots__ = ("number", "name", "source", "source_sop_instance_uid", "tracking_id", "tracking_uid", "location_class", "location_source", "anatomic_region", "voxel_count", "volume_ml", "longest_axial_diameter_mm", "short_axis_mm", "max_3d_diameter_mm", "centroid_mm", "features", "score", "score_class", "contributions", "not_computable", "ring_cut")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_UID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_CLASS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ANATOMIC_REGION_FIELD_NUMBER: _ClassVar[int]
    VOXEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    LONGEST_AXIAL_DIAMETER_MM_FIELD_NUMBER: _ClassVar[int]
    SHORT_AXIS_MM_FIELD_NUMBER: _ClassVar[int]
    MAX_3D_DIAMETER_MM_FIELD_NUMBER: _ClassVar[int]
    CENTROID_MM_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORE_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    NOT_COMPUTABLE_FIELD_NUMBER: _ClassVar[int]
    RING_CUT_FIELD_NUMBER: _ClassVar[int]
    number: int
    name: str
    source: str
    source_sop_instance_uid: str
    tracking_id: str
    tracking_uid: str
    location_class: str
    location_source: str
    anatomic_region: CodedConcept
    voxel_count: int
    volume_ml: float
    longest_axial_diameter_mm: float
    short_axis_mm: float
    max_3d_diameter_mm: float
    centroid_mm: _containers.RepeatedScalarFieldContainer[float]
    features: _containers.RepeatedCompositeFieldContainer[Feature]
    score: float
    score_class: str
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    not_computable: str
    ring_cut: RingCut
    def __init__(self, number: _Optional[int] = ..., name: _Optional[str] = ..., source: _Optional[str] = ..., source_sop_instance_uid: _Optional[str] = ..., tracking_id: _Optional[str] = ..., tracking_uid: _Optional[str] = ..., location_class: _Optional[str] = ..., location_source: _Optional[str] = ..., anatomic_region: _Optional[_Union[CodedConcept, _Mapping]] = ..., voxel_count: _Optional[int] = ..., volume_ml: _Optional[float] = ..., longest_axial_diameter_mm: _Optional[float] = ..., short_axis_mm: _Optional[float] = ..., max_3d_diameter_mm: _Optional[float] = ..., centroid_mm: _Optional[_Iterable[float]] = ..., features: _Optional[_Iterable[_Union[Feature, _Mapping]]] = ..., score: _Optional[float] = ..., score_class: _Optional[str] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., not_computable: _Optional[str] = ..., ring_cut: _Optional[_Union[RingCut, _Mapping]] = ...) -> None: ...

class RingCut(_message.Message):
    __slots__ = ("measured_ml", "cut_ml")
    MEASURED_ML_FIELD_NUMBER: _ClassVar[int]
    CUT_ML_FIELD_NUMBER: _ClassVar[int]
    measured_ml: float
    cut_ml: float
    def __init__(self, measured_ml: _Optional[float] = ..., cut_ml: _Optional[float] = ...) -> None: ...

class ScoreLesionsRequest(_message.Message):
    __slots__ = ("lesions", "aggregate_patient")
    LESIONS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_PATIENT_FIELD_NUMBER: _ClassVar[int]
    lesions: _containers.RepeatedCompositeFieldContainer[ScoreLesionRequest]
    aggregate_patient: bool
    def __init__(self, lesions: _Optional[_Iterable[_Union[ScoreLesionRequest, _Mapping]]] = ..., aggregate_patient: _Optional[bool] = ...) -> None: ...

class ScoredLesions(_message.Message):
    __slots__ = ("lesions", "patient")
    LESIONS_FIELD_NUMBER: _ClassVar[int]
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    lesions: _containers.RepeatedCompositeFieldContainer[LesionScore]
    patient: PatientScore
    def __init__(self, lesions: _Optional[_Iterable[_Union[LesionScore, _Mapping]]] = ..., patient: _Optional[_Union[PatientScore, _Mapping]] = ...) -> None: ...

class AggregatePatientRequest(_message.Message):
    __slots__ = ("lesions",)
    LESIONS_FIELD_NUMBER: _ClassVar[int]
    lesions: _containers.RepeatedCompositeFieldContainer[LesionScore]
    def __init__(self, lesions: _Optional[_Iterable[_Union[LesionScore, _Mapping]]] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("name", "value", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    reason: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class PatientScore(_message.Message):
    __slots__ = ("n_lesions", "n_computable", "n_over_volume_filter", "volume_filter_ml", "total_volume_ml", "organs_involved", "score_stats", "least_infiltrated_tracking_uid", "highest_score_tracking_uid", "risk_group", "cutoff_name", "cutoff_value")
    N_LESIONS_FIELD_NUMBER: _ClassVar[int]
    N_COMPUTABLE_FIELD_NUMBER: _ClassVar[int]
    N_OVER_VOLUME_FILTER_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FILTER_ML_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    ORGANS_INVOLVED_FIELD_NUMBER: _ClassVar[int]
    SCORE_STATS_FIELD_NUMBER: _ClassVar[int]
    LEAST_INFILTRATED_TRACKING_UID_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_SCORE_TRACKING_UID_FIELD_NUMBER: _ClassVar[int]
    RISK_GROUP_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_NAME_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_VALUE_FIELD_NUMBER: _ClassVar[int]
    n_lesions: int
    n_computable: int
    n_over_volume_filter: int
    volume_filter_ml: float
    total_volume_ml: float
    organs_involved: _containers.RepeatedScalarFieldContainer[str]
    score_stats: _containers.RepeatedCompositeFieldContainer[Metric]
    least_infiltrated_tracking_uid: str
    highest_score_tracking_uid: str
    risk_group: str
    cutoff_name: str
    cutoff_value: float
    def __init__(self, n_lesions: _Optional[int] = ..., n_computable: _Optional[int] = ..., n_over_volume_filter: _Optional[int] = ..., volume_filter_ml: _Optional[float] = ..., total_volume_ml: _Optional[float] = ..., organs_involved: _Optional[_Iterable[str]] = ..., score_stats: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ..., least_infiltrated_tracking_uid: _Optional[str] = ..., highest_score_tracking_uid: _Optional[str] = ..., risk_group: _Optional[str] = ..., cutoff_name: _Optional[str] = ..., cutoff_value: _Optional[float] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScorerDescription(_message.Message):
    __slots__ = ("algorithm_name", "algorithm_version", "engine_versions", "settings_json", "signature_id", "signature_version", "signature_status", "signature_citation", "max_message_bytes")
    class EngineVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALGORITHM_NAME_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_STATUS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_CITATION_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    algorithm_name: str
    algorithm_version: str
    engine_versions: _containers.ScalarMap[str, str]
    settings_json: str
    signature_id: str
    signature_version: str
    signature_status: str
    signature_citation: str
    max_message_bytes: int
    def __init__(self, algorithm_name: _Optional[str] = ..., algorithm_version: _Optional[str] = ..., engine_versions: _Optional[_Mapping[str, str]] = ..., settings_json: _Optional[str] = ..., signature_id: _Optional[str] = ..., signature_version: _Optional[str] = ..., signature_status: _Optional[str] = ..., signature_citation: _Optional[str] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...
