"""Feature names: IBSI tags where IBSI defines the feature, pyradiomics names elsewhere.

IBSI tags (as in the IBSI reference values, e.g. `stat_min`, `rlm_lgre_3D_avg`) let a reader check
a number against the IBSI manual without knowing pyradiomics. The suffix states how texture was
aggregated: pyradiomics computes GLCM/GLRLM per direction and averages the features (`_3D_avg`,
or `_2_5D_avg` with force2D, where in-plane directions are merged over slices), and GLSZM, GLDM
and NGTDM from one matrix over the volume (`_3D`, or `_2_5D`). pyradiomics features that IBSI
does not define (e.g. firstorder TotalEnergy, glcm MCC) keep the name `<class>_<Feature>`.

pyradiomics' GLDM with alpha 0 and distance 1 is IBSI's neighbouring grey level dependence
matrix (NGLDM), whose dependence counts include the centre voxel (IBSI `ngl_*`).
"""

from __future__ import annotations

import functools

# (pyradiomics class, pyradiomics feature) -> IBSI tag stem, without the aggregation suffix.
_STEMS: dict[tuple[str, str], str] = {
    **{("shape", feature): f"morph_{stem}" for feature, stem in {
        "MeshVolume": "volume", "VoxelVolume": "vol_approx", "SurfaceArea": "area_mesh",
        "SurfaceVolumeRatio": "av", "Sphericity": "sphericity", "Maximum3DDiameter": "diam",
        "MajorAxisLength": "pca_maj_axis", "MinorAxisLength": "pca_min_axis",
        "LeastAxisLength": "pca_least_axis", "Elongation": "pca_elongation", "Flatness": "pca_flatness",
    }.items()},
    **{("firstorder", feature): stem for feature, stem in {
        "Mean": "stat_mean", "Variance": "stat_var", "Skewness": "stat_skew", "Kurtosis": "stat_kurt",
        "Median": "stat_median", "Minimum": "stat_min", "10Percentile": "stat_p10",
        "90Percentile": "stat_p90", "Maximum": "stat_max", "InterquartileRange": "stat_iqr",
        "Range": "stat_range", "MeanAbsoluteDeviation": "stat_mad",
        "RobustMeanAbsoluteDeviation": "stat_rmad", "Energy": "stat_energy",
        "RootMeanSquared": "stat_rms",
        # pyradiomics computes these two on the discretised intensities: IBSI's histogram features.
        "Entropy": "ih_entropy", "Uniformity": "ih_uniformity",
    }.items()},
    **{("glcm", feature): f"cm_{stem}" for feature, stem in {
        "Autocorrelation": "auto_corr", "JointAverage": "joint_avg", "ClusterProminence": "clust_prom",
        "ClusterShade": "clust_shade", "ClusterTendency": "clust_tend", "Contrast": "contrast",
        "Correlation": "corr", "DifferenceAverage": "diff_avg", "DifferenceEntropy": "diff_entr",
        "DifferenceVariance": "diff_var", "JointEnergy": "energy", "JointEntropy": "joint_entr",
        "Imc1": "info_corr1", "Imc2": "info_corr2", "Idm": "inv_diff_mom", "Idmn": "inv_diff_mom_norm",
        "Id": "inv_diff", "Idn": "inv_diff_norm", "InverseVariance": "inv_var",
        "MaximumProbability": "joint_max", "SumAverage": "sum_avg", "SumEntropy": "sum_entr",
        "SumSquares": "joint_var",
    }.items()},
    **{("glrlm", feature): f"rlm_{stem}" for feature, stem in {
        "ShortRunEmphasis": "sre", "LongRunEmphasis": "lre", "LowGrayLevelRunEmphasis": "lgre",
        "HighGrayLevelRunEmphasis": "hgre", "ShortRunLowGrayLevelEmphasis": "srlge",
        "ShortRunHighGrayLevelEmphasis": "srhge", "LongRunLowGrayLevelEmphasis": "lrlge",
        "LongRunHighGrayLevelEmphasis": "lrhge", "GrayLevelNonUniformity": "glnu",
        "GrayLevelNonUniformityNormalized": "glnu_norm", "RunLengthNonUniformity": "rlnu",
        "RunLengthNonUniformityNormalized": "rlnu_norm", "RunPercentage": "r_perc",
        "GrayLevelVariance": "gl_var", "RunVariance": "rl_var", "RunEntropy": "rl_entr",
    }.items()},
    **{("glszm", feature): f"szm_{stem}" for feature, stem in {
        "SmallAreaEmphasis": "sze", "LargeAreaEmphasis": "lze", "LowGrayLevelZoneEmphasis": "lgze",
        "HighGrayLevelZoneEmphasis": "hgze", "SmallAreaLowGrayLevelEmphasis": "szlge",
        "SmallAreaHighGrayLevelEmphasis": "szhge", "LargeAreaLowGrayLevelEmphasis": "lzlge",
        "LargeAreaHighGrayLevelEmphasis": "lzhge", "GrayLevelNonUniformity": "glnu",
        "GrayLevelNonUniformityNormalized": "glnu_norm", "SizeZoneNonUniformity": "zsnu",
        "SizeZoneNonUniformityNormalized": "zsnu_norm", "ZonePercentage": "z_perc",
        "GrayLevelVariance": "gl_var", "ZoneVariance": "zs_var", "ZoneEntropy": "zs_entr",
    }.items()},
    **{("gldm", feature): f"ngl_{stem}" for feature, stem in {
        "SmallDependenceEmphasis": "lde", "LargeDependenceEmphasis": "hde",
        "LowGrayLevelEmphasis": "lgce", "HighGrayLevelEmphasis": "hgce",
        "SmallDependenceLowGrayLevelEmphasis": "ldlge", "SmallDependenceHighGrayLevelEmphasis": "ldhge",
        "LargeDependenceLowGrayLevelEmphasis": "hdlge", "LargeDependenceHighGrayLevelEmphasis": "hdhge",
        "GrayLevelNonUniformity": "glnu", "DependenceNonUniformity": "dcnu",
        "DependenceNonUniformityNormalized": "dcnu_norm", "GrayLevelVariance": "gl_var",
        "DependenceVariance": "dc_var", "DependenceEntropy": "dc_entr",
    }.items()},
    **{("ngtdm", feature): f"ngt_{feature.lower()}" for feature in (
        "Coarseness", "Contrast", "Busyness", "Complexity", "Strength")},
}

_DIRECTION_AVERAGED = ("glcm", "glrlm")
_VOLUME_MATRIX = ("glszm", "gldm", "ngtdm")


def _suffix(feature_class: str, force_2d: bool) -> str:
    dimension = "2_5D" if force_2d else "3D"
    if feature_class in _DIRECTION_AVERAGED:
        return f"_{dimension}_avg"
    if feature_class in _VOLUME_MATRIX:
        return f"_{dimension}"
    return ""


def feature_key(feature_class: str, feature: str, force_2d: bool = False) -> str:
    """The output name of a pyradiomics feature: its IBSI tag, else `<class>_<feature>`."""
    stem = _STEMS.get((feature_class, feature))
    if stem is None:
        return f"{feature_class}_{feature}"
    return stem + _suffix(feature_class, force_2d)


def is_ibsi_defined(key: str) -> bool:
    """Whether an output name is an IBSI tag (pyradiomics-only features keep `<class>_` names)."""
    return key in _reverse_index()


@functools.cache
def _reverse_index() -> dict[str, tuple[str, str]]:
    return {
        feature_key(cls, feature, force_2d): (cls, feature)
        for (cls, feature) in _STEMS for force_2d in (False, True)
    }


def ibsi_stem(key: str) -> str | None:
    """The IBSI tag without its aggregation suffix (`rlm_lgre_3D_avg` -> `rlm_lgre`), or None
    when the output name is not an IBSI tag."""
    feature = _reverse_index().get(key)
    return _STEMS[feature] if feature is not None else None


def pyradiomics_feature(key: str) -> tuple[str, str]:
    """(pyradiomics class, feature) of an output name; the inverse of feature_key.

    Raises KeyError for a name that is neither an IBSI tag we compute nor `<class>_<feature>`.
    """
    if key in _reverse_index():
        return _reverse_index()[key]
    feature_class, _, feature = key.partition("_")
    if not feature:
        raise KeyError(key)
    return feature_class, feature
