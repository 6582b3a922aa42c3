"""The warm-up's made-up study: one lesion, made-up UIDs under the UUID root, no patient.

The smallest input that takes every output builder where a study takes them (SR content, image
library, page table, key-image tile, Bundle). Its own module, apart from the builders it
feeds: only the warm-up (service.outputs.warm_up) uses it.
"""

from __future__ import annotations

import uuid

import numpy as np
from pydicom import Dataset
from pydicom.uid import CTImageStorage, RTStructureSetStorage

from service.model import (
    CtReference, LesionResult, LesionSource, LocationClass, LocationSource, Metric, PatientResult, Provenance,
    RiskGroup, ScoreClass, SignatureStatus, StudyInfo, StudyResult,
)
from service.outputs.key_images import KeyImage

_SLICES = 3
_FIELD = 32  # key image rows and columns


def _uid(name: str) -> str:
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'radiomics-cds warm-up/{name}').int}"


def _ct_header(study: StudyInfo, z: int) -> Dataset:
    header = Dataset()
    header.SOPClassUID, header.SOPInstanceUID = CTImageStorage, _uid(f"ct/{z}")
    header.StudyInstanceUID, header.SeriesInstanceUID = study.study_instance_uid, _uid("ct series")
    header.FrameOfReferenceUID, header.Modality = _uid("frame"), "CT"
    header.ImagePositionPatient, header.ImageOrientationPatient = [0.0, 0.0, float(z)], [1, 0, 0, 0, 1, 0]
    header.Rows, header.Columns, header.PixelSpacing, header.SliceThickness = _FIELD, _FIELD, [1.0, 1.0], 1.0
    header.KVP, header.ConvolutionKernel = 120, "B30f"
    return header


def sample() -> tuple[StudyResult, list[Dataset], KeyImage]:
    """A one-lesion result, the header-only evidence it names (3 CT slices and an RTSTRUCT)
    and the lesion's key image: the smallest input that takes every output builder through
    its SR content, image library, page table, key-image tile and Bundle."""
    study = StudyInfo(patient_id="WARM-UP", patient_name="Warm^Up", patient_birth_date="", patient_sex="O",
                      study_instance_uid=_uid("study"), study_date="20260101", study_time="120000",
                      accession_number="", referring_physician_name="", study_id="1")
    ct_headers = [_ct_header(study, z) for z in range(_SLICES)]
    contour = Dataset()
    contour.SOPClassUID, contour.SOPInstanceUID = RTStructureSetStorage, _uid("rtstruct")
    contour.StudyInstanceUID, contour.SeriesInstanceUID = study.study_instance_uid, _uid("rtstruct series")
    contour.Modality = "RTSTRUCT"
    ct = CtReference(series_instance_uid=ct_headers[0].SeriesInstanceUID,
                     frame_of_reference_uid=ct_headers[0].FrameOfReferenceUID, sop_class_uid=CTImageStorage,
                     sop_instance_uids=tuple(h.SOPInstanceUID for h in ct_headers),
                     contour_sop_class_uid=RTStructureSetStorage,
                     contour_sop_instance_uid=contour.SOPInstanceUID,
                     contour_series_instance_uid=contour.SeriesInstanceUID)
    lesion = LesionResult(
        number=1, name="GTV_1", source=LesionSource.RTSTRUCT, source_sop_instance_uid=contour.SOPInstanceUID,
        tracking_id="L1", tracking_uid=_uid("lesion"), location_class=LocationClass.LIVER,
        location_source=LocationSource.ROI_NAME, voxel_count=5000, volume_ml=5.0, longest_axial_diameter_mm=24.0,
        short_axis_mm=18.0, max_3d_diameter_mm=26.0, centroid_mm=(16.0, 16.0, 1.0),
        features={"core": {"stat_min": -80.0}, "ring": {"rlm_srlge_3D_avg": 0.01}},
        score=1.4, score_class=ScoreClass.LOW, contributions={"core_minimum": -0.2, "ring_srlge": 0.3})
    patient = PatientResult(
        n_lesions=1, n_computable=1, n_over_volume_filter=1, volume_filter_ml=1.0, total_volume_ml=5.0,
        organs_involved=(LocationClass.LIVER,),
        score_stats={"min": Metric(1.4), "max": Metric(1.4), "mean": Metric(1.4),
                     "sd": Metric.not_computable("needs at least 2 scored lesions")},
        least_infiltrated_tracking_uid=lesion.tracking_uid, highest_score_tracking_uid=lesion.tracking_uid,
        risk_group=RiskGroup.LOW_SCORE, cutoff_name="warm-up", cutoff_value=1.75)
    provenance = Provenance(algorithm_name="radiomics-cds", algorithm_version="warm-up", engine_versions={},
                            settings={"ringWidthMm": 2}, signature_id="warm-up", signature_version="0",
                            signature_status=SignatureStatus.UNCALIBRATED, signature_citation="")
    result = StudyResult(study=study, ct=ct, lesions=[lesion], patient=patient, provenance=provenance)
    yy, xx = np.mgrid[:_FIELD, :_FIELD]
    disc = (yy - _FIELD / 2) ** 2 + (xx - _FIELD / 2) ** 2
    image = KeyImage(lesion_number=1, source_sop_instance_uid=contour.SOPInstanceUID, slice_index=1,
                     slice_z_mm=1.0, first_row_column=(0, 0), pixel_spacing_mm=(1.0, 1.0),
                     hu=np.full((_FIELD, _FIELD), 40.0, dtype=np.float32), lesion=disc < 64,
                     ring=(disc >= 64) & (disc < 100))
    return result, [*ct_headers, contour], image
