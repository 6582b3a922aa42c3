"""service/response.py: the response of a study against prior reports, as the pipeline wires it.

A pre-baseline scan, the baseline (treatment starts that day) and the first evaluation, 61 days
apart each, with one target growing 40 -> 50 -> 80 mm (a worked vector, on
whole days): kinetics computed here by Ferte's formula (TGR_calculator.R), independently of the
service; and a measurable lesion the baseline report states as non-target stays non-target
(read, never re-selected).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math

import pytest

from service.comparison import recist_assessment_uid
from service.longitudinal.identity import CarriedIdentity
from service.longitudinal.irecist import RULES_VERSION, UNREADABLE_STATE, Basis, IRecistCategory, IRecistState
from service.longitudinal.recist import CARRIED_BASELINE, CARRIED_NADIR
from service.longitudinal.links import Confidence, Link, LinkStatus, MatchMethod
from service.longitudinal.response_settings import RecistSettings
from service.longitudinal.settings_file import ResponseSettings
from service.longitudinal.timepoint import TimepointLesion, UidSource
from service.response import BASELINE_INFERRED, ResponseInputs, StudyLesions, assess_response

DAY_0 = datetime.date(2024, 1, 1)
DAYS = 61
MONTH = 30.4375


def lesion(uid: str, d: float, location: str = "liver") -> TimepointLesion:
    return TimepointLesion(uid, uid, UidSource.CARRIED, uid, 1, location, (0.0, 0.0, 0.0), d, d / 2, d / 10)


def study(index: int, lesions: tuple[TimepointLesion, ...], categories: dict[str, str]) -> StudyLesions:
    date = DAY_0 + datetime.timedelta(days=index * DAYS)
    return StudyLesions(f"1.2.{index}", date, date.strftime("%Y%m%d"), lesions, 1.0, categories, {})


STATED = {"1.1": "target", "1.2": "non_target"}


def _run(inputs: ResponseInputs):
    pre = study(0, (lesion("1.1", 40), lesion("1.2", 30, "lung")), STATED)
    baseline = study(1, (lesion("1.1", 50), lesion("1.2", 30, "lung")), STATED)
    now = [lesion("own-1", 80), lesion("own-2", 30, "lung")]
    current = study(2, tuple(now), {})
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (c,), (p,))
             for c, p in zip(now, baseline.lesions)]
    identities = {"own-1": CarriedIdentity("1.1", "1.1"), "own-2": CarriedIdentity("1.2", "1.2")}
    return assess_response(current, [pre, baseline], links, identities, {"1.1": 60.0, "1.2": 0.0}, inputs)


def ferte_tgr(before: float, after: float, days: int) -> float:
    """TGR <- 100*(exp(3*log(after/before)/t)-1), t in months (Ferte's TGR_calculator.R)."""
    return 100 * (math.exp(3 * math.log(after / before) / (days / MONTH)) - 1)


def test_kinetics_around_the_treatment_start_from_the_reports():
    outcome = _run(ResponseInputs(treatment_start=DAY_0 + datetime.timedelta(days=DAYS)))
    response = outcome.assessment
    assert response is not None and response.baseline_study_uid == "1.2.1"
    k = response.kinetics
    tgr_ref, tgr_exp = ferte_tgr(40, 50, DAYS), ferte_tgr(50, 80, DAYS)
    assert k["tgr_ref"].value == pytest.approx(tgr_ref, rel=1e-12)
    assert k["tgr_exp"].value == pytest.approx(tgr_exp, rel=1e-12)
    assert k["tgr_delta"].value == pytest.approx(tgr_exp - tgr_ref, rel=1e-12)
    assert k["tgr_ratio"].value == pytest.approx(tgr_exp / tgr_ref, rel=1e-12)
    assert k["tgk_ratio"].value == pytest.approx(3.0, rel=1e-12)  # 30 mm / 10 mm over equal intervals
    flags = {flag.key: flag.value for flag in response.flags}
    # PD at the first evaluation (+60 %, +30 mm); ratio ~2.6 >= 2; delta ~62 > 50 but <= 100
    assert 50 < tgr_exp - tgr_ref <= 100
    assert flags["champiat"] is flags["saada_bouzid"] is flags["ferrara"] is True
    assert flags["kas"] is False
    assert response.overall == "PD" and response.irecist == "iUPD"
    assert response.iupd_pending and response.iupd_target_sod_mm == 80.0  # the page's iCPD line: 85 mm
    # the series starts at the baseline: the pre-baseline scan is for the kinetics only
    assert [(p.study_instance_uid, p.sum_of_diameters_mm, p.recist_overall) for p in outcome.series] == [
        ("1.2.1", 50.0, None), ("1.2.2", 80.0, "PD")]


def test_categories_are_read_from_the_baseline_report_not_reselected():
    outcome = _run(ResponseInputs(treatment_start=DAY_0 + datetime.timedelta(days=DAYS)))
    # 1.2 is measurable (30 mm, another organ): a selection would make it a target
    assert outcome.categories == {"1.1": "target", "1.2": "non_target"}
    assert outcome.assessment is not None and outcome.assessment.n_targets == 1


def test_without_anchors_the_earliest_study_is_the_inferred_baseline():
    outcome = _run(ResponseInputs())
    assert outcome.assessment is not None and outcome.assessment.baseline_study_uid == "1.2.0"
    assert BASELINE_INFERRED in outcome.assessment.notes
    assert outcome.assessment.kinetics["tgr_ref"].value is None
    assert [p.sum_of_diameters_mm for p in outcome.series] == [40.0, 50.0, 80.0]


def test_baseline_study_uid_wins_over_the_treatment_start():
    outcome = _run(ResponseInputs(treatment_start=DAY_0, baseline_study_uid="1.2.1"))
    assert outcome.assessment is not None and outcome.assessment.baseline_study_uid == "1.2.1"


def test_a_baseline_at_the_current_study_selects_its_targets_under_the_carried_identities():
    """The treatment starts after this study, so it is the baseline, though a prior report
    holds the same lesions: its categories are stated under the identities its lesions carry,
    and its targets are selected under them (under the lesions' own UIDs every matched lesion
    read back as Non-Lesion at Baseline, and no later study had a target)."""
    prior = study(0, (lesion("1.1", 40), lesion("1.2", 30, "lung")), STATED)
    now = [lesion("own-1", 42), lesion("own-2", 31, "lung")]
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (c,), (p,))
             for c, p in zip(now, prior.lesions)]
    identities = {"own-1": CarriedIdentity("1.1", "1.1"), "own-2": CarriedIdentity("1.2", "1.2")}
    outcome = assess_response(study(1, tuple(now), {}), [prior], links, identities, {"1.1": 5.0, "1.2": 3.3},
                              ResponseInputs(treatment_start=DAY_0 + datetime.timedelta(days=DAYS + 1)))
    assert outcome.assessment is None  # the baseline: nothing to assess yet
    # RECIST 1.1: both measurable (>= 10 mm), at most 2 per organ: both targets
    assert outcome.categories == {"1.1": "target", "1.2": "target"}


def test_a_moved_baseline_takes_no_nadir_or_irecist_state_from_the_old_series():
    """Study 1 was reported as a follow-up of study 0 (nadir 30 mm, an iUPD pending); the
    treatment starts after study 1, so study 1 is this series' baseline (39.4 mm). Its report's
    nadir and state belong to the old series: 42.4 mm now is +7.6 % against the new baseline
    and its own nadir, SD, iSD (with them carried: +41 % and +12.4 mm against 30 mm, PD)."""
    old = study(0, (lesion("1.1", 30),), {"1.1": "target"})
    pending = IRecistState(pending_iupd=True, iupd_date=DAY_0 + datetime.timedelta(days=DAYS),
                           iupd_study_uid="1.2.1", iupd_basis=(Basis.TARGET,), target_sod_at_iupd=39.4,
                           nlt_sum_at_iupd=0.0, nlnt_volume_at_iupd=0.0, last_category=IRecistCategory.IUPD)
    reported = dataclasses.replace(study(1, (lesion("1.1", 39.4),), {"1.1": "target"}),
                                   state=json.dumps(pending.to_dict()), baseline_sod_mm=30.0, nadir_sod_mm=30.0,
                                   assessment_uid=recist_assessment_uid("1.2.0"))
    now = lesion("own-1", 42.4)
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), reported.lesions)]
    outcome = assess_response(study(2, (now,), {}), [old, reported], links, {"own-1": CarriedIdentity("1.1", "1.1")},
                              {"1.1": 7.6}, ResponseInputs(treatment_start=DAY_0 + datetime.timedelta(days=DAYS + 1)))
    response = outcome.assessment
    assert response is not None and response.baseline_study_uid == "1.2.1"
    assert response.nadir_sod_mm.value == response.baseline_sod_mm.value == 39.4
    assert response.percent_vs_nadir.value == pytest.approx(100 * 3.0 / 39.4, rel=1e-12)
    assert (response.overall, response.irecist, response.iupd_pending) == ("SD", "iSD", False)
    assert CARRIED_NADIR not in response.notes and CARRIED_BASELINE not in response.notes


def test_fragments_of_a_split_before_a_baseline_at_this_study_are_its_lesions():
    """Prior lesion 1.1 split into two fragments by this study, which is the baseline (the
    treatment starts after it): the fragments are this baseline's lesions, each measurable, so
    both targets (counted under their parent they had no category and were non-lesions)."""
    prior = study(0, (lesion("1.1", 40),), STATED)
    now = [lesion("own-1", 25), lesion("own-2", 20)]
    links = [Link(LinkStatus.SPLIT, MatchMethod.GEOMETRY, Confidence.HIGH, tuple(now), prior.lesions)]
    identities = {"own-1": CarriedIdentity("1.1.1", "1.1.1", derived_from_uid="1.1"),
                  "own-2": CarriedIdentity("1.1.2", "1.1.2", derived_from_uid="1.1")}
    outcome = assess_response(study(1, tuple(now), {}), [prior], links, identities, {},
                              ResponseInputs(treatment_start=DAY_0 + datetime.timedelta(days=DAYS + 1)))
    assert outcome.categories == {"1.1.1": "target", "1.1.2": "target"}


def test_a_baseline_moved_to_a_reported_follow_up_selects_its_targets_again():
    """Study 1 was reported as a follow-up of study 0, where 1.2 was new (non-lesion at that
    baseline). The treatment starts after study 1, so it is the baseline: RECIST chooses the
    targets at the baseline, so 1.2 (25 mm, another organ) is a target now."""
    old = study(0, (lesion("1.1", 30),), {"1.1": "target"})
    reported = dataclasses.replace(
        study(1, (lesion("1.1", 39.4), lesion("1.2", 25, "lung")), {"1.1": "target", "1.2": "non_lesion"}),
        baseline_sod_mm=30.0, nadir_sod_mm=30.0, assessment_uid=recist_assessment_uid("1.2.0"))
    now = [lesion("own-1", 40), lesion("own-2", 26, "lung")]
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (c,), (p,))
             for c, p in zip(now, reported.lesions)]
    identities = {"own-1": CarriedIdentity("1.1", "1.1"), "own-2": CarriedIdentity("1.2", "1.2")}
    outcome = assess_response(study(2, tuple(now), {}), [old, reported], links, identities, {"1.1": 1.5, "1.2": 4.0},
                              ResponseInputs(treatment_start=DAY_0 + datetime.timedelta(days=DAYS + 1)))
    assert outcome.categories == {"1.1": "target", "1.2": "target"}
    assert outcome.assessment is not None and outcome.assessment.n_targets == 2
    assert outcome.assessment.baseline_sod_mm.value == pytest.approx(64.4)


# --- the iRECIST state a prior report carried ---------------------------------------------------
# One target: baseline 50 mm, then 70 mm (+40 % and +20 mm over the nadir: RECIST PD, so iUPD),
# then 76 mm, 61 days later: +6 mm since iUPD >= 5 mm confirms it (Seymour 2017 table 2), iCPD,
# outside the 4-8-week window. That is what the series alone gives, so it is the expected
# category whether the carried state is read or, unreadable, recomputed.

def _confirmation(state: str | None):
    baseline = study(0, (lesion("1.1", 50),), {"1.1": "target"})
    iupd = dataclasses.replace(study(1, (lesion("1.1", 70),), {"1.1": "target"}), state=state)
    now = lesion("own-1", 76)
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), iupd.lesions)]
    outcome = assess_response(study(2, (now,), {}), [baseline, iupd], links,
                              {"own-1": CarriedIdentity("1.1", "1.1")}, {"1.1": 52.0}, ResponseInputs())
    assert outcome.assessment is not None
    return outcome.assessment


IUPD_STATE = IRecistState(pending_iupd=True, iupd_date=DAY_0 + datetime.timedelta(days=DAYS),
                          iupd_study_uid="1.2.1", iupd_basis=(Basis.TARGET,), target_sod_at_iupd=70.0,
                          nlt_sum_at_iupd=0.0, nlnt_volume_at_iupd=0.0, last_category=IRecistCategory.IUPD)


@pytest.mark.parametrize("state", [
    "{not json",
    "[1, 2]",
    json.dumps({**IUPD_STATE.to_dict(), "iupd_date": "2024-13-45"}),
    json.dumps({**IUPD_STATE.to_dict(), "iupd_basis": ["target", "elsewhere"]}),
    json.dumps({**IUPD_STATE.to_dict(), "target_sod_at_iupd": "seventy"}),
    json.dumps({**IUPD_STATE.to_dict(), "last_category": "iMaybe"}),
], ids=["not-json", "not-an-object", "bad-date", "unknown-basis", "wrong-type", "unknown-category"])
def test_an_unreadable_carried_state_is_recomputed_from_the_series_with_a_note(state):
    response = _confirmation(state)
    assert response.irecist == "iCPD"
    assert response.iupd_pending is False and response.iupd_target_sod_mm is None
    unreadable = [note for note in response.notes if note.startswith(UNREADABLE_STATE)]
    assert len(unreadable) == 1
    assert "1.2." not in unreadable[0]  # no UIDs in a note


def test_fields_of_a_newer_writer_are_ignored_with_a_note():
    response = _confirmation(json.dumps({**IUPD_STATE.to_dict(), "future_rule": 3, "1.2.840.1": "x"}))
    assert response.irecist == "iCPD"
    assert not any(note.startswith(UNREADABLE_STATE) for note in response.notes)
    unknown = [note for note in response.notes if "does not know" in note]
    assert len(unknown) == 1 and "2 field(s)" in unknown[0] and "future_rule" in unknown[0]
    assert "1.2.840.1" not in unknown[0]


CONFIRMED = dataclasses.replace(IUPD_STATE, pending_iupd=False, confirmed=True, last_category=IRecistCategory.ICPD)


def _after_icpd(state: dict[str, object]):
    """One target: baseline 50 mm, then 52 mm in a report carrying `state`, now 50 mm."""
    baseline = study(0, (lesion("1.1", 50),), {"1.1": "target"})
    prior = dataclasses.replace(study(1, (lesion("1.1", 52),), {"1.1": "target"}), state=json.dumps(state))
    now = lesion("own-1", 50)
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), prior.lesions)]
    outcome = assess_response(study(2, (now,), {}), [baseline, prior], links,
                              {"own-1": CarriedIdentity("1.1", "1.1")}, {"1.1": 0.0}, ResponseInputs())
    assert outcome.assessment is not None
    return outcome


def test_the_carried_state_is_what_continues():
    """A state read: a confirmed iCPD stays iCPD (Seymour 2017: iCPD is final), although the
    series alone would say otherwise here (the target shrank back)."""
    outcome = _after_icpd(CONFIRMED.to_dict())
    assert outcome.assessment.irecist == "iCPD"
    assert [p.irecist_category for p in outcome.series] == [None, "iCPD", "iCPD"]


def test_a_state_reached_under_earlier_rules_is_recomputed_from_the_series():
    """A state an earlier version wrote (no rules_version: before Seymour 2017 table 2's
    confirmation rule) may hold an iCPD those rules reached wrongly; iCPD being final, it would
    stand at every later study. It is not continued: the series alone gives iSD here (50, 52,
    50 mm), with a note. The same state under this version's rules continues (the test above)."""
    outcome = _after_icpd({key: value for key, value in CONFIRMED.to_dict().items() if key != "rules_version"})
    assert outcome.assessment.irecist == "iSD"
    assert [p.irecist_category for p in outcome.series] == [None, "iSD", "iSD"]
    assert any("reached under other rules (version 1, this version's 2; it stated iCPD)" in note
               for note in outcome.assessment.notes)
    assert json.loads(outcome.assessment.irecist_state)["rules_version"] == RULES_VERSION


# --- a series that no longer reaches back to the baseline or the nadir --------------------------
# One target. Baseline (study 0) 100 mm; the nadir, 40 mm, at the first follow-up (study 1); then
# 45 mm at every follow-up up to study 13; the current study (14) measures 50 mm. The prior
# limits keep the latest 12 prior studies (prior_max_studies, README, Configuration): studies 2-13.
# Study 13's report states what it measured from: SODBL 100, SODNADIR 40 (the nadir of the
# studies before it), and the assessment group of the baseline (study 0).
# By hand, from the carried sums: 50 - 40 = +10 mm, +25 % over the nadir: PD; -50 % against
# baseline. From the kept studies alone it would be 50 against 45: +5 mm but +11 %: SD.

SUMS = {0: 100.0, 1: 40.0, **{i: 45.0 for i in range(2, 14)}}


def _late(kept: range, stated: dict[str, float | str]):
    priors = [study(i, (lesion("1.1", SUMS[i]),), {"1.1": "target"}) for i in kept]
    priors[-1] = dataclasses.replace(priors[-1], **stated)
    now = lesion("own-1", 50)
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), priors[-1].lesions)]
    outcome = assess_response(study(14, (now,), {}), priors, links, {"own-1": CarriedIdentity("1.1", "1.1")},
                              {"1.1": -50.0}, ResponseInputs())
    assert outcome.assessment is not None
    return outcome.assessment


STUDY_13_STATES = {"baseline_sod_mm": 100.0, "nadir_sod_mm": 40.0, "assessment_uid": recist_assessment_uid("1.2.0")}


def test_trimmed_priors_use_the_baseline_and_nadir_the_latest_report_carried():
    response = _late(range(2, 14), STUDY_13_STATES)
    assert response.target_response == "PD" and response.overall == "PD"
    assert response.baseline_sod_mm.value == 100.0 and response.nadir_sod_mm.value == 40.0
    assert response.percent_vs_baseline.value == pytest.approx(-50.0)
    assert response.percent_vs_nadir.value == pytest.approx(25.0)
    assert response.mm_vs_nadir.value == pytest.approx(10.0)
    assert CARRIED_BASELINE in response.notes and CARRIED_NADIR in response.notes
    # the report continues the baseline's assessment group, not one of the earliest study kept
    assert response.assessment_uid == recist_assessment_uid("1.2.0")


def test_a_pr_is_measured_against_the_carried_baseline():
    """The same kept studies, now 68 mm: -32 % against the carried 100 mm is PR (<= -30 %);
    against the earliest study kept (45 mm) it would be +51 %, PD."""
    priors = [study(i, (lesion("1.1", 75.0),), {"1.1": "target"}) for i in range(2, 14)]
    priors[-1] = dataclasses.replace(priors[-1], baseline_sod_mm=100.0, nadir_sod_mm=75.0,
                                     assessment_uid=recist_assessment_uid("1.2.0"))
    now = lesion("own-1", 68)
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), priors[-1].lesions)]
    response = assess_response(study(14, (now,), {}), priors, links, {"own-1": CarriedIdentity("1.1", "1.1")},
                               {"1.1": -32.0}, ResponseInputs()).assessment
    assert response is not None
    assert response.target_response == "PR" and response.percent_vs_baseline.value == pytest.approx(-32.0)
    assert CARRIED_BASELINE in response.notes and CARRIED_NADIR not in response.notes


def test_a_missing_intermediate_report_uses_the_carried_nadir():
    """The baseline is among the studies compared but study 1's report is missing: study 2's
    report carried the nadir of 40 mm, so 50 mm is PD (+25 %, +10 mm), not SD against 45."""
    response = _late(range(0, 14), {**STUDY_13_STATES})
    assert response.target_response == "PD" and response.nadir_sod_mm.value == 40.0  # with study 1: its own
    assert CARRIED_NADIR not in response.notes  # the series reaches the nadir: nothing carried
    without_1 = [i for i in range(0, 14) if i != 1]
    priors = [study(i, (lesion("1.1", SUMS[i]),), {"1.1": "target"}) for i in without_1]
    priors[-1] = dataclasses.replace(priors[-1], **STUDY_13_STATES)
    now = lesion("own-1", 50)
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), priors[-1].lesions)]
    response = assess_response(study(14, (now,), {}), priors, links, {"own-1": CarriedIdentity("1.1", "1.1")},
                               {"1.1": -50.0}, ResponseInputs()).assessment
    assert response is not None
    assert response.target_response == "PD" and response.nadir_sod_mm.value == 40.0
    assert response.baseline_sod_mm.value == 100.0
    assert CARRIED_NADIR in response.notes and CARRIED_BASELINE not in response.notes


def test_without_carried_sums_the_kept_studies_are_all_there_is():
    """An older report stating no sums: the earliest study kept is the (inferred) baseline."""
    response = _late(range(2, 14), {})
    assert response.target_response == "SD" and response.baseline_sod_mm.value == 45.0
    assert BASELINE_INFERRED in response.notes


# --- docs/method.md 5.3 timing settings (flags only) -------------------------------------------

def _timed(baseline_day: int, follow_up_day: int, d: float, inputs: ResponseInputs):
    """A 50 mm target at the baseline, `d` at the follow-up, on the given days after DAY_0."""
    def on(day: int, uid: str, lesions: tuple[TimepointLesion, ...], categories: dict[str, str]) -> StudyLesions:
        date = DAY_0 + datetime.timedelta(days=day)
        return StudyLesions(uid, date, date.strftime("%Y%m%d"), lesions, 1.0, categories, {})
    baseline = on(baseline_day, "1.2.0", (lesion("1.1", 50),), {"1.1": "target"})
    now = lesion("own-1", d)
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), baseline.lesions)]
    outcome = assess_response(on(follow_up_day, "1.2.1", (now,), {}), [baseline], links,
                              {"own-1": CarriedIdentity("1.1", "1.1")}, {"1.1": 100 * (d - 50) / 50}, inputs)
    assert outcome.assessment is not None
    return outcome.assessment


def _rules(**recist) -> ResponseSettings:
    return ResponseSettings(recist=dataclasses.replace(RecistSettings(), **recist))


@pytest.mark.parametrize("days_before, limit, flagged", [(35, 28, True), (28, 28, False), (35, 40, False)])
def test_a_baseline_long_before_the_treatment_start_is_flagged(days_before, limit, flagged):
    start = DAY_0 + datetime.timedelta(days=days_before)
    response = _timed(0, days_before + 42, 48,
                      ResponseInputs(treatment_start=start, rules=_rules(baseline_max_days_before_start=limit)))
    assert response.baseline_study_uid == "1.2.0" and response.overall == "SD"  # used all the same
    note = f"baseline {days_before} days before treatment_start: more than baseline_max_days_before_start ({limit})"
    assert (note in response.notes) is flagged


@pytest.mark.parametrize("day, sd_min_days, flagged", [(35, 42, True), (42, 42, False), (35, 0, False)])
def test_an_sd_before_the_minimum_interval_is_flagged(day, sd_min_days, flagged):
    """48 mm against 50 mm (-4 %, +0 mm against the nadir): SD, whatever the interval."""
    response = _timed(0, day, 48, ResponseInputs(rules=_rules(sd_min_days=sd_min_days)))
    assert response.overall == "SD" and response.irecist == "iSD"
    assert any(note.startswith(f"SD at day {day}, before sd_min_days") for note in response.notes) is flagged


def test_the_minimum_interval_does_not_touch_other_categories():
    response = _timed(0, 35, 30, ResponseInputs(rules=_rules(sd_min_days=42)))  # -40 %: PR
    assert response.overall == "PR" and not any("sd_min_days" in note for note in response.notes)


def test_a_single_prior_kept_still_continues_the_series():
    """Only study 13 within the limits: it is the earliest study compared, yet its report was a
    follow-up's. Its sums stand in (PD as above) and its iRECIST state continues: an iUPD it
    carries pending since study 12 (61 days) is confirmed by +5 mm over the 45 mm at iUPD."""
    pending = IRecistState(pending_iupd=True, iupd_date=DAY_0 + datetime.timedelta(days=12 * DAYS),
                           iupd_basis=(Basis.NEW,), target_sod_at_iupd=45.0, nlt_sum_at_iupd=0.0,
                           nlnt_volume_at_iupd=0.0, last_category=IRecistCategory.IUPD)
    response = _late(range(13, 14), {**STUDY_13_STATES, "state": json.dumps(pending.to_dict())})
    assert response.overall == "PD" and response.nadir_sod_mm.value == 40.0
    assert response.baseline_sod_mm.value == 100.0
    assert response.irecist == "iCPD"


def test_an_iupd_on_a_new_lesion_gives_the_page_no_icpd_line_of_the_target_sum() -> None:
    """The target sum's iCPD line (+5 mm over the sum at iUPD) only confirms an iUPD the targets
    were a basis of (Seymour 2017 table 2): after one on a new lesion the page draws none."""
    baseline = study(1, (lesion("1.1", 50), lesion("1.2", 30, "lung")), STATED)
    now = [lesion("own-1", 48), lesion("own-2", 30, "lung"), lesion("own-3", 20, "lung")]
    links = [*(Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (c,), (p,))
               for c, p in zip(now, baseline.lesions)),
             Link(LinkStatus.NEW, MatchMethod.GEOMETRY, None, (now[2],), ())]
    identities = {"own-1": CarriedIdentity("1.1", "1.1"), "own-2": CarriedIdentity("1.2", "1.2"),
                  "own-3": CarriedIdentity("own-3", "own-3")}
    response = assess_response(study(2, tuple(now), {}), [baseline], links, identities, {"1.1": -4.0, "1.2": 0.0},
                               ResponseInputs()).assessment
    assert response is not None and response.irecist == "iUPD" and response.iupd_pending
    assert response.iupd_target_sod_mm is None


def test_a_split_lesion_with_a_fragment_not_contoured_is_not_evaluable_not_shrunk():
    """RECIST 1.1 appendix II: the fragments of a split lesion are added up. A 40 mm target splits
    into 22 + 20 mm; at the next study only the 22 mm fragment is contoured (the other is inside
    the scan, its absence not explicit): the target is not evaluable (NE), not 22 mm (-45 %, a
    false PR whose sum would become the nadir). At the study after, both fragments again, 42 mm
    against the nadir of 40: SD, not PD against a nadir of 22."""
    f1, f2 = "1.1.f1", "1.1.f2"
    baseline = study(0, (lesion("1.1", 40),), {"1.1": "target"})
    split = dataclasses.replace(study(1, (lesion(f1, 22), lesion(f2, 20)), {f1: "target", f2: "target"}),
                                parents={f1: "1.1", f2: "1.1"})
    now = lesion("own-1", 22)
    links = [Link(LinkStatus.MATCHED, MatchMethod.TRACKING_UID, Confidence.HIGH, (now,), (split.lesions[0],)),
             Link(LinkStatus.DISAPPEARED, MatchMethod.NONE, None, (), (split.lesions[1],))]
    identities = {"own-1": CarriedIdentity(f1, "1.1 fragment 1", derived_from_uid="1.1")}
    partial = assess_response(study(2, (now,), {}), [baseline, split], links, identities, {}, ResponseInputs())
    assert partial.assessment is not None
    assert partial.assessment.target_response == "NE" and partial.assessment.overall == "NE"
    reported = dataclasses.replace(study(2, (lesion(f1, 22),), {f1: "target"}), parents={f1: "1.1"})
    again = [lesion("own-1", 22), lesion("own-2", 20)]
    links = [Link(LinkStatus.MATCHED, MatchMethod.TRACKING_UID, Confidence.HIGH, (again[0],), (reported.lesions[0],)),
             Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.MEDIUM, (again[1],), (split.lesions[1],))]
    identities = {"own-1": CarriedIdentity(f1, "1.1 fragment 1", derived_from_uid="1.1"),
                  "own-2": CarriedIdentity(f2, "1.1 fragment 2", derived_from_uid="1.1")}
    whole = assess_response(study(3, tuple(again), {}), [baseline, split, reported], links, identities, {},
                            ResponseInputs())
    assert whole.assessment is not None
    assert [p.recist_overall for p in whole.series] == [None, "SD", "NE", "SD"]
    assert whole.assessment.sod_mm.value == 42.0 and whole.assessment.nadir_sod_mm.value == 40.0


def test_the_pre_baseline_sum_of_a_target_is_that_of_the_lesions_that_merged_into_it():
    """Two liver lesions of 20 mm at the pre-baseline scan coalesce into the 45 mm target of the
    baseline (its report names the other as merged into it); 80 mm at the first evaluation.
    RECIST 1.1 measures coalesced lesions as the mass and compares it with its sources, so the
    reference growth is 40 -> 45 mm, not 20 -> 45 mm (which read the growth before treatment
    twelve times too fast and hid every hyperprogression): Ferte's TGR re-implemented here."""
    pre = study(0, (lesion("1.1", 20), lesion("1.3", 20)), {})
    baseline = dataclasses.replace(study(1, (lesion("1.1", 45),), {"1.1": "target"}), merged={"1.3": "1.1"})
    now = lesion("own-1", 80)
    links = [Link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.HIGH, (now,), baseline.lesions)]
    outcome = assess_response(study(2, (now,), {}), [pre, baseline], links, {"own-1": CarriedIdentity("1.1", "1.1")},
                              {"1.1": 77.8}, ResponseInputs(treatment_start=DAY_0 + datetime.timedelta(days=DAYS)))
    assert outcome.assessment is not None
    k = outcome.assessment.kinetics
    assert k["tgr_ref"].value == pytest.approx(ferte_tgr(40, 45, DAYS), rel=1e-12)
    assert k["tgr_exp"].value == pytest.approx(ferte_tgr(45, 80, DAYS), rel=1e-12)
    assert k["tgk_ratio"].value == pytest.approx(7.0, rel=1e-12)  # 35 mm / 5 mm over equal intervals
    flags = {flag.key: flag.value for flag in outcome.assessment.flags}
    assert flags["champiat"] is flags["saada_bouzid"] is flags["ferrara"] is True
