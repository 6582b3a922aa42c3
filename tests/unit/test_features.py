"""Absolute discretisation and IBSI grid alignment of the feature engine."""


import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import glrlm
from scipy import stats

from service.imaging.crops import lesion_crop
from service.scoring.features import absolute_bins, region_features
from service.scoring.lesion import ScoringContext, score_lesion
from service.location import LocationRules
from service.scoring.panel import full_panel
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from tests.support.crops import whole_volume
from tests.support.synthetic_lesion import synthetic_lesion_ct


def test_absolute_bins_follow_method_formula():
    # bin = floor((HU + 1000) / 10) + 1, clipped to [1, 400]
    values = np.array([-1200.0, -1000.0, -995.0, -990.0, 0.0, 35.0, 2999.9, 3500.0])
    assert absolute_bins(values, -1000, 10, 400).tolist() == [1, 1, 1, 2, 101, 104, 400, 400]


def _image(values: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(values.astype(np.float64))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


# Run counts per direction of a 2x2x2 cube (z, y, x) whose row y=0 holds grey level a and row y=1
# grey level b, worked out by hand for the 13 directions (dz, dy, dx):
#   x and z: runs of length 2, two of a and two of b              -> SRHGE term (a^2 + b^2) / 8
#   (1, 0, +-1): per level one run of 2 and two runs of 1          -> 0.375 (a^2 + b^2)
#   the other 9 directions cross y at every step: runs of length 1 -> (a^2 + b^2) / 2
# so SRHGE (averaged over directions) = (2/8 + 2 * 0.375 + 9/2) (a^2 + b^2) / 13 = 5.5 (a^2 + b^2) / 13,
# and every direction has as many runs of a as of b, so LGRE = (1/a^2 + 1/b^2) / 2.
def _hand_srhge(a: int, b: int) -> float:
    return 5.5 * (a**2 + b**2) / 13


def _hand_lgre(a: int, b: int) -> float:
    return (1 / a**2 + 1 / b**2) / 2


def test_glrlm_lgre_and_srhge_use_absolute_grey_levels():
    hu = np.zeros((2, 2, 2))
    hu[:, 1, :] = 20.0  # HU 0 -> absolute bin floor(1000 / 10) + 1 = 101; HU 20 -> 103
    roi = np.ones(hu.shape, dtype=bool)
    wanted = {"glrlm": ("ShortRunHighGrayLevelEmphasis", "LowGrayLevelRunEmphasis")}
    ours = region_features(_image(hu), roi, ExtractionSettings(), wanted)
    assert ours["rlm_srhge_3D_avg"] == pytest.approx(_hand_srhge(101, 103), rel=1e-12)
    assert ours["rlm_lgre_3D_avg"] == pytest.approx(_hand_lgre(101, 103), rel=1e-12)

    # pyradiomics' own numbering starts at the ROI minimum: levels 1 and 3, a different answer.
    plain = glrlm.RadiomicsGLRLM(_image(hu), sitk.GetImageFromArray(roi.astype(np.uint8)), binWidth=10, label=1)
    plain.enableAllFeatures()
    default = plain.execute()
    assert default["ShortRunHighGrayLevelEmphasis"] == pytest.approx(_hand_srhge(1, 3), rel=1e-12)
    assert default["LowGrayLevelRunEmphasis"] == pytest.approx(_hand_lgre(1, 3), rel=1e-12)
    assert ours["rlm_srhge_3D_avg"] / default["ShortRunHighGrayLevelEmphasis"] > 1000


def test_same_texture_at_another_hu_changes_absolute_but_not_relative_features():
    # Shifting every HU by +300 keeps pyradiomics' ROI-relative levels and moves the absolute ones.
    hu = np.zeros((2, 2, 2))
    hu[:, 1, :] = 20.0
    roi = np.ones(hu.shape, dtype=bool)
    wanted = {"glrlm": ("LowGrayLevelRunEmphasis",)}
    low = region_features(_image(hu), roi, ExtractionSettings(), wanted)["rlm_lgre_3D_avg"]
    high = region_features(_image(hu + 300), roi, ExtractionSettings(), wanted)["rlm_lgre_3D_avg"]
    assert high == pytest.approx(_hand_lgre(131, 133), rel=1e-12)
    assert high < low


# Awkward offsets: fractional lesion centres, lesions near a corner and touching the volume border.
@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0), (17.3, -11.6, 5.2), (-25.1, 22.4, -9.7), (-33.1, -26.9, -15.6)])
def test_crop_gives_the_same_features_as_thewhole_volume(offset):
    ct, mask = synthetic_lesion_ct(offset)
    settings = ExtractionSettings()
    context = ScoringContext(settings, load_signature(), LocationRules(), full_panel(settings))
    crop = lesion_crop(ct, mask, settings)
    assert crop.image_hu.size < ct.hu.size / 4
    from_crop = score_lesion(crop, context)
    from_whole = score_lesion(whole_volume(crop, ct), context)
    for region in ("core", "ring"):
        assert from_crop.features[region].keys() == from_whole.features[region].keys()
        for name, value in from_whole.features[region].items():
            assert from_crop.features[region][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert from_crop.score == pytest.approx(from_whole.score, rel=1e-12)


def test_kurtosis_is_reported_as_excess_kurtosis():
    rng = np.random.default_rng(3)
    hu = rng.normal(0, 50, (12, 12, 12))
    roi = np.ones(hu.shape, dtype=bool)
    features = region_features(_image(hu), roi, ExtractionSettings(), {"firstorder": ("Kurtosis",)})
    assert features["stat_kurt"] == pytest.approx(stats.kurtosis(hu.ravel(), fisher=True), rel=1e-6)
