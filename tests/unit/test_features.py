"""Absolute discretisation and IBSI grid alignment of the feature engine."""

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from service.imaging.crops import lesion_crop
from service.model import CtSeries, ImageGeometry, LesionMask
from service.scoring.features import absolute_bins, region_features
from service.scoring.lesion import LesionCrop, ScoringContext, score_lesion
from service.scoring.location import LocationRules
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature


def test_absolute_bins_follow_method_formula():
    # bin = floor((HU + 1000) / 10) + 1, clipped to [1, 400]
    values = np.array([-1200.0, -1000.0, -995.0, -990.0, 0.0, 35.0, 2999.9, 3500.0])
    assert absolute_bins(values, -1000, 3000, 10).tolist() == [1, 1, 1, 2, 101, 104, 400, 400]


def _image(values: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(values.astype(np.float64))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def test_glrlm_lgre_and_srhge_use_absolute_grey_levels():
    # A 1x2x2 ROI (z, y, x) in one slice: HU 0 0 / 20 20 -> absolute bins 101 101 / 103 103.
    # In 3D over 13 directions, averaged: direction x gives runs of length 2 ({101:1 run, 103:1 run});
    # every other direction with in-ROI neighbours (y, and diagonals in-plane) gives runs of length 1.
    hu = np.full((1, 2, 2), 0.0)
    hu[0, 1, :] = 20.0
    roi = np.ones(hu.shape, dtype=bool)
    features = region_features(_image(hu), roi, ExtractionSettings(), classes=("glrlm",))
    # Independent computation: with grey levels i in {101, 103} the per-direction GLRLM
    # LGRE = sum_runs (1 / i^2) / n_runs is the same for every direction whatever the run lengths,
    # because each direction has equally many runs of 101 and of 103.
    lgre = (1 / 101**2 + 1 / 103**2) / 2
    assert features["glrlm_LowGrayLevelRunEmphasis"] == pytest.approx(lgre, rel=1e-9)
    # pyradiomics' default (bins from the ROI minimum: levels 1 and 3) would give:
    relative_lgre = (1 / 1**2 + 1 / 3**2) / 2
    assert features["glrlm_LowGrayLevelRunEmphasis"] != pytest.approx(relative_lgre, rel=0.01)
    assert features["glrlm_ShortRunHighGrayLevelEmphasis"] > 101**2 / 4


def _synthetic_ct(offset: tuple[float, float, float]) -> tuple[CtSeries, LesionMask]:
    rng = np.random.default_rng(7)
    shape = (40, 70, 80)
    hu = rng.normal(30, 25, shape).astype(np.float32)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    spacing = (0.77, 0.77, 2.5)
    centre = (39.3 + offset[0], 33.7 + offset[1], 19.4 + offset[2])
    distance = np.sqrt(((x - centre[0]) * spacing[0]) ** 2 + ((y - centre[1]) * spacing[1]) ** 2
                       + ((z - centre[2]) * spacing[2]) ** 2)
    lesion = distance < 9.0
    hu[lesion] += 40
    low = np.argwhere(lesion).min(axis=0)
    high = np.argwhere(lesion).max(axis=0) + 1
    geometry = ImageGeometry(size=(80, 70, 40), spacing=spacing, origin=(-31.3, 12.9, -200.25))
    ct = CtSeries(hu, geometry, "1.2.3", "1.2.3.1", "1.2.3.2", "1.2.840.10008.5.1.4.1.1.2",
                  tuple(f"1.2.3.9.{i}" for i in range(shape[0])), 120.0)
    mask = LesionMask(1, "lesion", "RTSTRUCT", "1.2.840.10008.5.1.4.1.1.481.3", "1.2.3.4", tuple(int(v) for v in low),
                      lesion[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
    return ct, mask


def _whole_volume(crop: LesionCrop, ct: CtSeries) -> LesionCrop:
    mask = np.zeros(ct.hu.shape, dtype=bool)
    x0, y0, z0 = crop.crop_start_xyz
    dz, dy, dx = crop.mask.shape
    mask[z0:z0 + dz, y0:y0 + dy, x0:x0 + dx] = crop.mask
    return dataclasses.replace(crop, crop_start_xyz=(0, 0, 0), image_hu=ct.hu, mask=mask)


@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0), (17.3, -11.6, 5.2), (-25.1, 22.4, -9.7)])
def test_crop_gives_the_same_features_as_the_whole_volume(offset):
    ct, mask = _synthetic_ct(offset)
    settings = ExtractionSettings()
    context = ScoringContext(settings, load_signature(), LocationRules())
    crop = lesion_crop(ct, mask, settings)
    assert crop.image_hu.size < ct.hu.size / 4
    from_crop = score_lesion(crop, context)
    from_whole = score_lesion(_whole_volume(crop, ct), context)
    for region in ("core", "ring"):
        assert from_crop.features[region].keys() == from_whole.features[region].keys()
        for name, value in from_whole.features[region].items():
            assert from_crop.features[region][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert from_crop.score == pytest.approx(from_whole.score, rel=1e-12)


def test_kurtosis_is_reported_as_excess_kurtosis():
    rng = np.random.default_rng(3)
    hu = rng.normal(0, 50, (12, 12, 12))
    roi = np.ones(hu.shape, dtype=bool)
    features = region_features(_image(hu), roi, ExtractionSettings(), classes=("firstorder",))
    from scipy import stats
    assert features["firstorder_Kurtosis"] == pytest.approx(stats.kurtosis(hu.ravel(), fisher=True), rel=1e-6)
