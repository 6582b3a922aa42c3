"""A hand-made, clearly synthetic StudyResult on real DICOM headers, for output-builder tests.

Why synthetic numbers on real headers: the output builders (SR, FHIR) must be tested without
running imaging and scoring, but their evidence handling must meet real-world quirks (the STS
CT's 17-character Study ID, the ct-seg CT's empty Specific Character Set). So the numbers are
chosen here by hand (volumes 0.8, 5.2, 30.0 mL, ...; the smallest lesion is not computable)
while the UIDs and patient/study attributes come from the shared real data.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import Counter

import pydicom
from pydicom import Dataset

from service.model import (
    CtReference,
    LesionResult,
    Metric,
    PatientResult,
    Provenance,
    StudyInfo,
    StudyResult,
)
from tests.support.external import DATA_DIR, require_data

STS_019 = DATA_DIR / "ct-rtstruct" / "STS_019"
CT_SEG = DATA_DIR / "ct-seg"

VOLUME_FILTER_ML = 1.0
CUTOFF_NAME = "reference (synthetic)"
CUTOFF_VALUE = 1.75
NOT_COMPUTABLE_REASON = "fewer than 2 voxels per axis after resampling to 1 mm (synthetic)"

# Per lesion: volume mL, longest axial mm, short axis mm, max 3D mm, score (None = not computable)
_LESION_VALUES: tuple[tuple[float, float, float, float, float | None], ...] = (
    (0.8, 13.1, 9.4, 14.0, None),
    (5.2, 24.6, 17.9, 26.3, 1.42),
    (30.0, 45.2, 33.8, 48.7, 2.31),
    (12.5, 33.0, 21.2, 35.9, 1.97),
    (2.4, 19.8, 12.6, 20.4, 2.05),
)
_LOCATIONS = (
    ("lung", "roi_name"),
    ("liver", "configuration"),
    ("adenopathy", "roi_name"),
    ("head_and_neck", "configuration"),
    ("other", "default"),
)
"""(location class, source for an RTSTRUCT); a SEG's matched locations come from its codes."""


def make_study_result(
    n_lesions: int = 3, source: str = "RTSTRUCT"
) -> tuple[StudyResult, list[Dataset]]:
    """A StudyResult with `n_lesions` lesions and the header-only evidence it was "made" from.

    RTSTRUCT uses STS_019 (47 CT slices + RS.dcm); SEG uses ct-seg (3 CT slices +
    partial_overlaps.dcm, whose segments 1-5 the lesions reference). Lesion values cycle
    through `_LESION_VALUES`; lesion 1 is always the not-computable one.
    """
    ct_headers, contour = _evidence(source)
    ct = _ct_reference(ct_headers, contour)
    lesions = [_lesion(i, source, ct) for i in range(n_lesions)]
    result = StudyResult(
        study=_study_info(ct_headers[0]),
        ct=ct,
        lesions=lesions,
        patient=_patient(lesions),
        provenance=_provenance(),
        warnings=["open contour ignored on 1 slice (synthetic)"],
    )
    return result, [*ct_headers, contour]


def _evidence(source: str) -> tuple[list[Dataset], Dataset]:
    """Header-only CT slices and the contour object of the real data set for `source`."""
    if source == "RTSTRUCT":
        ct_dir, contour_path = STS_019 / "image", STS_019 / "mask" / "RS.dcm"
    elif source == "SEG":
        ct_dir, contour_path = CT_SEG / "ct", CT_SEG / "partial_overlaps.dcm"
    else:
        raise ValueError(f"unknown contour source {source!r}")
    require_data(contour_path)
    ct_headers = [
        pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(ct_dir.glob("*.dcm"))
    ]
    return ct_headers, pydicom.dcmread(contour_path, stop_before_pixels=True)


def _study_info(ct: Dataset) -> StudyInfo:
    """Patient and study attributes as the imaging stage reads them: raw, quirks included."""
    return StudyInfo(
        patient_id=str(ct.PatientID),
        patient_name=str(ct.PatientName),
        patient_birth_date=str(ct.get("PatientBirthDate", "")),
        patient_sex=str(ct.get("PatientSex", "")),
        study_instance_uid=str(ct.StudyInstanceUID),
        study_date=str(ct.get("StudyDate", "")),
        study_time=str(ct.get("StudyTime", "")),
        accession_number=str(ct.get("AccessionNumber", "")),
        referring_physician_name=str(ct.get("ReferringPhysicianName", "")),
        study_id=str(ct.get("StudyID", "")),
        study_description=str(ct.get("StudyDescription", "")),
    )


def _ct_reference(ct_headers: list[Dataset], contour: Dataset) -> CtReference:
    first = ct_headers[0]
    return CtReference(
        series_instance_uid=str(first.SeriesInstanceUID),
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        sop_class_uid=str(first.SOPClassUID),
        sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in ct_headers),
        contour_sop_class_uid=str(contour.SOPClassUID),
        contour_sop_instance_uid=str(contour.SOPInstanceUID),
        contour_series_instance_uid=str(contour.SeriesInstanceUID),
    )


def _lesion(index: int, source: str, ct: CtReference) -> LesionResult:
    volume, longest, short, max_3d, score = _LESION_VALUES[index % len(_LESION_VALUES)]
    location, location_source = _LOCATIONS[index % len(_LOCATIONS)]
    if source == "SEG" and location_source != "default":
        location_source = "seg_anatomic_region"
    number = index + 1
    computable = score is not None
    return LesionResult(
        number=number,
        name=f"GTV_{number}" if source == "RTSTRUCT" else f"Segment {number}",
        source=source,  # type: ignore[arg-type]
        source_sop_instance_uid=ct.contour_sop_instance_uid,
        tracking_id=f"L{number}",
        tracking_uid=_synthetic_uid(ct.contour_sop_instance_uid, str(number)),
        location_class=location,
        location_source=location_source,
        voxel_count=round(volume * 1000 / (0.977 * 0.977 * 3.27)),
        volume_ml=volume,
        longest_axial_diameter_mm=longest,
        short_axis_mm=short,
        max_3d_diameter_mm=max_3d,
        centroid_mm=(-10.0 * number, 20.0, -200.0 + number),
        features={
            # IBSI-defined (coded in the SR) and one pyradiomics-only feature (left out of it)
            "core": {"stat_min": -80.0 + number, "rlm_srhge_3D_avg": 900.0 + number, "firstorder_TotalEnergy": 1e6},
            "ring": {"rlm_srlge_3D_avg": 0.01 * number},
        }
        if computable
        else {},
        score=score,
        score_class=None if score is None else ("high" if score >= CUTOFF_VALUE else "low"),
        contributions={"core_minimum": -0.2, "ring_srlge": 0.3} if computable else {},
        not_computable=None if computable else NOT_COMPUTABLE_REASON,
    )


def _synthetic_uid(*parts: str) -> str:
    """Same parts, same UID: tests compare outputs of separately built results."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '/'.join(['synthetic lesion', *parts])).int}"


def _patient(lesions: list[LesionResult]) -> PatientResult:
    """Patient-level values from the synthetic lesions, by docs/method.md section 4's rules."""
    over_filter = [x for x in lesions if x.volume_ml > VOLUME_FILTER_ML]
    scored = sorted((x for x in over_filter if x.score is not None), key=lambda x: x.score)
    least = scored[0] if scored else None
    if not over_filter:
        risk_group = "no_lesion_over_1ml"
    else:
        risk_group = "high_score" if least and least.score >= CUTOFF_VALUE else "low_score"
    return PatientResult(
        n_lesions=len(lesions),
        n_computable=sum(x.score is not None for x in lesions),
        n_over_volume_filter=len(over_filter),
        volume_filter_ml=VOLUME_FILTER_ML,
        total_volume_ml=sum(x.volume_ml for x in lesions),
        organs_involved=tuple(sorted({x.location_class for x in lesions})),
        score_stats=_score_stats([x.score for x in scored]),
        least_infiltrated_tracking_uid=least.tracking_uid if least else None,
        highest_score_tracking_uid=scored[-1].tracking_uid if scored else None,
        risk_group=risk_group,
        cutoff_name=CUTOFF_NAME,
        cutoff_value=CUTOFF_VALUE,
    )


def _score_stats(scores: list[float]) -> dict[str, Metric]:
    """The distribution metrics, "not computable" where n cannot support them."""
    n = len(scores)

    def needs(minimum: int, compute) -> Metric:
        if n < minimum:
            return Metric.not_computable(f"needs at least {minimum} scored lesions, have {n}")
        return Metric(compute())

    def central_moment(k: int) -> float:
        mean = statistics.fmean(scores)
        return sum((s - mean) ** k for s in scores) / n

    def entropy() -> float:
        counts = Counter(math.floor(s / 0.25) for s in scores).values()
        return -sum(c / n * math.log2(c / n) for c in counts)

    return {
        "min": needs(1, lambda: min(scores)),
        "max": needs(1, lambda: max(scores)),
        "mean": needs(1, lambda: statistics.fmean(scores)),
        "sd": needs(2, lambda: statistics.stdev(scores)),
        "skewness": needs(3, lambda: central_moment(3) / central_moment(2) ** 1.5),
        "kurtosis": needs(4, lambda: central_moment(4) / central_moment(2) ** 2 - 3),
        "entropy": needs(1, entropy),
    }


def _provenance() -> Provenance:
    return Provenance(
        algorithm_name="radiomics-cds",
        algorithm_version="0.1.0",
        engine_versions={"pyradiomics-bhklab": "3.1.4", "SimpleITK": "2.5.7"},
        settings={
            "resampling_mm": "1x1x1",
            "image_interpolation": "trilinear",
            "mask_interpolation": "trilinear, threshold 0.5",
            "discretisation": "fixed bin size 10 HU from -1000 HU",
            "ring_mm": 2,
            "texture": "3D, 13 directions averaged",
            "volume_filter_ml": VOLUME_FILTER_ML,
        },
        signature_id="cd8-radiomics",
        signature_version="0.1",
        signature_status="uncalibrated",
        signature_citation="Sun R et al. Lancet Oncol 2018;19:1180-91",
    )
