"""The SR's patient-level response groups (docs/method.md 5.3): two TID 1501 groups.

"RECIST 1.1 assessment": Measurement Method (126081, DCM, "RECIST 1.1"); the sums of diameters
(now, baseline, nadir) and their changes as NUMs; the target and non-target responses as
(112048, DCM, "Current Response") valued from CID 6144 (112041-112047); the overall RECIST 1.1
and iRECIST categories, which no standard code covers, with the 99RCDS codes of service.outputs.codes;
and the iRECIST state this report hands to the next one (IUPDPEND, IUPDDATE, CONFWIN for a
reader, IRECISTSTATE as JSON for the next report, on whichever replica scores it).

"Tumour growth kinetics": TGR and TGK before and under treatment, their difference and ratios,
and every hyperprogression and pattern flag, coded Yes/No when computable and otherwise stated
in words with the reason. Both groups say that the categories require radiologist confirmation,
and that the non-target response is an automated proxy.

Each group's Tracking UID is derived from the baseline study, so it is the same for the
patient's whole assessment series (docs/method.md 5.3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import highdicom as hd
from pydicom.sr.coding import Code

from service.comparison import ResponseAssessment, ResponseThresholds, recist_assessment_uid
from service.model import Metric
from service.outputs import codes
from service.outputs.response_values import sum_of_diameters_values
from service.outputs.sr_method import method_as_concept_modifier
from service.uids import derived_uid

RECIST_GROUP_IDENTIFIER = "RECIST 1.1 assessment"
KINETICS_GROUP_IDENTIFIER = "Tumour growth kinetics"


def non_target_proxy_text(thresholds: ResponseThresholds) -> str:
    """What the non-target response is and the volume growth at which it suggests PD (the
    site's setting, +73 % by default)."""
    return ("automated_proxy: non-target response from the contoured non-target volume "
            f"(PD suggested at +{thresholds.nontarget_pd_volume_pct:g} %); {codes.REQUIRES_CONFIRMATION}")


Measurements = Callable[[Sequence[tuple[Code, float, Code]]], list[hd.sr.Measurement]]
"""Turns (name, value, unit) into TID 300 measurements that name the algorithm (sr.py)."""
TimePoint = Callable[[], hd.sr.TimePointContext]
"""A fresh TID 1502 context of this study (a content item has one parent)."""

_CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


def response_groups(response: ResponseAssessment, measurements: Measurements,
                    time_point: TimePoint) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    return [_recist_group(response, measurements, time_point), _kinetics_group(response, measurements, time_point)]


def _recist_group(response: ResponseAssessment, measurements: Measurements,
                  time_point: TimePoint) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    values: list[tuple[Code, Metric, Code]] = [
        *sum_of_diameters_values(response),
        (codes.NEW_LESION_CANDIDATES, Metric(float(response.new_lesion_count)), codes.UNIT_LESIONS),
        (codes.NLT_SUM, Metric(response.nlt_sum_mm), codes.UNIT_MM),
    ]
    evaluations = [
        *_response(response.target_response, codes.TARGET_RESPONSES),
        *_response(response.non_target_response, codes.NON_TARGET_RESPONSES),
        hd.sr.QualitativeEvaluation(codes.RECIST_RESPONSE,
                                    codes.lookup(codes.OVERALL_RESPONSES, response.overall, "RECIST response")),
        hd.sr.QualitativeEvaluation(codes.IRECIST_RESPONSE,
                                    codes.lookup(codes.IRECIST_CATEGORIES, response.irecist, "iRECIST category")),
        hd.sr.QualitativeEvaluation(codes.IUPD_PENDING, codes.YES if response.iupd_pending else codes.NO),
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=response.assessment_uid or recist_assessment_uid(response.baseline_study_uid),
            identifier=RECIST_GROUP_IDENTIFIER),
        time_point_context=time_point(),
        method=codes.RECIST_11,
        measurements=measurements([(name, m.value, unit) for name, m, unit in values if m.value is not None]),
        qualitative_evaluations=evaluations,
    )
    method_as_concept_modifier(group)
    items: list[hd.sr.ContentItem] = [_text(codes.NON_TARGET_PROXY, non_target_proxy_text(response.thresholds))]
    if response.iupd_date is not None:
        items.append(hd.sr.DateContentItem(name=codes.IUPD_DATE, value=response.iupd_date.replace("-", ""),
                                           relationship_type=_CONTAINS))
    if response.confirmation_window is not None:
        items.append(_text(codes.CONFIRMATION_WINDOW, " to ".join(response.confirmation_window)))
    items.append(_text(codes.IRECIST_STATE, response.irecist_state))
    comments = [codes.RESPONSE_NOTICE]
    comments += [f"{name.meaning}: not computable ({m.reason})" for name, m, _ in values if m.value is None]
    for label, value in (("Target response", response.target_response),
                         ("Non-target response", response.non_target_response)):
        if value == "NE":
            comments.append(f"{label}: not evaluable (NE)")
    comments += list(response.notes)
    items += [_text(codes.COMMENT, line) for line in comments]
    group[0].ContentSequence.extend(items)
    return group


def _kinetics_group(response: ResponseAssessment, measurements: Measurements,
                    time_point: TimePoint) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    values = [(codes.KINETICS_CODES[key][0], metric.value, codes.KINETICS_CODES[key][1])
              for key, metric in response.kinetics.items() if metric.value is not None]
    computed = [flag for flag in response.flags if flag.value is not None]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid("growth-kinetics", [response.baseline_study_uid]), identifier=KINETICS_GROUP_IDENTIFIER),
        time_point_context=time_point(),
        measurements=measurements(values),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.lookup(codes.FLAG_CODES, flag.key, "flag"),
                                                             codes.YES if flag.value else codes.NO)
                                 for flag in computed],
    )
    items = [_text(codes.KINETICS_CODES[key][0], _not_computable(metric.reason))
             for key, metric in response.kinetics.items() if metric.value is None]
    items += [_text(codes.lookup(codes.FLAG_CODES, flag.key, "flag"), _not_computable(flag.reason))
              for flag in response.flags if flag.value is None]
    items += [_text(codes.COMMENT, f"{codes.FLAG_CODES[flag.key].meaning}: {flag.definition}")
              for flag in response.flags]
    items.append(_text(codes.COMMENT, codes.RESPONSE_NOTICE))
    group[0].ContentSequence.extend(items)
    return group


def _response(value: str | None, table: dict[str, Code]) -> list[hd.sr.QualitativeEvaluation]:
    """A target or non-target response with a CID 6144 code; NE has none (stated in words)."""
    if value is None or value not in table:
        return []
    return [hd.sr.QualitativeEvaluation(codes.CURRENT_RESPONSE, table[value])]


def _not_computable(reason: str | None) -> str:
    text = reason or "no reason given"
    return text if text.startswith("not computable") else f"not computable: {text}"


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=_CONTAINS)
