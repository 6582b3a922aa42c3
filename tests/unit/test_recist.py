"""RECIST 1.1 (Eisenhauer 2009) against the guideline's own tables and worked cases."""

from __future__ import annotations

import datetime

import pytest

from service.comparison import ResponseThresholds
from service.longitudinal.recist import (Assessment, LesionMeasurement, MeasurementStatus as S, NonTargetResponse as N,
                                         OverallResponse as O, TargetResponse as T, assess, assess_series,
                                         meets_pd, meets_pr, overall_response)
from service.longitudinal.response_settings import RecistSettings
from service.longitudinal.targets import BaselineCategory, SelectionSource, select_targets
from service.longitudinal.timepoint import TimepointLesion, UidSource

D0 = datetime.date(2024, 1, 1)

# Eisenhauer 2009 table 1 (targets at baseline), row by row; "non-PD" and "not all evaluated"
# expanded into each value they cover.
TABLE_1 = [
    (T.CR, N.CR, False, O.CR),
    (T.CR, N.NON_CR_NON_PD, False, O.PR),
    (T.CR, N.NE, False, O.PR),
    (T.PR, N.NON_CR_NON_PD, False, O.PR), (T.PR, N.NE, False, O.PR), (T.PR, N.CR, False, O.PR),
    (T.SD, N.NON_CR_NON_PD, False, O.SD), (T.SD, N.NE, False, O.SD), (T.SD, N.CR, False, O.SD),
    (T.NE, N.NON_CR_NON_PD, False, O.NE), (T.NE, N.CR, False, O.NE),
    *[(T.PD, n, new, O.PD) for n in N for new in (False, True)],
    *[(t, N.PD, new, O.PD) for t in T for new in (False, True)],
    *[(t, n, True, O.PD) for t in T for n in N],
]
# Table 2 (non-target disease only).
TABLE_2 = [
    (N.CR, False, O.CR), (N.NON_CR_NON_PD, False, O.NON_CR_NON_PD), (N.NE, False, O.NE),
    (N.PD, False, O.PD), (N.PD, True, O.PD), *[(n, True, O.PD) for n in N],
]


@pytest.mark.parametrize(("target", "non_target", "new", "expected"), TABLE_1)
def test_table_1(target: T, non_target: N, new: bool, expected: O) -> None:
    assert overall_response(target, non_target, new) is expected


@pytest.mark.parametrize(("non_target", "new", "expected"), TABLE_2)
def test_table_2(non_target: N, new: bool, expected: O) -> None:
    assert overall_response(None, non_target, new) is expected


def lesion(uid: str, d: float, location: str = "liver", name: str = "", volume: float = 1.0) -> TimepointLesion:
    node = location == "adenopathy"
    return TimepointLesion(uid, uid, UidSource.DERIVED, name or uid, 1, location, (0.0, 0.0, 0.0),
                           d + 5.0 if node else d, d if node else d - 2.0, volume)


def point(i: int, *ms: LesionMeasurement, days: int = 42) -> Assessment:
    return Assessment(f"study{i}", D0 + datetime.timedelta(days=days * i), tuple(ms))


def m(uid: str, d: float, node: bool = False, volume: float = 1.0) -> LesionMeasurement:
    return LesionMeasurement(uid, S.MEASURED, d, volume, node)


def single_target(*sums: float) -> list:
    """One liver target of the given diameters over time (baseline first)."""
    ts = select_targets([lesion("1.1", sums[0])], None)
    return [assess_series(ts, [point(i, m("1.1", d)) for i, d in enumerate(sums)])]


@pytest.mark.parametrize(("sums", "expected"), [
    ((20, 24), [T.SD]),  # +20 %, +4 mm: the 5 mm rule is not met
    ((20, 25), [T.PD]),  # +25 %, +5 mm
    ((100, 70), [T.PR]),  # exactly -30 %
    ((100, 70, 84), [T.PR, T.PD]),  # +20 % and +14 mm against the nadir 70
    ((100, 70, 70, 80, 80, 80), [T.PR] * 5),  # EORTC FAQ "Managing PR"
    ((100, 71), [T.SD]),
])
def test_thresholds_and_nadir(sums: tuple[float, ...], expected: list[T]) -> None:
    (results,) = single_target(*sums)
    assert [r.target_response for r in results] == expected


def test_percentages_against_baseline_and_nadir() -> None:
    (results,) = single_target(100, 70, 84)
    last = results[-1]
    assert (last.baseline_sod_mm.value, last.nadir_sod_mm.value, last.nadir_study_uid) == (100, 70, "study1")
    assert last.percent_vs_baseline.value == pytest.approx(-16.0)
    assert last.percent_vs_nadir.value == pytest.approx(20.0)
    assert last.mm_vs_nadir.value == pytest.approx(14.0)
    assert any("borderline" in f and "nadir" in f for f in last.flags)


def test_nodes_in_cr_keep_their_short_axes() -> None:
    ts = select_targets([lesion("1.1", 30.0), lesion("1.2", 18.0, "adenopathy")], None)
    result = assess(ts, [point(0, m("1.1", 30.0), m("1.2", 18.0, True)),
                         point(1, LesionMeasurement("1.1", S.ABSENT), m("1.2", 8.0, True))])
    assert result.target_response is T.CR
    assert result.sod_mm.value == 8.0 and result.overall is O.CR


def test_not_evaluable_target_gives_ne_unless_the_rest_is_pd() -> None:
    ts = select_targets([lesion("1.1", 30.0), lesion("1.2", 20.0, "lung")], None)
    base = point(0, m("1.1", 30.0), m("1.2", 20.0))
    gone = LesionMeasurement("1.2", S.NOT_EVALUABLE, reason="outside coverage")
    not_evaluable = assess(ts, [base, point(1, m("1.1", 31.0), gone)])
    assert not_evaluable.target_response is T.NE
    # 31 mm of the one evaluable target is no sum of diameters: no -38 % against the 50 mm
    # baseline, no change against the nadir either (every target missing read -100 %).
    for metric in (not_evaluable.sod_mm, not_evaluable.percent_vs_baseline, not_evaluable.percent_vs_nadir,
                   not_evaluable.mm_vs_nadir):
        assert metric.value is None and metric.reason == "1 target(s) not evaluable"
    assert assess(ts, [base, point(1, m("1.1", 61.0), gone)]).target_response is T.PD


def test_new_lesion_policy_and_non_target_proxy() -> None:
    from service.longitudinal.response_settings import NewLesionPolicy, RecistSettings
    ts = select_targets([lesion("1.1", 30.0), lesion("1.2", 8.0, "lung", volume=2.0)], None)
    assert ts.category("1.2") is BaselineCategory.NON_TARGET
    base = point(0, m("1.1", 30.0), m("1.2", 8.0, volume=2.0))
    fu = point(1, m("1.1", 30.0), m("1.2", 8.0, volume=2.0), m("9.9", 12.0))
    assert assess(ts, [base, fu]).overall is O.PD
    flagged = assess(ts, [base, fu], RecistSettings(new_lesion_policy=NewLesionPolicy.FLAG_ONLY))
    assert flagged.overall is O.SD and flagged.new_lesions[0].tracking_uid == "9.9"
    grown = assess(ts, [base, point(1, m("1.1", 30.0), m("1.2", 9.0, volume=2.0 * 1.73))])
    assert grown.non_target_response is N.PD and grown.non_target_source == "automated_proxy"


def test_target_selection_round_robin_and_categories() -> None:
    lesions = [lesion("1.1", 50), lesion("1.2", 45), lesion("1.3", 40),  # liver
               lesion("2.1", 30, "lung"), lesion("2.2", 12, "lung"),
               lesion("3.1", 16, "adenopathy"), lesion("3.2", 20, "adenopathy"), lesion("3.3", 12, "adenopathy"),
               lesion("4.1", 9), lesion("3.4", 8, "adenopathy")]
    ts = select_targets(lesions, 1.0)
    assert ts.source is SelectionSource.AUTOMATIC
    # organs by largest D: liver 50, lung 30, nodes 20; round 1: 1.1, 2.1, 3.2; round 2: 1.2, 2.2
    assert sorted(x.tracking_uid for x in ts.targets) == ["1.1", "1.2", "2.1", "2.2", "3.2"]
    assert ts.category("1.3") is BaselineCategory.NON_TARGET  # third in its organ
    assert ts.category("3.3") is BaselineCategory.NON_TARGET  # pathological, not measurable
    assert ts.category("3.4") is BaselineCategory.NON_LESION  # normal node
    assert ts.category("4.1") is BaselineCategory.NON_TARGET  # < 10 mm
    assert ts.category("new") is BaselineCategory.NON_LESION
    thick = select_targets([lesion("1.1", 12)], 7.0)  # 2 x 7 mm = 14 mm threshold
    assert not thick.targets and thick.notes


def test_site_designation_wins() -> None:
    ts = select_targets([lesion("1.1", 50, name="NT1"), lesion("1.2", 12, name="T1 liver")], None)
    assert ts.source is SelectionSource.SITE_DESIGNATION
    assert [x.tracking_uid for x in ts.targets] == ["1.2"]
    assert not any("larger than a designated target" in note for note in ts.notes)  # NT1 is designated too


def test_small_lesion_policy_recist_5mm_if_below() -> None:
    """Two liver targets of 20 mm (SoD 40). Then one gone (0 mm) and one at 2 mm; then 7 mm.
    Measured (the default): SoD 2 is the nadir, 7 is +5 mm and +250 %: PD. Counted as 5 mm below
    5 mm (EORTC Q&A: "if you cannot measure, record it as 5 mm"): SoD 5 is the nadir, 7 is
    +2 mm (< 5 mm), not PD; -82.5 % against 40: PR."""
    from service.longitudinal.response_settings import RecistSettings, SmallLesionPolicy
    ts = select_targets([lesion("1.1", 20.0), lesion("1.2", 20.0)], None)
    series = [point(0, m("1.1", 20.0), m("1.2", 20.0)),
              point(1, LesionMeasurement("1.1", S.ABSENT), m("1.2", 2.0)),
              point(2, LesionMeasurement("1.1", S.ABSENT), m("1.2", 7.0))]
    measured = assess_series(ts, series)
    assert [r.sod_mm.value for r in measured] == [2.0, 7.0]
    assert measured[-1].target_response is T.PD
    assert any("measured value kept" in flag for flag in measured[0].flags)
    policy = RecistSettings(small_lesion_policy=SmallLesionPolicy.RECIST_5MM_IF_BELOW)
    counted = assess_series(ts, series, policy)
    assert [r.sod_mm.value for r in counted] == [5.0, 7.0]
    assert counted[-1].target_response is T.PR and counted[-1].percent_vs_baseline.value == pytest.approx(-82.5)
    assert any("counted as 5 mm" in flag for flag in counted[0].flags)
    # a node keeps its short axis as measured (under 10 mm it is normal, not "too small")
    nodes = select_targets([lesion("3.1", 20.0, "adenopathy")], None)
    node_series = [point(0, m("3.1", 20.0, node=True)), point(1, m("3.1", 3.0, node=True))]
    assert assess_series(nodes, node_series, policy)[0].sod_mm.value == 3.0


def test_a_small_target_is_flagged_by_its_tracking_identifier_never_its_uid() -> None:
    """Flags go into the SR, the Bundle and the page: a target is named by its Tracking
    Identifier, or by its position among the targets when it has none."""
    named, unnamed = "1.2.826.0.1.3680043.10.543.31", "1.2.826.0.1.3680043.10.543.32"
    ts = select_targets([lesion(named, 20), lesion(unnamed, 30, location="lung")], None)
    follow_up = point(1, LesionMeasurement(named, S.MEASURED, 4.0, 1.0, tracking_id="lesion 3"), m(unnamed, 3.0))
    (result,) = assess_series(ts, [point(0, m(named, 20), m(unnamed, 30)), follow_up])
    small = [flag for flag in result.flags if "< 5 mm" in flag]
    assert small == ["target lesion 3: < 5 mm (measured value kept)", "target #2: < 5 mm (measured value kept)"]


@pytest.mark.parametrize("reference_mm", [0.0, 10.0, 24.9, 25.0, 50.0, 100.0, 313.7])
@pytest.mark.parametrize(("pr_pct", "pd_pct", "pd_abs_mm"), [(-30.0, 20.0, 5.0), (-40.0, 25.0, 3.0)])
def test_the_lines_the_page_draws_are_where_the_rules_change_category(reference_mm: float, pr_pct: float,
                                                                      pd_pct: float, pd_abs_mm: float) -> None:
    """ResponseThresholds' partial-response and progression sums (the tumour-board page's
    lines) sit exactly where meets_pr and meets_pd turn: at the line the category holds, 0.01 mm
    beyond it it does not. With a small nadir the absolute increase decides (10 mm: PD from 15)."""
    thresholds = ResponseThresholds(pr_pct, pd_pct, pd_abs_mm, 73.0, 5.0)
    settings = RecistSettings(pr_pct=pr_pct, pd_pct=pd_pct, pd_abs_mm=pd_abs_mm)
    progression = thresholds.progression_mm(reference_mm)
    assert meets_pd(progression, reference_mm, settings) and not meets_pd(progression - 0.01, reference_mm, settings)
    if reference_mm > 0:
        partial = thresholds.partial_response_mm(reference_mm)
        assert meets_pr(partial, reference_mm, settings) and not meets_pr(partial + 0.01, reference_mm, settings)


# Nodes are judged by their short axis (EORTC RECIST FAQ "New lymph node lesions"): under 10 mm
# a node is non-pathological and not recorded; one that reaches 10 mm meets the criteria for
# malignancy. Expected categories follow from that and from table 1.


def test_a_new_node_under_10_mm_short_axis_is_no_new_lesion() -> None:
    ts = select_targets([lesion("1.1", 30.0)], None)
    series = [point(0, m("1.1", 30.0)), point(1, m("1.1", 30.0), m("9.1", 7.0, node=True))]
    (result,) = assess_series(ts, series)
    assert result.new_lesions == () and result.overall is O.SD


def test_a_node_normal_at_baseline_that_reaches_10_mm_is_a_new_lesion() -> None:
    ts = select_targets([lesion("1.1", 30.0), lesion("3.1", 8.0, "adenopathy")], None)
    assert ts.category("3.1") is BaselineCategory.NON_LESION
    series = [point(0, m("1.1", 30.0), m("3.1", 8.0, node=True)),
              point(1, m("1.1", 30.0), m("3.1", 9.5, node=True)),
              point(2, m("1.1", 30.0), m("3.1", 25.0, node=True))]
    still_normal, pathological = assess_series(ts, series)
    assert still_normal.new_lesions == () and still_normal.overall is O.SD
    assert [x.tracking_uid for x in pathological.new_lesions] == ["3.1"] and pathological.overall is O.PD


# EORTC RECIST FAQ "Does a new lesion always result in PD?": lesions that disappear and reappear
# do not automatically result in PD unless the sum meets PD, or CR (overall) was assigned at the
# previous assessment: then "the reappearance of any malignant lesion results in PD". "Abnormal
# lymph node": a node has reappeared only at 10 mm short axis or more (a target node).


def single_target_absent(*sums: float) -> list:
    """single_target, a 0 read as explicitly absent (an empty contour)."""
    ts = select_targets([lesion("1.1", sums[0])], None)
    return [assess_series(ts, [point(i, m("1.1", d) if d else LesionMeasurement("1.1", S.ABSENT))
                               for i, d in enumerate(sums)])]


def test_a_target_back_after_a_complete_response_is_pd_though_the_sum_is_not() -> None:
    (results,) = single_target_absent(30, 0, 4)  # 0: absent; then 4 mm, +4 mm over the 0 mm nadir
    cr, back = results
    assert cr.overall is O.CR
    assert back.target_response is T.PD and back.overall is O.PD
    assert back.target_reason is not None and "reappeared after a complete response" in back.target_reason


def test_a_target_back_after_a_partial_response_only_adds_to_the_sum() -> None:
    ts = select_targets([lesion("1.1", 30.0), lesion("1.2", 20.0, "lung")], None)
    series = [point(0, m("1.1", 30.0), m("1.2", 20.0)),
              point(1, m("1.1", 15.0), LesionMeasurement("1.2", S.ABSENT)),  # 15 mm: -70 %, PR
              point(2, m("1.1", 15.0), m("1.2", 4.0))]  # 19 mm: +27 % but +4 mm over the nadir: not PD
    partial, back = assess_series(ts, series)
    assert partial.overall is O.PR
    assert back.target_response is T.PR and back.overall is O.PR and back.sod_mm.value == 19.0


def test_a_target_node_after_a_complete_response_is_back_only_at_10_mm() -> None:
    ts = select_targets([lesion("1.1", 30.0), lesion("3.1", 18.0, "adenopathy")], None)
    base = point(0, m("1.1", 30.0), m("3.1", 18.0, node=True))
    cr = point(1, LesionMeasurement("1.1", S.ABSENT), m("3.1", 8.0, node=True))
    benign = assess_series(ts, [base, cr, point(2, LesionMeasurement("1.1", S.ABSENT), m("3.1", 9.5, node=True))])
    assert [r.overall for r in benign] == [O.CR, O.CR]
    back = assess_series(ts, [base, cr, point(2, LesionMeasurement("1.1", S.ABSENT), m("3.1", 11.0, node=True))])
    assert [r.overall for r in back] == [O.CR, O.PD] and back[-1].target_response is T.PD


def test_a_non_target_back_after_a_complete_response_is_pd() -> None:
    ts = select_targets([lesion("1.1", 30.0), lesion("1.2", 8.0, "lung", volume=2.0)], None)
    assert ts.category("1.2") is BaselineCategory.NON_TARGET
    gone = (LesionMeasurement("1.1", S.ABSENT), LesionMeasurement("1.2", S.ABSENT))
    series = [point(0, m("1.1", 30.0), m("1.2", 8.0, volume=2.0)), point(1, *gone),
              point(2, gone[0], m("1.2", 3.0, volume=0.1))]
    cr, back = assess_series(ts, series)
    assert cr.overall is O.CR
    assert back.target_response is T.CR and back.non_target_response is N.PD and back.overall is O.PD
    assert any("reappeared after a complete response" in flag for flag in back.flags)


def test_a_lesion_a_baseline_report_states_as_a_non_lesion_is_new_when_measured() -> None:
    """A follow-up report that becomes the baseline (its earlier studies trimmed by the prior
    limits) states the lesions that were new there as Non-Lesion at Baseline (DCM 112076): not
    targets, not non-targets, so still new lesions when measured (a liver lesion of 12 mm); a
    node it states so is new only from 10 mm short axis (7 mm: normal)."""
    from service.longitudinal.targets import BaselineLesion, TargetSet
    ts = TargetSet(SelectionSource.AUTOMATIC, (
        BaselineLesion("1.1", BaselineCategory.TARGET, "liver", 30.0, False, True, "read"),
        BaselineLesion("2.1", BaselineCategory.NON_LESION, "liver", 12.0, False, True, "read"),
        BaselineLesion("3.1", BaselineCategory.NON_LESION, "nodes", 7.0, True, False, "read"),
    ), "location class")
    series = [point(0, m("1.1", 30.0), m("2.1", 12.0), m("3.1", 7.0, node=True)),
              point(1, m("1.1", 30.0), m("2.1", 12.0), m("3.1", 7.0, node=True))]
    (result,) = assess_series(ts, series)
    assert [x.tracking_uid for x in result.new_lesions] == ["2.1"] and result.overall is O.PD


def test_a_designation_that_leaves_larger_measurable_lesions_out_says_so() -> None:
    """A vertebral level looks like a designation (target_name_regex ^T\\d+): "T11 vertebral body"
    turns the automatic choice off and is the only target, though a 45 mm liver and a 30 mm lung
    lesion are measurable. RECIST 1.1 chooses targets by size: the notes say the targets were
    designated by name and name the larger lesions left out."""
    ts = select_targets([lesion("1.1", 45.0, name="liver met segment 7"),
                         lesion("1.2", 30.0, "lung", name="RLL nodule"),
                         lesion("1.3", 18.0, "other", name="T11 vertebral body")], None)
    assert [x.tracking_uid for x in ts.targets] == ["1.3"]
    assert ts.notes[0].startswith("targets designated by ROI name (target_name_regex ^T\\d+")
    assert "not designated but larger than a designated target: 1.1, 1.2" in ts.notes[-1]


def test_a_lesion_back_after_a_cr_is_pd_past_an_ne_time_point_and_while_it_stays() -> None:
    """After an overall CR, a time point not evaluable (a node not contoured) leaves the CR the
    last assessment made: a node back at 12 mm is PD after it too (it was PR, +4 mm over the
    nadir). And a lesion back after a CR stays PD while it is there, unchanged (it was PR, +4 mm
    over the 0 mm nadir), so that iRECIST keeps the iUPD pending instead of resetting it."""
    from service.longitudinal.irecist import IRecistCategory, run
    ts = select_targets([lesion("3.1", 18.0, "adenopathy"), lesion("3.2", 16.0, "adenopathy")], None)
    series = [point(0, m("3.1", 18.0, node=True), m("3.2", 16.0, node=True)),
              point(1, m("3.1", 8.0, node=True), m("3.2", 6.0, node=True)),
              point(2, m("3.1", 8.0, node=True), LesionMeasurement("3.2", S.NOT_EVALUABLE)),
              point(3, m("3.1", 12.0, node=True), m("3.2", 6.0, node=True))]
    assert [r.overall for r in assess_series(ts, series)] == [O.CR, O.NE, O.PD]
    (stays,) = single_target_absent(30, 0, 4, 4)
    assert [r.overall for r in stays] == [O.CR, O.PD, O.PD]
    assert [r.category for r in run(stays)] == [IRecistCategory.ICR, IRecistCategory.IUPD, IRecistCategory.IUPD]
