"""What the one-page tumour-board summary shows, as plain immutable data (method.md section 7,
followup.md sections 5 and 9.6.3).

Why a separate input: the page is made from three sources that arrive at different places,
the scored study (StudyResult), its follow-up (Comparison, empty for a baseline) and the
response series over time (sum of diameters with the RECIST 1.1 and iRECIST categories, made by
the response assessment), plus the key images, which only the pipeline can cut since it alone
holds the CT. Gathering them here, once, lets the page renderer be a pure function of one value
(identical inputs, identical bytes) and lets a test check what the page must say without
reading a PDF. The wording shared with the SR and the FHIR conclusion comes from
service.outputs.codes, so the page never tells a board a different story.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from service.comparison import Comparison, LesionComparison, TimePointInfo
from service.model import (LesionResult, LocationClass, PatientResult, ScoreClass, SignatureStatus, StudyInfo,
                           StudyResult)
from service.outputs import codes
from service.outputs.key_images import KeyImage

NOTICE = (f"{codes.DECISION_SUPPORT_NOTICE} Response categories are computed by an algorithm "
          "and require radiologist confirmation.")
"""On every page: decision support, not a diagnosis (method.md section 6, followup.md 9.1)."""


@dataclass(frozen=True)
class ResponsePoint:
    """One time point of the response series: the sum of diameters of the baseline targets and
    the overall categories, None where not assessed (the baseline has none)."""

    date: datetime.date
    sum_of_diameters_mm: float
    recist: str | None = None
    irecist: str | None = None


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


def summary_input(result: StudyResult, *, sr_sop_instance_uid: str, comparison: Comparison = Comparison(),
                  key_images: Sequence[KeyImage] = (), response: Sequence[ResponsePoint] = ()) -> SummaryInput:
    """The page's content. `key_images` are matched to lesions by contour object and ROI or
    segment number (what identifies a drawn lesion before and after identities are carried);
    `response` must be in date order, as the plot draws it."""
    images = {(image.source_sop_instance_uid, image.lesion_number): image for image in key_images}
    lesions = tuple(_lesion(result.patient, lesion, images.pop((lesion.source_sop_instance_uid, lesion.number), None),
                            comparison.lesions.get(lesion.tracking_uid)) for lesion in result.lesions)
    if images:
        raise ValueError(f"{len(images)} key images belong to no lesion of the result")
    dates = [point.date for point in response]
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        raise ValueError("the response series must have one point per date, in date order")
    if any(point.sum_of_diameters_mm < 0 for point in response):
        raise ValueError("a sum of diameters cannot be negative")
    patient, provenance = result.patient, result.provenance
    return SummaryInput(
        study=result.study, time_point=comparison.time_point,
        signature=codes.signature_label(provenance), signature_status=provenance.signature_status,
        cutoff=codes.cutoff_label(patient), cutoff_value=patient.cutoff_value,
        lesions=lesions, response=tuple(response),
        summary=(*codes.summary_lines(result), *comparison.notes),
        provenance=tuple(codes.provenance_lines(provenance)),
        sr_sop_instance_uid=sr_sop_instance_uid,
        prior_sr_uids=tuple(prior.sop_instance_uid for prior in comparison.priors),
    )


def _lesion(patient: PatientResult, lesion: LesionResult, key_image: KeyImage | None,
            change: LesionComparison | None) -> SummaryLesion:
    return SummaryLesion(
        tracking_id=lesion.tracking_id, location=lesion.location_class, volume_ml=lesion.volume_ml,
        longest_axial_diameter_mm=lesion.longest_axial_diameter_mm, short_axis_mm=lesion.short_axis_mm,
        score=lesion.score, score_class=lesion.score_class, not_computable=lesion.not_computable,
        candidacies=tuple(code.meaning for code in codes.candidate_codes(patient, lesion)),
        key_image=key_image, change=change,
    )
