"""pyradiomics parameter files: what is applied, what is refused, and the IBSI binning rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from service.errors import ConfigError, InputError
from service.feature_report import features_from_nifti
from service.scoring.features import region_features
from service.scoring.parameter_file import load_parameter_file, settings_from_parameters
from service.scoring.settings import ExtractionSettings

REPO = Path(__file__).resolve().parents[2]


def test_shipped_cd8_parameter_file_is_the_embedded_default():
    assert load_parameter_file(REPO / "examples" / "parameters" / "cd8-sun2018.yaml") == ExtractionSettings()


def test_pyradiomics_settings_are_applied():
    settings = settings_from_parameters({
        "setting": {"resampledPixelSpacing": [0.8, 0.8, 2], "interpolator": 1, "binCount": 32,
                    "resegmentRange": [-150, 250], "force2D": True, "label": 2, "preCrop": True},
        "featureClass": {"glrlm": ["LowGrayLevelRunEmphasis"], "shape": None},
    })
    assert settings.resampledPixelSpacing == (0.8, 0.8, 2.0)
    assert settings.interpolator == "sitkNearestNeighbor"
    assert (settings.binCount, settings.binWidth) == (32, None)
    assert settings.resegmentRange == (-150.0, 250.0) and settings.force2D and settings.label == 2
    assert settings.featureClasses == {"glrlm": ("LowGrayLevelRunEmphasis",), "shape": ()}


@pytest.mark.parametrize("document, names", [
    ({"setting": {"binWidht": 10}}, "binWidht"),
    ({"setting": {"interpolator": "sitkLanczosWindowedSinc"}}, "sitkLanczosWindowedSinc"),
    ({"setting": {"outlierFilterSigma": -3}}, "outlierFilterSigma"),
    ({"setting": {"resampledPixelSpacing": [2, -1, 2]}}, "resampledPixelSpacing"),
    ({"setting": {"normalize": True}}, "normalize"),
    ({"setting": {"binWidth": 10, "binCount": 16}}, "exactly one of binWidth"),
    ({"setting": {"resegmentRange": [200, -100]}}, "resegmentRange"),
    ({"imageType": {"LoG": {"sigma": [1.0]}}}, "LoG"),
    ({"featureClass": {"glrlm": ["ShortRunEmph"]}}, "ShortRunEmph"),
    ({"featureClass": {"wavelet": None}}, "wavelet"),
    ({"settings": {}}, "settings"),
])
def test_unsupported_or_misspelt_keys_are_refused_by_name(document, names):
    with pytest.raises(ConfigError, match=names):
        settings_from_parameters(document, "params.yaml")


def test_fixed_bin_width_starts_at_the_resegmentation_lower_bound():
    # IBSI: with a resegmentation range, bins of width w start at its lower bound.
    # HU 0 and 20 -> bins floor((0 + 100) / 10) + 1 = 11 and 13 (not 101 and 103 from -1000).
    hu = np.zeros((2, 2, 2))
    hu[:, 1, :] = 20.0
    image = sitk.GetImageFromArray(hu)
    roi = np.ones(hu.shape, dtype=bool)
    settings = ExtractionSettings(resegmentRange=(-100.0, 200.0))
    lgre = region_features(image, roi, settings, {"glrlm": ("LowGrayLevelRunEmphasis",)})["rlm_lgre_3D_avg"]
    assert lgre == pytest.approx((1 / 11**2 + 1 / 13**2) / 2, rel=1e-12)


def _write_nifti(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def test_resegmentation_drops_voxels_from_intensity_features_not_from_shape(tmp_path):
    hu = np.full((12, 12, 12), 40.0, dtype=np.float32)
    hu[5, 5, 5] = -500.0  # inside the ROI, outside the range
    mask = np.zeros(hu.shape, dtype=np.uint8)
    mask[3:9, 3:9, 3:9] = 1
    image = _write_nifti(tmp_path / "image.nii.gz", hu)
    labels = _write_nifti(tmp_path / "mask.nii.gz", mask)
    base = {"resampledPixelSpacing": None, "ringWidthMm": 0}
    plain = settings_from_parameters({"setting": base, "featureClass": {"firstorder": ["Minimum"], "shape": ["VoxelVolume"]}})
    cut = settings_from_parameters({"setting": base | {"resegmentRange": [-100, 200]},
                                    "featureClass": {"firstorder": ["Minimum"], "shape": ["VoxelVolume"]}})
    before = features_from_nifti(image, labels, plain).rois[0].features["core"]
    after = features_from_nifti(image, labels, cut).rois[0].features["core"]
    assert before["stat_min"] == -500.0 and after["stat_min"] == 40.0
    assert before["morph_vol_approx"] == after["morph_vol_approx"] == 216.0


def test_nifti_mask_on_another_grid_is_refused(tmp_path):
    image = _write_nifti(tmp_path / "image.nii.gz", np.zeros((6, 6, 6), dtype=np.float32))
    mask = _write_nifti(tmp_path / "mask.nii.gz", np.ones((6, 6, 6), dtype=np.uint8), spacing=(1.0, 1.0, 2.0))
    with pytest.raises(InputError, match="spacing"):
        features_from_nifti(image, mask, ExtractionSettings())


def test_every_label_of_a_nifti_mask_is_an_roi(tmp_path):
    rng = np.random.default_rng(5)
    hu = rng.normal(40, 20, (16, 16, 16)).astype(np.float32)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[2:7, 2:7, 2:7] = 1
    labels[9:14, 9:14, 9:14] = 3
    report = features_from_nifti(_write_nifti(tmp_path / "i.nii.gz", hu), _write_nifti(tmp_path / "m.nii.gz", labels),
                                 settings_from_parameters({"setting": {"resampledPixelSpacing": None},
                                                           "featureClass": {"firstorder": ["Mean"]}}))
    assert [(roi.number, roi.voxel_count) for roi in report.rois] == [(1, 125), (3, 125)]
    assert report.rois[1].features["core"]["stat_mean"] == pytest.approx(float(hu[9:14, 9:14, 9:14].mean()), rel=1e-6)
