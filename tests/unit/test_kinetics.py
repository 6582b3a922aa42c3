"""Kinetics against Ferte's published formula, re-implemented here from TGR_calculator.R:
TGR = 100 * (exp(3 * log(S_b / S_a) / t) - 1), t in months; TGK = (S_b - S_a) / t."""

from __future__ import annotations

import datetime
import math

import pytest

from service.longitudinal.irecist import IRecistCategory as I
from service.longitudinal.kinetics import (RATIO_UNDEFINED, SumAt, dissociated_response, hyperprogression, kinetics,
                                           kinetics_points, out_of_field, pseudoprogression)
from service.longitudinal.recist import Assessment, LesionMeasurement, MeasurementStatus, assess_series
from service.longitudinal.response_settings import HpdDefinition as H, KineticsSettings
from service.longitudinal.targets import select_targets
from service.longitudinal.timepoint import TimepointLesion, UidSource

SETTINGS = KineticsSettings(days_per_month=30.5)  # 61 days = 2 months exactly
D0 = datetime.date(2024, 1, 1)


def ferte_tgr(before: float, after: float, months: float) -> float:
    return 100 * (math.exp(3 * math.log(after / before) / months) - 1)


def at(day: int, s: float) -> SumAt:
    return SumAt(f"s{day}", D0 + datetime.timedelta(days=day), s)


def test_worked_vector_40_50_80() -> None:
    k = kinetics(at(0, 40), at(61, 50), at(122, 80), SETTINGS)
    ref, exp = ferte_tgr(40, 50, 2), ferte_tgr(50, 80, 2)
    assert k.tgr_ref.value == pytest.approx(ref) and k.tgr_exp.value == pytest.approx(exp)
    assert k.tgr_ratio.value == pytest.approx(exp / ref) == pytest.approx(2.5755, abs=1e-4)
    assert k.tgr_delta.value == pytest.approx(exp - ref) == pytest.approx(62.6315, abs=1e-4)
    assert (k.tgk_ref.value, k.tgk_exp.value) == (pytest.approx(5.0), pytest.approx(15.0))
    assert k.tgk_ratio.value == pytest.approx(3.0)
    flags = {f.name: f.value for f in hyperprogression(k, first_evaluation_pd=True)}
    assert flags == {H.CHAMPIAT: True, H.SAADA_BOUZID: True, H.FERRARA: True, H.KAS: False}


def test_doubling_in_one_month_is_700_percent() -> None:
    assert kinetics(None, at(0, 20), at(30, 40), KineticsSettings(days_per_month=30)).tgr_exp.value == \
        pytest.approx(700.0)


def test_shrinking_before_treatment_gives_ratio_not_computable() -> None:
    k = kinetics(at(0, 50), at(61, 45), at(122, 80), SETTINGS)
    assert k.tgr_ref.value == pytest.approx(ferte_tgr(50, 45, 2)) == pytest.approx(-14.62, abs=0.01)
    assert k.tgr_ratio.value is None and k.tgr_ratio.reason == RATIO_UNDEFINED
    assert k.tgk_ratio.reason == RATIO_UNDEFINED and k.tgr_delta.value is not None
    flags = {f.name: f for f in hyperprogression(k, first_evaluation_pd=True)}
    assert flags[H.CHAMPIAT].value is None and flags[H.CHAMPIAT].reason == RATIO_UNDEFINED
    assert flags[H.FERRARA].value is True  # delta TGR is still defined


def test_clinical_definitions_and_missing_pre_baseline() -> None:
    k = kinetics(None, at(0, 50), at(61, 80), SETTINGS)
    flags = hyperprogression(k, True, KineticsSettings(hpd_definitions=tuple(H)))
    by = {f.name: f for f in flags}
    assert all(f.value is None for f in flags)
    assert "clinical input" in (by[H.KATO].reason or "") and "ECOG" in (by[H.LO_RUSSO].reason or "")
    assert "pre-baseline" in (by[H.KAS].reason or "")
    assert kinetics(at(0, 40), at(0, 50), at(61, 80)).tgr_ref.reason == "time interval <= 0"


def test_points_around_treatment_start() -> None:
    sums = [at(0, 40), at(61, 50), at(122, 80)]
    assert kinetics_points(sums, D0 + datetime.timedelta(days=70)) == (sums[0], sums[1], sums[2])
    assert isinstance(kinetics_points(sums, None), str)


def test_pseudoprogression_is_retrospective() -> None:
    assert pseudoprogression([I.IUPD, I.IPR]).value is True
    assert pseudoprogression([I.IUPD, I.IUPD, I.ICPD]).value is False
    assert pseudoprogression([I.IUPD]).value is None


def test_pseudoprogression_in_disease_without_targets() -> None:
    """followup.md 1.3: the bar is reset when iUPD is followed by a response; without targets at
    baseline, Non-iCR/Non-iUPD is that category (iRECIST resets its bar on it too)."""
    assert pseudoprogression([I.IUPD, I.NON_ICR_NON_IUPD]).value is True


def test_lesions_at_exactly_minus_30_and_plus_20_percent_count_in_the_lesion_level_flags() -> None:
    """10.1 -> 7.07 mm is -30 % and 10.1 -> 12.12 mm +20 %, exactly; in binary floating point
    -29.999999999999996 and 19.999999999999996. The lesion table calls them responding and
    progressing (service.longitudinal.change); the lesion-level dissociated response (a lesion
    -30 % or less and one +20 % or more) and the out-of-field response (a non-irradiated lesion
    -30 % or less) must say the same."""
    def pct(before: float, after: float) -> float:
        return 100.0 * (after - before) / before

    percents = {"A": pct(10.1, 7.07), "B": pct(10.1, 12.12)}
    assert percents["A"] > -30.0 and percents["B"] < 20.0  # the premise: not quite, by the last bit
    ts = select_targets([TimepointLesion(uid, uid, UidSource.DERIVED, uid, 1, organ, (0.0, 0.0, 0.0), 10.1, 8.0, 1.0)
                         for uid, organ in (("A", "liver"), ("B", "lung"))], None)
    series = [Assessment(f"s{i}", datetime.date(2024, 1, 1) + datetime.timedelta(days=42 * i),
                         tuple(LesionMeasurement(uid, MeasurementStatus.MEASURED, d, 1.0) for uid, d in sizes))
              for i, sizes in enumerate([(("A", 10.1), ("B", 10.1)), (("A", 7.07), ("B", 12.12))])]
    (result,) = assess_series(ts, series)
    assert dissociated_response(result, percents)[1].value is True
    assert out_of_field(["B"], ts, series, percents)[0].value is True
