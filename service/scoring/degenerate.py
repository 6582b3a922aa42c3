"""Features that have no value on a degenerate region, and why.

On a region of one intensity (or one grey level after discretisation) some features are 0/0 or
1/0. pyradiomics then returns placeholders that read like measurements: kurtosis 0 (so excess
kurtosis -3), skewness 0, GLCM correlation and MCC 1, informational measure of correlation 1
and NGTDM busyness, contrast and strength 0, coarseness 10^6. We report these features as not
computable instead: the value is NaN inside the engine, null with this reason in the `features`
JSON, and a reasoned note in FHIR (service.outputs). Kept free of pyradiomics so that the
output layer can name the reason from the feature's name alone.
"""

from __future__ import annotations

import math

from service.scoring.ibsi_names import ibsi_stem

CONSTANT_INTENSITY = "undefined for a region of constant intensity (zero variance)"
ONE_GREY_LEVEL = "undefined for a region with a single grey level after discretisation"
ENGINE_UNDEFINED = "the engine's formula has no value for this region"

# (pyradiomics class, feature) -> the condition under which it is undefined.
UNDEFINED_WHEN: dict[tuple[str, str], str] = {
    ("firstorder", "Skewness"): CONSTANT_INTENSITY,
    ("firstorder", "Kurtosis"): CONSTANT_INTENSITY,
    ("glcm", "Correlation"): ONE_GREY_LEVEL,
    ("glcm", "MCC"): ONE_GREY_LEVEL,
    ("glcm", "Imc1"): ONE_GREY_LEVEL,
    ("ngtdm", "Coarseness"): ONE_GREY_LEVEL,
    ("ngtdm", "Busyness"): ONE_GREY_LEVEL,
    ("ngtdm", "Contrast"): ONE_GREY_LEVEL,
    ("ngtdm", "Strength"): ONE_GREY_LEVEL,
}

_REASON_BY_STEM = {
    **{"stat_skew": CONSTANT_INTENSITY, "stat_kurt": CONSTANT_INTENSITY},
    **{stem: ONE_GREY_LEVEL for stem in ("cm_corr", "cm_info_corr1", "ngt_coarseness", "ngt_busyness",
                                         "ngt_contrast", "ngt_strength")},
    "glcm_MCC": ONE_GREY_LEVEL,
}


def is_undefined(feature_class: str, feature: str, constant: bool, one_level: bool) -> bool:
    """Whether pyradiomics' value for this feature is a placeholder on this region."""
    condition = UNDEFINED_WHEN.get((feature_class, feature))
    return (condition == CONSTANT_INTENSITY and constant) or (condition == ONE_GREY_LEVEL and one_level)


def not_computable_reason(key: str) -> str:
    """Why an output feature (by output name) has no value: the degenerate-region rule, if any."""
    return _REASON_BY_STEM.get(ibsi_stem(key) or key, ENGINE_UNDEFINED)


def undefined_features(values: dict[str, float]) -> dict[str, str]:
    """The features of one region that have no value, each with its reason."""
    return {key: not_computable_reason(key) for key, value in sorted(values.items()) if not math.isfinite(value)}


def undefined_features_text(values: dict[str, float]) -> str:
    """Those features as the outputs name them, "feature (reason); ..." (empty when none): the
    SR's and the Bundle's notes say it in the same words."""
    return "; ".join(f"{key} ({reason})" for key, reason in undefined_features(values).items())
