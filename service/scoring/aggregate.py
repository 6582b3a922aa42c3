"""Patient-level biomarkers over the lesions of one study (docs/method.md section 4).

The score distribution is taken over lesions that are computable and larger than the volume
filter (default > 1 mL: the melanoma study found the score predictive only there). Each metric
has the n it needs; below that it is "not computable" with the reason, never 0 or NaN:
min/max/mean n >= 1, SD (Bessel) n >= 2, skewness (adjusted Fisher-Pearson, scipy bias=False)
n >= 3, excess kurtosis (scipy bias=False) n >= 4, Shannon entropy (bits) n >= 2 over bins of
ENTROPY_BIN_WIDTH score units anchored at 0 (a fixed width, so values compare across patients).
The risk group follows the least-infiltrated lesion (minimum score), the prognostic biomarker
(Sun 2022): `high_score` when it is at or above the named cut-off, else `low_score`;
`no_lesion_over_1ml` without lesions over the filter, and `not_computable` when there are some
but none could be scored (a fourth group, docs/method.md section 4, so no patient is misfiled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service.model import LesionResult, Metric, PatientResult, RiskGroup, ScoreClass
from service.scoring.signatures import Signature

ENTROPY_BIN_WIDTH = 0.25
STAT_NAMES = ("min", "max", "mean", "sd", "skewness", "kurtosis", "entropy")
_MINIMUM_N = {"min": 1, "max": 1, "mean": 1, "sd": 2, "skewness": 3, "kurtosis": 4, "entropy": 2}


def shannon_entropy(scores: np.ndarray, bin_width: float = ENTROPY_BIN_WIDTH) -> float:
    """Entropy in bits of the scores binned at fixed width from 0."""
    _, counts = np.unique(np.floor(scores / bin_width), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _central_moments(scores: np.ndarray, *orders: int) -> list[float]:
    """The biased central moments of `orders`, which the bias-corrected skewness and kurtosis
    below start from (as scipy.stats does)."""
    deviations = scores - scores.mean()
    return [float(np.mean(deviations**order)) for order in orders]


def _sample_skewness(scores: np.ndarray) -> float:
    """The adjusted Fisher-Pearson skewness G1 (scipy.stats.skew with bias=False), written out:
    scipy's array-API dispatch costs about 0.36 ms a call, more than the rest of a patient's
    aggregation."""
    n = scores.size
    m2, m3 = _central_moments(scores, 2, 3)
    return math.sqrt((n - 1.0) * n) / (n - 2.0) * m3 / m2**1.5


def _sample_excess_kurtosis(scores: np.ndarray) -> float:
    """The bias-corrected excess kurtosis G2 (scipy.stats.kurtosis with fisher=True, bias=False),
    written out for the same reason as _sample_skewness."""
    n = scores.size
    m2, m4 = _central_moments(scores, 2, 4)
    return ((n * n - 1.0) * m4 / m2**2 - 3.0 * (n - 1.0) ** 2) / ((n - 2.0) * (n - 3.0))


def _statistic(name: str, scores: np.ndarray) -> float:
    if name == "min":
        return float(scores.min())
    if name == "max":
        return float(scores.max())
    if name == "mean":
        return float(scores.mean())
    if name == "sd":
        return float(scores.std(ddof=1))
    if name == "skewness":
        return _sample_skewness(scores)
    if name == "kurtosis":
        return _sample_excess_kurtosis(scores)
    return shannon_entropy(scores)


def score_statistics(scores: Sequence[float]) -> dict[str, Metric]:
    """Each distribution metric, or why its n cannot support it."""
    values = np.asarray(scores, dtype=float)
    metrics: dict[str, Metric] = {}
    for name in STAT_NAMES:
        needed = _MINIMUM_N[name]
        if values.size < needed:
            metrics[name] = Metric.not_computable(f"needs at least {needed} scored lesions, have {values.size}")
            continue
        if name in ("skewness", "kurtosis") and np.ptp(values) == 0:
            metrics[name] = Metric.not_computable("undefined for identical scores (zero variance)")
            continue
        metrics[name] = Metric(_statistic(name, values))
    return metrics


def _score(lesion: LesionResult) -> float:
    """The score of a lesion already selected as scored."""
    assert lesion.score is not None
    return lesion.score


def aggregate_patient(
    lesions: Sequence[LesionResult], signature: Signature, volume_filter_ml: float = 1.0,
    cutoff_name: str | None = None,
) -> PatientResult:
    """Patient-level biomarkers of docs/method.md section 4."""
    cutoff = cutoff_name or signature.default_cutoff
    over_filter = [lesion for lesion in lesions if lesion.volume_ml > volume_filter_ml]
    scored = [lesion for lesion in over_filter if lesion.score is not None]
    least = min(scored, key=_score, default=None)
    highest = max(scored, key=_score, default=None)
    if not over_filter:
        risk_group = RiskGroup.NO_LESION_OVER_1ML
    elif least is None:
        risk_group = RiskGroup.NOT_COMPUTABLE
    elif signature.classify(_score(least), cutoff) is ScoreClass.HIGH:
        risk_group = RiskGroup.HIGH_SCORE
    else:
        risk_group = RiskGroup.LOW_SCORE
    return PatientResult(
        n_lesions=len(lesions),
        n_computable=sum(1 for lesion in lesions if lesion.score is not None),
        n_over_volume_filter=len(over_filter),
        volume_filter_ml=volume_filter_ml,
        total_volume_ml=float(sum(lesion.volume_ml for lesion in lesions)),
        organs_involved=tuple(sorted({lesion.location_class for lesion in lesions})),
        score_stats=score_statistics([_score(lesion) for lesion in scored]),
        least_infiltrated_tracking_uid=least.tracking_uid if least else None,
        highest_score_tracking_uid=highest.tracking_uid if highest else None,
        risk_group=risk_group,
        cutoff_name=cutoff,
        cutoff_value=signature.cutoffs[cutoff],
    )
