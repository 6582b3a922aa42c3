"""Our replacements of pyradiomics steps held to pyradiomics' own classes, run the plain way.

Both classes get the same image, mask and pyradiomics settings; every feature must agree to
relative 1e-9, or bit for bit where a replacement claims to (NaN where pyradiomics gives NaN). The regions here are the ones such a comparison
needs: a textured blob, the degenerate ones (one voxel, a one-voxel-thin plane, a line, two
levels), and the shared STS lesions on the scorer's 1 mm grid.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from service.imaging.contours import rtstruct_to_masks
from service.imaging.crops import lesion_crop
from service.imaging.volume import read_ct_directory
from service.scoring.lesion import lesion_on_feature_grid
from service.scoring.settings import ExtractionSettings
from tests.support.external import DATA_DIR, require_data

STS_PATIENTS = ("STS_019", "STS_025", "STS_002")


def _features(cls: type, image: sitk.Image, mask: sitk.Image, **settings: object) -> dict[str, float]:
    extractor = cls(image, mask, label=1, **settings)
    extractor.enableAllFeatures()
    return {name: float(value) for name, value in extractor.execute().items()}


def assert_same_as_pyradiomics(mixin: type, reference: type, hu: np.ndarray, region: np.ndarray,
                               spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), *, exact: bool = False,
                               **settings: object) -> None:
    """Every feature of pyradiomics' class `reference` with our `mixin` over it equals the plain
    class's at relative 1e-9, or bit for bit with `exact` (a mixin that gives pyradiomics' own
    arrays)."""
    ours = type(f"{mixin.__name__}Over{reference.__name__}", (mixin, reference), {})
    image = sitk.GetImageFromArray(hu.astype(np.float64))
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(region.astype(np.uint8))
    mask.CopyInformation(image)
    expected = _features(reference, image, mask, **settings)
    got = _features(ours, image, mask, **settings)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[name]), name
        elif exact:
            assert got[name] == value, name
        else:
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-300), name


def blob(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Textured intensities and a lumpy ellipsoid region filling most of the array."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    centre = (np.array(shape) - 1) / 2
    radius = np.sqrt(((z - centre[0]) / shape[0]) ** 2 + ((y - centre[1]) / shape[1]) ** 2 + ((x - centre[2]) / shape[2]) ** 2)
    region = radius + 0.05 * rng.standard_normal(shape) < 0.42
    hu = 40 + 30 * rng.standard_normal(shape) + 20 * np.sin(x / 3.0)
    return hu, region


def single_voxel() -> np.ndarray:
    region = np.zeros((5, 5, 5), dtype=bool)
    region[2, 2, 2] = True
    return region


def plane() -> np.ndarray:
    region = np.zeros((5, 9, 8), dtype=bool)
    region[2, 1:8, 1:7] = True
    return region


def line() -> np.ndarray:
    region = np.zeros((6, 6, 9), dtype=bool)
    region[3, 2, 1:8] = True
    return region


def two_levels() -> tuple[np.ndarray, np.ndarray]:
    """A whole block of two intensities, 20 HU apart, at random."""
    shape = (7, 8, 9)
    return np.random.default_rng(8).choice([10.0, 30.0], size=shape), np.ones(shape, dtype=bool)


def sts_lesion_on_feature_grid(patient: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(HU, core, spacing x, y, z) of a shared STS lesion as the scorer sees it: cropped and
    resampled to its 1 mm grid."""
    folder = require_data(DATA_DIR / "ct-rtstruct" / patient)
    ct = read_ct_directory(folder / "image")
    (lesion,) = rtstruct_to_masks(pydicom.dcmread(folder / "mask" / "RS.dcm"), ct)
    settings = ExtractionSettings()
    resampled = lesion_on_feature_grid(lesion_crop(ct, lesion, settings), settings)
    return sitk.GetArrayFromImage(resampled.image), resampled.core, resampled.image.GetSpacing()
