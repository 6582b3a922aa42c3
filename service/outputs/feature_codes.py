"""Radiomics features as coded DICOM measurements (name, derivation, UCUM unit).

Texture and morphology features use the IBSI codes DICOM adopted (scheme designator IBSI, e.g.
HTZT "Short Run Low Gray Level Emphasis", as in pydicom's code dictionary). First-order
statistics follow DICOM's convention for region statistics: the quantity "Attenuation
Coefficient" with a derivation (CID 7464: Mean, Minimum, ...), in Hounsfield units. The few IBSI
statistics without a DICOM code (percentiles, ranges, energy) use our private scheme with the
IBSI tag as the code value; kurtosis, which IBSI defines as excess kurtosis and DICOM's
derivation leaves open, uses IBSI's identifier IPH6. Features IBSI does not define (pyradiomics-only) are not put in the SR.
How texture was aggregated (3D, averaged over 13 directions) is stated in each measurement's
algorithm parameters.
"""

from __future__ import annotations

from typing import NamedTuple

from pydicom.sr.codedict import codes as dicom_codes
from pydicom.sr.coding import Code

from service.outputs.codes import rcds_code
from service.scoring.ibsi_names import ibsi_stem

_IBSI = dicom_codes.IBSI
_STATISTICS = dicom_codes.cid7464
_HU = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
_HU_SQUARED = Code("[hnsf'U]2", "UCUM", "Hounsfield unit squared")
_NO_UNITS = Code("1", "UCUM", "no units")
_MM = Code("mm", "UCUM", "millimeter")
_MM2 = Code("mm2", "UCUM", "square millimeter")
_MM3 = Code("mm3", "UCUM", "cubic millimeter")
_PER_MM = Code("/mm", "UCUM", "per millimeter")
ATTENUATION = dicom_codes.DCM.AttenuationCoefficient

CORE_REGION = rcds_code("RGNCORE", "Lesion core (the contoured lesion)")
RING_REGION = rcds_code("RGNRING", "Peritumoral ring (both sides of the lesion boundary)")
"""Measurement Method of each feature: which region it describes (docs/method.md section 2)."""
REGION_METHODS = {"core": CORE_REGION, "ring": RING_REGION}


class FeatureConcept(NamedTuple):
    name: Code
    unit: Code
    derivation: Code | None = None


_MORPHOLOGY = {
    "morph_volume": (_IBSI.VolumeOfMesh, _MM3), "morph_vol_approx": (_IBSI.VolumeFromVoxelSummation, _MM3),
    "morph_area_mesh": (_IBSI.SurfaceAreaOfMesh, _MM2), "morph_av": (_IBSI.SurfaceToVolumeRatio, _PER_MM),
    "morph_sphericity": (_IBSI.Sphericity, _NO_UNITS), "morph_diam": (_IBSI.Maximum3DDiameterOfAMesh, _MM),
    "morph_pca_maj_axis": (_IBSI.MajorAxisIn3DLength, _MM), "morph_pca_min_axis": (_IBSI.MinorAxisIn3DLength, _MM),
    "morph_pca_least_axis": (_IBSI.LeastAxisIn3DLength, _MM), "morph_pca_elongation": (_IBSI.Elongation, _NO_UNITS),
    "morph_pca_flatness": (_IBSI.Flatness, _NO_UNITS),
}

# First-order statistics on HU: Attenuation Coefficient + derivation.
_DERIVED = {
    "stat_mean": (_STATISTICS.Mean, _HU), "stat_median": (_STATISTICS.Median, _HU),
    "stat_min": (_STATISTICS.Minimum, _HU), "stat_max": (_STATISTICS.Maximum, _HU),
    "stat_rms": (_STATISTICS.RootMeanSquare, _HU), "stat_var": (_STATISTICS.Variance, _HU_SQUARED),
    "stat_skew": (_STATISTICS.Skewness, _NO_UNITS),
}
# Kurtosis: stat_kurt is IBSI's excess kurtosis (pyradiomics' minus 3); DICOM's CID 7464
# "Kurtosis" does not say which, so it is coded with the IBSI identifier of excess kurtosis.
_EXCESS_KURTOSIS = Code("IPH6", "IBSI", "(Excess) intensity kurtosis")

# IBSI statistics DICOM has no code for: private codes named by the IBSI tag.
_PRIVATE_STATISTICS = {
    "stat_p10": ("10th percentile of HU", _HU), "stat_p90": ("90th percentile of HU", _HU),
    "stat_iqr": ("Interquartile range of HU", _HU), "stat_range": ("Range of HU", _HU),
    "stat_mad": ("Mean absolute deviation of HU", _HU), "stat_rmad": ("Robust mean absolute deviation of HU", _HU),
    "stat_energy": ("Energy of HU", _HU_SQUARED),
}

# Texture and histogram features, by IBSI tag stem (service.scoring.ibsi_names.ibsi_stem).
_TEXTURE = {
    "ih_entropy": "IntensityHistogramEntropy", "ih_uniformity": "IntensityHistogramUniformity",
    "cm_auto_corr": "AutocorrelationOfGLCM", "cm_joint_avg": "JointAverageOfGLCM",
    "cm_clust_prom": "ClusterProminenceOfGLCM", "cm_clust_shade": "ClusterShadeOfGLCM",
    "cm_clust_tend": "ClusterTendencyOfGLCM", "cm_contrast": "ContrastOfGLCM", "cm_corr": "CorrelationOfGLCM",
    "cm_diff_avg": "DifferenceAverageOfGLCM", "cm_diff_entr": "DifferenceEntropyOfGLCM",
    "cm_diff_var": "DifferenceVarianceOfGLCM", "cm_energy": "AngularSecondMomentOfGLCM",
    "cm_joint_entr": "JointEntropyOfGLCM", "cm_info_corr1": "FirstMeasureOfInformationCorrelationOfGLCM",
    "cm_info_corr2": "SecondMeasureOfInformationCorrelationOfGLCM", "cm_inv_diff_mom": "InverseDifferenceMomentOfGLCM",
    "cm_inv_diff_mom_norm": "NormalizedInverseDifferenceMomentOfGLCM", "cm_inv_diff": "InverseDifferenceOfGLCM",
    "cm_inv_diff_norm": "NormalizedInverseDifferenceOfGLCM", "cm_inv_var": "InverseVarianceOfGLCM",
    "cm_joint_max": "JointMaximumOfGLCM", "cm_sum_avg": "SumAverageOfGLCM", "cm_sum_entr": "SumEntropyOfGLCM",
    "cm_joint_var": "JointVarianceOfGLCM",
    "rlm_sre": "ShortRunsEmphasis", "rlm_lre": "LongRunsEmphasis", "rlm_lgre": "LowGrayLevelRunEmphasis",
    "rlm_hgre": "HighGrayLevelRunEmphasis", "rlm_srlge": "ShortRunLowGrayLevelEmphasis",
    "rlm_srhge": "ShortRunHighGrayLevelEmphasis", "rlm_lrlge": "LongRunLowGrayLevelEmphasis",
    "rlm_lrhge": "LongRunHighGrayLevelEmphasis", "rlm_glnu": "GrayLevelNonuniformityInRuns",
    "rlm_glnu_norm": "NormalizedGrayLevelNonuniformityInRuns", "rlm_rlnu": "RunLengthNonuniformity",
    "rlm_rlnu_norm": "NormalizedRunLengthNonuniformity", "rlm_r_perc": "RunPercentage",
    "rlm_gl_var": "GrayLevelVarianceInRuns", "rlm_rl_var": "RunLengthVariance", "rlm_rl_entr": "RunEntropy",
    "szm_sze": "SmallZoneEmphasis", "szm_lze": "LargeZoneEmphasis", "szm_lgze": "LowGrayLevelZoneEmphasis",
    "szm_hgze": "HighGrayLevelZoneEmphasis", "szm_szlge": "SmallZoneLowGrayLevelEmphasis",
    "szm_szhge": "SmallZoneHighGrayLevelEmphasis", "szm_lzlge": "LargeZoneLowGrayLevelEmphasis",
    "szm_lzhge": "LargeZoneHighGrayLevelEmphasis", "szm_glnu": "GrayLevelNonuniformityOfSizeZoneCounts",
    "szm_glnu_norm": "NormalizedGrayLevelNonuniformityOfSizeZoneCounts", "szm_zsnu": "ZoneSizeNonuniformity",
    "szm_zsnu_norm": "NormalizedZoneSizeNonuniformity", "szm_z_perc": "SizeZonePercentage",
    "szm_gl_var": "GrayLevelVarianceInSizeZones", "szm_zs_var": "ZoneSizeVariance", "szm_zs_entr": "ZoneSizeEntropy",
    "ngl_lde": "LowDependenceEmphasis", "ngl_hde": "HighDependenceEmphasis", "ngl_lgce": "LowGreyLevelCountEmphasis",
    "ngl_hgce": "HighGreyLevelCountEmphasis", "ngl_ldlge": "LowDependenceLowGreyLevelEmphasis",
    "ngl_ldhge": "LowDependenceHighGreyLevelEmphasis", "ngl_hdlge": "HighDependenceLowGreyLevelEmphasis",
    "ngl_hdhge": "HighDependenceHighGreyLevelEmphasis", "ngl_glnu": "GreyLevelNonUniformityOfNGLDM",
    "ngl_dcnu": "DependenceCountNonUniformity", "ngl_dcnu_norm": "DependenceCountNonUniformityNormalized",
    "ngl_gl_var": "GreyLevelVarianceOfNGLDM", "ngl_dc_var": "DependenceCountVariance",
    "ngl_dc_entr": "DependenceCountEntropy",
    "ngt_coarseness": "CoarsenessOfNGTDM", "ngt_contrast": "ContrastOfNGTDM", "ngt_busyness": "BusynessOfNGTDM",
    "ngt_complexity": "ComplexityOfNGTDM", "ngt_strength": "StrengthOfNGTDM",
}
# The IBSI permanent identifiers of the intensity-based statistics (IBSI reference manual,
# section "Intensity-based statistical features"). DICOM codes these as Attenuation Coefficient
# with a derivation instead, so pydicom's IBSI dictionary does not have them; FHIR components
# cannot post-coordinate, so the FHIR output needs the IBSI identifier itself.
_STATISTIC_IDENTIFIERS = {
    "stat_mean": ("Q4LE", "Mean intensity"), "stat_var": ("ECT3", "Intensity variance"),
    "stat_skew": ("KE2A", "Intensity skewness"),
    "stat_kurt": (_EXCESS_KURTOSIS.value, _EXCESS_KURTOSIS.meaning),
    "stat_median": ("Y12H", "Median intensity"), "stat_min": ("1GSF", "Minimum intensity"),
    "stat_p10": ("QG58", "10th intensity percentile"), "stat_p90": ("8DWT", "90th intensity percentile"),
    "stat_max": ("84IY", "Maximum intensity"), "stat_iqr": ("SALO", "Intensity interquartile range"),
    "stat_range": ("2OJQ", "Intensity range"), "stat_mad": ("4FUA", "Intensity-based mean absolute deviation"),
    "stat_rmad": ("1128", "Intensity-based robust mean absolute deviation"),
    "stat_energy": ("N8CA", "Intensity-based energy"), "stat_rms": ("5ZWQ", "Root mean square intensity"),
}


def ibsi_identifier(tag: str) -> Code | None:
    """The feature's IBSI permanent identifier as a code of the IBSI scheme (e.g. 1GSF for
    stat_min, HTZT for rlm_srlge_3D_avg), or None when IBSI does not define the feature."""
    stem = ibsi_stem(tag)
    if stem in _STATISTIC_IDENTIFIERS:
        identifier, meaning = _STATISTIC_IDENTIFIERS[stem]
        return Code(identifier, "IBSI", meaning)
    concept = feature_concept(tag)
    return concept.name if concept is not None and concept.name.scheme_designator == "IBSI" else None


def feature_concept(tag: str) -> FeatureConcept | None:
    """The coded concept of an output feature name, or None when IBSI does not define it."""
    stem = ibsi_stem(tag)
    if stem in _MORPHOLOGY:
        return FeatureConcept(*_MORPHOLOGY[stem])
    if stem == "stat_kurt":
        return FeatureConcept(_EXCESS_KURTOSIS, _NO_UNITS)
    if stem in _DERIVED:
        derivation, unit = _DERIVED[stem]
        return FeatureConcept(ATTENUATION, unit, derivation)
    if stem in _PRIVATE_STATISTICS:
        meaning, unit = _PRIVATE_STATISTICS[stem]
        return FeatureConcept(rcds_code(stem, meaning), unit)
    texture = _TEXTURE.get(stem) if stem is not None else None
    return FeatureConcept(getattr(_IBSI, texture), _NO_UNITS) if texture else None

