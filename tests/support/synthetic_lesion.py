"""A small synthetic CT holding one spherical lesion, for the tests that score a real crop
(features, crop equality, both scorers, TLS) without reading files."""

from __future__ import annotations

import numpy as np

from service.model import CtSeries, ImageGeometry, LesionMask


def synthetic_lesion_ct(offset: tuple[float, float, float]) -> tuple[CtSeries, LesionMask]:
    """A 80 x 70 x 40 CT of noise (fixed seed) with one brighter 9 mm-radius sphere, its centre
    moved by `offset` voxels, and that lesion's mask: small enough to score in a second, with
    anisotropic spacing so resampling and grid alignment are exercised."""
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
    mask = LesionMask(1, "lesion", "RTSTRUCT", "1.2.840.10008.5.1.4.1.1.481.3", "1.2.3.4", (int(low[0]), int(low[1]), int(low[2])),
                      lesion[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
    return ct, mask
