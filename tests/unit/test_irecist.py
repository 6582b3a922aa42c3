"""iRECIST (Seymour 2017, EORTC iRECIST FAQ) as scenarios: sums of diameters over time, run
through RECIST 1.1 and then the state machine, one report at a time."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from service.longitudinal.irecist import FLAG_ONLY, TOO_EARLY, IRecistCategory as I, IRecistState, run, step
from service.longitudinal.recist import Assessment, LesionMeasurement, MeasurementStatus, assess_series
from service.longitudinal.response_settings import NewLesionPolicy, RecistSettings
from service.longitudinal.targets import select_targets
from service.longitudinal.timepoint import TimepointLesion, UidSource

D0 = datetime.date(2024, 1, 1)


def target(uid: str, d: float) -> TimepointLesion:
    return TimepointLesion(uid, uid, UidSource.DERIVED, uid, 1, "liver", (0.0, 0.0, 0.0), d, d - 2, 1.0)


def _target_at(d: float | None) -> LesionMeasurement:
    """The target as measured: 0 mm is gone (RECIST CR), None is not evaluable (NE)."""
    if d is None:
        return LesionMeasurement("1.1", MeasurementStatus.NOT_EVALUABLE)
    if d == 0:
        return LesionMeasurement("1.1", MeasurementStatus.ABSENT, 0.0, 0.0)
    return LesionMeasurement("1.1", MeasurementStatus.MEASURED, d, 1.0)


def scenario(points: list[tuple[int, float | None, dict[str, float]]],
             settings: RecistSettings = RecistSettings()) -> list[I]:
    """(day, target sum, {new lesion uid: D}) per time point, baseline first; a target sum of 0
    is the target gone, None the target not evaluable."""
    baseline = points[0][1]
    assert baseline is not None
    ts = select_targets([target("1.1", baseline)], None)
    series = [Assessment(f"s{i}", D0 + datetime.timedelta(days=day),
                         (_target_at(d),
                          *(LesionMeasurement(uid, MeasurementStatus.MEASURED, nd, 1.0, organ="lung")
                            for uid, nd in new.items())))
              for i, (day, d, new) in enumerate(points)]
    results = run(assess_series(ts, series, settings), recist_settings=settings)
    # every step must continue identically from the serialised state, as another replica would
    state = IRecistState()
    recist = assess_series(ts, series, settings)
    for r, expected in zip(recist, results):
        again = step(IRecistState.from_dict(state.to_dict()), r, recist_settings=settings)
        assert again.category is expected.category
        state = again.state
    return [r.category for r in results]


def test_cumulative_4_then_2_mm_confirms() -> None:  # EORTC FAQ
    assert scenario([(0, 50, {}), (42, 62, {}), (70, 66, {}), (98, 68, {})]) == [I.IUPD, I.IUPD, I.ICPD]


def test_a_scan_before_day_28_cannot_confirm() -> None:
    ts = select_targets([target("1.1", 50)], None)
    series = [Assessment(f"s{i}", D0 + datetime.timedelta(days=day),
                         (LesionMeasurement("1.1", MeasurementStatus.MEASURED, d, 1.0),))
              for i, (day, d) in enumerate([(0, 50), (42, 62), (60, 80), (84, 80)])]
    results = run(assess_series(ts, series))
    assert [r.category for r in results] == [I.IUPD, I.IUPD, I.ICPD]
    assert TOO_EARLY in results[1].reasons and results[1].days_since_iupd == 18
    assert results[0].confirmation_window == (D0 + datetime.timedelta(days=70), D0 + datetime.timedelta(days=98))


def test_tolerance_of_two_days() -> None:  # day 26 counts, day 25 does not
    assert scenario([(0, 50, {}), (42, 62, {}), (68, 70, {})])[-1] is I.ICPD
    assert scenario([(0, 50, {}), (42, 62, {}), (67, 70, {})])[-1] is I.IUPD


def test_reset_then_a_new_iupd_must_be_confirmed_again() -> None:
    assert scenario([(0, 50, {}), (42, 62, {}), (84, 50, {}), (126, 62, {}), (168, 68, {})]) == \
        [I.IUPD, I.ISD, I.IUPD, I.ICPD]


def test_new_lesion_then_another_new_lesion_confirms() -> None:
    assert scenario([(0, 50, {}), (42, 50, {"n1": 12}), (84, 50, {"n1": 12, "n2": 11})]) == [I.IUPD, I.ICPD]


def test_new_lesion_target_sum_5_mm_confirms() -> None:
    assert scenario([(0, 50, {}), (42, 50, {"n1": 12}), (84, 50, {"n1": 17})]) == [I.IUPD, I.ICPD]


def test_scenario_b_further_shrinkage_after_new_lesion_allows_ipr() -> None:
    assert scenario([(0, 100, {}), (42, 80, {"n1": 12}), (84, 60, {"n1": 12})]) == [I.IUPD, I.IPR]


def test_scenario_f_pr_then_new_lesion_then_no_change_stays_iupd() -> None:
    assert scenario([(0, 100, {}), (42, 60, {}), (84, 60, {"n1": 12}), (126, 60, {"n1": 12})]) == \
        [I.IPR, I.IUPD, I.IUPD]


def test_scenario_d_target_iupd_then_shrinkage_gives_ipr() -> None:
    assert scenario([(0, 100, {}), (42, 60, {}), (84, 75, {}), (126, 60, {})]) == [I.IPR, I.IUPD, I.IPR]


def test_after_a_reset_a_known_new_lesion_does_not_trigger_again() -> None:
    cats = scenario([(0, 100, {}), (42, 80, {"n1": 12}), (84, 60, {"n1": 12}), (126, 60, {"n1": 12})])
    assert cats == [I.IUPD, I.IPR, I.IPR]


def test_state_round_trip() -> None:
    state = IRecistState(pending_iupd=True, iupd_date=D0, iupd_study_uid="s1", target_sod_at_iupd=62.0,
                         nlt_uids=("n1",), known_new_uids=("n1",), last_category=I.IUPD)
    assert IRecistState.from_dict(state.to_dict()) == state


# Seymour 2017 table 3 ("Scenarios of assignments of best overall response using iRECIST") lists
# time-point sequences for patients with target disease. Each case below is a sum-of-diameters
# series built to produce one of its sequences; the expected categories are the table's.
SEYMOUR_TABLE_3: dict[str, tuple[list[tuple[int, float | None, dict[str, float]]], list[I]]] = {
    # example 1: iCR, iCR, then iUPD (a new lesion) and iCPD (another new lesion)
    "example 1": ([(0, 50, {}), (42, 0, {}), (84, 0, {}), (126, 0, {"2.1": 12}), (168, 0, {"2.1": 12, "3.1": 12})],
                  [I.ICR, I.ICR, I.IUPD, I.ICPD]),
    # example 2: iUPD, then iPR, then iCR (the target gone), iCR
    "example 2": ([(0, 50, {}), (42, 62, {}), (84, 34, {}), (126, 0, {}), (168, 0, {})],
                  [I.IUPD, I.IPR, I.ICR, I.ICR]),
    # example 3: iUPD, then iPR (the bar is reset), then iPR
    "example 3": ([(0, 50, {}), (42, 62, {}), (84, 34, {}), (126, 34, {})], [I.IUPD, I.IPR, I.IPR]),
    # example 4: iUPD, then iSD, then iPR
    "example 4": ([(0, 50, {}), (42, 62, {}), (84, 50, {}), (126, 34, {})], [I.IUPD, I.ISD, I.IPR]),
    # example 5: iUPD, then iSD, iSD, and a new iUPD after the reset
    "example 5": ([(0, 50, {}), (42, 62, {}), (84, 55, {}), (126, 56, {}), (168, 70, {})],
                  [I.IUPD, I.ISD, I.ISD, I.IUPD]),
    # example 6: iUPD confirmed at the next assessment (target sum +6 mm since iUPD)
    "example 6": ([(0, 50, {}), (42, 62, {}), (77, 68, {})], [I.IUPD, I.ICPD]),
    # example 7: iUPD, iUPD without confirmation (+1 mm), then iCPD (+6 mm, cumulative)
    "example 7": ([(0, 50, {}), (42, 62, {}), (84, 63, {}), (126, 68, {})], [I.IUPD, I.IUPD, I.ICPD]),
    # example 8: iUPD, then not evaluable at every later time point: it stays unconfirmed (NE)
    "example 8": ([(0, 50, {}), (42, 62, {}), (84, None, {}), (126, None, {}), (168, None, {}), (210, None, {})],
                  [I.IUPD, I.NE, I.NE, I.NE, I.NE]),
}


@pytest.mark.parametrize("example", SEYMOUR_TABLE_3)
def test_seymour_2017_table_3(example: str) -> None:
    points, expected = SEYMOUR_TABLE_3[example]
    assert scenario(points) == expected


# A new lesion at day 42 while the target shrinks a little (50 -> 48 -> 47 mm: -4 %, -6 %, SD),
# another new one at day 84. Counted (the default), iRECIST makes the first an iUPD and the second
# (more new lesions, 42 days after it) confirms it: iCPD (Seymour 2017 table 2). Flagged only, the
# new lesions are candidates, not progression, for iRECIST as for RECIST 1.1: SD maps to iSD.
NEW_LESIONS = [(0, 50.0, {}), (42, 48.0, {"2.1": 20.0}), (84, 47.0, {"2.1": 25.0, "2.2": 15.0})]


def test_new_lesions_counted_give_iupd_then_icpd() -> None:
    assert scenario(NEW_LESIONS) == [I.IUPD, I.ICPD]


def test_new_lesions_flagged_only_are_not_an_iupd_basis_either() -> None:
    settings = RecistSettings(new_lesion_policy=NewLesionPolicy.FLAG_ONLY)
    assert scenario(NEW_LESIONS, settings) == [I.ISD, I.ISD]
    ts = select_targets([target("1.1", 50)], None)
    series = [Assessment(f"s{i}", D0 + datetime.timedelta(days=day),
                         (_target_at(d), *(LesionMeasurement(uid, MeasurementStatus.MEASURED, nd, 1.0, organ="lung")
                                           for uid, nd in new.items())))
              for i, (day, d, new) in enumerate(NEW_LESIONS)]
    recist = assess_series(ts, series, settings)
    irecist = run(recist, recist_settings=settings)
    assert [str(r.overall) for r in recist] == ["SD", "SD"]
    assert all(FLAG_ONLY in r.flags for r in irecist)
    assert all(r.state.iupd_basis == () and not r.state.pending_iupd for r in irecist)


# Seymour 2017 table 2 and the EORTC iRECIST FAQ: a category confirms an iUPD by growing further
# only if it was a basis of it; a category that was not confirms it by meeting RECIST 1.1
# progression itself. The expected categories are worked out from those rules, not from our output.


def test_targets_growing_5_mm_after_an_iupd_on_a_new_lesion_confirm_nothing_while_they_respond() -> None:
    # 100 -> 50 mm (-50 %, PR) with a new lesion: iUPD on the new lesion. Then 56 mm: +6 mm since
    # the iUPD, but -44 % against baseline and +12 % over the nadir of 50: the targets respond,
    # the new lesion is unchanged, so nothing progressed further (table 2, targets iPR): iUPD.
    assert scenario([(0, 100, {}), (42, 50, {"n1": 12}), (84, 56, {"n1": 12})]) == [I.IUPD, I.IUPD]


def test_targets_newly_meeting_progression_confirm_an_iupd_on_a_new_lesion() -> None:
    # 100 -> 60 (PR) -> 70 mm (+16.7 % over the nadir: not PD) with a new lesion: iUPD on the new
    # lesion. Then 74 mm: only +4 mm since the iUPD, but +23.3 % and +14 mm over the nadir of 60,
    # which is RECIST 1.1 progression of the targets, a category that had not progressed: iCPD.
    assert scenario([(0, 100, {}), (42, 60, {}), (84, 70, {"n1": 12}), (126, 74, {"n1": 12})]) == \
        [I.IPR, I.IUPD, I.ICPD]


def test_non_targets_newly_meeting_progression_confirm_an_iupd_on_a_new_lesion() -> None:
    # A target (100 -> 50 mm, PR) and an 8 mm non-target (not measurable). A new lesion gives iUPD
    # on it; then the non-target's volume doubles, +100 %, over the 73 % that is RECIST 1.1
    # unequivocal progression in volume: a category that had not progressed now has: iCPD.
    ts = select_targets([target("1.1", 100), target("2.1", 8)], None)
    series = [Assessment("s0", D0, (LesionMeasurement("1.1", MeasurementStatus.MEASURED, 100, 1.0),
                                    LesionMeasurement("2.1", MeasurementStatus.MEASURED, 8, 1.0))),
              Assessment("s1", D0 + datetime.timedelta(days=42),
                         (LesionMeasurement("1.1", MeasurementStatus.MEASURED, 50, 1.0),
                          LesionMeasurement("2.1", MeasurementStatus.MEASURED, 8, 1.0),
                          LesionMeasurement("n1", MeasurementStatus.MEASURED, 12, 1.0, organ="lung"))),
              Assessment("s2", D0 + datetime.timedelta(days=84),
                         (LesionMeasurement("1.1", MeasurementStatus.MEASURED, 50, 1.0),
                          LesionMeasurement("2.1", MeasurementStatus.MEASURED, 8, 2.0),
                          LesionMeasurement("n1", MeasurementStatus.MEASURED, 12, 1.0, organ="lung")))]
    assert ts.category("2.1").value == "non_target"
    results = run(assess_series(ts, series))
    assert [r.category for r in results] == [I.IUPD, I.ICPD]
    assert any("non-target lesions now meet RECIST 1.1 progression" in reason for reason in results[1].reasons)


def test_an_iupd_on_the_evaluable_targets_alone_is_confirmed_by_growth_from_the_first_whole_sum() -> None:
    """Seymour 2017 table 2: an iUPD on the targets is confirmed by a further increase of their
    sum by 5 mm or more. Targets A (liver) and B (lung), 30 mm each. Day 42: A 75 mm, B not
    evaluable: A alone reaches PD (RECIST 1.1: NE unless the evaluable targets reach PD), iUPD;
    75 mm is no sum of diameters. Day 84: A 75, B 30 unchanged: nothing grew, iUPD (B's 30 mm
    coming back was read as +30 mm, iCPD, before); 105 mm is the reference from then on. Day
    126: A 80 mm, 110: +5 mm, iCPD."""
    ts = select_targets([target("A", 30.0), dataclasses.replace(target("B", 30.0), location_class="lung")], None)

    def at(i: int, day: int, a: float, b: float | None) -> Assessment:
        measured_b = LesionMeasurement("B", MeasurementStatus.NOT_EVALUABLE) if b is None else \
            LesionMeasurement("B", MeasurementStatus.MEASURED, b, 1.0)
        return Assessment(f"s{i}", D0 + datetime.timedelta(days=day),
                          (LesionMeasurement("A", MeasurementStatus.MEASURED, a, 1.0), measured_b))

    recist = assess_series(ts, [at(0, 0, 30, 30), at(1, 42, 75, None), at(2, 84, 75, 30), at(3, 126, 80, 30)])
    assert recist[0].target_response.value == "PD" and recist[0].sod_mm.value is None
    assert recist[0].target_reason is not None and "75 mm" in recist[0].target_reason
    results = run(recist)
    assert [r.category for r in results] == [I.IUPD, I.IUPD, I.ICPD]
    assert results[1].state.target_sod_at_iupd == 105.0


def test_a_new_lesion_never_seen_before_confirms_though_another_resolved() -> None:
    """EORTC iRECIST FAQ ("How do new lesions define progression?"): new lesions confirm an iUPD
    "when they increase in size ... or another lesion appears". Two 6 mm new lesions give iUPD;
    at the next study one has resolved and a third appears: still two, but one never seen
    before: iCPD (the count alone, Seymour 2017 table 2's "number", kept it iUPD)."""
    assert scenario([(0, 50, {}), (42, 50, {"n1": 6, "n2": 6}), (84, 50, {"n1": 6, "n3": 6})]) == [I.IUPD, I.ICPD]
