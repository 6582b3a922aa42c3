"""Patient-level biomarkers against scipy, with the n-guards of docs/method.md section 4."""

import numpy as np
import pytest
from scipy import stats

from service.model import LesionResult
from service.scoring.aggregate import ENTROPY_BIN_WIDTH, aggregate_patient, score_statistics
from service.scoring.signatures import load_signature


def _lesion(i: int, volume: float, score: float | None, location: str = "lung") -> LesionResult:
    return LesionResult(
        number=i, name=f"L{i}", source="RTSTRUCT", source_sop_instance_uid="1.2", tracking_id=f"L{i}",
        tracking_uid=f"1.2.{i}", location_class=location, location_source="roi_name", voxel_count=10,
        volume_ml=volume, longest_axial_diameter_mm=10, short_axis_mm=5, max_3d_diameter_mm=11,
        centroid_mm=(0, 0, 0), features={}, score=score, score_class=None, contributions={},
        not_computable=None if score is not None else "too small",
    )


@pytest.mark.parametrize("scores", [[], [2.1], [2.1, 1.7], [2.1, 1.7, 2.6], [2.1, 1.7, 2.6, 1.9, 2.45]])
def test_statistics_match_scipy_or_say_why_not(scores):
    metrics = score_statistics(scores)
    n = len(scores)
    values = np.asarray(scores)
    expected = {
        "min": (1, lambda: values.min()), "max": (1, lambda: values.max()), "mean": (1, lambda: values.mean()),
        "sd": (2, lambda: np.std(values, ddof=1)), "skewness": (3, lambda: stats.skew(values, bias=False)),
        "kurtosis": (4, lambda: stats.kurtosis(values, bias=False)),
        "entropy": (2, lambda: stats.entropy(np.unique(np.floor(values / ENTROPY_BIN_WIDTH),
                                                       return_counts=True)[1], base=2)),
    }
    for name, (needed, compute) in expected.items():
        metric = metrics[name]
        if n >= needed:
            assert metric.value == pytest.approx(compute(), rel=1e-12), name
            assert metric.reason is None
        else:
            assert metric.value is None and f"at least {needed}" in metric.reason, name


@pytest.mark.parametrize("seed", range(12))
def test_skewness_and_kurtosis_equal_scipys_on_random_scores(seed):
    """Written out in the service; scipy (bias=False) is the reference, including scores far from
    0 relative to their spread."""
    rng = np.random.default_rng(seed)
    values = rng.normal(rng.choice([0.0, 2.0, 50.0]), rng.choice([0.01, 0.5, 3.0]), size=int(rng.integers(4, 40)))
    metrics = score_statistics(values.tolist())
    assert metrics["skewness"].value == pytest.approx(stats.skew(values, bias=False), rel=1e-9, abs=1e-12)
    assert metrics["kurtosis"].value == pytest.approx(stats.kurtosis(values, fisher=True, bias=False), rel=1e-9,
                                                      abs=1e-12)


def test_identical_scores_give_a_reason_not_nan():
    metrics = score_statistics([2.0, 2.0, 2.0])
    assert metrics["sd"].value == 0.0
    assert metrics["skewness"].value is None and "zero variance" in metrics["skewness"].reason


def test_least_infiltrated_volume_filter_and_risk_group():
    signature = load_signature()
    cutoff = signature.cutoffs[signature.default_cutoff]
    lesions = [
        _lesion(1, 0.5, cutoff - 1.0),  # lowest score but under the 1 mL filter: ignored for the minimum
        _lesion(2, 12.0, cutoff + 0.3, "liver"),
        _lesion(3, 4.0, cutoff + 0.1),
        _lesion(4, 30.0, None, "adenopathy"),  # not computable
    ]
    patient = aggregate_patient(lesions, signature)
    assert patient.n_lesions == 4 and patient.n_computable == 3 and patient.n_over_volume_filter == 3
    assert patient.total_volume_ml == pytest.approx(46.5)
    assert patient.organs_involved == ("adenopathy", "liver", "lung")
    assert patient.least_infiltrated_tracking_uid == "1.2.3"
    assert patient.highest_score_tracking_uid == "1.2.2"
    assert patient.risk_group == "high_score"
    assert patient.score_stats["min"].value == pytest.approx(cutoff + 0.1)
    lesions[2] = _lesion(3, 4.0, cutoff - 0.2)
    assert aggregate_patient(lesions, signature).risk_group == "low_score"


def test_no_lesion_over_the_filter():
    patient = aggregate_patient([_lesion(1, 0.4, 2.0)], load_signature())
    assert patient.risk_group == "no_lesion_over_1ml"
    assert patient.least_infiltrated_tracking_uid is None
    assert all(metric.value is None for metric in patient.score_stats.values())
    assert aggregate_patient([], load_signature()).n_lesions == 0


def test_lesions_over_the_filter_none_scored_is_not_computable_not_misfiled():
    patient = aggregate_patient([_lesion(1, 8.0, None)], load_signature())
    assert patient.risk_group == "not_computable"
    assert patient.n_over_volume_filter == 1 and patient.n_computable == 0
