"""Lesions to score without reading DICOM: a synthetic CT with one spherical lesion, and the
reference a lesion crop is checked against (the same lesion handed over as the whole CT with a
whole-volume mask; used by the crop-equality test and the scoring benchmark)."""

from __future__ import annotations

import dataclasses

import numpy as np

from service.model import CtSeries, ImageGeometry, LesionMask
from service.scoring.lesion import LesionCrop


def whole_volume(crop: LesionCrop, ct: CtSeries) -> LesionCrop:
    """`crop` placed back into the whole CT: the mask at its offset, crop start at the origin."""
    mask = np.zeros(ct.hu.shape, dtype=bool)
    x0, y0, z0 = crop.crop_start_xyz
    dz, dy, dx = crop.mask.shape
    mask[z0:z0 + dz, y0:y0 + dy, x0:x0 + dx] = crop.mask
    return dataclasses.replace(crop, crop_start_xyz=(0, 0, 0), image_hu=ct.hu, mask=mask)


def synthetic_ct(offset: tuple[float, float, float]) -> tuple[CtSeries, LesionMask]:
    """A 80 x 70 x 40 noisy CT (0.77 x 0.77 x 2.5 mm) with a 9 mm spherical lesion 40 HU
    brighter, its centre moved by `offset` voxels (x, y, z), and the lesion's RTSTRUCT-like mask."""
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
