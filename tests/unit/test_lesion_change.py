"""Lesion-level change (docs/method.md 5.1) against values computed here, independently.

Sizes come from a polygon measured in this file (longest diameter by brute force over vertex
pairs, area by the shoelace formula); scaling it by s about any point multiplies the diameter by
s and the area by s^2, which gives the expected percentages in closed form.
"""

from __future__ import annotations

import itertools
import math

import pytest

from service.longitudinal.change import LesionCategory, Size, group_size, lesion_category, lesion_change, size_change
from service.longitudinal.deltas import ZERO_PRIOR, comparability, radiomic_deltas, value_delta
from service.longitudinal.settings import ChangeSettings
from service.longitudinal.timepoint import Acquisition, ExtractionContext, TimepointLesion, UidSource

POLYGON = [(0.0, 0.0), (18.0, -3.0), (27.0, 6.0), (22.0, 17.0), (9.0, 21.0), (-4.0, 11.0)]
SLICES, THICKNESS_MM = 7, 2.5


def scaled(polygon: list[tuple[float, float]], s: float) -> list[tuple[float, float]]:
    cx = sum(x for x, _ in polygon) / len(polygon)
    cy = sum(y for _, y in polygon) / len(polygon)
    return [(cx + s * (x - cx), cy + s * (y - cy)) for x, y in polygon]


def polygon_size(polygon: list[tuple[float, float]]) -> Size:
    """A lesion made of the same polygon on every slice: D = its longest chord, V = area x height."""
    diameter = max(math.dist(a, b) for a, b in itertools.combinations(polygon, 2))
    area = abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1]))) / 2
    return Size(diameter, area * SLICES * THICKNESS_MM / 1000.0)


@pytest.mark.parametrize("s", [0.5, 0.7, 0.93, 1.0, 1.2, 1.65])
def test_scaled_contour_changes_diameter_by_s_and_volume_by_s_squared(s: float) -> None:
    baseline = polygon_size(POLYGON)
    current = polygon_size(scaled(POLYGON, s))
    change = size_change(current, baseline)
    assert change.percent.value == pytest.approx(100 * (s - 1), abs=1e-9)
    assert change.volume_percent.value == pytest.approx(100 * (s * s - 1), abs=1e-9)
    assert change.delta_mm == pytest.approx((s - 1) * baseline.diameter_mm, abs=1e-9)
    assert change.delta_ml == pytest.approx((s * s - 1) * baseline.volume_ml, abs=1e-12)


def test_change_against_baseline_and_previous_time_point() -> None:
    baseline, previous, current = (polygon_size(scaled(POLYGON, s)) for s in (1.0, 0.7, 0.84))
    change = lesion_change(current, baseline, previous)
    assert change.versus_baseline.percent.value == pytest.approx(-16.0, abs=1e-9)
    assert change.versus_previous.percent.value == pytest.approx(20.0, abs=1e-9)
    assert change.category is LesionCategory.STABLE  # the category is against baseline (Sun 2022)


@pytest.mark.parametrize(("baseline_mm", "current_mm", "expected"), [
    (20.0, 14.0, LesionCategory.RESPONDING),  # exactly -30 %
    (12.0, 8.4, LesionCategory.RESPONDING),  # -30 % in decimal, not quite in binary
    (20.0, 14.01, LesionCategory.STABLE),
    (10.0, 12.0, LesionCategory.PROGRESSING),  # exactly +20 %
    (12.0, 14.4, LesionCategory.PROGRESSING),
    (10.0, 11.99, LesionCategory.STABLE),
    (10.0, 0.0, LesionCategory.RESPONDING),  # an explicit empty contour
    (0.0, 5.0, LesionCategory.NOT_EVALUABLE),
])
def test_lesion_wise_category_at_the_thresholds(baseline_mm: float, current_mm: float, expected: LesionCategory) -> None:
    category, reason = lesion_category(size_change(Size(current_mm, 1.0), Size(baseline_mm, 1.0)))
    assert category is expected
    assert (reason is not None) == (expected is LesionCategory.NOT_EVALUABLE)


def test_an_absolute_minimum_applies_to_progression_only_when_set() -> None:
    setting = ChangeSettings(lesion_level_abs_mm=5.0)
    assert lesion_category(size_change(Size(12.0, 1.0), Size(10.0, 1.0)), setting)[0] is LesionCategory.STABLE  # +20 %, +2 mm
    assert lesion_category(size_change(Size(30.0, 1.0), Size(25.0, 1.0)), setting)[0] is LesionCategory.PROGRESSING  # +20 %, +5 mm


def test_zero_baseline_volume_has_no_relative_volume_change() -> None:
    change = size_change(Size(3.0, 0.2), Size(0.0, 0.0))
    assert change.volume_percent.value is None and change.volume_percent.reason
    assert change.delta_ml == pytest.approx(0.2)


def test_small_and_borderline_lesions_are_flagged() -> None:
    small = lesion_change(Size(4.0, 0.03), Size(4.5, 0.04), Size(4.5, 0.04))
    assert small.flags == ("< 5 mm",)
    borderline = lesion_change(Size(71.0, 1.0), Size(100.0, 1.0), Size(100.0, 1.0))
    assert borderline.category is LesionCategory.STABLE
    assert borderline.flags == ("borderline: within 2 % of the -30 % threshold",)


def lesion(uid: str, ld: float, sa: float, volume_ml: float, location: str = "liver", score: float | None = None,
           features: dict[str, dict[str, float]] | None = None) -> TimepointLesion:
    return TimepointLesion(uid, uid, UidSource.DERIVED, uid, 1, location, (0.0, 0.0, 0.0), ld, sa, volume_ml,
                           score, features or {})


def test_nodes_are_measured_by_short_axis() -> None:
    before, after = lesion("n", 30.0, 10.0, 2.0, "adenopathy"), lesion("n", 30.0, 7.0, 1.5, "adenopathy")
    change = lesion_change(group_size([after]), group_size([before]), group_size([before]))
    assert change.versus_baseline.percent.value == pytest.approx(-30.0)
    assert change.category is LesionCategory.RESPONDING


def test_split_is_the_sum_of_its_fragments_and_merge_is_compared_with_its_sources() -> None:
    parent = group_size([lesion("p", 30.0, 20.0, 10.0)])
    fragments = group_size([lesion("a", 12.0, 8.0, 2.0), lesion("b", 9.0, 6.0, 1.5)])
    assert size_change(fragments, parent).percent.value == pytest.approx(100 * (21 - 30) / 30)
    sources = group_size([lesion("x", 10.0, 7.0, 1.0), lesion("y", 8.0, 5.0, 0.8)])
    merged = group_size([lesion("m", 21.6, 12.0, 2.5)])
    assert lesion_change(merged, sources, sources).category is LesionCategory.PROGRESSING  # 21.6 / 18 = +20 %


ACQUISITION = Acquisition(120.0, "B30f", 1.0)
CONTEXT = ExtractionContext({"binWidth": 25}, "cd8-sun2018", "1.0", ACQUISITION)


@pytest.mark.parametrize(("prior", "reason_start"), [
    (ExtractionContext({"binWidth": 10}, "cd8-sun2018", "1.0", ACQUISITION), "extraction settings differ"),
    (ExtractionContext({"binWidth": 25}, "cd8-sun2018", "0.9", ACQUISITION), "signature differs"),
    (ExtractionContext({"binWidth": 25}, "cd8-sun2018", "1.0", Acquisition(100.0, "B30f", 1.0)), "kVp differs"),
    (ExtractionContext({"binWidth": 25}, "cd8-sun2018", "1.0", Acquisition(120.0, "B70f", 1.0)), "convolution kernel differs"),
    (ExtractionContext({"binWidth": 25}, "cd8-sun2018", "1.0", Acquisition(120.0, "B30f", 1.25)), "slice thickness (mm) differs"),
    (ExtractionContext({"binWidth": 25}, "cd8-sun2018", "1.0", Acquisition(None, "B30f", 1.0)), "kVp not recorded"),
    (ExtractionContext({"binWidth": 25}, "cd8-sun2018", "1.0", Acquisition(120.0, None, 1.0)), "convolution kernel not recorded"),
])
def test_deltas_are_not_comparable_when_extraction_or_acquisition_differ(prior: ExtractionContext, reason_start: str) -> None:
    result = comparability(CONTEXT, prior)
    assert not result.comparable
    assert len(result.reasons) == 1 and result.reasons[0].startswith(reason_start)


def test_deltas_are_comparable_within_tolerance() -> None:
    prior = ExtractionContext({"binWidth": 25}, "cd8-sun2018", "1.0", Acquisition(120.0, " b30F ", 1.05))
    assert comparability(CONTEXT, prior).comparable


def test_score_and_feature_deltas() -> None:
    comparable = comparability(CONTEXT, CONTEXT)
    now = lesion("c", 10.0, 5.0, 1.0, score=0.5, features={"core": {"glcm_Contrast": -1.0, "firstorder_Mean": 40.0},
                                                               "ring": {"glrlm_RunEntropy": 0.0}})
    then = lesion("p", 10.0, 5.0, 1.0, score=0.2, features={"core": {"glcm_Contrast": -2.0, "firstorder_Mean": 50.0},
                                                                "ring": {"glrlm_RunEntropy": 0.0, "gone": 3.0}})
    deltas = {d.name: d for d in radiomic_deltas(now, then, comparable)}
    assert list(deltas) == ["score", "core/firstorder_Mean", "core/glcm_Contrast", "ring/glrlm_RunEntropy", "ring/gone"]
    assert (deltas["score"].delta.value, deltas["score"].relative_percent.value) == (pytest.approx(0.3), pytest.approx(150.0))
    assert deltas["core/firstorder_Mean"].relative_percent.value == pytest.approx(-20.0)
    assert deltas["core/glcm_Contrast"].relative_percent.value == pytest.approx(50.0)  # -2 -> -1 rose by half
    assert deltas["ring/glrlm_RunEntropy"].relative_percent.reason == ZERO_PRIOR
    assert deltas["ring/gone"].delta.value is None
    assert all(d.comparability.comparable for d in deltas.values())


def test_a_missing_score_has_no_delta() -> None:
    delta = value_delta("score", None, 0.4, comparability(CONTEXT, CONTEXT))
    assert delta.delta.value is None and delta.delta.reason
