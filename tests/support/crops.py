"""The reference a lesion crop is checked against: the same lesion handed over as the whole CT
with a whole-volume mask (used by the crop-equality test and the scoring benchmark), and a
lesion's mask on the whole CT's grid. The synthetic lesion itself is tests.support.synthetic_lesion."""

from __future__ import annotations

import dataclasses

import numpy as np

from service.model import CtSeries, LesionCrop, LesionMask


def whole_volume(crop: LesionCrop, ct: CtSeries) -> LesionCrop:
    """`crop` placed back into the whole CT: the mask at its offset, crop start at the origin."""
    mask = np.zeros(ct.hu.shape, dtype=bool)
    x0, y0, z0 = crop.crop_start_xyz
    dz, dy, dx = crop.mask.shape
    mask[z0:z0 + dz, y0:y0 + dy, x0:x0 + dx] = crop.mask
    return dataclasses.replace(crop, crop_start_xyz=(0, 0, 0), image_hu=np.asarray(ct.hu), mask=mask)


def whole_mask(lesion: LesionMask, ct: CtSeries) -> np.ndarray:
    """`lesion`'s mask (its bounding box only) placed at its offset in a mask of the whole CT."""
    volume = np.zeros(ct.hu.shape, dtype=bool)
    z, y, x = lesion.offset_zyx
    dz, dy, dx = lesion.mask.shape
    volume[z:z + dz, y:y + dy, x:x + dx] = lesion.mask
    return volume
