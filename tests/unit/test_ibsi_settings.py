"""IBSI settings beyond the defaults: intensity rounding, the closed re-segmentation range, outlier
re-segmentation, the cubic interpolator, and features a degenerate region has no value for. Expected values are recomputed here with numpy from
IBSI's definitions, not taken from the engine."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from service.feature_report import features_from_nifti
from service.imaging.crops import lesion_crop
from service.model import ImageGeometry
from service.scoring.degenerate import CONSTANT_INTENSITY, ONE_GREY_LEVEL
from service.scoring.features import region_features
from service.location import LocationRules
from service.outputs import codes
from service.scoring.in_process import describe_scoring
from service.scoring.lesion import ScoringContext, lesion_features, score_lesion
from service.scoring.panel import FeaturePanel, full_panel, signature_panel
from service.scoring.resample import _rounded, resample_lesion
from service.scoring.resegment import intensity_mask
from service.scoring.settings import TEXTURE_CLASSES, ExtractionSettings
from service.scoring.signatures import Variable, load_signature
from tests.support.crops import whole_volume
from tests.support.synthetic_lesion import synthetic_lesion_ct

TEXTURE = {name: () for name in TEXTURE_CLASSES}


def _image(values: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(values.astype(np.float64))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _entropy_and_uniformity(bins: np.ndarray) -> tuple[float, float]:
    _, counts = np.unique(bins, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()), float((p**2).sum())


def _integer_ct_crop():
    ct, mask = synthetic_lesion_ct((0.0, 0.0, 0.0))
    ct = dataclasses.replace(ct, hu=np.round(ct.hu))  # CT: integer HU before interpolation
    return lesion_crop(ct, mask, ExtractionSettings())


def test_rounded_intensities_give_the_features_of_an_independently_rounded_image():
    crop = _integer_ct_crop()
    settings = ExtractionSettings()
    assert settings.intensityRounding  # the CT default
    panel = FeaturePanel("core", {"core": TEXTURE})
    ours, reason = lesion_features(crop, settings, panel)
    assert reason is None

    plain = resample_lesion(crop.image_hu, crop.mask, crop.volume_geometry, crop.crop_start_xyz,
                            (1.0, 1.0, 1.0), margin_mm=2.0, round_intensities=False)
    interpolated = sitk.GetArrayFromImage(plain.image)
    assert np.count_nonzero(interpolated[plain.core] % 1) > 0.9 * np.count_nonzero(plain.core)
    rounded = sitk.GetImageFromArray(np.round(interpolated))
    rounded.CopyInformation(plain.image)

    expected = region_features(rounded, plain.core, settings, TEXTURE)
    unrounded = region_features(plain.image, plain.core, settings, TEXTURE)
    assert ours["core"].keys() == expected.keys()
    for name, value in expected.items():
        assert ours["core"][name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    assert ours["core"]["stat_mean"] != pytest.approx(unrounded["stat_mean"], rel=1e-9)


def test_without_rounding_the_interpolated_intensities_are_used():
    crop = _integer_ct_crop()
    settings = ExtractionSettings(intensityRounding=False)
    ours, _ = lesion_features(crop, settings, FeaturePanel("core", {"core": {"firstorder": ("Mean",)}}))
    plain = resample_lesion(crop.image_hu, crop.mask, crop.volume_geometry, crop.crop_start_xyz,
                            (1.0, 1.0, 1.0), margin_mm=2.0, round_intensities=False)
    values = sitk.GetArrayFromImage(plain.image)[plain.core]
    assert ours["core"]["stat_mean"] == pytest.approx(values.mean(), rel=1e-12)


@pytest.mark.parametrize("interpolator", ["sitkLinear", "sitkBSpline", "sitkNearestNeighbor"])
def test_rounding_rounds_every_interpolator_on_the_same_grid(interpolator):
    """Rounded: the unrounded image's values rounded half to even, at the same origin, spacing
    and direction (linear resampling rounds its own array, the others SimpleITK's image)."""
    crop = _integer_ct_crop()

    def resampled(round_intensities: bool) -> sitk.Image:
        return resample_lesion(crop.image_hu, crop.mask, crop.volume_geometry, crop.crop_start_xyz, (1.0, 1.0, 1.0),
                               margin_mm=2.0, interpolator=interpolator, round_intensities=round_intensities).image

    plain, rounded = resampled(False), resampled(True)
    values = sitk.GetArrayFromImage(plain)
    if interpolator != "sitkNearestNeighbor":
        assert np.count_nonzero(values % 1) > values.size // 2  # rounding has work to do
    np.testing.assert_array_equal(sitk.GetArrayFromImage(rounded), np.round(np.round(values, 6)))
    assert (rounded.GetOrigin(), rounded.GetSpacing(), rounded.GetDirection()) == (
        plain.GetOrigin(), plain.GetSpacing(), plain.GetDirection())


def test_a_voxel_at_the_resegmentation_upper_bound_is_in_the_last_bin():
    # IBSI configuration C's range and width: [-1000, 400] HU, 25 HU bins. A voxel at exactly
    # 400 HU belongs to the range (closed) and to bin floor((400 + 1000) / 25) + 1 = 57.
    hu = np.array([0, 100, 200, 300, 400, 400, 390, 399, 375, -1000, 450, 401] * 8, dtype=float).reshape(4, 4, 6)
    roi = np.ones(hu.shape, dtype=bool)
    settings = ExtractionSettings(resegmentRange=(-1000.0, 400.0), binWidth=25.0, resampledPixelSpacing=None)
    kept = intensity_mask(roi, hu, settings)
    assert np.count_nonzero(kept) == 10 * 8  # 450 and 401 are re-segmented out, 400 stays
    features = region_features(_image(hu), kept, settings, {"firstorder": ("Entropy", "Uniformity")})

    bins = np.floor((hu[(hu >= -1000) & (hu <= 400)] + 1000) / 25) + 1  # IBSI, no clipping
    assert bins.max() == 57
    entropy, uniformity = _entropy_and_uniformity(bins)
    assert features["ih_entropy"] == pytest.approx(entropy, rel=1e-12)
    assert features["ih_uniformity"] == pytest.approx(uniformity, rel=1e-12)


def test_without_resegmentation_the_bin_upper_bound_is_open():
    # [-1000, 3000) holds 400 bins of 10 HU; 3000 HU and above are clipped into bin 400 (method.md).
    settings = ExtractionSettings()
    assert settings.fixed_bin_count == 400
    assert ExtractionSettings(resegmentRange=(-1000.0, 400.0), binWidth=25.0).fixed_bin_count == 57
    assert ExtractionSettings(resegmentRange=(-500.0, 405.0), binWidth=25.0).fixed_bin_count == 37


def _outlier_volume() -> np.ndarray:
    rng = np.random.default_rng(11)
    hu = np.round(rng.normal(40, 30, (10, 10, 10)))
    hu[2, 3, 4], hu[7, 7, 1], hu[5, 0, 9] = 900.0, -700.0, 260.0  # outliers
    return hu


@pytest.mark.parametrize("reseg_range", [None, (-100.0, 120.0)])
def test_outlier_filter_keeps_mean_plus_minus_k_sd_intersected_with_the_range(reseg_range):
    hu = _outlier_volume()
    roi = np.zeros(hu.shape, dtype=bool)
    roi[1:9, :, :] = True
    settings = ExtractionSettings(outlierFilterSigma=3.0, resegmentRange=reseg_range, resampledPixelSpacing=None)
    kept = intensity_mask(roi, hu, settings)

    # IBSI: mean and (population) SD over the ROI as segmented; intersection with the range.
    values = hu[roi]
    low, high = values.mean() - 3 * values.std(), values.mean() + 3 * values.std()
    if reseg_range is not None:
        low, high = max(low, reseg_range[0]), min(high, reseg_range[1])
    expected = values[(values >= low) & (values <= high)]
    assert 0 < expected.size < values.size
    features = region_features(_image(hu), kept, settings, {"firstorder": ("Mean", "Minimum", "Maximum")})
    assert features["stat_mean"] == pytest.approx(expected.mean(), rel=1e-12)
    assert features["stat_min"] == expected.min() and features["stat_max"] == expected.max()


def test_bspline_interpolation_is_cubic():
    # A cubic B-spline reproduces a quadratic exactly away from the image edges; trilinear
    # interpolation overshoots between samples (by a quarter of the squared step).
    spacing = (0.8, 0.8, 0.8)
    z, y, x = np.mgrid[:40, :40, :40] * 0.8
    values = (x - 16.0) ** 2 + (y - 15.0) ** 2
    mask = np.zeros(values.shape, dtype=bool)
    mask[18:22, 18:22, 18:22] = True
    geometry = ImageGeometry(size=(40, 40, 40), spacing=spacing, origin=(0.0, 0.0, 0.0))

    def resampled(interpolator: str) -> tuple[np.ndarray, np.ndarray]:
        lesion = resample_lesion(values, mask, geometry, (0, 0, 0), (1.0, 1.0, 1.0), margin_mm=2.0,
                                 interpolator=interpolator, round_intensities=False)
        grid = sitk.GetArrayFromImage(lesion.image)
        indices = np.argwhere(np.ones(grid.shape, dtype=bool))
        points = np.asarray([lesion.image.TransformIndexToPhysicalPoint([int(i) for i in idx[::-1]])
                             for idx in indices])
        analytic = (points[:, 0] - 16.0) ** 2 + (points[:, 1] - 15.0) ** 2
        return grid.reshape(-1), analytic

    cubic, analytic = resampled("sitkBSpline")
    assert cubic == pytest.approx(analytic, rel=1e-6)  # the crop is interpolated in float32
    linear, analytic = resampled("sitkLinear")
    assert np.abs(linear - analytic).max() > 0.05


def test_a_constant_region_reports_undefined_features_as_not_computable(tmp_path):
    # One intensity: skewness, kurtosis, correlation and the NGTDM ratios are 0/0 or 1/0. pyradiomics
    # returns placeholders for them (kurtosis 0, i.e. excess -3; correlation 1; busyness 0, ...).
    hu = np.full((8, 8, 8), 40.0, dtype=np.float32)
    mask = np.zeros(hu.shape, dtype=np.uint8)
    mask[2:6, 2:6, 2:6] = 1
    paths = []
    for name, array in (("image", hu), ("mask", mask)):
        image = sitk.GetImageFromArray(array)
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
        paths.append(tmp_path / f"{name}.nii.gz")
    settings = ExtractionSettings(resampledPixelSpacing=None, ringWidthMm=0.0)
    report = features_from_nifti(paths[0], paths[1], settings).as_json()
    (roi,) = report["rois"]
    core, undefined = roi["regions"]["core"], roi["undefined"]["core"]
    for key in ("stat_skew", "stat_kurt"):
        assert core[key] is None and undefined[key] == CONSTANT_INTENSITY
    for key in ("cm_corr_3D_avg", "cm_info_corr1_3D_avg", "glcm_MCC", "ngt_coarseness_3D", "ngt_busyness_3D",
                "ngt_contrast_3D", "ngt_strength_3D"):
        assert core[key] is None and undefined[key] == ONE_GREY_LEVEL, key
    # Defined on one grey level, and still reported: variance 0, uniformity 1, complexity 0.
    assert core["stat_var"] == 0 and core["ih_uniformity"] == 1 and core["ngt_complexity_3D"] == 0
    assert core["stat_mean"] == 40


def test_one_grey_level_is_judged_after_discretisation():
    # 40 and 45 HU share the 10 HU bin [40, 50): texture sees one grey level, statistics two values.
    hu = np.where(np.indices((6, 6, 6)).sum(axis=0) % 2 == 0, 40.0, 45.0)
    roi = np.ones(hu.shape, dtype=bool)
    wanted = {"firstorder": ("Kurtosis",), "glcm": ("Correlation",)}
    features = region_features(_image(hu), roi, ExtractionSettings(), wanted)
    assert np.isnan(features["cm_corr_3D_avg"])
    assert features["stat_kurt"] == pytest.approx(1.0 - 3.0, rel=1e-12)  # two values, equal counts: m4/m2^2 = 1


def test_a_score_needing_a_feature_without_value_is_not_computable_with_the_reason():
    ct, mask = synthetic_lesion_ct((0.0, 0.0, 0.0))
    ct = dataclasses.replace(ct, hu=np.full(ct.hu.shape, 40.0, dtype=np.float32))  # constant everywhere
    shipped = load_signature()
    kurtosis = Variable("core_kurtosis", "core", "stat_kurt", -2.0, 10.0, True, 0.5)
    signature = dataclasses.replace(shipped, variables=(*shipped.variables, kurtosis))
    settings = ExtractionSettings()
    context = ScoringContext(settings, signature, LocationRules(), signature_panel(signature))
    result = score_lesion(lesion_crop(ct, mask, settings), context)
    assert result.score is None and result.score_class is None
    assert result.not_computable == (f"signature variable core_kurtosis: stat_kurt of the core is not computable "
                                     f"({CONSTANT_INTENSITY})")
    assert result.features["core"]["stat_min"] == 40.0  # the features that have values are kept


def test_settings_state_what_ibsi_asks_to_be_reported():
    stated = ExtractionSettings().as_dict()
    assert stated["intensityRounding"] is True and stated["outlierFilterSigma"] is None
    assert stated["gridAlignment"].startswith("IBSI: grid centres aligned")
    assert stated["discretisation"].startswith("fixed bin size: width 10 from -1000") and "400 bins" in stated["discretisation"]
    assert stated["resegmentation"] == "none"
    config_e = ExtractionSettings(resampledPixelSpacing=(2.0, 2.0, 2.0), interpolator="sitkBSpline", binWidth=None,
                                  binCount=32, resegmentRange=(-1000.0, 400.0), outlierFilterSigma=3.0).as_dict()
    assert config_e["resegmentation"] == "range [-1000, 400] (closed) intersected with outliers: mean +/- 3 SD of the region"
    assert config_e["discretisation"] == "fixed bin number: 32 bins over the region's own intensity range"
    assert ExtractionSettings(resampledPixelSpacing=None).as_dict()["gridAlignment"] == "no resampling: the image's own grid"


def test_every_output_states_rounding_grid_alignment_and_the_engine_distribution():
    # SR notes, FHIR notes and the Device all carry provenance_lines (service.outputs.codes).
    signature = load_signature()
    settings = ExtractionSettings()
    provenance = describe_scoring(ScoringContext(settings, signature, LocationRules(), signature_panel(signature)), 1.0)
    engines, stated = codes.provenance_lines(provenance)[-2:]
    assert engines.startswith("Engines: SimpleITK ") and "pyradiomics-bhklab " in engines
    for statement in ("intensityRounding=True", f"gridAlignment={settings.grid_alignment}",
                      f"discretisation={settings.discretisation}", "resegmentation=none", "outlierFilterSigma=None",
                      "interpolator=sitkLinear", "maskThreshold=0.5", f"textureAggregation={settings.texture_aggregation}"):
        assert statement in stated, statement


@pytest.mark.parametrize("offset", [(17.3, -11.6, 5.2), (-33.1, -26.9, -15.6)])  # inside; cut by the border
def test_bspline_crop_gives_the_same_features_as_the_whole_volume(offset):
    # The crop's extra margin for the B-spline pre-filter makes the crop's coefficients the
    # whole volume's where they are used (service.imaging.crops.BSPLINE_PREFILTER_VOXELS).
    ct, mask = synthetic_lesion_ct(offset)
    ct = dataclasses.replace(ct, hu=np.round(ct.hu))
    settings = ExtractionSettings(interpolator="sitkBSpline")
    context = ScoringContext(settings, load_signature(), LocationRules(), full_panel(settings))
    crop = lesion_crop(ct, mask, settings)
    assert crop.image_hu.size < ct.hu.size / 2
    from_crop, from_whole = score_lesion(crop, context), score_lesion(whole_volume(crop, ct), context)
    for region, values in from_whole.features.items():
        assert from_crop.features[region].keys() == values.keys()
        for name, value in values.items():
            assert from_crop.features[region][name] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), name


def test_interpolated_ties_round_the_same_way_whatever_their_floating_point_error():
    """An interpolated x.5 computed on a crop and on the whole volume can differ by ~1e-12 and
    then fall either side of the tie: both round half to even, as an exact x.5 does (numpy's
    rounding, as MIRP's)."""
    near_ties = np.array([[[0.5 - 1e-12, 0.5 + 1e-12, 1.5 - 1e-12, 1.5 + 1e-12, -0.5 + 1e-12, 2.4999]]])
    np.testing.assert_array_equal(_rounded(near_ties), [[[0.0, 0.0, 2.0, 2.0, 0.0, 2.0]]])
