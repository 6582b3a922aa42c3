"""The tumour-board page's input, from the synthetic study of tests/support/synthetic_results.

Expected values come from that module's lesion table and from method.md section 4: of the
lesions over 1 mL, L2 has the lowest score (1.42: least-infiltrated, the SBRT candidate) and L3
the highest (2.31: the low-dose RT candidate); L1 (0.8 mL) has no score.
"""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pytest

from service.comparison import Comparison, LesionComparison, SeriesPoint, TimePointInfo
from service.model import Metric
from service.outputs.key_images import KeyImage
from service.outputs.summary_input import ResponsePoint, summary_input
from tests.support.synthetic_results import make_study_result

pytestmark = pytest.mark.filterwarnings("ignore:The value length")  # STS StudyID: 17 characters
SR_UID = "2.25.42"


def _key_image(number: int, source_sop_instance_uid: str) -> KeyImage:
    empty = np.zeros((4, 4), dtype=bool)
    return KeyImage(number, source_sop_instance_uid, 3, -200.0, (0, 0), (1.0, 1.0), np.zeros((4, 4), np.float32),
                    empty, empty)


def _change(category: str) -> LesionComparison:
    return LesionComparison("tracking-uid", None, None, Metric(2.0), Metric(10.0), Metric(10.0), Metric(25.0), Metric(0.1),
                            (), category, ("1.2.3",))


def test_the_page_says_every_lesion_the_candidates_the_notice_and_the_signature() -> None:
    result, _ = make_study_result(3)
    page = summary_input(result, sr_sop_instance_uid=SR_UID)
    assert [x.tracking_id for x in page.lesions] == ["L1", "L2", "L3"]
    assert [x.score for x in page.lesions] == [None, 1.42, 2.31]
    assert [x.volume_ml for x in page.lesions] == [0.8, 5.2, 30.0]
    assert page.lesions[0].not_computable
    assert [len(x.candidacies) for x in page.lesions] == [0, 1, 1]
    assert "least-infiltrated" in page.lesions[1].candidacies[0] and "SBRT" in page.lesions[1].candidacies[0]
    assert "highest-score" in page.lesions[2].candidacies[0]
    assert "not a diagnosis" in page.notice and "radiologist confirmation" in page.notice
    assert result.provenance.signature_status in page.signature
    assert page.cutoff_value == 1.75 and "1.75" in page.cutoff
    assert any(line.startswith("Engines: ") for line in page.provenance)
    assert page.time_point.is_baseline and page.response == () and page.prior_sr_uids == ()


def test_key_images_and_changes_go_to_their_lesions() -> None:
    result, _ = make_study_result(3)
    contour = result.ct.contour_sop_instance_uid
    l2 = result.lesions[1]
    comparison = Comparison(time_point=TimePointInfo(2, 42), lesions={l2.tracking_uid: _change("progressing")},
                            notes=("a follow-up note",))
    page = summary_input(result, sr_sop_instance_uid=SR_UID, comparison=comparison,
                         key_images=[_key_image(2, contour), _key_image(3, contour)])
    assert [x.key_image is not None for x in page.lesions] == [False, True, True]
    assert page.lesions[1].key_image is not None and page.lesions[1].key_image.lesion_number == 2
    assert [x.change.category if x.change else None for x in page.lesions] == [None, "progressing", None]
    assert page.summary[-1] == "a follow-up note" and page.time_point.label == "T1 (day 42)"


def test_a_key_image_of_no_lesion_is_refused() -> None:
    result, _ = make_study_result(3)
    with pytest.raises(ValueError, match="1 key images belong to no lesion"):
        summary_input(result, sr_sop_instance_uid=SR_UID, key_images=[_key_image(9, result.ct.contour_sop_instance_uid)])


def _series_point(date: str, total: float | None, recist: str | None = None, irecist: str | None = None) -> SeriesPoint:
    return SeriesPoint("1.2.3", date, total, recist, irecist)


def test_the_response_series_comes_from_the_comparison_and_the_input_cannot_change() -> None:
    """Points the plot can place: a date and a sum each; an unevaluable sum or an unknown date
    is left out, and of two studies on one day the later (the series is in time order) stays."""
    result, _ = make_study_result(3)
    series = (_series_point("20240101", 45.0), _series_point("20240301", None, "NE", "iUPD"),
              _series_point("20240401", 46.0, "SD", "iSD"), _series_point("", 50.0, "SD", "iSD"),
              _series_point("20240501", 60.0, "PD", "iUPD"), _series_point("20240501", 62.0, "PD", "iCPD"))
    page = summary_input(result, sr_sop_instance_uid=SR_UID, comparison=Comparison(series=series))
    assert page.response == (ResponsePoint(datetime.date(2024, 1, 1), 45.0),
                             ResponsePoint(datetime.date(2024, 4, 1), 46.0, "SD", "iSD"),
                             ResponsePoint(datetime.date(2024, 5, 1), 62.0, "PD", "iCPD"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.notice = ""  # type: ignore[misc]
