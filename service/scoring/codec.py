"""Conversions between the v1 protobuf messages and the pipeline's dataclasses.

One place, so the wire format and the in-process types cannot drift apart.
"""

from __future__ import annotations

import json
from typing import cast

import numpy as np

from service.model import (CodedConcept, ImageGeometry, LesionCrop, LesionResult, LesionSource, LocationClass,
                           LocationSource, Metric, PatientResult, Provenance, RingCut, RiskGroup,
                           ScoreClass, SignatureStatus, Vector3)
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2 as pb


def geometry_to_pb(geometry: ImageGeometry) -> pb.Geometry:
    return pb.Geometry(
        size=list(geometry.size), spacing=list(geometry.spacing),
        origin=list(geometry.origin), direction=list(geometry.direction),
    )


def geometry_from_pb(message: pb.Geometry) -> ImageGeometry:
    if len(message.size) != 3 or len(message.spacing) != 3 or len(message.origin) != 3 or len(message.direction) != 9:
        raise ValueError("geometry needs 3 sizes, 3 spacings, 3 origin coordinates and 9 direction cosines")
    size, spacing, origin = message.size, message.spacing, message.origin
    return ImageGeometry(
        size=(int(size[0]), int(size[1]), int(size[2])), spacing=(spacing[0], spacing[1], spacing[2]),
        origin=(origin[0], origin[1], origin[2]), direction=tuple(message.direction),
    )


def _concept_to_pb(concept: CodedConcept | None) -> pb.CodedConcept | None:
    return pb.CodedConcept(value=concept.value, scheme=concept.scheme, meaning=concept.meaning) if concept else None


def _concept_from_pb(message: pb.ScoreLesionRequest | pb.LesionScore) -> CodedConcept | None:
    """The message's anatomic region, if set (an unset message field reads as empty, not None)."""
    if not message.HasField("anatomic_region"):
        return None
    region = message.anatomic_region
    return CodedConcept(region.value, region.scheme, region.meaning)


def crop_to_pb(crop: LesionCrop) -> pb.ScoreLesionRequest:
    return crop_into_pb(crop, pb.ScoreLesionRequest())


def crop_into_pb(crop: LesionCrop, message: pb.ScoreLesionRequest) -> pb.ScoreLesionRequest:
    """Fill `message` (a new one, or one added to a ScoreLesionsRequest's list, so that a crop's
    bytes are copied into the request once, not once more when a built message is appended)."""
    message.number, message.name, message.source = crop.number, crop.name, crop.source
    message.source_sop_instance_uid = crop.source_sop_instance_uid
    message.tracking_id, message.tracking_uid = crop.tracking_id, crop.tracking_uid
    if (region := _concept_to_pb(crop.anatomic_region)) is not None:
        message.anatomic_region.CopyFrom(region)
    message.volume_geometry.CopyFrom(geometry_to_pb(crop.volume_geometry))
    message.crop_start.extend(crop.crop_start_xyz)
    message.crop_size.extend(crop.image_hu.shape[::-1])
    message.image_hu = np.ascontiguousarray(crop.image_hu, dtype="<f4").tobytes()
    message.mask = np.ascontiguousarray(crop.mask, dtype=np.uint8).tobytes()
    message.kvp = crop.kvp or 0.0
    return message


def crop_from_pb(request: pb.ScoreLesionRequest) -> LesionCrop:
    """Decode and check a request; ValueError names what is malformed."""
    if len(request.crop_start) != 3 or len(request.crop_size) != 3:
        raise ValueError("crop_start and crop_size need 3 values (x, y, z)")
    shape_zyx = tuple(int(v) for v in reversed(request.crop_size))
    n_voxels = int(np.prod(shape_zyx))
    if len(request.image_hu) != 4 * n_voxels or len(request.mask) != n_voxels:
        raise ValueError(f"image_hu/mask byte counts do not match crop_size {list(request.crop_size)}")
    geometry = geometry_from_pb(request.volume_geometry)
    if any(s + n > v for s, n, v in zip(request.crop_start, request.crop_size, geometry.size)):
        raise ValueError("the crop extends beyond the volume")
    mask = np.frombuffer(request.mask, dtype=np.uint8).reshape(shape_zyx).astype(bool)
    if not mask.any():
        raise ValueError("the lesion mask is empty")
    start = request.crop_start  # 3 values, checked above
    return LesionCrop(
        number=request.number, name=request.name, source=LesionSource(request.source),
        source_sop_instance_uid=request.source_sop_instance_uid,
        tracking_id=request.tracking_id, tracking_uid=request.tracking_uid,
        anatomic_region=_concept_from_pb(request),
        volume_geometry=geometry, crop_start_xyz=(int(start[0]), int(start[1]), int(start[2])),
        image_hu=np.frombuffer(request.image_hu, dtype="<f4").reshape(shape_zyx),
        mask=mask, kvp=request.kvp or None,
    )


def lesion_to_pb(result: LesionResult) -> pb.LesionScore:
    return pb.LesionScore(
        number=result.number, name=result.name, source=result.source,
        source_sop_instance_uid=result.source_sop_instance_uid,
        tracking_id=result.tracking_id, tracking_uid=result.tracking_uid,
        location_class=result.location_class, location_source=result.location_source,
        anatomic_region=_concept_to_pb(result.anatomic_region),
        voxel_count=result.voxel_count, volume_ml=result.volume_ml,
        longest_axial_diameter_mm=result.longest_axial_diameter_mm,
        short_axis_mm=result.short_axis_mm, max_3d_diameter_mm=result.max_3d_diameter_mm,
        centroid_mm=list(result.centroid_mm),
        features=[
            pb.Feature(region=region, name=name, value=value)
            for region, values in result.features.items() for name, value in values.items()
        ],
        score=result.score, score_class=result.score_class or "",
        contributions=[pb.Contribution(variable=k, value=v) for k, v in result.contributions.items()],
        not_computable=result.not_computable or "",
        ring_cut=pb.RingCut(measured_ml=result.ring_cut.measured_ml, cut_ml=result.ring_cut.cut_ml)
        if result.ring_cut else None,
    )


def lesion_from_pb(message: pb.LesionScore) -> LesionResult:
    features: dict[str, dict[str, float]] = {}
    for feature in message.features:
        features.setdefault(feature.region, {})[feature.name] = feature.value
    return LesionResult(
        number=message.number, name=message.name, source=LesionSource(message.source),
        source_sop_instance_uid=message.source_sop_instance_uid,
        tracking_id=message.tracking_id, tracking_uid=message.tracking_uid,
        location_class=LocationClass(message.location_class), location_source=LocationSource(message.location_source),
        voxel_count=message.voxel_count, volume_ml=message.volume_ml,
        longest_axial_diameter_mm=message.longest_axial_diameter_mm,
        short_axis_mm=message.short_axis_mm, max_3d_diameter_mm=message.max_3d_diameter_mm,
        centroid_mm=cast(Vector3, tuple(message.centroid_mm)), features=features,
        score=message.score if message.HasField("score") else None,
        score_class=ScoreClass(message.score_class) if message.score_class else None,
        contributions={c.variable: c.value for c in message.contributions},
        not_computable=message.not_computable or None,
        anatomic_region=_concept_from_pb(message),
        ring_cut=RingCut(message.ring_cut.measured_ml, message.ring_cut.cut_ml) if message.HasField("ring_cut") else None,
    )


def patient_to_pb(result: PatientResult) -> pb.PatientScore:
    return pb.PatientScore(
        n_lesions=result.n_lesions, n_computable=result.n_computable,
        n_over_volume_filter=result.n_over_volume_filter, volume_filter_ml=result.volume_filter_ml,
        total_volume_ml=result.total_volume_ml, organs_involved=list(result.organs_involved),
        score_stats=[pb.Metric(name=k, value=m.value, reason=m.reason or "") for k, m in result.score_stats.items()],
        least_infiltrated_tracking_uid=result.least_infiltrated_tracking_uid or "",
        highest_score_tracking_uid=result.highest_score_tracking_uid or "",
        risk_group=result.risk_group, cutoff_name=result.cutoff_name, cutoff_value=result.cutoff_value,
    )


def patient_from_pb(message: pb.PatientScore) -> PatientResult:
    return PatientResult(
        n_lesions=message.n_lesions, n_computable=message.n_computable,
        n_over_volume_filter=message.n_over_volume_filter, volume_filter_ml=message.volume_filter_ml,
        total_volume_ml=message.total_volume_ml,
        organs_involved=tuple(LocationClass(organ) for organ in message.organs_involved),
        score_stats={
            m.name: Metric(m.value if m.HasField("value") else None, m.reason or None) for m in message.score_stats
        },
        least_infiltrated_tracking_uid=message.least_infiltrated_tracking_uid or None,
        highest_score_tracking_uid=message.highest_score_tracking_uid or None,
        risk_group=RiskGroup(message.risk_group), cutoff_name=message.cutoff_name, cutoff_value=message.cutoff_value,
    )


def provenance_from_pb(message: pb.ScorerDescription) -> Provenance:
    return Provenance(
        algorithm_name=message.algorithm_name, algorithm_version=message.algorithm_version,
        engine_versions=dict(message.engine_versions), settings=json.loads(message.settings_json),
        signature_id=message.signature_id, signature_version=message.signature_version,
        signature_status=SignatureStatus(message.signature_status), signature_citation=message.signature_citation,
    )


def provenance_to_pb(provenance: Provenance, max_message_bytes: int) -> pb.ScorerDescription:
    return pb.ScorerDescription(
        algorithm_name=provenance.algorithm_name, algorithm_version=provenance.algorithm_version,
        engine_versions=provenance.engine_versions, settings_json=json.dumps(provenance.settings, sort_keys=True),
        signature_id=provenance.signature_id, signature_version=provenance.signature_version,
        signature_status=provenance.signature_status, signature_citation=provenance.signature_citation,
        max_message_bytes=max_message_bytes,
    )
