"""What the one-page tumour-board summary shows, as plain immutable data (method.md section 7,
README, "Tumour-board summary").

Why a separate input: the page is made from what arrives at different places, the scored
study (StudyResult), its follow-up (Comparison, empty for a baseline; with the response series
over time: sum of diameters with the RECIST 1.1 and iRECIST categories), plus the key images,
which only the pipeline can cut since it alone holds the CT. Gathering them here, once, lets the page renderer be a pure function of one value
(identical inputs, identical bytes) and lets a test check what the page must say without
reading a PDF. The wording shared with the SR and the FHIR conclusion comes from
service.outputs.codes, so the page never tells a board a different story.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from service.comparison import (Comparison, LesionComparison, ResponseAssessment, ResponseThresholds, SeriesPoint,
                                TimePointInfo)
from service.model import (LesionResult, LocationClass, PatientResult, ScoreClass, SignatureStatus, StudyInfo,
                           StudyResult)
from service.outputs import codes
from service.outputs.key_images import KeyImage

NOTICE = (f"{codes.DECISION_SUPPORT_NOTICE} Response categories are computed by an algorithm "
          "and require radiologist confirmation.")
"""On every page: decision support, not a diagnosis (method.md sections 5.2 and 6)."""


@dataclass(frozen=True)
class ResponsePoint:
    """One time point of the response series: the sum of diameters of the baseline targets and
    the overall categories, None where not assessed (the baseline has none)."""

    date: datetime.date
    sum_of_diameters_mm: float
    recist: str | None = None
    irecist: str | None = None


@dataclass(frozen=True)
class ResponseLines:
    """What RECIST 1.1 measured this study's target sum against, for the plot's partial-response
    and progression lines: the assessment's thresholds and the baseline's and the nadir's sums
    (None where not computable), and while an iUPD on the targets is pending the target sum at
    iUPD, which iRECIST confirms their progression against. From the assessment, never from the plotted
    points: a baseline or nadir outside the prior lookup's reach is carried from the previous
    report and is not on the plot, and the nadir may lie between plotted points."""

    thresholds: ResponseThresholds
    baseline_mm: float | None
    nadir_mm: float | None
    iupd_mm: float | None = None  # while an iUPD on the targets is pending, the target sum at iUPD (iCPD's reference)


@dataclass(frozen=True)
class SummaryLesion:
    """One row of the lesion table, with its key image and, at a follow-up, its change."""

    tracking_id: str
    location: LocationClass
    volume_ml: float
    longest_axial_diameter_mm: float
    short_axis_mm: float
    score: float | None
    score_class: ScoreClass | None
    not_computable: str | None
    candidacies: tuple[str, ...]  # the board candidacies' wording (least-infiltrated, highest score)
    key_image: KeyImage | None
    change: LesionComparison | None


@dataclass(frozen=True)
class SummaryInput:
    """Everything on the page; build it with `summary_input`."""

    study: StudyInfo
    time_point: TimePointInfo
    signature: str  # id, version and status, "- research use only" unless validated
    signature_status: SignatureStatus
    cutoff: str  # by name and value
    cutoff_value: float
    lesions: tuple[SummaryLesion, ...]
    response: tuple[ResponsePoint, ...]
    summary: tuple[str, ...]  # the SR's and the DiagnosticReport's summary, then the follow-up notes
    provenance: tuple[str, ...]  # algorithm, signature, engines and their versions, settings
    sr_sop_instance_uid: str
    prior_sr_uids: tuple[str, ...]
    notice: str = NOTICE
    response_lines: ResponseLines | None = None  # drawn on the plot; None: no assessment


def summary_input(result: StudyResult, *, sr_sop_instance_uid: str, comparison: Comparison = Comparison(),
                  key_images: Sequence[KeyImage] = ()) -> SummaryInput:
    """The page's content. `key_images` are matched to lesions by contour object and ROI or
    segment number (what identifies a drawn lesion before and after identities are carried);
    the response series is the comparison's RECIST series (`response_points`)."""
    images = {(image.source_sop_instance_uid, image.lesion_number): image for image in key_images}
    lesions = tuple(_lesion(result.patient, lesion, images.pop((lesion.source_sop_instance_uid, lesion.number), None),
                            comparison.lesions.get(lesion.tracking_uid)) for lesion in result.lesions)
    if images:
        raise ValueError(f"{len(images)} key images belong to no lesion of the result")
    response = response_points(comparison.series)
    patient, provenance = result.patient, result.provenance
    return SummaryInput(
        study=result.study, time_point=comparison.time_point,
        signature=codes.signature_label(provenance), signature_status=provenance.signature_status,
        cutoff=codes.cutoff_label(patient), cutoff_value=patient.cutoff_value,
        lesions=lesions, response=tuple(response),
        summary=(*codes.summary_lines(result), *codes.response_lines(comparison.response), *comparison.notes),
        provenance=tuple(codes.provenance_lines(provenance)),
        sr_sop_instance_uid=sr_sop_instance_uid,
        prior_sr_uids=tuple(prior.sop_instance_uid for prior in comparison.priors),
        response_lines=_response_lines(comparison.response) if comparison.response is not None else None,
    )


def _response_lines(response: ResponseAssessment) -> ResponseLines:
    return ResponseLines(response.thresholds, response.baseline_sod_mm.value, response.nadir_sod_mm.value,
                         response.iupd_target_sod_mm)


def response_points(series: Sequence[SeriesPoint]) -> tuple[ResponsePoint, ...]:
    """The RECIST series as points a plot can place: those with a study date and a sum of
    diameters (a time point whose targets were not all evaluable has no sum to draw; its
    category is in the SR), one per date (the later study of a day: the series is in time
    order)."""
    by_date: dict[datetime.date, ResponsePoint] = {}
    for point in series:
        date = _date(point.study_date)
        if date is not None and point.sum_of_diameters_mm is not None:
            by_date[date] = ResponsePoint(date, point.sum_of_diameters_mm, point.recist_overall, point.irecist_category)
    return tuple(sorted(by_date.values(), key=lambda point: point.date))


def _date(dicom_date: str) -> datetime.date | None:
    try:
        return datetime.datetime.strptime(dicom_date, "%Y%m%d").date()
    except ValueError:  # empty or malformed: the point has no place on a time axis
        return None


def _lesion(patient: PatientResult, lesion: LesionResult, key_image: KeyImage | None,
            change: LesionComparison | None) -> SummaryLesion:
    return SummaryLesion(
        tracking_id=lesion.tracking_id, location=lesion.location_class, volume_ml=lesion.volume_ml,
        longest_axial_diameter_mm=lesion.longest_axial_diameter_mm, short_axis_mm=lesion.short_axis_mm,
        score=lesion.score, score_class=lesion.score_class, not_computable=lesion.not_computable,
        candidacies=tuple(code.meaning for code in codes.candidate_codes(patient, lesion)),
        key_image=key_image, change=change,
    )
